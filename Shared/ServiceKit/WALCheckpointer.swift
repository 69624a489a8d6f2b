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
/// checkpoint then finds almost everything copied already. While the writer asks for its turn
/// (``standAside(_:)``), no new turn starts: a turn under way would make the writer's passive
/// checkpoint answer busy, and a writer that keeps getting busy lets the log grow without bound.
public final class WALCheckpointer: Sendable {
    private let worker: BackgroundWorker
    private let standingAside = Flag()

    /// A flag the writer sets and the worker's turns read.
    private final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }

    /// Starts checkpointing the database at `path` every `intervalMilliseconds`, and turn after
    /// turn while its write-ahead log is larger than `hurryAboveBytes` (nil: never).
    public init(path: String, intervalMilliseconds: Int, hurryAboveBytes: Int64? = nil, logger: Logger) throws {
        worker = try BackgroundWorker(
            name: "wal-checkpointer", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: intervalMilliseconds,
            // A store's page size is fixed once it has pages (the loop's connection made them).
            setUp: { database in try database.prepare("PRAGMA page_size").queryOne { $0.int64(0) } ?? 4096 }
        ) { [standingAside] database, pageSize in
            // Looked at again soon: the writer's checkpoint takes a batch or two.
            if standingAside.value.load(ordering: .acquiring) { return 1 }
            do {
                // The log's content since SQLite last started it over, not the file's size:
                // the file stays as large as the limit it is cut back to.
                let frames = try database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { $0.int64(1) } ?? 0
                // A short pause even in a hurry, so that the writer gets the log's lock between turns.
                if let hurryAboveBytes, frames * pageSize > hurryAboveBytes { return 1 }
            } catch {
                logger.warning("WAL checkpoint failed; retrying", ["error": "\(error)"])
            }
            return intervalMilliseconds
        }
    }

    /// While `yes`, starts no new turn, so that the writer's own checkpoint gets the log's
    /// checkpoint lock after the turn under way (if any) ends.
    public func standAside(_ yes: Bool) { standingAside.value.store(yes, ordering: .releasing) }

    /// Stops after the current turn and waits for it.
    public func stop() { worker.stop() }
}
