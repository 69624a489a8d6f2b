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
    }

    private let flags = Flags()

    /// Opens a connection to the store `configuration` names and starts a thread called `name`
    /// that calls `turn` with it after `firstTurnAfterMilliseconds`, then again after as many
    /// milliseconds as each turn returns. The connection is the thread's alone.
    init(name: String, store configuration: DatabaseConfiguration, firstTurnAfterMilliseconds: Int,
         turn: @escaping @Sendable (Database) -> Int) throws {
        let connection = WorkerConnection(database: try Database(configuration))
        let thread = Thread { [flags] in
            var pause = firstTurnAfterMilliseconds
            while !flags.stopped.load(ordering: .relaxed) {
                // Naps of at most 50 ms, so that stopping never waits for a whole pause.
                if pause > 0 {
                    let nap = min(pause, 50)
                    usleep(useconds_t(nap * 1000))
                    pause -= nap
                    continue
                }
                pause = max(turn(connection.database), 0)
            }
            connection.database.close()
            flags.finished.store(true, ordering: .relaxed)
        }
        thread.name = name
        thread.start()
    }

    /// Stops after the current turn and waits for it; stopping again does nothing.
    func stop() {
        flags.stopped.store(true, ordering: .relaxed)
        while !flags.finished.load(ordering: .relaxed) { usleep(1_000) }
    }

    deinit { stop() }
}

/// A worker's connection, handed to its thread and used by it alone.
private struct WorkerConnection: @unchecked Sendable {
    let database: Database
}
