import Storage

/// Where a store's inbox is kept: the rows of its `inbox` table (``TableInbox``), or memory for
/// a simulation (``MemoryInbox``). Both give the same answers, and what a batch notes or prunes
/// goes when its transaction rolls back.
protocol InboxStore: AnyObject {
    /// Notes a new event id; one noted already is not noted again, and its payload hash is
    /// returned.
    func note(_ eventID: String, payloadHash: Int64, task: Int32, time: Int64) throws -> InboxAnswer
    /// Takes back a note of the running batch (a record carried to the next batch).
    func forget(_ eventID: String) throws
    /// Drops the task's notes of events older than `cutoff`.
    func prune(task: Int32, before cutoff: Int64) throws
    /// The batch's transaction committed.
    func commit()
    /// The batch's transaction rolled back.
    func discard()
}

/// What the inbox said of an event id it was asked to note.
enum InboxAnswer {
    /// Not there before: noted now.
    case new
    /// Noted before, with this payload hash.
    case known(payloadHash: Int64?)
}

/// The inbox as rows of the store's `inbox` table, written in the batch's transaction.
final class TableInbox: InboxStore {
    private let database: Database

    init(database: Database) {
        self.database = database
    }

    func note(_ eventID: String, payloadHash: Int64, task: Int32, time: Int64) throws -> InboxAnswer {
        // One statement for the common case, a new id: the lookup runs only when the id is known.
        try database.prepare(
            "INSERT INTO inbox(event_id, payload_hash, task, event_time) VALUES(?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING"
        ).run(.text(eventID), .integer(payloadHash), .integer(Int64(task)), .integer(time))
        guard database.changes == 0 else { return .new }
        return .known(payloadHash: try database.prepare("SELECT payload_hash FROM inbox WHERE event_id = ?").queryOne(.text(eventID), row: { $0.int64(0) }))
    }

    func forget(_ eventID: String) throws {
        try database.prepare("DELETE FROM inbox WHERE event_id = ?").run(.text(eventID))
    }

    func prune(task: Int32, before cutoff: Int64) throws {
        try database.prepare("DELETE FROM inbox WHERE task = ? AND event_time < ?").run(.integer(Int64(task)), .integer(cutoff))
    }

    func commit() {}

    func discard() {}
}
