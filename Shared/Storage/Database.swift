import CSQLite

/// One SQLite connection, opened in WAL mode and tuned for a service that owns its database file.
///
/// ## Confinement
/// A connection is **not thread-safe**. It is opened with `SQLITE_OPEN_NOMUTEX`, so SQLite does no
/// locking of its own, and the statement cache is unsynchronized: at any moment exactly one thread
/// may use the connection and the statements it prepared. The class is `@unchecked Sendable` only so
/// that ownership can be *handed over*, typically once, from the thread that opens it to the service
/// thread that runs its loop; the code handing it over must stop using it.
///
/// For concurrency between processes or threads, open one connection each: WAL lets readers run
/// alongside one writer, and the busy timeout makes a second writer wait for the first.
///
/// ## Closing
/// ``close()`` finalizes every prepared statement, then closes the connection; deinit does the same.
/// Afterwards, every method that talks to SQLite throws.
public final class Database: @unchecked Sendable {
    /// The configuration the connection was opened with.
    public let configuration: DatabaseConfiguration

    // nil once closed.
    private var handle: OpaquePointer?
    // Keyed by SQL text. Every statement this connection prepares for callers lives here, which is
    // what lets `close()` finalize them all before closing the connection.
    private var statements: [String: Statement] = [:]
    /// The same statements by where their SQL text's bytes are: a literal's of more than 15
    /// bytes are always at one place, found without hashing the text (a thousand instructions
    /// for a long statement, asked for per record). A hit counts only if the text is the same.
    private var statementsByTextAddress: [UInt: Statement] = [:]
    /// How many places the cache by place holds (for tests of its bound).
    var cachedTextPlaces: Int { statementsByTextAddress.count }
    /// How many statements the connection keeps prepared.
    var cachedStatements: Int { statements.count }

    /// Opens (creating if needed) the database at `configuration.path` and configures it:
    /// WAL journal, the configured `synchronous` level, busy timeout and cache size, foreign keys
    /// enforced and temporary tables in memory.
    ///
    /// - Throws: ``SQLiteError`` if the file cannot be opened, or WAL cannot be enabled on a file.
    public init(_ configuration: DatabaseConfiguration) throws {
        self.configuration = configuration
        _ = Self.libraryConfigured
        var connection: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(configuration.path, &connection, flags, nil)
        guard rc == SQLITE_OK, let connection else {
            let error = SQLiteError(
                connection: connection, code: rc, sql: nil,
                context: "cannot open database at '\(configuration.path)'")
            // SQLite usually returns a connection even on failure, and it must still be released.
            sqlite3_close_v2(connection)
            throw error
        }
        handle = connection
        do {
            try configure(connection)
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
    }

    /// Configures the library once, before the first connection initializes it: without
    /// memory statistics, which serialize every allocation of every connection on one global
    /// mutex (two threads writing two stores ran no faster than one thread writing one).
    private static let libraryConfigured: Bool = csqlite_disable_memory_statistics() == SQLITE_OK

    private func configure(_ connection: OpaquePointer) throws {
        guard configuration.cacheSizeKiB >= 0 else {
            throw SQLiteError(
                code: SQLITE_MISUSE, message: "cacheSizeKiB must not be negative (got \(configuration.cacheSizeKiB))")
        }
        let pageSize = configuration.pageSize
        guard (512...65_536).contains(pageSize), pageSize & (pageSize - 1) == 0 else {
            throw SQLiteError(
                code: SQLITE_MISUSE, message: "pageSize must be a power of two from 512 to 65536 (got \(pageSize))")
        }
        // First, so that switching the journal mode already waits for other connections' locks.
        let rc = sqlite3_busy_timeout(connection, configuration.busyTimeoutMilliseconds)
        guard rc == SQLITE_OK else { throw SQLiteError(connection: connection, code: rc, sql: nil) }
        // Before the journal mode: a file in WAL mode keeps its page size. SQLite applies it only
        // to a file with no pages yet, and ignores it for any other.
        try execute("PRAGMA page_size = \(pageSize)")

        // journal_mode answers with the mode actually in force; it stays on the old one (silently)
        // when, for example, the file system cannot provide the shared memory WAL needs.
        // Two processes opening a new file at once: the one that does not get to switch the
        // journal is told SQLITE_BUSY without the busy handler being asked, so wait here.
        var journal: String?
        var waited: Int32 = 0
        while true {
            do {
                journal = try withTemporaryStatement("PRAGMA journal_mode = WAL") { try $0.queryOne { $0.string(0) } }
                break
            } catch let error as SQLiteError where error.code == SQLITE_BUSY && waited < configuration.busyTimeoutMilliseconds {
                sqlite3_sleep(20)
                waited += 20
            }
        }
        if journal != "wal" && !configuration.isTransient {
            throw SQLiteError(
                code: SQLITE_ERROR,
                message: "could not enable WAL journal mode on '\(configuration.path)' (still \(journal ?? "unknown"))",
                sql: "PRAGMA journal_mode = WAL")
        }
        try execute(
            """
            PRAGMA synchronous = \(configuration.synchronous.rawValue);
            PRAGMA foreign_keys = ON;
            PRAGMA cache_size = -\(configuration.cacheSizeKiB);
            PRAGMA temp_store = MEMORY;
            """)
    }

    /// Finalizes every prepared statement and closes the connection. Safe to call more than once.
    public func close() {
        guard let handle else { return }
        // Statements must go first; otherwise close_v2 would leave a zombie connection behind.
        for statement in statements.values {
            statement.finalize()
        }
        statements.removeAll()
        statementsByTextAddress.removeAll()
        // close_v2 cannot fail once every statement is finalized.
        sqlite3_close_v2(handle)
        self.handle = nil
    }

    /// The open connection, for the module's own use of SQLite's C API (sessions).
    func connection(for sql: String? = nil) throws -> OpaquePointer {
        guard let handle else { throw SQLiteError.closed(sql) }
        return handle
    }

    // MARK: Running SQL

    /// Runs one or more `;`-separated statements that return no results, such as DDL or pragmas.
    ///
    /// Each call compiles the SQL anew; for statements run repeatedly, use ``prepare(_:)``.
    ///
    /// - Throws: ``SQLiteError`` naming the SQL; statements before the failing one stay applied
    ///   unless the call is wrapped in ``transaction(_:)``.
    public func execute(_ sql: String) throws {
        let connection = try connection(for: sql)
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(connection, sql, nil, nil, &errorMessage)
        guard rc != SQLITE_OK else { return }
        defer { sqlite3_free(errorMessage) }
        let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
        throw SQLiteError(code: rc, extendedCode: sqlite3_extended_errcode(connection), message: message, sql: sql)
    }

    /// Returns the prepared statement for `sql`, compiling it on first use and caching it for the
    /// lifetime of the connection.
    ///
    /// Asking again for the same SQL text returns the same ``Statement``, reset to its start with
    /// all parameters set to `NULL`, whatever state it was left in. So a statement must not be
    /// re-prepared while it is still being iterated (e.g. from inside its own `query` closure).
    /// Because the cache keeps every distinct text, pass values as parameters rather than
    /// splicing them into the SQL.
    ///
    /// - Parameter sql: Exactly one SQL statement; a trailing `;` and comments are allowed.
    /// - Throws: ``SQLiteError`` for a syntax error, an unknown table or column, or more (or less)
    ///   than one statement.
    public func prepare(_ sql: String) throws -> Statement {
        // A text of up to 15 bytes is held in the string itself, and handed out from a copy on
        // the stack: its address says nothing, and its hash is cheap.
        let address = sql.utf8.count > 15 ? sql.utf8.withContiguousStorageIfAvailable { UInt(bitPattern: $0.baseAddress) } ?? 0 : 0
        if address != 0, let cached = statementsByTextAddress[address], cached.sql == sql {
            return reused(cached)
        }
        let statement: Statement
        if let cached = statements[sql] {
            statement = reused(cached)
        } else {
            // PERSISTENT: the statement lives as long as the connection, so SQLite should not
            // take its memory from the lookaside pool meant for short-lived allocations.
            statement = try compile(sql, flags: UInt32(SQLITE_PREPARE_PERSISTENT))
            statements[sql] = statement
        }
        if address != 0 {
            // Texts built at run time come at ever new places: the map is kept to at most twice
            // the statements' number (and 64), so that those cannot grow it.
            if statementsByTextAddress.count >= 2 * statements.count + 64 { statementsByTextAddress.removeAll(keepingCapacity: true) }
            statementsByTextAddress[address] = statement
        }
        return statement
    }

    /// A cached statement back at its start, its parameters `NULL`.
    private func reused(_ statement: Statement) -> Statement {
        statement.reset()
        statement.clearBindings()
        return statement
    }

    /// Compiles `sql` into a statement that is not cached and is finalized when it is released.
    func withTemporaryStatement<T>(_ sql: String, _ body: (Statement) throws -> T) throws -> T {
        try body(compile(sql, flags: 0))
    }

    private func compile(_ sql: String, flags: UInt32) throws -> Statement {
        let connection = try connection(for: sql)
        return try sql.withCString { text in
            var handle: OpaquePointer?
            var tail: UnsafePointer<CChar>?
            let rc = sqlite3_prepare_v3(connection, text, -1, flags, &handle, &tail)
            guard rc == SQLITE_OK else { throw SQLiteError(connection: connection, code: rc, sql: sql) }
            guard let handle else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "the SQL contains no statement", sql: sql)
            }
            // Owning the handle at once finalizes it on every exit below.
            let statement = Statement(handle: handle, sql: sql)
            // Whatever follows must be whitespace or comments, which compile to no statement;
            // otherwise anything after the first statement would be silently ignored.
            if let tail, tail.pointee != 0 {
                var extra: OpaquePointer?
                let rc = sqlite3_prepare_v3(connection, tail, -1, 0, &extra, nil)
                guard rc == SQLITE_OK else { throw SQLiteError(connection: connection, code: rc, sql: sql) }
                if let extra {
                    sqlite3_finalize(extra)
                    throw SQLiteError(
                        code: SQLITE_MISUSE,
                        message: "prepare accepts a single statement; use execute(_:) for several", sql: sql)
                }
            }
            return statement
        }
    }

    // MARK: Transactions

    /// Runs `body` in a write transaction: `BEGIN IMMEDIATE`, then `COMMIT`, or `ROLLBACK` if `body`
    /// (or the commit) throws, in which case the original error is rethrown.
    ///
    /// `IMMEDIATE` takes the write lock up front, so a conflicting writer waits for the busy timeout
    /// at `BEGIN` instead of failing halfway through with a read snapshot it cannot upgrade.
    ///
    /// Transactions do not nest: calling this while a transaction is open on the connection (from
    /// `body`, or after a manual `BEGIN`) throws `SQLITE_MISUSE` without touching the open one.
    ///
    /// - Throws: The error thrown by `body`, or ``SQLiteError`` if the transaction cannot begin
    ///   (`SQLITE_BUSY` once the busy timeout has passed) or commit.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        guard !isInTransaction else {
            throw SQLiteError(
                code: SQLITE_MISUSE, message: "transactions cannot be nested: one is already open on this connection",
                sql: "BEGIN IMMEDIATE")
        }
        try prepare("BEGIN IMMEDIATE").step()
        let result: T
        do {
            result = try body()
            try prepare("COMMIT").step()
        } catch {
            rollbackIfNeeded()
            throw error
        }
        return result
    }

    private func rollbackIfNeeded() {
        // Some errors (e.g. SQLITE_FULL) already rolled the transaction back, and a failed COMMIT
        // may have left it open; only roll back what is still open.
        guard isInTransaction else { return }
        // A failed rollback cannot be handled better than by reporting the error that caused it.
        _ = try? prepare("ROLLBACK").step()
    }

    // MARK: Connection state

    /// The rowid of the most recent successful `INSERT` on this connection, or 0.
    public var lastInsertRowID: Int64 {
        handle.map(sqlite3_last_insert_rowid) ?? 0
    }

    /// The number of rows changed by the most recent `INSERT`, `UPDATE` or `DELETE`.
    public var changes: Int {
        handle.map { Int(sqlite3_changes64($0)) } ?? 0
    }

    /// Whether a transaction is open on this connection.
    public var isInTransaction: Bool {
        handle.map { sqlite3_get_autocommit($0) == 0 } ?? false
    }
}
