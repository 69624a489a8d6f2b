import Foundation
import Storage
import Synchronization

/// Copies the write-ahead log into the database file from a connection of its own, so the
/// loop's connection never stops mid-commit for a checkpoint and its `fsync` (SQLite's
/// automatic checkpoints run inside the committing writer). A PASSIVE checkpoint never blocks
/// the writer; it copies what it can and tries again on the next turn.
///
/// Under a steady stream of commits a passive checkpoint never finds the log all copied, so
/// SQLite never starts it over and it grows until the writer checkpoints it between its own
/// commits (see the loop's WAL limit). What that checkpoint still has to copy stops the writer,
/// so past `hurryAboveBytes` the turns follow each other without the interval: the writer's
/// checkpoint then finds almost everything copied already.
///
/// The writer asks for the log with ``writerMayCheckpoint()``. The turns then follow each other
/// until one finds little new copied since the turn before (the writer's checkpoint will copy
/// about as much: what its batches wrote since), or for at most eight turns, and stand aside
/// from then on, until ``resume()``: a turn under way holds the checkpoint lock, and a writer
/// whose checkpoint keeps answering busy lets the log grow without bound. A writer kept waiting
/// a second (turns failing, or starved of a core) checkpoints all the same.
public final class WALCheckpointer: Sendable {
    private let worker: BackgroundWorker
    private let handover = Handover()

    /// Where the writer's request for the log stands.
    enum State: UInt8, AtomicRepresentable {
        /// The turns go on at their pace.
        case notAsked
        /// The writer asked: the turns follow each other until they caught up.
        case asked
        /// The turns stand aside: the writer's checkpoint may run.
        case standingAside
    }

    /// What the writer and the turns share.
    private final class Handover: Sendable {
        let state = Atomic<State>(.notAsked)
        /// When the writer asked (monotonic milliseconds).
        let askedAt = Atomic<Int64>(0)
        /// Turns since the writer asked.
        let turns = Atomic<Int>(0)
        /// Frames copied as of the last turn that was not refused (SQLite's count since it
        /// started the log over, whoever copied them).
        let copied = Atomic<Int64>(0)
        /// Checkpoints the turns ran, all told.
        let checkpoints = Atomic<Int>(0)
    }

    /// A turn after which at most this many more frames were copied than after the one before
    /// is caught up: the writer's checkpoint after it has about as many to copy (a megabyte of
    /// 4 KiB pages).
    static let caughtUpFrames: Int64 = 256
    /// Turns the writer waits at most: a writer that outpaces the copying (a bulk load) gets the
    /// log after these, with what they did not catch up on.
    static let turnsBeforeHandover = 8
    /// How long the writer waits at most, whatever the turns do.
    static let longestWaitMilliseconds: Int64 = 1_000

    /// Starts checkpointing the database at `path` every `intervalMilliseconds`, and turn after
    /// turn while its write-ahead log is larger than `hurryAboveBytes` (nil: never) or while
    /// the writer waits for the turns to catch up.
    public init(path: String, intervalMilliseconds: Int, hurryAboveBytes: Int64? = nil, logger: Logger) throws {
        worker = try BackgroundWorker(
            name: "wal-checkpointer", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: intervalMilliseconds,
            // A store's page size is fixed once it has pages (the loop's connection made them).
            setUp: { database in try database.prepare("PRAGMA page_size").queryOne { $0.int64(0) } ?? 4096 }
        ) { [handover] database, pageSize in
            let state = handover.state.load(ordering: .acquiring)
            // Looked at again soon: the writer checkpoints after its next batch, or when idle.
            if state == .standingAside { return 1 }
            var caughtUp = false
            var frames: Int64 = 0
            do {
                handover.checkpoints.add(1, ordering: .relaxed)
                // The log's content since SQLite last started it over, not the file's size:
                // the file stays as large as the limit it is cut back to.
                let result = try database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { ($0.int64(0), $0.int64(1), $0.int64(2)) }
                // Refused (another checkpoint held the lock): both counts are -1.
                if let (busy, logFrames, copied) = result, busy == 0 {
                    frames = logFrames
                    let before = handover.copied.exchange(copied, ordering: .relaxed)
                    // Fewer than before: SQLite started the log over in between.
                    caughtUp = (copied >= before ? copied - before : copied) <= Self.caughtUpFrames
                }
            } catch {
                logger.warning("WAL checkpoint failed; retrying", ["error": "\(error)"])
            }
            if state == .asked {
                let turns = handover.turns.wrappingAdd(1, ordering: .relaxed).newValue
                if caughtUp || turns >= Self.turnsBeforeHandover {
                    _ = handover.state.compareExchange(expected: .asked, desired: .standingAside, ordering: .acquiringAndReleasing)
                }
                return 1
            }
            // A short pause even in a hurry, so that the writer gets the log's lock between turns.
            if let hurryAboveBytes, frames * pageSize > hurryAboveBytes { return 1 }
            return intervalMilliseconds
        }
    }

    /// Whether the writer's checkpoint may run now: true once the turns stand aside for it, or
    /// once it waited ``longestWaitMilliseconds``; otherwise asks them to catch up and then
    /// stand aside, and the writer asks again after its next batch or when idle.
    public func writerMayCheckpoint() -> Bool {
        let now = monotonicMilliseconds()
        switch handover.state.load(ordering: .acquiring) {
        case .standingAside:
            return true
        case .asked:
            return now - handover.askedAt.load(ordering: .relaxed) >= Self.longestWaitMilliseconds
        case .notAsked:
            handover.askedAt.store(now, ordering: .relaxed)
            handover.state.store(.asked, ordering: .releasing)
            return false
        }
    }

    /// Whether the writer asked for the log and has not checkpointed it yet: it then tries
    /// again when idle too, since it is waited for (the turns catch up, then stand aside).
    public var writerAsked: Bool { handover.state.load(ordering: .acquiring) != .notAsked }

    /// Lets the turns go on at their pace after the writer's checkpoint got through, or once it
    /// no longer needs one.
    public func resume() {
        handover.turns.store(0, ordering: .relaxed)
        handover.state.store(.notAsked, ordering: .releasing)
    }

    /// Whether the turns stand aside now (not merely the writer waited long enough).
    var standsAside: Bool { handover.state.load(ordering: .acquiring) == .standingAside }

    /// Checkpoints the turns ran so far.
    var checkpoints: Int { handover.checkpoints.load(ordering: .relaxed) }

    /// Stops after the current turn and waits for it.
    public func stop() { worker.stop() }
}
