import CSQLite

/// An error reported by SQLite, or by this module when a connection is used in a way it cannot honour.
///
/// Errors carry SQLite's result code and message, plus the SQL text when a statement was involved,
/// so a log line alone is enough to tell which query failed and why.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The primary result code, e.g. `SQLITE_BUSY` (5) or `SQLITE_CONSTRAINT` (19).
    public var code: Int32
    /// The extended result code, e.g. `SQLITE_CONSTRAINT_UNIQUE` (2067); equal to ``code`` when there is none.
    public var extendedCode: Int32
    /// SQLite's message, or this module's explanation for errors it raises itself.
    public var message: String
    /// The SQL being prepared or run when the error occurred, if any.
    public var sql: String?

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: A SQLite result code; an extended code is reduced to its primary code.
    ///   - extendedCode: The extended result code; defaults to `code`.
    ///   - message: A human-readable explanation.
    ///   - sql: The SQL involved, if any.
    public init(code: Int32, extendedCode: Int32? = nil, message: String, sql: String? = nil) {
        // Extended codes keep the primary code in their low byte.
        self.code = code & 0xFF
        self.extendedCode = extendedCode ?? code
        self.message = message
        self.sql = sql
    }

    /// `true` when another connection held a conflicting lock for longer than the busy timeout.
    public var isBusy: Bool { code == SQLITE_BUSY }

    /// `true` for `UNIQUE`, `NOT NULL`, `CHECK`, `FOREIGN KEY` and primary-key violations.
    public var isConstraintViolation: Bool { code == SQLITE_CONSTRAINT }

    /// The codes, the message and the SQL on one line, for logs.
    public var description: String {
        var text = "SQLite error \(code)"
        if extendedCode != code { text += " (extended \(extendedCode))" }
        text += ": \(message)"
        if let sql { text += " — SQL: \(sql)" }
        return text
    }
}

extension SQLiteError {
    /// Builds an error from the connection's current error state, which SQLite sets on every failing call.
    init(connection: OpaquePointer?, code: Int32, sql: String?, context: String? = nil) {
        let reason: String
        let extended: Int32
        if let connection {
            reason = String(cString: sqlite3_errmsg(connection))
            extended = sqlite3_extended_errcode(connection)
        } else {
            // No connection (e.g. out of memory while opening): only the generic text exists.
            reason = String(cString: sqlite3_errstr(code))
            extended = code
        }
        self.init(
            code: code, extendedCode: extended,
            message: context.map { "\($0): \(reason)" } ?? reason, sql: sql)
    }

    static func closed(_ sql: String?) -> SQLiteError {
        SQLiteError(code: SQLITE_MISUSE, message: "the database connection is closed", sql: sql)
    }

    static func finalized(_ sql: String) -> SQLiteError {
        SQLiteError(
            code: SQLITE_MISUSE, message: "the statement was finalized because its database was closed", sql: sql)
    }
}
