import Basics
import Storage

/// Where a store's timers are kept: the rows of its `timers` table (``TableTimers``), or memory
/// for a simulation (``MemoryTimers``). Both answer in the table's order (due, rank, member, kind,
/// ref; texts by their bytes), and a batch's changes go when its transaction rolls back.
protocol TimerStore: AnyObject {
    /// Sets a timer of `task`; one with the same key is the same timer, whose payload the new
    /// one replaces.
    func schedule(_ request: TimerRequest, task: Int32) throws
    /// Removes the member's timers of this kind, and of this ref when one is given.
    func cancel(member: String, kind: String, ref: String?) throws
    /// Takes out the member's first timer (due, rank, kind, ref) firing before `bound`.
    func take(member: String, firingBefore bound: (time: Int64, rank: Int)) throws -> DueTimer?
    /// Removes a timer (one about to fire); nothing if it is gone already.
    func remove(_ timer: DueTimer) throws
    /// The due time of the task's earliest timer, or one earlier (never a later one).
    func earliestDue(task: Int32) throws -> Int64?
    /// The task's first timer due before `limit`, left in place.
    func first(task: Int32, dueBefore limit: Int64) throws -> DueTimer?
    /// The task's first `count` timers due at or before `limit`, in order, left set: each is
    /// fired, and removed as it is, before the batch ends.
    func due(task: Int32, upTo limit: Int64, count: Int) throws -> [DueTimer]
    /// The batch's transaction committed.
    func commit()
    /// The batch's transaction rolled back.
    func discard()
    /// Another instance may now change the timers of `tasks`.
    func forget(tasks: [Int32])
}

/// The timers as rows of the store's `timers` table, with each task's earliest due time cached.
final class TableTimers: TimerStore {
    private let database: Database
    /// Per task, the earliest due time as last read, lowered by each timer set since;
    /// `Int64.max` when there was none. Read again once a timer of the task is removed (fired
    /// or taken) or a chunk of due ones read, since it may have been the earliest; a cancel
    /// leaves it lower than it may be, which only costs a read that finds nothing due.
    private var earliest: [Int32: Int64] = [:]
    // Prepared on first use: most stores never cancel by kind alone, many never take.
    private var insert: Statement?
    private var deleteByRef: Statement?
    private var deleteOne: Statement?
    private var firstDue: Statement?
    private var dueChunk: Statement?

    init(database: Database) {
        self.database = database
    }

    /// The columns a timer is read back from (``timer(of:from:)``).
    private static let columns = "due, rank, member, kind, ref, payload"

    func schedule(_ request: TimerRequest, task: Int32) throws {
        // A timer set again as it is (every message held in one quiet spell asks for its end)
        // writes nothing: a replace would delete and insert the row in both of its trees.
        let insert = try self.insert ?? database.prepare(
            "INSERT INTO timers(task, due, rank, member, kind, ref, payload) VALUES(?, ?, ?, ?, ?, ?, ?) "
                + "ON CONFLICT(task, due, rank, member, kind, ref) DO UPDATE SET payload = excluded.payload WHERE payload IS NOT excluded.payload")
        self.insert = insert
        try insert.run(
            .integer(Int64(task)), .integer(request.due.millis), .integer(Int64(request.rank)),
            .text(request.member), .text(request.kind), .text(request.ref), .blob(request.payload))
        if let known = earliest[task] { earliest[task] = min(known, request.due.millis) }
    }

    func cancel(member: String, kind: String, ref: String?) throws {
        guard let ref else {
            return try database.prepare("DELETE FROM timers WHERE member = ? AND kind = ?").run(.text(member), .text(kind))
        }
        let delete = try deleteByRef ?? database.prepare("DELETE FROM timers WHERE member = ? AND kind = ? AND ref = ?")
        deleteByRef = delete
        try delete.run(.text(member), .text(kind), .text(ref))
    }

    func take(member: String, firingBefore bound: (time: Int64, rank: Int)) throws -> DueTimer? {
        let select = try database.prepare(
            "SELECT task, due, rank, kind, ref, payload FROM timers WHERE member = ? AND (due < ? OR (due = ? AND rank < ?)) "
                + "ORDER BY due, rank, kind, ref LIMIT 1")
        guard let timer = try select.queryOne(.text(member), .integer(bound.time), .integer(bound.time), .integer(Int64(bound.rank)), row: { row in
            DueTimer(
                task: Int32(row.int64(0)), due: EventTime(millis: row.int64(1)), rank: Int(row.int64(2)), member: member,
                kind: row.string(3), ref: row.string(4), payload: row.isNull(5) ? [] : row.blob(5))
        }) else { return nil }
        try remove(timer)
        return timer
    }

    func remove(_ timer: DueTimer) throws {
        let delete = try deleteOne ?? database.prepare(
            "DELETE FROM timers WHERE task = ? AND due = ? AND rank = ? AND member = ? AND kind = ? AND ref = ?")
        deleteOne = delete
        try delete.run(
            .integer(Int64(timer.task)), .integer(timer.due.millis), .integer(Int64(timer.rank)),
            .text(timer.member), .text(timer.kind), .text(timer.ref))
        earliest[timer.task] = nil
    }

    func earliestDue(task: Int32) throws -> Int64? {
        if let cached = earliest[task] { return cached == .max ? nil : cached }
        let due = try database.prepare("SELECT MIN(due) FROM timers WHERE task = ?")
            .queryOne(.integer(Int64(task)), row: { $0.optionalInt64(0) }) ?? nil
        earliest[task] = due ?? .max
        return due
    }

    func first(task: Int32, dueBefore limit: Int64) throws -> DueTimer? {
        let select = try firstDue ?? database.prepare(
            "SELECT \(Self.columns) FROM timers WHERE task = ? AND due < ? ORDER BY due, rank, member, kind, ref LIMIT 1")
        firstDue = select
        let timer = try select.queryOne(.integer(Int64(task)), .integer(limit)) { Self.timer(of: task, from: $0) }
        // None due: the cached earliest (below `limit`) belonged to a timer cancelled since.
        if timer == nil { earliest[task] = nil }
        return timer
    }

    func due(task: Int32, upTo limit: Int64, count: Int) throws -> [DueTimer] {
        let select = try dueChunk ?? database.prepare(
            "SELECT \(Self.columns) FROM timers WHERE task = ? AND due <= ? ORDER BY due, rank, member, kind, ref LIMIT ?")
        dueChunk = select
        earliest[task] = nil
        return try select.query(.integer(Int64(task)), .integer(limit), .integer(Int64(count))) { Self.timer(of: task, from: $0) }
    }

    func commit() {}

    func discard() {
        earliest.removeAll()
    }

    func forget(tasks: [Int32]) {
        for task in tasks { earliest[task] = nil }
    }

    /// A timer of `task` read from the ``columns`` of `row`.
    private static func timer(of task: Int32, from row: Statement) -> DueTimer {
        DueTimer(
            task: task, due: EventTime(millis: row.int64(0)), rank: row.int(1), member: row.string(2),
            kind: row.string(3), ref: row.string(4), payload: row.blob(5))
    }
}
