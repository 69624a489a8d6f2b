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
/// until one finds little new to copy (the writer's checkpoint will copy about as much: what
/// its batches wrote since), and stand aside from then on, until ``resume()``: a turn under way
/// holds the checkpoint lock, and a writer whose checkpoint keeps answering busy lets the log
/// grow without bound.
public final class WALCheckpointer: Sendable {
    private let worker: BackgroundWorker
    private let handover = Handover()

    /// The writer's request for the log, and the turns' answer.
    private final class Handover: Sendable {
        static let none = 0, asked = 1, standingAside = 2
        let state = Atomic<Int>(none)
        /// Turns since the writer asked.
        let turns = Atomic<Int>(0)
        /// Frames copied as of the last turn (SQLite's count since it started the log over).
        let copied = Atomic<Int64>(0)
    }

    /// A turn that copied at most this many frames is caught up: the writer's checkpoint after it
    /// has about as many to copy (a megabyte of 4 KiB pages).
    static let caughtUpFrames: Int64 = 256
    /// Turns the writer waits at most: a writer that outpaces the copying (a bulk load) gets the
    /// log after these, with what they did not catch up on.
    static let turnsBeforeHandover = 8

    /// Starts checkpointing the database at `path` every `intervalMilliseconds`, and turn after
    /// turn while its write-ahead log is larger than `hurryAboveBytes` (nil: never).
    public init(path: String, intervalMilliseconds: Int, hurryAboveBytes: Int64? = nil, logger: Logger) throws {
        worker = try BackgroundWorker(
            name: "wal-checkpointer", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: intervalMilliseconds,
            // A store's page size is fixed once it has pages (the loop's connection made them).
            setUp: { database in try database.prepare("PRAGMA page_size").queryOne { $0.int64(0) } ?? 4096 }
        ) { [handover] database, pageSize in
            let state = handover.state.load(ordering: .acquiring)
            // Looked at again soon: the writer's checkpoint comes after its next batch.
            if state == Handover.standingAside { return 1 }
            do {
                // The log's content since SQLite last started it over, not the file's size:
                // the file stays as large as the limit it is cut back to.
                let result = try database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { ($0.int64(1), $0.int64(2)) }
                let (frames, copied) = result ?? (0, 0)
                let before = handover.copied.exchange(copied, ordering: .relaxed)
                if state == Handover.asked {
                    // Fewer than before: SQLite started the log over in between.
                    let copiedNow = copied >= before ? copied - before : copied
                    let turns = handover.turns.wrappingAdd(1, ordering: .relaxed).newValue
                    if copiedNow <= Self.caughtUpFrames || turns >= Self.turnsBeforeHandover {
                        _ = handover.state.compareExchange(
                            expected: Handover.asked, desired: Handover.standingAside, ordering: .acquiringAndReleasing)
                    }
                    return 1
                }
                // A short pause even in a hurry, so that the writer gets the log's lock between turns.
                if let hurryAboveBytes, frames * pageSize > hurryAboveBytes { return 1 }
            } catch {
                logger.warning("WAL checkpoint failed; retrying", ["error": "\(error)"])
            }
            return intervalMilliseconds
        }
    }

    /// Whether the writer's checkpoint may run now: true once the turns stand aside for it;
    /// otherwise asks them to catch up and then stand aside, and the writer asks again after
    /// its next batch.
    public func writerMayCheckpoint() -> Bool {
        if handover.state.load(ordering: .acquiring) == Handover.standingAside { return true }
        if handover.state.compareExchange(expected: Handover.none, desired: Handover.asked, ordering: .acquiringAndReleasing).exchanged {
            handover.turns.store(0, ordering: .relaxed)
        }
        return false
    }

    /// Whether the writer asked for the log and has not checkpointed it yet: it then tries
    /// again when idle too, since the turns stand aside for it meanwhile.
    public var writerAsked: Bool { handover.state.load(ordering: .acquiring) != Handover.none }

    /// Lets the turns go on after the writer's checkpoint got through, or once it no longer needs one.
    public func resume() { handover.state.store(Handover.none, ordering: .releasing) }

    /// Stops after the current turn and waits for it.
    public func stop() { worker.stop() }
}
