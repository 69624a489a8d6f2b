import Foundation
import Storage
import Synchronization

/// Copies the write-ahead log into the database file from a connection of its own, so the
/// loop's connection never stops mid-commit for a checkpoint and its `fsync` (SQLite's
/// automatic checkpoints run inside the committing writer). A PASSIVE checkpoint never blocks
/// the writer; it copies what it can and tries again on the next turn.
public final class WALCheckpointer: Sendable {
    /// Flags shared with the checkpointing thread.
    private final class Flags: Sendable {
        let stopped = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
    }

    private let flags = Flags()

    /// Starts checkpointing the database at `path` every `intervalMilliseconds`.
    public init(path: String, intervalMilliseconds: Int, logger: Logger) throws {
        let database = try Database(DatabaseConfiguration(path: path))
        let connection = UncheckedConnection(database: database)
        let thread = Thread { [flags] in
            while !flags.stopped.load(ordering: .relaxed) {
                usleep(useconds_t(intervalMilliseconds * 1000))
                do {
                    try connection.database.execute("PRAGMA wal_checkpoint(PASSIVE)")
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
