import Storage

/// The points service's tables (runtime tables are ServiceKit's).
enum PointsSchema {
    static let migrations: [Migration] = [
        Migration(version: 100, name: "points accounts and ledger", sql: """
            -- Each member's account as the rules see it (lots, orders, counters), in one row.
            CREATE TABLE accounts(
                member TEXT PRIMARY KEY,
                task INTEGER NOT NULL,
                available INTEGER NOT NULL,
                pending INTEGER NOT NULL,
                debt INTEGER NOT NULL,
                state BLOB NOT NULL
            ) WITHOUT ROWID;
            -- The append-only ledger: every entry with the balance after it.
            CREATE TABLE ledger(
                member TEXT NOT NULL,
                sequence INTEGER NOT NULL,
                entry_id TEXT NOT NULL UNIQUE,
                time INTEGER NOT NULL,
                kind TEXT NOT NULL,
                source TEXT NOT NULL,
                points INTEGER NOT NULL,
                available_after INTEGER NOT NULL,
                pending_after INTEGER NOT NULL,
                debt_after INTEGER NOT NULL,
                cause_id TEXT NOT NULL,
                order_id TEXT,
                -- The lots the entry touched, as `L1:+440 L3:-20` (the published event has the rest).
                lots TEXT NOT NULL,
                PRIMARY KEY(member, sequence)
            ) WITHOUT ROWID;
            -- What was asked and not done, with the reason.
            CREATE TABLE refusals(
                refusal_id TEXT PRIMARY KEY,
                member TEXT NOT NULL,
                time INTEGER NOT NULL,
                reason TEXT NOT NULL,
                event BLOB NOT NULL
            ) WITHOUT ROWID;
            -- Events of members not registered yet, kept until they register or the wait ends.
            CREATE TABLE parked(
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                member TEXT NOT NULL,
                event_id TEXT NOT NULL UNIQUE,
                time INTEGER NOT NULL,
                rank INTEGER NOT NULL,
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                key BLOB,
                value BLOB NOT NULL
            );
            CREATE INDEX parked_by_member ON parked(member, time, rank, seq);
            """),
        Migration(version: 101, name: "reward stock", sql: """
            -- Units of each catalogue reward redeemed; what is left is the program's stock minus this.
            CREATE TABLE reward_stock(
                reward_id TEXT PRIMARY KEY,
                taken INTEGER NOT NULL
            ) WITHOUT ROWID;
            """),
        Migration(version: 102, name: "no profiles kept", sql: """
            -- Earlier builds kept member.updated events (with contact data) of members not yet
            -- registered; they change nothing here, so they go, overwritten, with their timers.
            PRAGMA secure_delete = ON;
            DELETE FROM timers WHERE kind = 'unknown-member' AND ref IN (
                SELECT event_id FROM parked WHERE topic = 'loyalty.members' AND json_extract(CAST(value AS TEXT), '$.type') = 'member.updated');
            DELETE FROM parked WHERE topic = 'loyalty.members' AND json_extract(CAST(value AS TEXT), '$.type') = 'member.updated';
            """),
        Migration(version: 103, name: "one parking mechanism", sql: """
            -- Events of unknown members wait in the runtime's parked_records, as in every service;
            -- their timers (kind unknown-member, ref the event id) stay as they are.
            INSERT OR IGNORE INTO parked_records(member, event_id, time, rank, topic, partition, record_offset, value)
                SELECT member, event_id, time, rank, topic, partition, record_offset, value FROM parked ORDER BY seq;
            DROP TABLE parked;
            """),
        Migration(version: 104, name: "older orders apart from accounts", sql: """
            -- An account keeps its member's latest orders and refund ids in its state; older ones
            -- move here, read only when an input names them, so an account does not grow with
            -- every order its member ever made. The flags say whether the member has any here.
            ALTER TABLE accounts ADD COLUMN orders_apart INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE accounts ADD COLUMN refunds_apart INTEGER NOT NULL DEFAULT 0;
            CREATE TABLE account_orders(
                member TEXT NOT NULL,
                order_id TEXT NOT NULL,
                state BLOB NOT NULL,
                PRIMARY KEY(member, order_id)
            ) WITHOUT ROWID;
            CREATE TABLE accepted_refunds(
                member TEXT NOT NULL,
                refund_id TEXT NOT NULL,
                PRIMARY KEY(member, refund_id)
            ) WITHOUT ROWID;
            """),
        Migration(version: 105, name: "stock reservations applied", sql: """
            -- The reservations a reward's task decided, so that one sent again after the inbox
            -- let it go (a restored task repeating its batches) takes no units a second time.
            CREATE TABLE stock_reservations(
                reward_id TEXT NOT NULL,
                request_id TEXT NOT NULL,
                PRIMARY KEY(reward_id, request_id)
            ) WITHOUT ROWID;
            """),
    ]
}
