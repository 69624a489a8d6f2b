import Storage

/// The notifications service's tables (versions 100 and up; the runtime's are below).
public enum NotificationsSchema {
    public static let migrations = [
        Migration(version: 100, name: "notifications", sql: """
            -- Each member's profile, pending digests, held messages and marketing counts.
            CREATE TABLE notification_members(member TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
            -- Messages the policy held back, with the reason (no-consent, daily-cap, member-closed).
            CREATE TABLE notification_suppressed(
                seq INTEGER PRIMARY KEY AUTOINCREMENT, member TEXT NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,
                causes TEXT NOT NULL, time INTEGER NOT NULL);
            """),
        Migration(version: 101, name: "sent messages", sql: """
            -- Every message handed to the senders, without its address or text (the member view).
            CREATE TABLE notification_sent(
                idempotency_key TEXT PRIMARY KEY, member TEXT NOT NULL, type TEXT NOT NULL, channel TEXT NOT NULL,
                send_at INTEGER NOT NULL, causes TEXT NOT NULL) WITHOUT ROWID;
            CREATE INDEX notification_sent_by_member ON notification_sent(member, send_at);
            """),
        Migration(version: 102, name: "sent messages kept by member", sql: """
            -- One tree instead of a table and an index: every lookup is a member's messages in
            -- time order, and a message's key (a hash) placed each row on a random page of a
            -- second tree, doubling the pages a batch writes.
            CREATE TABLE notification_sent_by_member_time(
                member TEXT NOT NULL, send_at INTEGER NOT NULL, idempotency_key TEXT NOT NULL, type TEXT NOT NULL,
                channel TEXT NOT NULL, causes TEXT NOT NULL, PRIMARY KEY (member, send_at, idempotency_key)) WITHOUT ROWID;
            INSERT INTO notification_sent_by_member_time(member, send_at, idempotency_key, type, channel, causes)
                SELECT member, send_at, idempotency_key, type, channel, causes FROM notification_sent;
            DROP TABLE notification_sent;
            ALTER TABLE notification_sent_by_member_time RENAME TO notification_sent;
            """),
    ]

    /// Sent messages a changelog holds from before migration 102, keyed by their idempotency
    /// key alone, as the table keeps them now. Sent messages are never deleted, so a deletion
    /// of that shape is no changelog's.
    public static let loggedRowUpgrades = [
        LoggedRowUpgrade(table: "notification_sent", keyColumnCount: 1) { key, row in
            // (idempotency_key, member, type, channel, send_at, causes) before; (member, send_at,
            // idempotency_key, type, channel, causes) now.
            guard let row, row.count == 6 else {
                throw RowChangeFormatError(detail: "notification_sent before migration 102: a message is logged whole, with 6 columns")
            }
            return RowChange(table: "notification_sent", key: [row[1], row[4], row[0]], row: [row[1], row[4], row[0], row[2], row[3], row[5]])
        },
    ]
}
