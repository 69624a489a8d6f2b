import CSQLite

/// Records what the transactions of one connection change, with SQLite's session extension,
/// and hands each transaction's changes over as the new states of its rows (``RowChange``):
/// what a changelog needs for a store to be rebuilt elsewhere. It also applies such changes
/// to a store, which is how that store is rebuilt.
///
/// Every logged table must have a primary key: the session extension ignores the others, and
/// a change without a key could not be named.
public final class ChangeCapture {
    private struct Shape {
        var columns: [String]
        /// Indices of the primary-key columns, in column order.
        var keyColumns: [Int]
        /// The statements, made once: building them per row cost more than running them.
        var selectRow: String
        var deleteRow: String
        /// `INSERT OR REPLACE` of the first n columns, for n = 1 … all.
        var replaceRow: [String]

        init(table: String, columns: [String], keyColumns: [Int]) {
            self.columns = columns
            self.keyColumns = keyColumns
            let quotedTable = quoted(table)
            let names = columns.map(quoted)
            let condition = keyColumns.map { "\(names[$0]) IS ?" }.joined(separator: " AND ")
            selectRow = "SELECT \(names.joined(separator: ", ")) FROM \(quotedTable) WHERE \(condition)"
            deleteRow = "DELETE FROM \(quotedTable) WHERE \(condition)"
            replaceRow = (1...columns.count).map { count in
                "INSERT OR REPLACE INTO \(quotedTable)(\(names[..<count].joined(separator: ", "))) VALUES(\(Array(repeating: "?", count: count).joined(separator: ", ")))"
            }
        }
    }

    private let database: Database
    private let shapes: [String: Shape]
    private let upgrades: [LoggedRowUpgrade]
    private var session: OpaquePointer?

    /// Logs every table of `database` except SQLite's own and `excluding` (tables the loop
    /// keeps for itself, such as the outbox). `upgrades` read rows logged in older shapes of
    /// the tables when changes are applied.
    /// - Throws: ``SQLiteError`` naming a table without a primary key.
    public init(database: Database, excluding: Set<String>, upgrades: [LoggedRowUpgrade] = []) throws {
        self.database = database
        self.upgrades = upgrades
        let names = try database.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .query { $0.string(0) }.filter { !excluding.contains($0) }
        var shapes: [String: Shape] = [:]
        for name in names {
            let columns = try database.prepare("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid").query(.text(name)) {
                (name: $0.string(0), key: $0.int(1) > 0)
            }
            let keyColumns = columns.indices.filter { columns[$0].key }
            guard !keyColumns.isEmpty else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "table \(name) has no primary key, so its changes cannot be logged")
            }
            shapes[name] = Shape(table: name, columns: columns.map(\.name), keyColumns: keyColumns)
        }
        self.shapes = shapes
    }

    deinit {
        if let session { sqlite3session_delete(session) }
    }

    /// The tables whose changes are recorded.
    public var loggedTables: [String] { shapes.keys.sorted() }

    /// Starts recording; call inside the transaction, before its first change.
    public func begin() throws {
        discard()
        let connection = try database.connection()
        var created: OpaquePointer?
        var rc = sqlite3session_create(connection, "main", &created)
        guard rc == SQLITE_OK, let created else { throw SQLiteError(connection: connection, code: rc, sql: nil, context: "cannot start a session") }
        session = created
        for table in shapes.keys {
            rc = sqlite3session_attach(created, table)
            guard rc == SQLITE_OK else { throw SQLiteError(connection: connection, code: rc, sql: nil, context: "cannot log table \(table)") }
        }
    }

    /// Stops recording without a result (the transaction rolled back).
    public func discard() {
        if let session { sqlite3session_delete(session) }
        session = nil
    }

    /// Stops recording and returns the state, after the transaction, of every row it changed;
    /// call inside the transaction, after its last change to a logged table. A row changed
    /// and changed back is left out.
    public func end() throws -> [RowChange] {
        guard let session else { return [] }
        defer { discard() }
        let connection = try database.connection()
        var size: Int32 = 0
        var bytes: UnsafeMutableRawPointer?
        let rc = sqlite3session_changeset(session, &size, &bytes)
        defer { sqlite3_free(bytes) }
        guard rc == SQLITE_OK else { throw SQLiteError(connection: connection, code: rc, sql: nil, context: "cannot read the session's changes") }
        guard size > 0, let bytes else { return [] }
        var iterator: OpaquePointer?
        guard sqlite3changeset_start(&iterator, size, bytes) == SQLITE_OK, let iterator else {
            throw SQLiteError(code: SQLITE_CORRUPT, message: "cannot read the session's changeset")
        }
        defer { sqlite3changeset_finalize(iterator) }
        // An insert carries the whole row; an update only the columns it changed.
        var keys: [(table: String, key: [SQLValue], deleted: Bool, inserted: [SQLValue]?)] = []
        // Any failure to read a change is an error: a change passed over would be lost.
        func check(_ rc: Int32, _ what: String) throws {
            guard rc == SQLITE_OK else { throw SQLiteError(code: rc, message: "cannot read the session's changeset: \(what)") }
        }
        var step = sqlite3changeset_next(iterator)
        while step == SQLITE_ROW {
            var name: UnsafePointer<CChar>?
            var columnCount: Int32 = 0
            var operation: Int32 = 0
            var indirect: Int32 = 0
            try check(sqlite3changeset_op(iterator, &name, &columnCount, &operation, &indirect), "the operation")
            guard let name else { throw SQLiteError(code: SQLITE_CORRUPT, message: "a change of the session names no table") }
            let table = String(cString: name)
            guard let shape = shapes[table] else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "the session changed table \(table), which it does not log")
            }
            let key = try shape.keyColumns.map { column -> SQLValue in
                var value: OpaquePointer?
                // An update keeps its key (one that changes the key is a delete and an insert).
                if operation == SQLITE_INSERT {
                    try check(sqlite3changeset_new(iterator, Int32(column), &value), "a key of \(table)")
                } else {
                    try check(sqlite3changeset_old(iterator, Int32(column), &value), "a key of \(table)")
                }
                return Self.value(value)
            }
            let inserted = operation != SQLITE_INSERT ? nil : try (0..<Int32(shape.columns.count)).map { column -> SQLValue in
                var value: OpaquePointer?
                try check(sqlite3changeset_new(iterator, column, &value), "a value of \(table)")
                return Self.value(value)
            }
            keys.append((table, key, operation == SQLITE_DELETE, inserted))
            step = sqlite3changeset_next(iterator)
        }
        guard step == SQLITE_DONE else { throw SQLiteError(code: step, message: "cannot read the session's changeset to its end") }
        // The row of an update is read from the store.
        return try keys.map { change in
            guard !change.deleted else { return RowChange(table: change.table, key: change.key, row: nil) }
            if let inserted = change.inserted { return RowChange(table: change.table, key: change.key, row: inserted) }
            let shape = shapes[change.table]!
            let row = try database.prepare(shape.selectRow).queryOne(change.key) { statement in
                (0..<Int32(shape.columns.count)).map { statement.value($0) }
            }
            return RowChange(table: change.table, key: change.key, row: row)
        }
    }

    /// Applies a row's state to the store (inside the caller's transaction): the row is
    /// written whole, or deleted for a tombstone. A row logged before its table gained
    /// columns fills only the columns it has; the others take their defaults. A row logged in
    /// an older shape of its table (another table, or another key) goes through the upgrade
    /// named for that shape, and then again as the table stands.
    /// - Throws: ``RowChangeFormatError`` for a change that fits neither the store's tables nor
    ///   an upgrade.
    public func apply(_ change: RowChange) throws {
        try apply(change, upgradesLeft: upgrades.count)
    }

    private func apply(_ change: RowChange, upgradesLeft: Int) throws {
        let shape = shapes[change.table]
        if shape?.keyColumns.count != change.key.count, upgradesLeft > 0,
           let upgrade = upgrades.first(where: { $0.table == change.table && $0.keyColumnCount == change.key.count }) {
            // Each step leaves the shape it read, so a chain ends within the upgrades there are.
            return try apply(upgrade.upgrade(change.key, change.row), upgradesLeft: upgradesLeft - 1)
        }
        guard let shape else {
            throw RowChangeFormatError(detail: "the store has no logged table \(change.table)")
        }
        guard change.key.count == shape.keyColumns.count else {
            throw RowChangeFormatError(detail: "\(change.table) has \(shape.keyColumns.count) key columns, the change names \(change.key.count)")
        }
        guard let row = change.row else {
            try database.prepare(shape.deleteRow).run(change.key)
            return
        }
        guard row.count <= shape.columns.count, shape.keyColumns.allSatisfy({ $0 < row.count }),
              shape.keyColumns.map({ row[$0] }) == change.key
        else {
            throw RowChangeFormatError(detail: "a row of \(change.table) does not match its key or the table's \(shape.columns.count) columns")
        }
        try database.prepare(shape.replaceRow[row.count - 1]).run(row)
    }

    private static func value(_ value: OpaquePointer?) -> SQLValue {
        guard let value else { return .null }
        switch sqlite3_value_type(value) {
        case SQLITE_INTEGER: return .integer(sqlite3_value_int64(value))
        case SQLITE_FLOAT: return .real(sqlite3_value_double(value))
        case SQLITE_TEXT:
            let count = Int(sqlite3_value_bytes(value))
            guard let text = sqlite3_value_text(value) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_value_bytes(value))
            guard count > 0, let blob = sqlite3_value_blob(value) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: blob, count: count)))
        default: return .null
        }
    }
}

private func quoted(_ name: String) -> String { StoreComparison.quoted(name) }
