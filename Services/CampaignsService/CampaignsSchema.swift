import Storage

/// The campaigns service's tables (versions 100 and up; the runtime's are below).
public enum CampaignsSchema {
    public static let migrations = [
        Migration(version: 100, name: "campaigns", sql: """
            -- Each member's campaign state (profile, counters, caps, exposures) and tier.
            CREATE TABLE campaign_members(member TEXT PRIMARY KEY, state BLOB NOT NULL, tier BLOB NOT NULL) WITHOUT ROWID;
            -- Every campaign version read from the definitions topic, in the order read.
            CREATE TABLE campaign_definitions(
                seq INTEGER PRIMARY KEY AUTOINCREMENT, campaign TEXT NOT NULL, version INTEGER NOT NULL,
                effective INTEGER NOT NULL, definition BLOB, UNIQUE(campaign, version));
            -- Running results per campaign; the budget is checked against pointsGranted.
            CREATE TABLE campaign_results(campaign TEXT PRIMARY KEY, results BLOB NOT NULL) WITHOUT ROWID;
            """),
        Migration(version: 101, name: "older orders apart from campaign members", sql: """
            -- A member's state keeps its latest 16 orders (its tier's record of each, with the
            -- order's campaign bonus if it earned one) and 16 refund ids (the last by id); the others
            -- live here, read only when an order or refund names them. The flags say whether the
            -- member has any here.
            ALTER TABLE campaign_members ADD COLUMN orders_apart INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE campaign_members ADD COLUMN refunds_apart INTEGER NOT NULL DEFAULT 0;
            CREATE TABLE campaign_orders(
                member TEXT NOT NULL, order_id TEXT NOT NULL, time INTEGER NOT NULL, paid_minor INTEGER NOT NULL,
                refunded_minor INTEGER NOT NULL, tier_bonus INTEGER NOT NULL, tier_bonus_reversed INTEGER NOT NULL,
                bonus_campaign TEXT, bonus_paid_minor INTEGER, bonus INTEGER, bonus_reversed INTEGER,
                PRIMARY KEY(member, order_id)) WITHOUT ROWID;
            CREATE TABLE campaign_refund_ids(member TEXT NOT NULL, refund_id TEXT NOT NULL, PRIMARY KEY(member, refund_id)) WITHOUT ROWID;
            """),
        Migration(version: 102, name: "referrals read", sql: """
            -- The referral commands applied, by referrer: one sent again after the inbox let it go
            -- (by a store restored from a changelog that lagged its outputs) is found here.
            CREATE TABLE campaign_referrals(member TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY(member, event_id)) WITHOUT ROWID;
            """),
        Migration(version: 103, name: "results per task", sql: """
            -- Running results per campaign and task: each task keeps and publishes its own members'
            -- share, so that no figure spans tasks; a budget is checked against the sum of the
            -- store's rows. A store's results from before count as task 0's.
            CREATE TABLE campaign_task_results(
                campaign TEXT NOT NULL, task INTEGER NOT NULL, results BLOB NOT NULL, PRIMARY KEY(campaign, task)) WITHOUT ROWID;
            INSERT INTO campaign_task_results(campaign, task, results) SELECT campaign, 0, results FROM campaign_results;
            DROP TABLE campaign_results;
            """),
        Migration(version: 104, name: "budget claims", sql: """
            -- With the keeper of budgets: each member's trigger whose claim waits for an answer
            -- (one at most), and the member's later records and timers kept aside behind it. A
            -- trigger is a record (topic, partition, offset, value, decoded again when applied) or
            -- a timer (kind, ref, payload); time, rank and cause are its merge key. timers_from:
            -- the earliest timer the trigger sets (they fire, and may claim, once it is answered).
            CREATE TABLE campaign_budget_claims(
                member TEXT PRIMARY KEY, task INTEGER NOT NULL, time INTEGER NOT NULL, rank INTEGER NOT NULL, cause TEXT NOT NULL,
                topic TEXT, partition INTEGER, record_offset INTEGER, value BLOB, timer_kind TEXT, timer_ref TEXT, timer_payload BLOB,
                timers_from INTEGER
            ) WITHOUT ROWID;
            CREATE INDEX campaign_budget_claims_by_task ON campaign_budget_claims(task, time);
            CREATE TABLE campaign_kept_aside(
                member TEXT NOT NULL, task INTEGER NOT NULL, time INTEGER NOT NULL, rank INTEGER NOT NULL, cause TEXT NOT NULL,
                topic TEXT, partition INTEGER, record_offset INTEGER, value BLOB, timer_kind TEXT, timer_ref TEXT, timer_payload BLOB,
                PRIMARY KEY(member, time, rank, cause)) WITHOUT ROWID;
            CREATE INDEX campaign_kept_aside_by_task ON campaign_kept_aside(task, time, rank, cause);
            -- Answers read before their claims were made (by a store restored or rebuilt from
            -- older state), kept for the trigger read again: granted is campaign -> points (JSON).
            CREATE TABLE campaign_budget_answers(member TEXT NOT NULL, claim TEXT NOT NULL, granted BLOB NOT NULL, PRIMARY KEY(member, claim)) WITHOUT ROWID;
            """),
    ]

    /// Results a changelog holds from before migration 103, by campaign alone: task 0's, as the
    /// migration counts a store's results from before.
    public static let loggedRowUpgrades = [
        LoggedRowUpgrade(table: "campaign_results", keyColumnCount: 1) { key, row in
            RowChange(table: "campaign_task_results", key: [key[0], .integer(0)], row: try row.map { row in
                guard row.count == 2 else {
                    throw RowChangeFormatError(detail: "campaign_results before migration 103: a row has 2 columns, not \(row.count)")
                }
                return [row[0], .integer(0), row[1]]
            })
        },
    ]
}
