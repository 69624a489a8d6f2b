/// How a row that a changelog holds in an older shape of its table reads in the current
/// schema: for a migration that changed a logged table's key or replaced the table. The rows a
/// store logged before such a migration stay in its changelog as they were written (a
/// migration runs outside the logged transactions), so a restore by the newer release hands
/// each row that does not fit the store's tables to the upgrade named for it.
///
/// Such rows keep their old record keys, so no later record of the new shape ever takes their
/// place when the topic is compacted: a re-keyed table whose rows get deleted must map the old
/// shape's deletions too, or a restore brings back a row whose tombstone compaction dropped.
public struct LoggedRowUpgrade: Sendable {
    /// The table as the older schema named it.
    public var table: String
    /// How many key columns the table had then: a row logged with another count is not one
    /// of this upgrade's.
    public var keyColumnCount: Int
    /// The change in the shape the migration gave the table, from the logged key and row (nil
    /// for a deletion). Throws ``RowChangeFormatError`` for a change it cannot place.
    public var upgrade: @Sendable (_ key: [SQLValue], _ row: [SQLValue]?) throws -> RowChange

    /// Creates an upgrade for rows of `table` logged with `keyColumnCount` key columns.
    public init(
        table: String, keyColumnCount: Int, upgrade: @escaping @Sendable (_ key: [SQLValue], _ row: [SQLValue]?) throws -> RowChange
    ) {
        self.table = table
        self.keyColumnCount = keyColumnCount
        self.upgrade = upgrade
    }
}
