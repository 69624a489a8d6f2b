/// Compares two SQLite databases table by table and row by row, to tell whether a store
/// rebuilt from history holds what the original holds.
public enum StoreComparison {
    /// What was compared when no difference was found.
    public struct Summary: Sendable, Equatable {
        public var tables: Int
        public var rows: Int

        public init(tables: Int, rows: Int) {
            self.tables = tables
            self.rows = rows
        }
    }

    /// The first place two stores differ.
    public struct Difference: Error, Sendable, Equatable, CustomStringConvertible {
        public var table: String
        /// The row, as its key columns' values (empty for a difference of schema).
        public var row: String
        /// What differs, in words.
        public var detail: String

        public init(table: String, row: String, detail: String) {
            self.table = table
            self.row = row
            self.detail = detail
        }

        public var description: String { row.isEmpty ? "\(table): \(detail)" : "\(table), row \(row): \(detail)" }
    }

    /// Compares every table of `expected` (except `skippingTables` and SQLite's own) with the
    /// same table of `actual`, leaving out columns named in `ignoringColumns` (sequence numbers
    /// that say in which order rows were written, not what they hold). Tables of `actual`
    /// missing from `expected` are a difference too.
    public static func compare(
        _ expected: Database, _ actual: Database, skippingTables: Set<String> = [], ignoringColumns: Set<String> = []
    ) throws -> Result<Summary, Difference> {
        let expectedTables = try tables(of: expected).filter { !skippingTables.contains($0) }
        let actualTables = try tables(of: actual).filter { !skippingTables.contains($0) }
        if let missing = expectedTables.first(where: { !actualTables.contains($0) }) {
            return .failure(Difference(table: missing, row: "", detail: "the table is missing from the rebuilt store"))
        }
        if let extra = actualTables.first(where: { !expectedTables.contains($0) }) {
            return .failure(Difference(table: extra, row: "", detail: "the table exists only in the rebuilt store"))
        }
        var summary = Summary(tables: 0, rows: 0)
        for table in expectedTables {
            let columns = try self.columns(of: table, in: expected).filter { !ignoringColumns.contains($0.name) }
            let actualColumns = try self.columns(of: table, in: actual).filter { !ignoringColumns.contains($0.name) }
            guard columns.map(\.name) == actualColumns.map(\.name) else {
                return .failure(Difference(
                    table: table, row: "",
                    detail: "columns differ: \(columns.map(\.name).joined(separator: ",")) against \(actualColumns.map(\.name).joined(separator: ","))"))
            }
            // Key columns first, then the rest: rows come in the same order from both stores.
            let keys = columns.filter { $0.keyPosition > 0 }.sorted { $0.keyPosition < $1.keyPosition }
            let order = (keys.isEmpty ? columns : keys + columns.filter { $0.keyPosition == 0 }).map { quoted($0.name) }
            let sql = "SELECT \(columns.map { quoted($0.name) }.joined(separator: ", ")) FROM \(quoted(table)) ORDER BY \(order.joined(separator: ", "))"
            let left = try expected.prepare(sql)
            let right = try actual.prepare(sql)
            defer {
                left.reset()
                right.reset()
            }
            let keyIndexes = keys.isEmpty ? Array(columns.indices) : keys.map { key in columns.firstIndex { $0.name == key.name }! }
            func keyOf(_ row: [SQLValue]) -> String {
                keyIndexes.map { "\(columns[$0].name)=\(StoreComparison.describe(row[$0]))" }.joined(separator: " ")
            }
            while true {
                let hasLeft = try left.step()
                let hasRight = try right.step()
                if !hasLeft && !hasRight { break }
                guard hasLeft else {
                    return .failure(Difference(table: table, row: keyOf(row(of: right, columns.count)), detail: "the row exists only in the rebuilt store"))
                }
                guard hasRight else {
                    return .failure(Difference(table: table, row: keyOf(row(of: left, columns.count)), detail: "the row is missing from the rebuilt store"))
                }
                let a = row(of: left, columns.count)
                let b = row(of: right, columns.count)
                summary.rows += 1
                if a == b { continue }
                let sameKey = keyIndexes.allSatisfy { a[$0] == b[$0] }
                guard sameKey else {
                    let (first, side) = precedes(keyIndexes.map { a[$0] }, keyIndexes.map { b[$0] }) ? (a, "is missing from the rebuilt store") : (b, "exists only in the rebuilt store")
                    return .failure(Difference(table: table, row: keyOf(first), detail: "the row \(side)"))
                }
                let column = columns.indices.first { a[$0] != b[$0] }!
                return .failure(Difference(
                    table: table, row: keyOf(a),
                    detail: "\(columns[column].name) is " + describe(a[column], against: b[column]) + " in the store and "
                        + describe(b[column], against: a[column]) + " rebuilt"))
            }
            summary.tables += 1
        }
        return .success(summary)
    }

    struct Column {
        var name: String
        /// 1-based place in the primary key; 0 when not part of it.
        var keyPosition: Int
    }

    static func tables(of database: Database) throws -> [String] {
        try database.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .query { $0.string(0) }
    }

    static func columns(of table: String, in database: Database) throws -> [Column] {
        try database.prepare("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid").query(.text(table)) {
            Column(name: $0.string(0), keyPosition: $0.int(1))
        }
    }

    static func row(of statement: Statement, _ count: Int) -> [SQLValue] {
        (0..<Int32(count)).map { statement.value($0) }
    }

    static func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// SQLite's order of values under the BINARY collation: NULL, numbers, text, blobs.
    static func precedes(_ a: [SQLValue], _ b: [SQLValue]) -> Bool {
        for (x, y) in zip(a, b) where x != y { return orderKey(x) < orderKey(y) || (orderKey(x) == orderKey(y) && lessThan(x, y)) }
        return false
    }

    private static func orderKey(_ value: SQLValue) -> Int {
        switch value {
        case .null: 0
        case .integer, .real: 1
        case .text: 2
        case .blob: 3
        }
    }

    private static func lessThan(_ a: SQLValue, _ b: SQLValue) -> Bool {
        switch (a, b) {
        case (.integer(let x), .integer(let y)): x < y
        case (.real(let x), .real(let y)): x < y
        case (.integer(let x), .real(let y)): Double(x) < y
        case (.real(let x), .integer(let y)): x < Double(y)
        case (.text(let x), .text(let y)): Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
        case (.blob(let x), .blob(let y)): x.lexicographicallyPrecedes(y)
        default: false
        }
    }

    /// A value for a person: text quoted and cut short, blobs as text when they are UTF-8.
    static func describe(_ value: SQLValue) -> String {
        switch value {
        case .null: return "NULL"
        case .integer(let number): return String(number)
        case .real(let number): return String(number)
        case .text(let text): return "\"\(shortened(text))\""
        case .blob(let bytes):
            if let text = String(validating: bytes, as: UTF8.self), !text.contains(where: { $0.isASCII && $0.asciiValue! < 32 && $0 != "\n" }) {
                return "\"\(shortened(text))\" (\(bytes.count) bytes)"
            }
            let hex = bytes.prefix(32).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
            return "x'\(hex)\(bytes.count > 32 ? "…" : "")' (\(bytes.count) bytes)"
        }
    }

    static func shortened(_ text: String) -> String { text.count > 120 ? String(text.prefix(120)) + "…" : text }

    /// A value beside the one it differs from: for long blobs and texts, where they part.
    static func describe(_ value: SQLValue, against other: SQLValue) -> String {
        let bytes: ([UInt8], [UInt8])?
        switch (value, other) {
        case (.blob(let a), .blob(let b)): bytes = (a, b)
        case (.text(let a), .text(let b)): bytes = (Array(a.utf8), Array(b.utf8))
        default: bytes = nil
        }
        guard let (a, b) = bytes, a.count > 64 || b.count > 64 else { return describe(value) }
        let at = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
        let window = a[max(0, at - 16)..<min(a.count, at + 48)]
        let excerpt = String(decoding: window, as: UTF8.self)
        return "…\(excerpt)… (\(a.count) bytes, parting at byte \(at))"
    }
}
