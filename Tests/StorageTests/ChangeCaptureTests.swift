import Testing
@testable import Storage

@Suite struct ChangeCaptureTests {
    private static let schema = """
        CREATE TABLE accounts(member TEXT PRIMARY KEY, balance INTEGER NOT NULL, state BLOB, rate REAL) WITHOUT ROWID;
        CREATE TABLE entries(member TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT, PRIMARY KEY(member, seq));
        CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, value BLOB);
        """

    private func store() throws -> Database {
        let database = try Database(DatabaseConfiguration(path: ":memory:"))
        try database.execute(Self.schema)
        return database
    }

    /// Runs `body` in a transaction whose changes are captured, and returns them.
    private func logged(_ database: Database, _ capture: ChangeCapture, _ body: () throws -> Void) throws -> [RowChange] {
        try database.transaction {
            try capture.begin()
            try body()
            return try capture.end()
        }
    }

    @Test func aStoreRebuiltFromTheLatestStateOfEachRowEqualsTheOriginal() throws {
        let original = try store()
        let capture = try ChangeCapture(database: original, excluding: ["outbox"])
        #expect(capture.loggedTables == ["accounts", "entries"])
        var log: [RowChange] = []
        log += try logged(original, capture) {
            try original.execute("""
                INSERT INTO accounts VALUES('m-1', 10, x'00ff', 1.5), ('m-2', 7, NULL, 2.0);
                INSERT INTO entries VALUES('m-1', 1, 'first'), ('m-1', 2, 'second'), ('m-2', 1, 'only');
                INSERT INTO outbox(value) VALUES(x'01');
                """)
        }
        log += try logged(original, capture) {
            try original.execute("""
                UPDATE accounts SET balance = 25 WHERE member = 'm-1';
                DELETE FROM entries WHERE member = 'm-1' AND seq = 1;
                DELETE FROM accounts WHERE member = 'm-2';
                INSERT INTO entries VALUES('m-3', 9, '三');
                UPDATE entries SET body = 'changed and changed back' WHERE member = 'm-2';
                UPDATE entries SET body = 'only' WHERE member = 'm-2';
                """)
        }
        // The outbox is not logged; a row changed and changed back is not either.
        #expect(!log.contains { $0.table == "outbox" })
        #expect(log.filter { $0.table == "entries" && $0.key == [.text("m-2"), .integer(1)] }.count == 1)
        let update = try #require(log.last { $0.table == "accounts" && $0.key == [.text("m-1")] })
        #expect(update.row == [.text("m-1"), .integer(25), .blob([0, 0xff]), .real(1.5)])
        #expect(log.contains { $0.table == "accounts" && $0.key == [.text("m-2")] && $0.row == nil })

        // Through the record bytes a changelog carries, and applied to an empty store.
        let records = log.map { ($0.encodedKey, $0.encodedValue) }
        let rebuilt = try store()
        let restore = try ChangeCapture(database: rebuilt, excluding: ["outbox"])
        try rebuilt.transaction {
            for (key, value) in records { try restore.apply(RowChange(encodedKey: key, encodedValue: value)) }
        }
        guard case .success(let summary) = try StoreComparison.compare(original, rebuilt, skippingTables: ["outbox"]) else {
            Issue.record("the rebuilt store differs: \(try StoreComparison.compare(original, rebuilt, skippingTables: ["outbox"]))")
            return
        }
        #expect(summary.rows == 4)
    }

    @Test func aRolledBackTransactionLogsNothing() throws {
        let database = try store()
        let capture = try ChangeCapture(database: database, excluding: ["outbox"])
        struct Abandon: Error {}
        #expect(throws: Abandon.self) {
            try database.transaction {
                try capture.begin()
                try database.execute("INSERT INTO accounts VALUES('m-1', 10, NULL, NULL)")
                throw Abandon()
            }
        }
        capture.discard()
        #expect(try logged(database, capture) {}.isEmpty)
    }

    @Test func valuesKeepTheirStorageClassThroughTheRecordBytes() throws {
        let change = RowChange(
            table: "t", key: [.integer(-1), .text("ключ")],
            row: [.integer(-1), .text("ключ"), .real(-0.25), .blob([]), .null, .integer(Int64.max)])
        let decoded = try RowChange(encodedKey: change.encodedKey, encodedValue: change.encodedValue)
        #expect(decoded == change)
        #expect(try RowChange(encodedKey: change.encodedKey, encodedValue: nil).row == nil)
        #expect(throws: RowChangeFormatError.self) { try RowChange(encodedKey: Array("no table".utf8), encodedValue: nil) }
        #expect(throws: RowChangeFormatError.self) { try RowChange(encodedKey: change.encodedKey, encodedValue: [1, 0, 0]) }
        #expect(throws: RowChangeFormatError.self) { try RowChange(encodedKey: change.encodedKey, encodedValue: [9]) }
    }

    @Test func aChangeThatDoesNotFitTheStoreIsRefused() throws {
        let database = try store()
        let capture = try ChangeCapture(database: database, excluding: ["outbox"])
        try database.transaction {
            #expect(throws: RowChangeFormatError.self) { try capture.apply(RowChange(table: "ghosts", key: [.text("x")], row: nil)) }
            #expect(throws: RowChangeFormatError.self) {
                try capture.apply(RowChange(table: "accounts", key: [.text("m-1")], row: [.text("m-2"), .integer(1)]))
            }
            #expect(throws: RowChangeFormatError.self) {
                try capture.apply(RowChange(table: "entries", key: [.text("m-1")], row: nil))
            }
        }
    }

    /// Rows logged before migrations reshaped their tables: `ledger` keyed by id alone became
    /// `entries` keyed by (member, seq), and `entries` was once keyed by seq alone too. Each goes
    /// through its upgrade, in a chain where one leads to the next; deletions as well.
    @Test func rowsLoggedInAnOlderShapeGoThroughTheirUpgrades() throws {
        let database = try store()
        let upgrades = [
            LoggedRowUpgrade(table: "ledger", keyColumnCount: 1) { key, row in
                // (id, member, body) → entries keyed by seq alone, as they were next.
                RowChange(table: "entries", key: key, row: row.map { [$0[0], $0[1], $0[2]] })
            },
            LoggedRowUpgrade(table: "entries", keyColumnCount: 1) { key, row in
                guard let row else { throw RowChangeFormatError(detail: "a deleted entry names no member") }
                return RowChange(table: "entries", key: [row[1], key[0]], row: [row[1], row[0], row[2]])
            },
        ]
        let capture = try ChangeCapture(database: database, excluding: ["outbox"], upgrades: upgrades)
        let plain = try ChangeCapture(database: database, excluding: ["outbox"])
        try database.transaction {
            try capture.apply(RowChange(table: "ledger", key: [.integer(4)], row: [.integer(4), .text("m-1"), .text("from the ledger")]))
            try capture.apply(RowChange(table: "entries", key: [.integer(5)], row: [.integer(5), .text("m-1"), .text("keyed by seq")]))
            try capture.apply(RowChange(table: "entries", key: [.text("m-2"), .integer(1)], row: [.text("m-2"), .integer(1), .text("as it stands")]))
            // A deletion of the present shape goes straight through; one of the old shape that
            // its upgrade cannot place is refused, with the upgrade's reason.
            try capture.apply(RowChange(table: "entries", key: [.text("m-2"), .integer(1)], row: nil))
            let refused = try #require(throws: RowChangeFormatError.self) { try capture.apply(RowChange(table: "entries", key: [.integer(5)], row: nil)) }
            #expect(refused.detail == "a deleted entry names no member")
            // Without the upgrades, the old shapes do not fit.
            #expect(throws: RowChangeFormatError.self) { try plain.apply(RowChange(table: "ledger", key: [.integer(6)], row: [.integer(6), .text("m"), .text("x")])) }
        }
        let rows = try database.prepare("SELECT member, seq, body FROM entries ORDER BY member, seq").query { "\($0.string(0))/\($0.int64(1))/\($0.string(2))" }
        #expect(rows == ["m-1/4/from the ledger", "m-1/5/keyed by seq"])
    }

    @Test func aTableWithoutAPrimaryKeyCannotBeLogged() throws {
        let database = try store()
        try database.execute("CREATE TABLE notes(text TEXT)")
        #expect(throws: SQLiteError.self) { try ChangeCapture(database: database, excluding: ["outbox"]) }
        _ = try ChangeCapture(database: database, excluding: ["outbox", "notes"])
    }
}
