import Foundation
import Basics
import Storage

/// Counts the timers of every task for the metrics, on a connection and thread of its own: the
/// count scans the whole timers table (a timer or more a member), which took the loop 40–60 ms
/// at 100,000 members, a stop every record behind it waited for. It sees the last commit.
final class TimerCensus: Sendable {
    private let worker: BackgroundWorker

    /// Counts the timers of the store at `path` now and every `intervalMilliseconds`, and hands
    /// each count to `report`.
    init(path: String, mode: TimerMode, intervalMilliseconds: Int, logger: Logger,
         report: @escaping @Sendable ([Int32: (pending: Int64, due: Int64)]) -> Void) throws {
        // A small page cache: the scan reads through the file system's cache, and the service's
        // memory should not grow by a second copy of the store's pages.
        var configuration = DatabaseConfiguration(path: path)
        configuration.cacheSizeKiB = 512
        worker = try BackgroundWorker(name: "timer-census", store: configuration, firstTurnAfterMilliseconds: 0) { database in
            do {
                let now = EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
                report(try Self.counts(in: database, mode: mode, now: now))
            } catch {
                logger.debug("timer census failed; trying again", ["error": "\(error)"])
            }
            return intervalMilliseconds
        }
    }

    /// Timers per task: how many are set, and how many are due (at or before the task's stream
    /// time, or `now` in wall-clock mode) and not fired yet.
    static func counts(in database: Database, mode: TimerMode, now: EventTime) throws -> [Int32: (pending: Int64, due: Int64)] {
        let rows = mode == .wallClock
            ? try database.prepare("SELECT task, COUNT(*), SUM(due <= ?) FROM timers GROUP BY task")
                .query(.integer(now.millis)) { ($0.int64(0), $0.int64(1), $0.int64(2)) }
            : try database.prepare(
                "SELECT t.task, COUNT(*), SUM(c.stream_time IS NOT NULL AND t.due <= c.stream_time) FROM timers t "
                    + "LEFT JOIN task_clock c ON c.task = t.task GROUP BY t.task"
            ).query { ($0.int64(0), $0.int64(1), $0.int64(2)) }
        return Dictionary(uniqueKeysWithValues: rows.map { (Int32($0.0), (pending: $0.1, due: $0.2)) })
    }

    /// Stops after the current count and waits for it.
    func stop() { worker.stop() }
}
