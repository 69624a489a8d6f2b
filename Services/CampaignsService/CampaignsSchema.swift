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
    ]
}
