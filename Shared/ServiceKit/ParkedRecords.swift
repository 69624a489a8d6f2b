import Basics
import Messaging
import Storage

/// Records about a member whose `member.registered` has not been applied yet. Members and
/// the other topics are separate partitions, so an order can be read before the registration
/// that precedes it: the record waits, and is applied in event-time order once the member
/// registers, or is dead-lettered when the wait ends.
public enum ParkedRecords {
    /// The timer kind that ends a wait; its ref is the event id.
    public static let timerKind = "unknown-member"
    /// Waits end after every other timer at one instant.
    public static let timerRank = 10

    /// Keeps a record until `deadline`.
    public static func park<Body>(_ input: Decoded<Body>, record: ConsumedRecord, until deadline: EventTime, in batch: Batch) throws {
        try batch.database.prepare(
            "INSERT OR IGNORE INTO parked_records(member, event_id, time, rank, topic, partition, record_offset, value) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"
        ).run(
            .text(input.member), .text(input.eventID), .integer(input.time.millis), .integer(Int64(input.rank)),
            .text(record.topic), .integer(Int64(record.partition)), .integer(record.offset), .blob(record.value ?? []))
        try batch.schedule(TimerRequest(due: deadline, rank: timerRank, member: input.member, kind: timerKind, ref: input.eventID))
    }

    /// The member's kept records in (time, rank, event id) order, removed with their timers.
    public static func take(member: String, in batch: Batch) throws -> [ConsumedRecord] {
        let rows = try batch.database.prepare(
            "SELECT seq, event_id, topic, partition, record_offset, value FROM parked_records WHERE member = ? ORDER BY time, rank, event_id"
        ).query(.text(member)) { row in
            (seq: row.int64(0), eventID: row.string(1),
             record: ConsumedRecord(topic: row.string(2), partition: Int32(row.int64(3)), offset: row.int64(4), key: Array(member.utf8), value: row.blob(5)))
        }
        let delete = try batch.database.prepare("DELETE FROM parked_records WHERE seq = ?")
        for row in rows {
            try delete.run(.integer(row.seq))
            try batch.cancelTimers(member: member, kind: timerKind, ref: row.eventID)
        }
        return rows.map(\.record)
    }

    /// Drops the member's kept records and their timers (an account closed before registering).
    public static func discard(member: String, in batch: Batch) throws {
        _ = try take(member: member, in: batch)
    }

    /// Ends the wait of one record: removes it and dead-letters it with `member-not-registered`.
    public static func expire(_ timer: DueTimer, waitHours: Int64, in batch: Batch) throws {
        guard let row = try batch.database.prepare(
            "SELECT seq, topic, partition, record_offset, value FROM parked_records WHERE event_id = ?"
        ).queryOne(.text(timer.ref), row: { row in
            (seq: row.int64(0), record: ConsumedRecord(
                topic: row.string(1), partition: Int32(row.int64(2)), offset: row.int64(3), key: Array(timer.member.utf8), value: row.blob(4)))
        }) else { return }
        try batch.database.prepare("DELETE FROM parked_records WHERE seq = ?").run(.integer(row.seq))
        try batch.deadLetter(row.record, reason: Rejection(
            code: .memberNotRegistered, detail: "no member.registered within \(waitHours) hours of the event"))
    }
}
