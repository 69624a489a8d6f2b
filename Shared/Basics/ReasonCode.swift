/// Why a record was dead-lettered or a request refused: a stable, kebab-case code that
/// consumers of the dead-letter topic and the ledger match on (docs/event-catalogue.md lists
/// them). A typed value, so that a code is declared once, beside the module that decides it,
/// and a misspelt one does not compile.
public struct ReasonCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// Codes both the runtime and the rules give.
extension ReasonCode {
    public static let keyMismatch = ReasonCode(rawValue: "key-mismatch")
    public static let memberNotRegistered = ReasonCode(rawValue: "member-not-registered")
}
