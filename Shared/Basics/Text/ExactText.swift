/// A string that is equal only to the same bytes, as SQLite's `TEXT` keys and Kafka's record
/// keys are.
///
/// Swift's `String` compares canonically: "é" as one scalar and "e" followed by a combining
/// accent are one `String` but two rows, two record keys and two members. An in-memory map
/// keyed by `String` merges what the store keeps apart, so a member's cached state could be
/// another's, depending on which records a batch happened to hold. Keyed by `ExactText`, a map
/// keeps them apart as the store does.
public struct ExactText: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let text: String

    public init(_ text: String) { self.text = text }

    // Equal bytes are canonically equivalent too, so the `String` hash serves, and its
    // comparison (fast on the ASCII of nearly every id) rules most pairs out before the bytes.
    public static func == (left: ExactText, right: ExactText) -> Bool {
        left.text == right.text && left.text.utf8.elementsEqual(right.text.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(text)
    }

    /// `String`'s order, then, between canonically equivalent texts, their bytes': a total
    /// order, the same as `String`'s for texts that are not lookalikes.
    public static func < (left: ExactText, right: ExactText) -> Bool {
        left.text.exactlyPrecedes(right.text)
    }

    public var description: String { text }
}

extension String {
    /// Whether the two are the same bytes (not only canonically equivalent).
    public func isExactly(_ other: String) -> Bool {
        self == other && utf8.elementsEqual(other.utf8)
    }

    /// `String`'s order, with canonically equivalent texts ordered by their bytes.
    public func exactlyPrecedes(_ other: String) -> Bool {
        self == other ? utf8.lexicographicallyPrecedes(other.utf8) : self < other
    }
}
