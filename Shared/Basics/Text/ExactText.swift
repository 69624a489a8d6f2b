/// A string that is equal only to the same bytes, and ordered by its bytes, as SQLite's `TEXT`
/// keys and Kafka's record keys are.
///
/// Swift's `String` compares canonically: "é" as one scalar and "e" followed by a combining
/// accent are one `String` but two rows, two record keys and two members. An in-memory map
/// keyed by `String` merges what the store keeps apart, so a member's cached state could be
/// another's, depending on which records a batch happened to hold. Keyed by `ExactText`, a map
/// keeps them apart as the store does. (For text in Unicode's NFC, all the platform asks for,
/// the bytes' order is `String`'s.)
public struct ExactText: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let text: String

    @inlinable
    public init(_ text: String) { self.text = text }

    @inlinable
    public static func == (left: ExactText, right: ExactText) -> Bool {
        left.text.isExactly(right.text)
    }

    // Equal bytes are canonically equivalent too, so `String`'s hash serves.
    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(text)
    }

    @inlinable
    public static func < (left: ExactText, right: ExactText) -> Bool {
        left.text.exactlyPrecedes(right.text)
    }

    public var description: String { text }
}

extension String {
    /// Whether the two are the same bytes (not only canonically equivalent).
    @inlinable
    public func isExactly(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        return compareBytes(with: other) == 0
    }

    /// Whether the text's bytes sort before `other`'s (SQLite's `BINARY` order).
    @inlinable
    public func exactlyPrecedes(_ other: String) -> Bool {
        compareBytes(with: other) < 0
    }

    /// The bytes' lexicographic order against `other`'s: negative, zero or positive. Native
    /// strings hand out their UTF-8 in place; anything else is read through its view.
    @inlinable
    func compareBytes(with other: String) -> Int {
        let compared = utf8.withContiguousStorageIfAvailable { left in
            other.utf8.withContiguousStorageIfAvailable { right -> Int in
                for index in 0..<Swift.min(left.count, right.count) where left[index] != right[index] {
                    return left[index] < right[index] ? -1 : 1
                }
                return left.count - right.count
            }
        }
        if let compared = compared ?? nil { return compared }
        if utf8.elementsEqual(other.utf8) { return 0 }
        return utf8.lexicographicallyPrecedes(other.utf8) ? -1 : 1
    }
}

/// A dictionary keyed by ids as their bytes (``ExactText``), read and written with `String`s:
/// what a member's state keeps by order or refund id, so that two lookalike ids are two
/// entries there as they are two rows in the tables the state overflows into.
public struct IDDictionary<Value>: Sequence, ExpressibleByDictionaryLiteral {
    @usableFromInline var storage: [ExactText: Value]

    @inlinable
    public init() { storage = [:] }

    @inlinable
    public init(dictionaryLiteral elements: (String, Value)...) {
        storage = Dictionary(uniqueKeysWithValues: elements.map { (ExactText($0.0), $0.1) })
    }

    @inlinable
    public subscript(id: String) -> Value? {
        get { storage[ExactText(id)] }
        set { storage[ExactText(id)] = newValue }
    }

    @inlinable
    public var count: Int { storage.count }
    @inlinable
    public var isEmpty: Bool { storage.isEmpty }
    /// The ids, in no particular order.
    @inlinable
    public var ids: [String] { storage.keys.map(\.text) }
    /// The values, in no particular order.
    @inlinable
    public var values: [Value] { Array(storage.values) }

    @inlinable
    @discardableResult
    public mutating func removeValue(forID id: String) -> Value? {
        storage.removeValue(forKey: ExactText(id))
    }

    /// The entries in their ids' order (``ExactText``'s: their bytes').
    @inlinable
    public func sortedByID() -> [(key: String, value: Value)] {
        storage.sorted { $0.key < $1.key }.map { (key: $0.key.text, value: $0.value) }
    }

    @inlinable
    public func makeIterator() -> some IteratorProtocol<(key: String, value: Value)> {
        storage.lazy.map { (key: $0.key.text, value: $0.value) }.makeIterator()
    }
}

extension IDDictionary: Equatable where Value: Equatable {}
extension IDDictionary: Sendable where Value: Sendable {}

/// A set of ids as their bytes (``ExactText``), with `String`s in and out.
public struct IDSet: Sequence, Equatable, Sendable, ExpressibleByArrayLiteral {
    @usableFromInline var storage: Set<ExactText>

    @inlinable
    public init() { storage = [] }

    @inlinable
    public init(_ ids: some Sequence<String>) { storage = Set(ids.lazy.map(ExactText.init)) }

    @inlinable
    public init(arrayLiteral ids: String...) { self.init(ids) }

    @inlinable
    public func contains(_ id: String) -> Bool { storage.contains(ExactText(id)) }

    @inlinable
    @discardableResult
    public mutating func insert(_ id: String) -> Bool { storage.insert(ExactText(id)).inserted }

    @inlinable
    @discardableResult
    public mutating func remove(_ id: String) -> Bool { storage.remove(ExactText(id)) != nil }

    @inlinable
    public mutating func subtract(_ other: IDSet) { storage.subtract(other.storage) }

    @inlinable
    public mutating func formUnion(_ ids: some Sequence<String>) { storage.formUnion(ids.lazy.map(ExactText.init)) }

    @inlinable
    public var count: Int { storage.count }
    @inlinable
    public var isEmpty: Bool { storage.isEmpty }

    /// The ids in ``ExactText``'s order.
    @inlinable
    public func sorted() -> [String] { storage.sorted().map(\.text) }

    @inlinable
    public func makeIterator() -> some IteratorProtocol<String> {
        storage.lazy.map(\.text).makeIterator()
    }
}
