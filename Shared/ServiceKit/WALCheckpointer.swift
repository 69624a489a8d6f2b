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
public final class WALCheckpointer: Sendable {
    /// Flags shared with the checkpointing thread.
    private final class Flags: Sendable {
        let stopped = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
    }

    private let flags = Flags()

    /// Starts checkpointing the database at `path` every `intervalMilliseconds`, and turn after
    /// turn while its write-ahead log is larger than `hurryAboveBytes` (nil: never).
    public init(path: String, intervalMilliseconds: Int, hurryAboveBytes: Int64? = nil, logger: Logger) throws {
        let database = try Database(DatabaseConfiguration(path: path))
        let connection = UncheckedConnection(database: database)
        let pageSize = try database.prepare("PRAGMA page_size").queryOne { $0.int64(0) } ?? 4096
        let thread = Thread { [flags] in
            var hurried = false
            while !flags.stopped.load(ordering: .relaxed) {
                // A short pause even in a hurry, so that the writer gets the log's lock between turns.
                usleep(useconds_t(hurried ? 1_000 : intervalMilliseconds * 1000))
                do {
                    // The log's content since SQLite last started it over, not the file's size:
                    // the file stays as large as the limit it is cut back to.
                    let frames = try connection.database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { $0.int64(1) } ?? 0
                    hurried = hurryAboveBytes.map { frames * pageSize > $0 } ?? false
                } catch {
                    logger.warning("WAL checkpoint failed; retrying", ["error": "\(error)"])
                }
            }
            connection.database.close()
            flags.finished.store(true, ordering: .relaxed)
        }
        thread.name = "wal-checkpointer"
        thread.start()
    }

    /// Stops after the current turn and waits for it.
    public func stop() {
        flags.stopped.store(true, ordering: .relaxed)
        while !flags.finished.load(ordering: .relaxed) { usleep(10_000) }
    }
}

/// The checkpointer's connection, handed to its thread and used by it alone.
private struct UncheckedConnection: @unchecked Sendable {
    let database: Database
}
