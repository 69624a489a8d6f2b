import Foundation
import Storage
import Synchronization

/// Work done beside the loop on a store (checkpoints, counts for the metrics): turn after turn,
/// on a thread and a connection of its own, so that the loop's thread never stops for it. WAL
/// lets the connection read and checkpoint beside the loop's writes.
///
/// Stopped by `stop()` or, at the latest, when the worker is let go: a loop that fails to start
/// or stops on an error leaves no thread behind holding the store open.
final class BackgroundWorker: Sendable {
    /// Flags shared with the worker's thread.
    private final class Flags: Sendable {
        let stopped = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
        /// The worker's thread (`pthread_self`): a stop asked on it, by a turn letting go of
        /// the worker's owner, must not wait for itself.
        let thread = Atomic<UInt>(0)
    }

    private let flags = Flags()

    /// Opens a connection to the store `configuration` names, reads what the turns need once
    /// with `setUp` (on the caller's thread, before the worker's starts), and starts a thread
    /// called `name` that calls `turn` with the connection and what `setUp` returned: first
    /// after `firstTurnAfterMilliseconds`, then after as many milliseconds as each turn returns
    /// (at least one). The connection is the thread's alone.
    init<Context: Sendable>(
        name: String, store configuration: DatabaseConfiguration, firstTurnAfterMilliseconds: Int,
        setUp: (Database) throws -> Context, turn: @escaping @Sendable (Database, Context) -> Int
    ) throws {
        let database: Database
        let context: Context
        do {
            database = try Database(configuration)
            do { context = try setUp(database) } catch {
                database.close()
                throw error
            }
        } catch {
            // No thread to wait for: `deinit`, which runs for a failed init too, stops at once.
            flags.finished.store(true, ordering: .releasing)
            throw error
        }
        let thread = Thread { [flags] in
            nameCurrentThread(name)
            flags.thread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
            var pause = firstTurnAfterMilliseconds
            while !flags.stopped.load(ordering: .relaxed) {
                // Naps of at most 50 ms, so that stopping never waits for a whole pause.
                if pause > 0 {
                    let nap = min(pause, 50)
                    usleep(useconds_t(nap * 1000))
                    pause -= nap
                    continue
                }
                // At least a millisecond between turns, so that a turn never spins.
                pause = max(turn(database, context), 1)
            }
            database.close()
            flags.finished.store(true, ordering: .releasing)
        }
        thread.name = name
        thread.start()
    }

    /// The same, for turns that need nothing read beforehand.
    convenience init(name: String, store configuration: DatabaseConfiguration, firstTurnAfterMilliseconds: Int,
                     turn: @escaping @Sendable (Database) -> Int) throws {
        try self.init(
            name: name, store: configuration, firstTurnAfterMilliseconds: firstTurnAfterMilliseconds,
            setUp: { _ in () }, turn: { database, _ in turn(database) })
    }

    /// Stops after the current turn and waits for it; stopping again does nothing.
    func stop() {
        flags.stopped.store(true, ordering: .relaxed)
        guard flags.thread.load(ordering: .relaxed) != UInt(bitPattern: Int(bitPattern: pthread_self())) else { return }
        while !flags.finished.load(ordering: .acquiring) { usleep(1_000) }
    }

    deinit { stop() }
}
