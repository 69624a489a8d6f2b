import CSQLite

/// Tells SQLite to copy bound text and blobs before the bind call returns: the Swift buffers
/// they come from are only valid inside `withCString`/`withUnsafeBytes`.
private var transientDestructor: sqlite3_destructor_type {
    unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
}

/// A prepared statement, obtained from ``Database/prepare(_:)``.
///
/// Parameters are bound by position, starting at 1; columns are read by position, starting at 0.
/// The usual way to run a statement is `run(_:)`, `query(_:row:)` or `queryOne(_:row:)`, which bind,
/// step and reset in one call:
///
/// ```swift
/// let insert = try db.prepare("INSERT INTO account(id, name) VALUES (?, ?)")
/// try insert.run(.integer(id), .text(name))
/// let names = try db.prepare("SELECT name FROM account ORDER BY id").query { $0.string(0) }
/// ```
///
/// ## Binding errors
/// The `bind` methods do not throw, so that binding stays cheap and terse. A failed bind (a parameter
/// index out of range, or a finalized statement) is remembered and thrown by the next ``step()``,
/// until ``clearBindings()`` discards it together with the bindings.
///
/// ## Confinement
/// A statement belongs to its ``Database`` and follows the same rule: use it only from the thread
/// that currently owns that connection. See ``Database`` for why it is `@unchecked Sendable`.
public final class Statement: @unchecked Sendable {
    /// The SQL text this statement was prepared from.
    public let sql: String

    // nil once finalized, which only happens when the owning connection closes (or on deinit).
    private var handle: OpaquePointer?
    // The first bind failure since the bindings were last cleared; thrown by `step()`.
    private var bindError: SQLiteError?

    init(handle: OpaquePointer, sql: String) {
        self.handle = handle
        self.sql = sql
    }

    deinit {
        finalize()
    }

    /// Releases the compiled statement. Safe to call more than once.
    func finalize() {
        guard let handle else { return }
        // The result only repeats the error of the last step, which was already reported.
        sqlite3_finalize(handle)
        self.handle = nil
    }

    // MARK: Stepping

    /// Advances to the next row.
    ///
    /// - Returns: `true` when a row is available to read, `false` when the statement has finished.
    /// - Throws: ``SQLiteError`` carrying this statement's SQL, including a pending bind failure.
    ///   The statement is reset after a failure, so it can be bound and run again.
    @discardableResult
    public func step() throws -> Bool {
        guard let handle else { throw SQLiteError.finalized(sql) }
        if let bindError { throw bindError }
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW:
            return true
        case SQLITE_DONE:
            return false
        default:
            // Read the message before resetting: reset may overwrite the connection's error state.
            let error = SQLiteError(connection: sqlite3_db_handle(handle), code: rc, sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Rewinds the statement so that it can be stepped again from the start. Bindings are kept.
    public func reset() {
        guard let handle else { return }
        // The result only repeats the error of the last step, which was already reported.
        sqlite3_reset(handle)
    }

    /// Sets every parameter back to `NULL` and discards a pending bind failure.
    public func clearBindings() {
        bindError = nil
        guard let handle else { return }
        sqlite3_clear_bindings(handle)
    }

    /// Binds the given values to parameters 1 through `values.count` and runs the statement to
    /// completion, discarding any rows. The statement is reset afterwards, also on failure.
    ///
    /// With no values, runs with the parameters as they are currently bound.
    ///
    /// - Throws: ``SQLiteError``; when values are given, also if their count differs from the
    ///   statement's parameter count.
    public func run(_ values: SQLValue...) throws {
        try run(values)
    }

    /// Binds the given values to parameters 1 through `values.count` and runs the statement to
    /// completion, discarding any rows. The statement is reset afterwards, also on failure.
    ///
    /// With no values, runs with the parameters as they are currently bound.
    public func run(_ values: [SQLValue]) throws {
        try rebind(values)
        defer { reset() }
        while try step() {}
    }

    /// Binds the given values, maps every result row with `row`, and resets the statement
    /// afterwards, also when `row` or a step throws.
    ///
    /// With no values, runs with the parameters as they are currently bound.
    ///
    /// - Parameter row: Reads the current row from the statement passed to it. It must not step,
    ///   reset or re-prepare this statement.
    public func query<T>(_ values: SQLValue..., row: (Statement) throws -> T) throws -> [T] {
        try query(values, row: row)
    }

    /// Binds the given values, maps every result row with `row`, and resets the statement
    /// afterwards, also when `row` or a step throws.
    public func query<T>(_ values: [SQLValue], row: (Statement) throws -> T) throws -> [T] {
        try rebind(values)
        defer { reset() }
        var rows: [T] = []
        while try step() {
            rows.append(try row(self))
        }
        return rows
    }

    /// Binds the given values and maps the first result row with `row`, or returns `nil` when
    /// there is none. Further rows are ignored. The statement is reset afterwards.
    public func queryOne<T>(_ values: SQLValue..., row: (Statement) throws -> T) throws -> T? {
        try queryOne(values, row: row)
    }

    /// Binds the given values and maps the first result row with `row`, or returns `nil` when
    /// there is none. Further rows are ignored. The statement is reset afterwards.
    public func queryOne<T>(_ values: [SQLValue], row: (Statement) throws -> T) throws -> T? {
        try rebind(values)
        defer { reset() }
        return try step() ? row(self) : nil
    }

    /// Rewinds and, when values are given, replaces every binding with them.
    private func rebind(_ values: [SQLValue]) throws {
        guard let handle else { throw SQLiteError.finalized(sql) }
        sqlite3_reset(handle)
        guard !values.isEmpty else { return }
        // A miscounted argument list is a bug SQLite would hide by binding NULL to the rest.
        let expected = sqlite3_bind_parameter_count(handle)
        guard values.count == Int(expected) else {
            throw SQLiteError(
                code: SQLITE_RANGE,
                message: "expected \(expected) parameter values, got \(values.count)", sql: sql)
        }
        // Every parameter is bound again below, so clearing them first (a pass over all of
        // them in SQLite) would only cost time; a failure of the last binding is forgotten.
        bindError = nil
        bind(values)
    }

    // MARK: Binding

    /// The number of parameters, which is the largest parameter index.
    public var parameterCount: Int32 {
        handle.map(sqlite3_bind_parameter_count) ?? 0
    }

    /// Binds an integer to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: Int64) {
        guard let handle = boundHandle() else { return }
        check(sqlite3_bind_int64(handle, index, value), index)
    }

    /// Binds an integer to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: Int) {
        bind(index, Int64(value))
    }

    /// Binds a real to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: Double) {
        guard let handle = boundHandle() else { return }
        check(sqlite3_bind_double(handle, index, value), index)
    }

    /// Binds UTF-8 text to the parameter at `index` (1-based). SQLite copies the bytes.
    public func bind(_ index: Int32, _ value: String) {
        guard let handle = boundHandle() else { return }
        // The explicit byte length keeps embedded NULs; `withCString` never yields a nil pointer,
        // so an empty string binds as empty text rather than NULL.
        let length = sqlite3_uint64(value.utf8.count)
        let rc = value.withCString { text in
            sqlite3_bind_text64(handle, index, text, length, transientDestructor, UInt8(SQLITE_UTF8))
        }
        check(rc, index)
    }

    /// Binds a blob to the parameter at `index` (1-based). SQLite copies the bytes.
    /// An empty array binds an empty blob, not `NULL`.
    public func bind(_ index: Int32, _ value: [UInt8]) {
        guard let handle = boundHandle() else { return }
        let rc: Int32
        if value.isEmpty {
            // An empty array may have no base address, and a NULL pointer would bind NULL.
            rc = sqlite3_bind_zeroblob(handle, index, 0)
        } else {
            rc = value.withUnsafeBytes { bytes in
                sqlite3_bind_blob64(
                    handle, index, bytes.baseAddress, sqlite3_uint64(bytes.count), transientDestructor)
            }
        }
        check(rc, index)
    }

    /// Binds `NULL` to the parameter at `index` (1-based).
    public func bindNull(_ index: Int32) {
        guard let handle = boundHandle() else { return }
        check(sqlite3_bind_null(handle, index), index)
    }

    /// Binds an integer, or `NULL` for `nil`, to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: Int64?) {
        if let value { bind(index, value) } else { bindNull(index) }
    }

    /// Binds text, or `NULL` for `nil`, to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: String?) {
        if let value { bind(index, value) } else { bindNull(index) }
    }

    /// Binds a blob, or `NULL` for `nil`, to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: [UInt8]?) {
        if let value { bind(index, value) } else { bindNull(index) }
    }

    /// Binds a value of any storage class to the parameter at `index` (1-based).
    public func bind(_ index: Int32, _ value: SQLValue) {
        switch value {
        case .null: bindNull(index)
        case .integer(let integer): bind(index, integer)
        case .real(let real): bind(index, real)
        case .text(let text): bind(index, text)
        case .blob(let bytes): bind(index, bytes)
        }
    }

    /// Binds the values to parameters 1 through `values.count`, leaving any further parameters as
    /// they were.
    ///
    /// Note that `bind(1, "x")` with exactly two arguments and an integer first binds `"x"` to
    /// parameter 1; pass an array, or use `run(_:)`/`query(_:row:)`, to bind a list.
    public func bind(_ values: SQLValue...) {
        bind(values)
    }

    /// Binds the values to parameters 1 through `values.count`, leaving any further parameters as
    /// they were.
    public func bind(_ values: [SQLValue]) {
        for (offset, value) in values.enumerated() {
            bind(Int32(offset + 1), value)
        }
    }

    private func boundHandle() -> OpaquePointer? {
        if handle == nil, bindError == nil { bindError = .finalized(sql) }
        return handle
    }

    @inline(__always)
    private func check(_ rc: Int32, _ index: Int32) {
        guard rc != SQLITE_OK, bindError == nil else { return }
        bindError = SQLiteError(
            connection: sqlite3_db_handle(handle), code: rc, sql: sql, context: "binding parameter \(index)")
    }

    // MARK: Reading columns

    // Readers take the current row, so they are only meaningful after `step()` returned `true`.
    // SQLite converts between storage classes as documented for `sqlite3_column_*`; a column
    // index out of range reads as NULL.

    /// The number of columns in each result row.
    public var columnCount: Int32 {
        handle.map(sqlite3_column_count) ?? 0
    }

    /// The name of the result column at `column` (0-based), as given by `AS` or the source.
    public func columnName(_ column: Int32) -> String {
        // Unlike the value readers, sqlite3_column_name does not tolerate a finalized (NULL) handle.
        guard let handle, let name = sqlite3_column_name(handle, column) else { return "" }
        return String(cString: name)
    }

    /// Whether the value at `column` (0-based) is `NULL`.
    public func isNull(_ column: Int32) -> Bool {
        sqlite3_column_type(handle, column) == SQLITE_NULL
    }

    /// The value at `column` (0-based) as an integer; `NULL` reads as 0.
    public func int64(_ column: Int32) -> Int64 {
        sqlite3_column_int64(handle, column)
    }

    /// The value at `column` (0-based) as an `Int`; `NULL` reads as 0.
    public func int(_ column: Int32) -> Int {
        Int(sqlite3_column_int64(handle, column))
    }

    /// The value at `column` (0-based) as a real; `NULL` reads as 0.
    public func double(_ column: Int32) -> Double {
        sqlite3_column_double(handle, column)
    }

    /// The value at `column` (0-based) as text; `NULL` reads as `""`.
    public func string(_ column: Int32) -> String {
        // Ask for the pointer before the length: the length is of the UTF-8 form just produced.
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    /// The value at `column` (0-based) as a blob; `NULL` reads as `[]`.
    public func blob(_ column: Int32) -> [UInt8] {
        // A zero-length blob comes back as a NULL pointer, hence pointer first, then length.
        guard let bytes = sqlite3_column_blob(handle, column) else { return [] }
        let count = Int(sqlite3_column_bytes(handle, column))
        return [UInt8](UnsafeRawBufferPointer(start: bytes, count: count))
    }

    /// The value at `column` (0-based) as an integer, or `nil` for `NULL`.
    public func optionalInt64(_ column: Int32) -> Int64? {
        isNull(column) ? nil : int64(column)
    }

    /// The value at `column` (0-based) as text, or `nil` for `NULL`.
    public func optionalString(_ column: Int32) -> String? {
        isNull(column) ? nil : string(column)
    }

    /// The value at `column` (0-based) as a blob, or `nil` for `NULL`.
    public func optionalBlob(_ column: Int32) -> [UInt8]? {
        isNull(column) ? nil : blob(column)
    }

    /// The value at `column` (0-based) in its own storage class.
    public func value(_ column: Int32) -> SQLValue {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_INTEGER: .integer(int64(column))
        case SQLITE_FLOAT: .real(double(column))
        case SQLITE_TEXT: .text(string(column))
        case SQLITE_BLOB: .blob(blob(column))
        default: .null
        }
    }
}
