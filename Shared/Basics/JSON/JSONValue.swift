/// A JSON document as an immutable value tree.
///
/// Numbers keep their literal text rather than being converted to `Double`:
/// money and points are exact integers or decimals, and a binary float would
/// silently round them. Use ``int64Value`` or ``tenthsValue`` to read a number
/// exactly, and get `nil` when it is not representable.
public enum JSONValue: Sendable, Equatable {
    /// The literal `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, as the exact literal text that appeared in the input (e.g. `"12"`, `"-3.50"`, `"1e3"`).
    ///
    /// The parser only produces texts that match the RFC 8259 number grammar;
    /// when you construct one yourself, the text must match it too.
    case number(String)
    /// A string, with all escapes decoded.
    case string(String)
    /// An array, in document order.
    case array([JSONValue])
    /// An object, with its members in document order.
    case object(JSONObject)
}

/// One `"key": value` pair of a ``JSONObject``.
public struct JSONMember: Sendable, Equatable {
    /// The member's name.
    public var key: String
    /// The member's value.
    public var value: JSONValue

    /// Creates a member.
    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// A JSON object whose members keep their order, so that writing it is deterministic.
///
/// Lookup is a linear scan: the objects in events and configuration have a
/// handful of members, where a scan beats hashing. Equality is order-sensitive,
/// matching the serialized bytes.
public struct JSONObject: Sendable, Equatable {
    /// The members in order. Keys are expected to be unique; the parser guarantees it,
    /// and the subscript setter preserves it.
    public var members: [JSONMember]

    /// Creates an object from members, which should have unique keys.
    public init(_ members: [JSONMember] = []) {
        self.members = members
    }

    /// Creates an object from key-value pairs, keeping their order.
    ///
    /// - Precondition: The keys are unique.
    public init(_ pairs: KeyValuePairs<String, JSONValue>) {
        self.init(literalPairs: pairs.map { ($0.key, $0.value) })
    }

    /// Builds an object from a literal, whose duplicate keys are a programming error
    /// (as they are for `Dictionary` literals).
    fileprivate init(literalPairs: [(String, JSONValue)]) {
        self.members = []
        members.reserveCapacity(literalPairs.count)
        for (key, value) in literalPairs {
            precondition(self[key] == nil, "duplicate key \"\(key)\" in JSON object literal")
            members.append(JSONMember(key: key, value: value))
        }
    }

    /// The value for `key`, or `nil` when there is no such member.
    ///
    /// Setting a value replaces an existing member in place or appends a new one;
    /// setting `nil` removes the member. (To store JSON `null`, set `.null`.)
    public subscript(key: String) -> JSONValue? {
        get {
            Self.index(ofKey: key, in: members).map { members[$0].value }
        }
        set {
            if let index = Self.index(ofKey: key, in: members) {
                if let newValue {
                    members[index].value = newValue
                } else {
                    members.remove(at: index)
                }
            } else if let newValue {
                members.append(JSONMember(key: key, value: newValue))
            }
        }
    }
}

extension JSONObject {
    /// Where `key` is among `members`, found by a scan (objects are small). Most keys differ in
    /// length, which is cheaper to compare than their text.
    static func index(ofKey key: String, in members: [JSONMember]) -> Int? {
        let length = key.utf8.count
        return members.firstIndex { $0.key.utf8.count == length && $0.key == key }
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// Creates an object from a dictionary literal, keeping the literal's order.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(literalPairs: elements)
    }
}

// MARK: - Literals and constructors

extension JSONValue: ExpressibleByNilLiteral {
    /// Creates `.null`.
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    /// Creates `.bool`.
    public init(booleanLiteral value: Bool) {
        self = .bool(value)
    }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    /// Creates a `.number` holding the integer's decimal text.
    public init(integerLiteral value: Int64) {
        self = .int(value)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    /// Creates `.string`.
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension JSONValue: ExpressibleByArrayLiteral {
    /// Creates `.array`.
    public init(arrayLiteral elements: JSONValue...) {
        self = .array(elements)
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    /// Creates `.object`, keeping the literal's member order.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(literalPairs: elements))
    }
}

extension JSONValue {
    /// A `.number` holding the integer's decimal text.
    public static func int(_ value: Int64) -> JSONValue {
        .number(String(value))
    }

    /// A `.number` holding the integer's decimal text.
    public static func int(_ value: Int) -> JSONValue {
        .number(String(value))
    }
}

// MARK: - Accessors

extension JSONValue {
    /// The string, if this is `.string`.
    public var stringValue: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The Boolean, if this is `.bool`.
    public var boolValue: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    /// The elements, if this is `.array`.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { value } else { nil }
    }

    /// The object, if this is `.object`.
    public var objectValue: JSONObject? {
        if case .object(let value) = self { value } else { nil }
    }

    /// Whether this is `.null`.
    public var isNull: Bool {
        if case .null = self { true } else { false }
    }

    /// The number as an `Int64`, when its literal is a plain integer that fits.
    ///
    /// `"12"` and `"-0"` qualify; `"12.0"`, `"1e3"` and anything beyond `Int64`'s range do not,
    /// so a value is never rounded or reinterpreted.
    public var int64Value: Int64? {
        guard case .number(let literal) = self else { return nil }
        return JSONNumberLiteral.scaledValue(of: literal, scale: 0, allowsFraction: false)
    }

    /// The number as an `Int`, under the same rules as ``int64Value``.
    public var intValue: Int? {
        int64Value.flatMap { Int(exactly: $0) }
    }

    /// The number times ten, when its literal is an exact decimal with at most one
    /// significant fractional digit.
    ///
    /// `"2"` → 20, `"1.5"` → 15, `"1.50"` → 15, `"-0.5"` → -5; `"1.25"`, exponent forms
    /// and values whose tenths overflow `Int64` give `nil`. This is how rates such as
    /// "1.5 points per unit" are read without floating point.
    public var tenthsValue: Int64? {
        guard case .number(let literal) = self else { return nil }
        return JSONNumberLiteral.scaledValue(of: literal, scale: 1, allowsFraction: true)
    }

    /// The member named `key`, or `nil` when this is not an object or has no such member.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact canonical JSON text, as written by ``serialized()``.
    public var description: String { jsonString }
}

// MARK: - Number literals

/// Exact reading and validation of number literal text, without floating point.
enum JSONNumberLiteral {
    /// Reads `-?(0|[1-9][0-9]*)(\.[0-9]+)?` and returns its value times 10^`scale`,
    /// or `nil` when that is not an exact `Int64`.
    ///
    /// With `allowsFraction`, fractional digits beyond `scale` must all be zero.
    /// Exponents are rejected: they are rare in our inputs and would need a second
    /// overflow analysis for little benefit.
    static func scaledValue(of literal: String, scale: Int, allowsFraction: Bool) -> Int64? {
        scaledValue(ofBytes: literal.utf8, scale: scale, allowsFraction: allowsFraction)
    }

    /// ``scaledValue(of:scale:allowsFraction:)`` of a literal's UTF-8 (a reader's number,
    /// taken where it stands in its document).
    @inline(__always)
    static func scaledValue(ofBytes literal: some Sequence<UInt8>, scale: Int, allowsFraction: Bool) -> Int64? {
        var bytes = literal.makeIterator()
        var byte = bytes.next()
        let isNegative = byte == UInt8(ascii: "-")
        if isNegative { byte = bytes.next() }

        // Accumulate towards negative numbers, whose range includes Int64.min.
        var accumulator: Int64 = 0
        func push(_ digit: UInt8) -> Bool {
            let (shifted, overflow1) = accumulator.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.subtractingReportingOverflow(Int64(digit &- UInt8(ascii: "0")))
            accumulator = sum
            return !(overflow1 || overflow2)
        }

        guard let first = byte, isDigit(first), push(first) else { return nil }
        byte = bytes.next()
        if first == UInt8(ascii: "0"), let next = byte, isDigit(next) { return nil }
        while let digit = byte, isDigit(digit) {
            guard push(digit) else { return nil }
            byte = bytes.next()
        }

        var fractionDigits = 0
        if byte == UInt8(ascii: ".") {
            guard allowsFraction else { return nil }
            byte = bytes.next()
            guard let firstFraction = byte, isDigit(firstFraction) else { return nil }
            while let digit = byte, isDigit(digit) {
                if fractionDigits < scale {
                    guard push(digit) else { return nil }
                    fractionDigits += 1
                } else if digit != UInt8(ascii: "0") {
                    return nil
                }
                byte = bytes.next()
            }
        }
        guard byte == nil else { return nil }

        while fractionDigits < scale {
            guard push(UInt8(ascii: "0")) else { return nil }
            fractionDigits += 1
        }
        if isNegative { return accumulator }
        return accumulator == .min ? nil : -accumulator
    }

    /// Whether `literal` matches the RFC 8259 number grammar.
    static func isValid(_ literal: String) -> Bool {
        var bytes = literal.utf8[...]
        func skipDigits() -> Int {
            let count = bytes.prefix(while: isDigit).count
            bytes = bytes.dropFirst(count)
            return count
        }
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        if bytes.first == UInt8(ascii: "0") {
            bytes = bytes.dropFirst()
        } else if let first = bytes.first, isDigit(first) {
            _ = skipDigits()
        } else {
            return false
        }
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            guard skipDigits() > 0 else { return false }
        }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            guard skipDigits() > 0 else { return false }
        }
        return bytes.isEmpty
    }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10
    }
}
