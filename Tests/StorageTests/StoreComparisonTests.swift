import Storage
import Testing

@Suite struct StoreComparisonTests {
    /// Two in-memory stores with the same accounts and ledger.
    func stores() throws -> (Database, Database) {
        let schema = """
            CREATE TABLE accounts(member TEXT PRIMARY KEY, available INTEGER NOT NULL, state BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE parked(seq INTEGER PRIMARY KEY AUTOINCREMENT, member TEXT NOT NULL, value BLOB NOT NULL);
            CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, value BLOB);
            """
        let (a, b) = (try Database(DatabaseConfiguration(path: ":memory:")), try Database(DatabaseConfiguration(path: ":memory:")))
        for database in [a, b] {
            try database.execute(schema)
            for (member, available) in [("alice", 120), ("bob", 40), ("carol", 0)] {
                try database.prepare("INSERT INTO accounts VALUES(?, ?, ?)").run(.text(member), .integer(Int64(available)), .blob(Array("{\"lots\":[]}".utf8)))
            }
        }
        return (a, b)
    }

    @Test func equalStoresAreTheSameTableByTable() throws {
        let (a, b) = try stores()
        // Written in another order, with other sequence numbers and outboxes: still the same.
        try a.execute("INSERT INTO parked(member, value) VALUES('dan', x'01'); INSERT INTO parked(member, value) VALUES('eve', x'02')")
        try b.execute("INSERT INTO parked(seq, member, value) VALUES(7, 'eve', x'02'); INSERT INTO parked(seq, member, value) VALUES(9, 'dan', x'01')")
        try a.execute("INSERT INTO outbox(value) VALUES(x'ff')")
        let result = try StoreComparison.compare(a, b, skippingTables: ["outbox"], ignoringColumns: ["seq"])
        #expect(result == .success(StoreComparison.Summary(tables: 2, rows: 5)))
    }

    @Test func theFirstDifferenceNamesTableRowAndColumn() throws {
        let (a, b) = try stores()
        try b.execute("UPDATE accounts SET available = 620 WHERE member = 'bob'")
        guard case .failure(let difference) = try StoreComparison.compare(a, b) else {
            Issue.record("a changed balance is a difference")
            return
        }
        #expect(difference.table == "accounts")
        #expect(difference.row == "member=\"bob\"")
        #expect(difference.detail == "available is 40 in the store and 620 rebuilt")
    }

    @Test func missingAndExtraRowsAndTablesAreDifferences() throws {
        var (a, b) = try stores()
        try b.execute("DELETE FROM accounts WHERE member = 'bob'")
        let missing = try StoreComparison.compare(a, b)
        #expect(missing == .failure(.init(table: "accounts", row: "member=\"bob\"", detail: "the row is missing from the rebuilt store")), "\(missing)")
        #expect(try StoreComparison.compare(b, a) == .failure(.init(table: "accounts", row: "member=\"bob\"", detail: "the row exists only in the rebuilt store")))
        (a, b) = try stores()
        try b.execute("INSERT INTO accounts VALUES('zoe', 1, x'00')")
        #expect(try StoreComparison.compare(a, b) == .failure(.init(table: "accounts", row: "member=\"zoe\"", detail: "the row exists only in the rebuilt store")))
        try b.execute("DELETE FROM accounts WHERE member = 'zoe'; CREATE TABLE extra(x)")
        #expect(try StoreComparison.compare(a, b) == .failure(.init(table: "extra", row: "", detail: "the table exists only in the rebuilt store")))
        #expect(try StoreComparison.compare(b, a) == .failure(.init(table: "extra", row: "", detail: "the table is missing from the rebuilt store")))
    }

    @Test func aLongBlobDifferenceShowsWhereTheyPart() throws {
        let (a, b) = try stores()
        let state = String(repeating: "{\"lot\":1}", count: 20)
        try a.prepare("UPDATE accounts SET state = ? WHERE member = 'carol'").run(.blob(Array(state.utf8)))
        try b.prepare("UPDATE accounts SET state = ? WHERE member = 'carol'").run(.blob(Array((state.dropLast(3) + "2}}").utf8)))
        guard case .failure(let difference) = try StoreComparison.compare(a, b) else {
            Issue.record("a changed state is a difference")
            return
        }
        #expect(difference.row == "member=\"carol\"")
        #expect(difference.detail.hasPrefix("state is …"))
        #expect(difference.detail.contains("parting at byte 177"), "\(difference.detail)")
    }
}
