import Dispatch
import Foundation
import Synchronization

/// Turns SIGTERM and SIGINT into a flag the loop checks between batches, so a stop
/// finishes the batch in hand, flushes the outbox and exits 0.
public final class StopSignal: @unchecked Sendable {
    // `requested` is atomic; `sources` is written only by `install`, which is called once
    // at start-up before any other thread looks at this object.
    private let requested = Atomic<Bool>(false)
    private var sources: [any DispatchSourceSignal] = []

    public init() {}

    /// Starts listening for SIGTERM and SIGINT. Call once, at start-up.
    public func install() {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in requested.store(true, ordering: .relaxed) }
            source.resume()
            sources.append(source)
        }
    }

    /// Asks the loop to stop, as a signal would.
    public func request() { requested.store(true, ordering: .relaxed) }

    /// Whether a stop was asked for.
    public var isRequested: Bool { requested.load(ordering: .relaxed) }
}
