import Testing

@testable import Storage

@Suite("Statement")
struct StatementTests {
    /// A column without a declared type has no affinity, so each value keeps its storage class.
    private static let schema = "CREATE TABLE v (id INTEGER PRIMARY KEY, value)"

    /// Stores one value through `bind` and reads it back, along with SQLite's view of its type.
    private func roundTrip<T>(
        _ database: Database, bind: (Statement) -> Void, read: (Statement) -> T
    ) throws -> (value: T, type: String) {
        try database.prepare("DELETE FROM v").run()
        let insert = try database.prepare("INSERT INTO v (id, value) VALUES (1, ?)")
        bind(insert)
        try insert.run()
        let row = try database.prepare("SELECT value, typeof(value) FROM v WHERE id = 1").queryOne {
            (read($0), $0.string(1))
        }
        return try #require(row)
    }

    @Test func integersRoundTripIncludingExtremes() throws {
        try withDatabase { database in
            try database.execute(Self.schema)
            for value in [Int64.min, -1, 0, 1, Int64.max] {
                let stored = try roundTrip(database, bind: { $0.bind(1, value) }, read: { $0.int64(0) })
                #expect(stored.value == value)
                #expect(stored.type == "integer")
            }
            let int = try roundTrip(database, bind: { $0.bind(1, Int.min) }, read: { $0.int(0) })
            #expect(int.value == Int.min)
            let optional = try roundTrip(database, bind: { $0.bind(1, Int64?.some(7)) }, read: { $0.optionalInt64(0) })
            #expect(optional.value == 7)
        }
    }

    @Test func doublesRoundTripExactly() throws {
        try withDatabase { database in
            try database.execute(Self.schema)
            for value in [Double.pi, -1.5, Double.greatestFiniteMagnitude, Double.leastNonzeroMagnitude, 1e-300] {
                let stored = try roundTrip(database, bind: { $0.bind(1, value) }, read: { $0.double(0) })
                #expect(stored.value == value)
                #expect(stored.type == "real")
            }
        }
    }

    @Test func unicodeTextRoundTripsByteForByte() throws {
        try withDatabase { database in
            try database.execute(Self.schema)
            let samples = [
                "",
                "plain ascii",
                "Zoë naïve café",
                "日本語のテキスト",
                "emoji 🎉👩‍👩‍👧 flags 🇳🇱",
                "combining e\u{301} vs é",
                "embedded\u{0}nul",
                String(repeating: "long ✓ ", count: 10_000),
            ]
            for text in samples {
                let stored = try roundTrip(database, bind: { $0.bind(1, text) }, read: { $0.string(0) })
                #expect(stored.value == text)
                #expect(Array(stored.value.utf8) == Array(text.utf8))
                #expect(stored.type == "text")
            }
            // SQLite must see the same UTF-8 as a literal in SQL, not some other encoding.
            let equal = try database.prepare("SELECT ? = 'Zoë 🎉', length(?)").queryOne("Zoë 🎉", "Zoë 🎉") {
                ($0.int(0), $0.int(1))
            }
            #expect(equal?.0 == 1)
            #expect(equal?.1 == 5)  // characters, as SQLite counts them
        }
    }

    @Test func blobsRoundTripAndEmptyBlobIsNotNull() throws {
        try withDatabase { database in
            try database.execute(Self.schema)
            let everyByte = (0...255).map(UInt8.init)
            let stored = try roundTrip(database, bind: { $0.bind(1, everyByte) }, read: { $0.blob(0) })
            #expect(stored.value == everyByte)
            #expect(stored.type == "blob")

            let empty = try roundTrip(database, bind: { $0.bind(1, [UInt8]()) }, read: { $0.optionalBlob(0) })
            #expect(empty.type == "blob")
            #expect(empty.value == [])

            let emptyValue = try roundTrip(database, bind: { $0.bind(1, SQLValue.blob([])) }, read: { $0.value(0) })
            #expect(emptyValue.type == "blob")
            #expect(emptyValue.value == .blob([]))

            let null = try roundTrip(database, bind: { $0.bind(1, [UInt8]?.none) }, read: { $0.optionalBlob(0) })
            #expect(null.type == "null")
            #expect(null.value == nil)
        }
    }

    @Test func nullBindsAndReads() throws {
        try withDatabase { database in
            try database.execute(Self.schema)
            let binders: [(Statement) -> Void] = [
                { $0.bind(1, Int64?.none) },
                { $0.bind(1, String?.none) },
                { $0.bind(1, [UInt8]?.none) },
                { $0.bindNull(1) },
                { $0.bind(1, SQLValue.null) },
            ]
            for bind in binders {
                let stored = try roundTrip(database, bind: bind) { statement in
                    (
                        statement.isNull(0), statement.optionalInt64(0), statement.optionalString(0),
                        statement.string(0), statement.int64(0), statement.blob(0), statement.value(0)
                    )
                }
                #expect(stored.type == "null")
                #expect(stored.value.0)
                #expect(stored.value.1 == nil)
                #expect(stored.value.2 == nil)
                #expect(stored.value.3 == "")
                #expect(stored.value.4 == 0)
                #expect(stored.value.5 == [])
                #expect(stored.value.6 == .null)
            }
            // An empty string is text, not NULL.
            let empty = try roundTrip(database, bind: { $0.bind(1, String?.some("")) }, read: { $0.optionalString(0) })
            #expect(empty.type == "text")
            #expect(empty.value == "")
        }
    }

    @Test func sqlValuesBindFromLiteralsAndReadBackInTheirStorageClass() throws {
        try withDatabase { database in
            let values: [SQLValue] = [42, -7.25, "text", nil, .blob([1, 2, 3]), SQLValue(Int?.none), SQLValue("x")]
            let row = try database.prepare("SELECT ?, ?, ?, ?, ?, ?, ?").queryOne(values) { statement in
                (0..<statement.columnCount).map(statement.value)
            }
            #expect(row == values)
            #expect(values[5] == .null)
            #expect(values[6] == .text("x"))
        }
    }

    @Test func positionalBindWinsOverTheVariadicListForTwoArguments() throws {
        try withDatabase { database in
            let statement = try database.prepare("SELECT ?")
            statement.bind(1, "x")
            #expect(try statement.step())
            #expect(statement.string(0) == "x")
        }
    }

    @Test func variadicBindFillsParametersInOrder() throws {
        try withDatabase { database in
            let statement = try database.prepare("SELECT ?1 || ?2 || ?3")
            statement.bind("a", "b", "c")
            #expect(try statement.step())
            #expect(statement.string(0) == "abc")
        }
    }

    @Test func metadata() throws {
        try withDatabase { database in
            let statement = try database.prepare("SELECT ? AS first, ? AS second")
            #expect(statement.parameterCount == 2)
            #expect(statement.columnCount == 2)
            #expect(statement.columnName(1) == "second")
            #expect(statement.sql == "SELECT ? AS first, ? AS second")
        }
    }

    // MARK: Running

    @Test func queryMapsEveryRowAndQueryOneTheFirst() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
            let select = try database.prepare("SELECT x FROM t WHERE x >= ? ORDER BY x")
            #expect(try select.query(2) { $0.int(0) } == [2, 3])
            #expect(try select.query(9) { $0.int(0) } == [])
            #expect(try select.queryOne(1) { $0.int(0) } == 1)
            #expect(try select.queryOne(9) { $0.int(0) } == nil)
        }
    }

    @Test func runStepsToCompletionAndCanBeRepeated() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER)")
            let insert = try database.prepare("INSERT INTO t VALUES (?)")
            for value in 1...100 {
                try insert.run(.integer(Int64(value)))
            }
            #expect(try database.prepare("SELECT sum(x) FROM t").queryOne { $0.int(0) } == 5050)
        }
    }

    @Test func runWithoutValuesUsesManualBindings() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (a INTEGER, b TEXT)")
            let insert = try database.prepare("INSERT INTO t VALUES (?, ?)")
            insert.bind(1, 5)
            insert.bind(2, "five")
            try insert.run()
            let row = try database.prepare("SELECT a, b FROM t").queryOne { ($0.int(0), $0.string(1)) }
            #expect(row?.0 == 5)
            #expect(row?.1 == "five")
        }
    }

    @Test func wrongNumberOfValuesIsRefused() throws {
        try withDatabase { database in
            let statement = try database.prepare("SELECT ?, ?")
            let error = try #require(throws: SQLiteError.self) { try statement.query(1) { $0.int(0) } }
            #expect(error.code == 25)  // SQLITE_RANGE
            #expect(error.sql == "SELECT ?, ?")
        }
    }

    @Test func failedBindIsReportedByStepUntilBindingsAreCleared() throws {
        try withDatabase { database in
            let statement = try database.prepare("SELECT ?")
            statement.bind(3, 1)
            let error = try #require(throws: SQLiteError.self) { try statement.step() }
            #expect(error.code == 25)  // SQLITE_RANGE
            #expect(error.message.contains("parameter 3"))
            #expect(throws: SQLiteError.self) { try statement.step() }

            statement.clearBindings()
            statement.bind(1, 1)
            #expect(try statement.step())
            #expect(statement.int(0) == 1)
        }
    }

    @Test func queryResetsTheStatementWhenTheRowClosureThrows() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
            let select = try database.prepare("SELECT x FROM t ORDER BY x")
            #expect(throws: ExpectedFailure()) {
                try select.query { statement in
                    if statement.int(0) == 2 { throw ExpectedFailure() }
                    return statement.int(0)
                }
            }
            #expect(try select.step())
            #expect(select.int(0) == 1)
        }
    }

    // MARK: Statement cache

    @Test func prepareReturnsTheCachedStatement() throws {
        try withDatabase { database in
            let first = try database.prepare("SELECT 1")
            let second = try database.prepare("SELECT 1")
            let other = try database.prepare("SELECT 2")
            #expect(first === second)
            #expect(first !== other)
        }
    }

    @Test func textsBuiltAtRunTimeEachGetTheStatementOfTheirOwnText() throws {
        try withDatabase { database in
            // Each text is let go before the next is made, so most come where an earlier,
            // different one was: the cache must not answer by the place alone.
            for index in 0..<600 {
                let sql = "SELECT \(index % 7) AS figure_of_a_text_made_at_run_time"
                #expect(try database.prepare(sql).queryOne { $0.int(0) } == index % 7, "\(sql)")
                let literal = try database.prepare("SELECT 'a literal' AS figure_of_a_literal_text")
                #expect(try literal.queryOne { $0.string(0) } == "a literal")
            }
            // Seven texts made again and again, all kept alive, so at 300 places: more than
            // the cache by place may hold for so few statements, so it is emptied on the way.
            // Each is still answered by its own statement, and so are short texts, which have
            // no place of their own.
            let kept = (0..<300).map { "SELECT \($0 % 7) AS figure_of_a_text_made_at_run_time" }
            for (index, sql) in kept.enumerated() {
                #expect(try database.prepare(sql).queryOne { $0.int(0) } == index % 7, "\(sql)")
                #expect(try database.prepare("SELECT \(index % 3)").queryOne { $0.int(0) } == index % 3)
                #expect(database.cachedTextPlaces <= 2 * database.cachedStatements + 64)
            }
            #expect(database.cachedStatements == 7 + 1 + 3)
        }
    }

    @Test func reusedStatementStartsFreshAfterAPartialStep() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
            let sql = "SELECT x FROM t WHERE x >= ? ORDER BY x"
            let first = try database.prepare(sql)
            first.bind(1, 2)
            #expect(try first.step())
            #expect(first.int(0) == 2)

            // Same object, but rewound and with its parameter back to NULL (so no row matches).
            let again = try database.prepare(sql)
            #expect(try !again.step())

            let third = try database.prepare(sql)
            third.bind(1, 1)
            #expect(try third.query { $0.int(0) } == [1, 2, 3])
        }
    }

    @Test func cachedStatementSurvivesSchemaChanges() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
            let select = try database.prepare("SELECT * FROM t")
            #expect(try select.queryOne { $0.columnCount } == 1)
            try database.execute("ALTER TABLE t ADD COLUMN y INTEGER DEFAULT 2")
            let widened = try database.prepare("SELECT * FROM t").queryOne { ($0.columnCount, $0.int(1)) }
            #expect(widened?.0 == 2)
            #expect(widened?.1 == 2)
        }
    }
}
