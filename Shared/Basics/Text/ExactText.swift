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

/// A dictionary keyed by ids as their bytes (``ExactText``), read and written with `String`s:
/// what a member's state keeps by order or refund id, so that two lookalike ids are two
/// entries there as they are two rows in the tables the state overflows into.
public struct IDDictionary<Value>: Sequence, ExpressibleByDictionaryLiteral {
    private var storage: [ExactText: Value]

    public init() { storage = [:] }

    public init(dictionaryLiteral elements: (String, Value)...) {
        storage = Dictionary(elements.map { (ExactText($0.0), $0.1) }) { $1 }
    }

    public subscript(id: String) -> Value? {
        get { storage[ExactText(id)] }
        set { storage[ExactText(id)] = newValue }
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    /// The ids, in no particular order.
    public var ids: [String] { storage.keys.map(\.text) }
    /// The values, in no particular order.
    public var values: [Value] { Array(storage.values) }

    @discardableResult
    public mutating func removeValue(forID id: String) -> Value? {
        storage.removeValue(forKey: ExactText(id))
    }

    /// The entries in their ids' order (``ExactText``'s: `String`'s, lookalikes by their bytes).
    public func sortedByID() -> [(key: String, value: Value)] {
        storage.sorted { $0.key < $1.key }.map { (key: $0.key.text, value: $0.value) }
    }

    public func makeIterator() -> some IteratorProtocol<(key: String, value: Value)> {
        storage.lazy.map { (key: $0.key.text, value: $0.value) }.makeIterator()
    }
}

extension IDDictionary: Equatable where Value: Equatable {}
extension IDDictionary: Sendable where Value: Sendable {}

/// A set of ids as their bytes (``ExactText``), with `String`s in and out.
public struct IDSet: Sequence, Equatable, Sendable, ExpressibleByArrayLiteral {
    private var storage: Set<ExactText>

    public init() { storage = [] }

    public init(_ ids: some Sequence<String>) { storage = Set(ids.lazy.map(ExactText.init)) }

    public init(arrayLiteral ids: String...) { self.init(ids) }

    public func contains(_ id: String) -> Bool { storage.contains(ExactText(id)) }

    @discardableResult
    public mutating func insert(_ id: String) -> Bool { storage.insert(ExactText(id)).inserted }

    @discardableResult
    public mutating func remove(_ id: String) -> Bool { storage.remove(ExactText(id)) != nil }

    public mutating func subtract(_ other: IDSet) { storage.subtract(other.storage) }

    public mutating func formUnion(_ ids: some Sequence<String>) { storage.formUnion(ids.lazy.map(ExactText.init)) }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }

    /// The ids in ``ExactText``'s order.
    public func sorted() -> [String] { storage.sorted().map(\.text) }

    public func makeIterator() -> some IteratorProtocol<String> {
        storage.lazy.map(\.text).makeIterator()
    }
}
