import Foundation
import Storage
import Synchronization
import Testing

@Suite("Migrations")
struct MigrationTests {
    static let migrations = [
        Migration(version: 1, name: "create_account", sql: "CREATE TABLE account (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"),
        // Depends on version 1, so applying out of order would fail.
        Migration(
            version: 2, name: "add_balance",
            sql: "ALTER TABLE account ADD COLUMN balance INTEGER NOT NULL DEFAULT 0; CREATE INDEX account_balance ON account(balance)"),
        Migration(version: 3, name: "seed", sql: "INSERT INTO account (name, balance) VALUES ('house', 100)"),
    ]

    @Test func freshDatabaseIsAtVersionZero() throws {
        try withDatabase { database throws in
            #expect(try database.schemaVersion == 0)
            #expect(try database.migrate([]) == [])
            #expect(try database.schemaVersion == 0)
        }
    }

    @Test func migrationsApplyInOrderAndOnlyOnce() throws {
        try withDatabasePath { path in
            do {
                let database = try Database(DatabaseConfiguration(path: path))
                #expect(try database.migrate(Self.migrations) == [1, 2, 3])
                #expect(try database.schemaVersion == 3)
                #expect(try database.migrate(Self.migrations) == [])
            }
            let reopened = try Database(DatabaseConfiguration(path: path))
            #expect(try reopened.schemaVersion == 3)
            #expect(try reopened.migrate(Self.migrations) == [])
            // The seed ran exactly once.
            #expect(try reopened.count("account") == 1)

            let recorded = try reopened.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
                .query { ($0.int(0), $0.string(1), $0.string(2)) }
            #expect(recorded.map(\.0) == [1, 2, 3])
            #expect(recorded.map(\.1) == ["create_account", "add_balance", "seed"])
            #expect(recorded.allSatisfy { $0.2.hasSuffix("Z") && $0.2.count == 24 })

            let next = Self.migrations + [Migration(version: 4, name: "more", sql: "CREATE TABLE ledger (id INTEGER)")]
            #expect(try reopened.migrate(next) == [4])
            #expect(try reopened.schemaVersion == 4)
        }
    }

    @Test func failingMigrationRollsBackAndNamesItself() throws {
        try withDatabase { database in
            let broken = [
                Self.migrations[0],
                Migration(
                    version: 2, name: "half_done",
                    sql: "CREATE TABLE side (x INTEGER); INSERT INTO account (name) VALUES ('partial'); INSERT INTO nowhere VALUES (1)"),
            ]
            let error = try #require(throws: SQLiteError.self) { try database.migrate(broken) }
            #expect(error.message.contains("migration 2 'half_done'"))
            #expect(error.message.contains("no such table: nowhere"))
            #expect(error.code == 1)

            // Version 1 committed on its own; nothing of version 2 survived.
            #expect(try database.schemaVersion == 1)
            #expect(try !database.tableExists("side"))
            #expect(try database.count("account") == 0)
            #expect(!database.isInTransaction)

            // A fixed build carries on from there.
            #expect(try database.migrate(Self.migrations) == [2, 3])
        }
    }

    @Test func databaseFromANewerBuildIsRefused() throws {
        try withDatabase { database in
            try database.migrate(Self.migrations)
            let error = try #require(throws: SQLiteError.self) {
                try database.migrate(Array(Self.migrations.prefix(2)))
            }
            #expect(error.message.contains("newer"))
            #expect(error.message.contains("version 3"))
            #expect(try database.schemaVersion == 3)
            #expect(throws: SQLiteError.self) { try database.migrate([]) }
        }
    }

    @Test func unorderedOrDuplicateVersionsAreRefused() throws {
        try withDatabase { database throws in
            let swapped = [Self.migrations[1], Self.migrations[0]]
            #expect(throws: SQLiteError.self) { try database.migrate(swapped) }
            let duplicate = [Self.migrations[0], Self.migrations[0]]
            #expect(throws: SQLiteError.self) { try database.migrate(duplicate) }
            let zero = [Migration(version: 0, name: "zero", sql: "SELECT 1")]
            #expect(throws: SQLiteError.self) { try database.migrate(zero) }
            #expect(try database.schemaVersion == 0)
            #expect(try !database.tableExists("account"))
        }
    }

    @Test func migrateInsideATransactionIsRefused() throws {
        try withDatabase { database in
            try database.transaction {
                #expect(throws: SQLiteError.self) { try database.migrate(Self.migrations) }
            }
        }
    }

    @Test func concurrentMigratorsApplyEachMigrationExactlyOnce() throws {
        try withDatabasePath { path in
            // Slow enough that the two connections overlap.
            let migrations = (1...5).map { version in
                Migration(
                    version: version, name: "step\(version)",
                    sql: """
                        CREATE TABLE IF NOT EXISTS log (version INTEGER PRIMARY KEY);
                        INSERT INTO log VALUES (\(version));
                        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                        SELECT count(*) FROM n;
                        """)
            }
            let first = try Database(DatabaseConfiguration(path: path))
            let second = try Database(DatabaseConfiguration(path: path))
            let results = Mutex<[Result<[Int], any Error>]>([])
            let done = DispatchSemaphore(value: 0)
            let start = DispatchSemaphore(value: 0)
            for database in [first, second] {
                Thread {
                    start.wait()
                    let result = Result { try database.migrate(migrations) }
                    results.withLock { $0.append(result) }
                    done.signal()
                }.start()
            }
            start.signal()
            start.signal()
            done.wait()
            done.wait()

            let applied = try results.withLock { try $0.map { try $0.get() } }
            #expect(applied.flatMap { $0 }.sorted() == [1, 2, 3, 4, 5])
            #expect(try first.integers("SELECT version FROM log ORDER BY version") == [1, 2, 3, 4, 5])
            #expect(try second.schemaVersion == 5)
        }
    }
}
