/// A value in one of SQLite's five storage classes, used to bind parameters in bulk.
///
/// Literals convert directly, so `try statement.run(42, "alice", nil, 1.5)` binds an integer,
/// a text, a `NULL` and a real to parameters 1 to 4.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// An integer, or `NULL` for `nil`.
    public init(_ value: Int64?) { self = value.map(SQLValue.integer) ?? .null }
    /// An integer, or `NULL` for `nil`.
    public init(_ value: Int?) { self = value.map { .integer(Int64($0)) } ?? .null }
    /// A real, or `NULL` for `nil`.
    public init(_ value: Double?) { self = value.map(SQLValue.real) ?? .null }
    /// A text, or `NULL` for `nil`.
    public init(_ value: String?) { self = value.map(SQLValue.text) ?? .null }
    /// A blob, or `NULL` for `nil`. An empty array is an empty blob, not `NULL`.
    public init(_ value: [UInt8]?) { self = value.map(SQLValue.blob) ?? .null }
}

extension SQLValue: ExpressibleByNilLiteral {
    /// `nil` is `NULL`.
    public init(nilLiteral: ()) { self = .null }
}

extension SQLValue: ExpressibleByIntegerLiteral {
    /// An integer literal is an ``integer(_:)``.
    public init(integerLiteral value: Int64) { self = .integer(value) }
}

extension SQLValue: ExpressibleByFloatLiteral {
    /// A floating-point literal is a ``real(_:)``.
    public init(floatLiteral value: Double) { self = .real(value) }
}

extension SQLValue: ExpressibleByStringLiteral {
    /// A string literal is a ``text(_:)``.
    public init(stringLiteral value: String) { self = .text(value) }
}
