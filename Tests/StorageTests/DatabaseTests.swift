import CSQLite
import Foundation
import Storage
import Synchronization
import Testing

@Suite("Database")
struct DatabaseTests {
    // MARK: Opening and configuration

    @Test func fileDatabaseIsConfiguredAsRequested() throws {
        try withDatabasePath { path in
            let database = try Database(
                DatabaseConfiguration(path: path, busyTimeoutMilliseconds: 1_234, cacheSizeKiB: 2_048))
            #expect(try database.pragma("journal_mode") == "wal")
            #expect(try database.pragma("busy_timeout") == 1_234)
            #expect(try database.pragma("synchronous") == 1)  // NORMAL
            #expect(try database.pragma("foreign_keys") == 1)
            #expect(try database.pragma("cache_size") == -2_048)
            #expect(try database.pragma("temp_store") == 2)  // MEMORY
        }
    }

    /// A new store gets the configured page size; a store made with another keeps its own and
    /// its rows, since a store in WAL mode cannot change it (an upgrade opens older stores).
    @Test func aNewFileGetsThePageSizeAndAnOlderFileKeepsItsOwn() throws {
        try withDatabasePath { path in
            let database = try Database(DatabaseConfiguration(path: path))
            #expect(try database.pragma("page_size") == 8_192)
            database.close()
        }
        try withDatabasePath { path in
            let old = try Database(DatabaseConfiguration(path: path, pageSize: 4_096))
            try old.execute("CREATE TABLE t(x); INSERT INTO t VALUES(1), (2);")
            old.close()
            let reopened = try Database(DatabaseConfiguration(path: path))
            #expect(try reopened.pragma("page_size") == 4_096)
            try reopened.execute("INSERT INTO t VALUES(3)")
            #expect(try reopened.prepare("SELECT SUM(x) FROM t").queryOne { $0.int64(0) } == 6)
            reopened.close()
        }
        #expect(throws: SQLiteError.self) { try Database(DatabaseConfiguration(path: ":memory:", pageSize: 3_000)) }
    }

    @Test func twoConnectionsOpeningANewFileAtOnceBothGetIt() throws {
        // Two instances of a service starting together on a fresh data directory.
        for round in 0..<20 {
            try withDatabasePath { path in
                let failures = Mutex<[String]>([])
                DispatchQueue.concurrentPerform(iterations: 2) { _ in
                    do {
                        let database = try Database(DatabaseConfiguration(path: path))
                        database.close()
                    } catch {
                        failures.withLock { $0.append("round \(round): \(error)") }
                    }
                }
                #expect(failures.withLock { $0 }.isEmpty)
            }
        }
    }

    @Test func sqliteKeepsNoMemoryStatistics() throws {
        // Counting every allocation takes one lock all connections share: a store per thread
        // would queue on it. With the statistics off, SQLite counts nothing.
        try withDatabasePath { path in
            let database = try Database(DatabaseConfiguration(path: path))
            try database.execute("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000))")
            #expect(sqlite3_memory_used() == 0)
            #expect(sqlite3_memory_highwater(0) == 0)
        }
    }

    @Test func synchronousFullIsApplied() throws {
        try withDatabasePath { path in
            let database = try Database(DatabaseConfiguration(path: path, synchronous: .full))
            #expect(try database.pragma("synchronous") == 2)
        }
    }

    @Test func writesGoToTheWriteAheadLog() throws {
        try withDatabasePath { path in
            let database = try Database(DatabaseConfiguration(path: path))
            try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
            // Only WAL mode keeps a -wal file beside the database while a connection is open.
            #expect(FileManager.default.fileExists(atPath: path + "-wal"))
            #expect(FileManager.default.fileExists(atPath: path + "-shm"))
        }
    }

    @Test func inMemoryDatabaseOpensWithoutWAL() throws {
        let database = try Database(DatabaseConfiguration(path: ":memory:"))
        #expect(try database.pragma("journal_mode") == "memory")
        try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
        #expect(try database.count("t") == 1)
    }

    @Test func openingAnUnreachablePathThrows() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("missing/dir/test.sqlite").path
            let error = try #require(throws: SQLiteError.self) {
                try Database(DatabaseConfiguration(path: path))
            }
            #expect(error.code == 14)  // SQLITE_CANTOPEN
            #expect(error.message.contains(path))
        }
    }

    @Test func negativeCacheSizeIsRefused() throws {
        let error = try #require(throws: SQLiteError.self) {
            try Database(DatabaseConfiguration(path: ":memory:", cacheSizeKiB: -1))
        }
        #expect(error.code == 21)  // SQLITE_MISUSE
    }

    // MARK: Transactions

    @Test func transactionCommitsAndReturnsTheBodysResult() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER)")
            let inside = try database.transaction {
                try database.prepare("INSERT INTO t VALUES (?)").run(1)
                try database.prepare("INSERT INTO t VALUES (?)").run(2)
                return database.isInTransaction
            }
            #expect(inside)
            #expect(!database.isInTransaction)
            #expect(try database.integers("SELECT x FROM t ORDER BY x") == [1, 2])
        }
    }

    @Test func thrownErrorRollsBackEveryWriteAndIsRethrown() throws {
        try withDatabase { database in
            try database.execute(
                """
                CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER);
                INSERT INTO t VALUES (1, 10), (2, 20);
                """)
            #expect(throws: ExpectedFailure()) {
                try database.transaction {
                    try database.prepare("INSERT INTO t VALUES (?, ?)").run(3, 30)
                    try database.prepare("UPDATE t SET x = x + 1").run()
                    try database.prepare("DELETE FROM t WHERE id = ?").run(1)
                    try database.execute("CREATE TABLE u (y INTEGER)")
                    throw ExpectedFailure()
                }
            }
            #expect(!database.isInTransaction)
            #expect(try database.integers("SELECT x FROM t ORDER BY id") == [10, 20])
            #expect(try !database.tableExists("u"))
        }
    }

    @Test func sqlErrorInsideTransactionRollsBackEarlierWrites() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            let error = try #require(throws: SQLiteError.self) {
                try database.transaction {
                    try database.prepare("INSERT INTO t VALUES (?)").run(1)
                    try database.prepare("INSERT INTO t VALUES (?)").run(1)
                }
            }
            #expect(error.isConstraintViolation)
            #expect(try database.count("t") == 0)
        }
    }

    @Test func nestedTransactionIsRefusedWithoutDisturbingTheOuterOne() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER)")
            try database.transaction {
                try database.prepare("INSERT INTO t VALUES (1)").run()
                let error = try #require(throws: SQLiteError.self) {
                    try database.transaction { try database.prepare("INSERT INTO t VALUES (2)").run() }
                }
                #expect(error.code == 21)  // SQLITE_MISUSE
                #expect(error.message.contains("nested"))
                #expect(database.isInTransaction)
            }
            #expect(try database.integers("SELECT x FROM t") == [1])
        }
    }

    @Test func failedCommitRollsBackAndThrows() throws {
        try withDatabase { database in
            try database.execute(
                """
                CREATE TABLE parent (id INTEGER PRIMARY KEY);
                CREATE TABLE child (
                    parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED
                );
                """)
            // The deferred foreign key is only checked at COMMIT, which therefore fails.
            let error = try #require(throws: SQLiteError.self) {
                try database.transaction { try database.prepare("INSERT INTO child VALUES (?)").run(42) }
            }
            #expect(error.code == 19)
            #expect(error.extendedCode == 787)  // SQLITE_CONSTRAINT_FOREIGNKEY
            #expect(!database.isInTransaction)
            #expect(try database.count("child") == 0)
        }
    }

    // MARK: Several connections

    @Test func secondConnectionSeesCommittedButNotUncommittedData() throws {
        try withDatabasePath { path in
            let writer = try Database(DatabaseConfiguration(path: path))
            let reader = try Database(DatabaseConfiguration(path: path))
            try writer.execute("CREATE TABLE t (x INTEGER)")
            try writer.transaction {
                try writer.prepare("INSERT INTO t VALUES (1)").run()
                #expect(try writer.count("t") == 1)
                // WAL lets the reader proceed without waiting, on the last committed snapshot.
                #expect(try reader.count("t") == 0)
            }
            #expect(try reader.count("t") == 1)
        }
    }

    @Test func secondWriterWaitsForTheBusyTimeoutThenSucceeds() throws {
        try withDatabasePath { path in
            let holder = try Database(DatabaseConfiguration(path: path))
            try holder.execute("CREATE TABLE t (x INTEGER)")
            let waiter = try Database(DatabaseConfiguration(path: path, busyTimeoutMilliseconds: 5_000))

            let holdFor = Duration.milliseconds(200)
            let holding = HeldTransaction(on: holder, for: holdFor) {
                try holder.prepare("INSERT INTO t VALUES (1)").run()
            }
            holding.locked.wait()

            let clock = ContinuousClock()
            let start = clock.now
            try waiter.transaction { try waiter.prepare("INSERT INTO t VALUES (2)").run() }
            let waited = clock.now - start

            holding.finished.wait()
            #expect(holding.error.withLock { $0 } == nil)
            // The waiter could only begin once the holder committed (generous bound: scheduling).
            #expect(waited >= holdFor / 2)
            #expect(try waiter.integers("SELECT x FROM t ORDER BY rowid") == [1, 2])
        }
    }

    @Test func writerGivesUpWithBusyAfterItsTimeout() throws {
        try withDatabasePath { path in
            let holder = try Database(DatabaseConfiguration(path: path))
            try holder.execute("CREATE TABLE t (x INTEGER)")
            let waiter = try Database(DatabaseConfiguration(path: path, busyTimeoutMilliseconds: 50))

            let holding = HeldTransaction(on: holder, for: .milliseconds(400)) {
                try holder.prepare("INSERT INTO t VALUES (1)").run()
            }
            holding.locked.wait()
            let clock = ContinuousClock()
            let start = clock.now
            let error = try #require(throws: SQLiteError.self) {
                try waiter.transaction { try waiter.prepare("INSERT INTO t VALUES (2)").run() }
            }
            let waited = clock.now - start
            holding.finished.wait()

            #expect(error.isBusy)
            #expect(error.sql == "BEGIN IMMEDIATE")
            #expect(waited >= .milliseconds(40))
            #expect(!waiter.isInTransaction)
            // Once the lock is free, the same connection writes normally.
            try waiter.transaction { try waiter.prepare("INSERT INTO t VALUES (2)").run() }
            #expect(try waiter.integers("SELECT x FROM t ORDER BY rowid") == [1, 2])
        }
    }

    // MARK: Errors

    @Test func syntaxErrorThrowsWithCodeAndSQL() throws {
        try withDatabase { database in
            let sql = "SELEC 1"
            let error = try #require(throws: SQLiteError.self) { try database.prepare(sql) }
            #expect(error.code == 1)  // SQLITE_ERROR
            #expect(error.sql == sql)
            #expect(error.message.contains("syntax error"))
            #expect(error.description.contains(sql))

            let executeError = try #require(throws: SQLiteError.self) { try database.execute("CREATE TABLE (") }
            #expect(executeError.code == 1)
            #expect(executeError.sql == "CREATE TABLE (")
        }
    }

    @Test func unknownTableThrows() throws {
        try withDatabase { database in
            let error = try #require(throws: SQLiteError.self) { try database.prepare("SELECT * FROM nope") }
            #expect(error.message.contains("no such table"))
        }
    }

    @Test func constraintViolationThrowsAndLeavesConnectionAndStatementUsable() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            let sql = "INSERT INTO t (name) VALUES (?)"
            let insert = try database.prepare(sql)
            try insert.run("alice")

            let unique = try #require(throws: SQLiteError.self) { try insert.run("alice") }
            #expect(unique.code == 19)  // SQLITE_CONSTRAINT
            #expect(unique.extendedCode == 2067)  // SQLITE_CONSTRAINT_UNIQUE
            #expect(unique.isConstraintViolation)
            #expect(unique.sql == sql)
            #expect(unique.message.contains("UNIQUE"))

            let notNull = try #require(throws: SQLiteError.self) { try insert.run(nil) }
            #expect(notNull.extendedCode == 1299)  // SQLITE_CONSTRAINT_NOTNULL

            try insert.run("bob")
            #expect(try database.count("t") == 2)
        }
    }

    @Test func foreignKeysAreEnforced() throws {
        try withDatabase { database in
            try database.execute(
                """
                CREATE TABLE parent (id INTEGER PRIMARY KEY);
                CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent(id));
                """)
            let error = try #require(throws: SQLiteError.self) {
                try database.prepare("INSERT INTO child VALUES (?)").run(7)
            }
            #expect(error.extendedCode == 787)  // SQLITE_CONSTRAINT_FOREIGNKEY
        }
    }

    @Test func executeRunsSeveralStatements() throws {
        try withDatabase { database in
            try database.execute(
                """
                CREATE TABLE t (x INTEGER);
                INSERT INTO t VALUES (1);
                INSERT INTO t VALUES (2);
                """)
            #expect(try database.integers("SELECT x FROM t ORDER BY x") == [1, 2])
        }
    }

    @Test func prepareRefusesSeveralStatementsButAcceptsTrailingNoise() throws {
        try withDatabase { database in
            let error = try #require(throws: SQLiteError.self) { try database.prepare("SELECT 1; SELECT 2") }
            #expect(error.code == 21)
            #expect(try database.prepare("SELECT 1;  -- trailing comment\n").queryOne { $0.int(0) } == 1)
            #expect(throws: SQLiteError.self) { try database.prepare("  -- only a comment") }
            let trailingGarbage = try #require(throws: SQLiteError.self) { try database.prepare("SELECT 1; garbage") }
            #expect(trailingGarbage.message.contains("syntax error"))
        }
    }

    @Test func lastInsertRowIDAndChanges() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
            try database.prepare("INSERT INTO t (x) VALUES (?)").run(5)
            try database.prepare("INSERT INTO t (x) VALUES (?)").run(5)
            #expect(database.lastInsertRowID == 2)
            try database.prepare("UPDATE t SET x = 6 WHERE x = ?").run(5)
            #expect(database.changes == 2)
        }
    }

    // MARK: Closing

    @Test func closedDatabaseThrowsInsteadOfCrashing() throws {
        try withDatabase { database in
            try database.execute("CREATE TABLE t (x INTEGER)")
            let statement = try database.prepare("INSERT INTO t VALUES (?)")
            database.close()
            database.close()

            #expect(throws: SQLiteError.self) { try database.prepare("SELECT 1") }
            #expect(throws: SQLiteError.self) { try database.execute("SELECT 1") }
            #expect(throws: SQLiteError.self) { try database.transaction {} }
            let error = try #require(throws: SQLiteError.self) { try statement.run(1) }
            #expect(error.code == 21)
            statement.bind(1, 1)
            #expect(throws: SQLiteError.self) { try statement.step() }
            #expect(!database.isInTransaction)
            #expect(database.lastInsertRowID == 0)
            #expect(statement.isNull(0))
            #expect(statement.columnName(0) == "")
        }
    }

    @Test func closingFinalizesStatementsSoTheFileIsReleased() throws {
        try withDatabasePath { path in
            do {
                let database = try Database(DatabaseConfiguration(path: path))
                try database.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
                _ = try database.prepare("SELECT x FROM t").step()  // left mid-iteration
                database.close()
            }
            // The last connection to close checkpoints and removes the WAL, which SQLite only does
            // when no statement kept the connection alive as a zombie.
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
            let reopened = try Database(DatabaseConfiguration(path: path))
            #expect(try reopened.count("t") == 1)
        }
    }
}

/// A transaction held open on its own thread, to make another connection wait for its lock.
private final class HeldTransaction: Sendable {
    /// Signalled once the transaction holds the write lock (or failed to take it).
    let locked = DispatchSemaphore(value: 0)
    /// Signalled once the transaction has committed or failed.
    let finished = DispatchSemaphore(value: 0)
    let error = Mutex<(any Error)?>(nil)

    /// Begins a transaction on `database` in a new thread, runs `body` in it, then keeps it open
    /// for `duration` before committing.
    init(on database: Database, for duration: Duration, _ body: @escaping @Sendable () throws -> Void) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        Thread { [self] in
            do {
                try database.transaction {
                    try body()
                    locked.signal()
                    Thread.sleep(forTimeInterval: seconds)
                }
            } catch {
                self.error.withLock { $0 = error }
                locked.signal()
            }
            finished.signal()
        }.start()
    }
}
