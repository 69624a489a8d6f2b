import CSQLite

/// One step of a database schema, identified by a version that only ever grows.
public struct Migration: Sendable, Hashable {
    /// The schema version this migration produces; positive and unique within a list.
    public var version: Int
    /// A short name, recorded with the version and quoted in errors.
    public var name: String
    /// One or more `;`-separated statements. They run inside a transaction, so they must not
    /// contain `BEGIN`/`COMMIT`, nor pragmas that are no-ops in a transaction (`foreign_keys`).
    public var sql: String

    /// Creates a migration.
    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

extension Database {
    /// Brings the schema up to date by applying, in order, each migration whose version is above
    /// the stored one.
    ///
    /// Each migration runs in its own `BEGIN IMMEDIATE` transaction together with the row recording
    /// its version in `schema_migrations`, so a crash or error mid-way leaves the schema at the
    /// last fully applied version. The stored version is re-read under the write lock, so several
    /// processes migrating the same file at once apply each migration exactly once.
    ///
    /// - Parameter migrations: Every migration the program knows, in strictly increasing version order.
    /// - Returns: The versions applied by this call; empty when the schema was already current.
    /// - Throws: ``SQLiteError`` if the list is not strictly increasing, if the database was
    ///   migrated by a newer build (its version is above the newest known), or if a migration
    ///   fails — then the message names that migration and its version is not recorded.
    @discardableResult
    public func migrate(_ migrations: [Migration]) throws -> [Int] {
        var previous = 0
        for migration in migrations {
            guard migration.version > previous else {
                throw SQLiteError(
                    code: SQLITE_MISUSE,
                    message: "migration versions must be positive and strictly increasing: "
                        + "\(migration.version) ('\(migration.name)') follows \(previous)")
            }
            previous = migration.version
        }

        try execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )
            """)

        let newest = migrations.last?.version ?? 0
        let current = try storedSchemaVersion()
        // Running older code against a newer schema could silently corrupt data it does not understand.
        guard current <= newest else {
            throw SQLiteError(
                code: SQLITE_ERROR,
                message: "database schema is at version \(current), newer than this build's newest "
                    + "migration \(newest); the database was created or upgraded by a newer build")
        }

        var applied: [Int] = []
        for migration in migrations where migration.version > current {
            do {
                let didApply = try transaction {
                    // Another connection may have applied it while this one waited for the lock.
                    guard try storedSchemaVersion() < migration.version else { return false }
                    try execute(migration.sql)
                    try prepare(
                        """
                        INSERT INTO schema_migrations (version, name, applied_at)
                        VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                        """
                    ).run(.integer(Int64(migration.version)), .text(migration.name))
                    return true
                }
                if didApply { applied.append(migration.version) }
            } catch var error as SQLiteError {
                error.message = "migration \(migration.version) '\(migration.name)' failed: \(error.message)"
                throw error
            }
        }
        return applied
    }

    /// The highest migration version applied to this database, or 0 if it was never migrated.
    public var schemaVersion: Int {
        get throws {
            let exists = try prepare(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).queryOne { _ in true }
            return exists == nil ? 0 : try storedSchemaVersion()
        }
    }

    /// Reads the version from `schema_migrations`, which must exist.
    private func storedSchemaVersion() throws -> Int {
        try prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").queryOne { $0.int(0) } ?? 0
    }
}
