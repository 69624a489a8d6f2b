/// Reads a JSON document in one pass without making it a tree: the caller names the members
/// it reads at each level (``Names``) and takes their values where they stand; every other
/// member is checked as ``JSONValue/parse(_:keeping:)`` checks what a projection passes over
/// (duplicate keys aside), or read whole (``Others/readWhole``). For a reader of many documents
/// that needs a few values of each (the simulation reads every ledger entry it publishes for
/// its figures): it makes no container and no number text, and no string for a plain key.
///
/// The document is held to the rules of ``JSONValue/parse(_:keeping:)`` with a projection that
/// keeps what the caller names, with the same errors: a named member found twice is a
/// duplicate, at the same byte; a named member the caller does not read, a value read as a type
/// it does not have (``string()`` of an object, say) and an element the caller does not read
/// are read whole, with every check of a full parse. Each closure reads its value once, lets
/// every error through, and does not keep the reader: it reads the document's bytes in place.
public struct JSONReader {
    private var parser: JSONParser

    private init(parser: JSONParser) {
        self.parser = parser
    }

    /// Reads `bytes` as one JSON document: `body` reads its value (or leaves it to be read
    /// whole), and nothing but white space may follow.
    public static func read<Value>(_ bytes: [UInt8], _ body: (inout JSONReader) throws(JSONError) -> Value) throws(JSONError) -> Value {
        // The parse runs inside `withUnsafeBufferPointer` as a non-throwing closure returning a
        // `Result`, as ``JSONValue/parse(_:)`` does.
        try bytes.withUnsafeBufferPointer { input -> Result<Value, JSONError> in
            var reader = JSONReader(parser: JSONParser(input: input))
            return Result { () throws(JSONError) in
                let value = try reader.reading(body)
                try reader.parser.finishDocument()
                return value
            }
        }.get()
    }

    /// The members of an object a reader takes, by name: their UTF-8, made once, that each
    /// key is compared with (as a projection compares its members' names).
    public struct Names: Sendable {
        fileprivate let names: [String]
        /// Every name's UTF-8, one after the other, and where each begins (a last entry for the end).
        private let utf8: [UInt8]
        private let starts: [Int]
        /// The lengths of the names, folded into 64 bits: most keys a reader passes over have
        /// a length no name has, and are told apart by it alone.
        private let lengths: UInt64

        /// The members named `names` (at most 64).
        public init(_ names: [String]) {
            precondition(names.count <= 64, "a reader takes at most 64 members of an object")
            precondition(Set(names).count == names.count, "a name given twice would never be found the second time")
            self.names = names
            utf8 = names.flatMap { Array($0.utf8) }
            starts = names.reduce(into: [0]) { $0.append($0.last! + $1.utf8.count) }
            lengths = names.reduce(0) { $0 | 1 << UInt64($1.utf8.count & 63) }
        }

        /// The index of the name a plain key's bytes spell.
        fileprivate func index(of key: UnsafeBufferPointer<UInt8>) -> Int? {
            guard lengths & 1 << UInt64(key.count & 63) != 0 else { return nil }
            for index in names.indices where starts[index + 1] - starts[index] == key.count {
                let start = starts[index]
                var offset = 0
                while offset < key.count, utf8[start + offset] == key[offset] { offset += 1 }
                if offset == key.count { return index }
            }
            return nil
        }

        /// The index of the name a decoded key is.
        fileprivate func index(of key: String) -> Int? {
            names.firstIndex { $0.utf8.count == key.utf8.count && $0 == key }
        }
    }

    /// What becomes of the members of an object that ``Names`` does not name.
    public enum Others: Sendable {
        /// Checked and passed over, as a projection passes them over.
        case passedOver
        /// Read whole and let go, and every key of the object checked for duplicates as a
        /// parse checks them: for an object a projection would keep whole.
        case readWhole
    }

    /// Reads an object: `member` gets the index in `names` of each member named there, and reads
    /// its value or leaves it to be read whole; the others are passed over or read whole, as
    /// `others` says. A name found twice is a duplicate key. False (the value read whole and
    /// let go) when the value is not an object.
    @discardableResult
    public mutating func readObject(
        _ names: Names, others: Others = .passedOver, _ member: (Int, inout JSONReader) throws(JSONError) -> Void
    ) throws(JSONError) -> Bool {
        guard parser.nextValueByte() == UInt8(ascii: "{") else {
            _ = try parser.parseValue()
            return false
        }
        if try parser.enterReadContainer(closedBy: UInt8(ascii: "}")) { return true }
        var seen: UInt64 = 0
        // The keys of the others read whole (rare: none in the documents readers are for), and,
        // from as many members on as a parse would, every key in a set, as a parse checks them.
        var otherKeys: [String] = []
        var keySet: Set<String>?
        var count = 0
        while true {
            let (plain, decoded, offset) = try parser.readMemberKey()
            let index = plain.map { names.index(of: parser.inputBytes($0)) } ?? decoded.flatMap { names.index(of: $0) }
            if let index {
                let bit: UInt64 = 1 << UInt64(index)
                if seen & bit != 0 { throw parser.duplicateKey(names.names[index], at: offset) }
                seen |= bit
            }
            if case .readWhole = others {
                let key = decoded ?? plain.map { String(decoding: parser.inputBytes($0), as: UTF8.self) } ?? ""
                // A parse checks a key with a set (which finds canonically equal keys of other
                // lengths equal) from this many earlier members on.
                if keySet == nil, count >= JSONParser.linearKeyCheckLimit {
                    keySet = Set(otherKeys + names.names.indices.filter { seen & 1 << UInt64($0) != 0 && $0 != index }.map { names.names[$0] })
                }
                if keySet != nil {
                    if !keySet!.insert(key).inserted { throw parser.duplicateKey(key, at: offset) }
                } else if index == nil {
                    if otherKeys.contains(where: { $0.utf8.count == key.utf8.count && $0 == key }) { throw parser.duplicateKey(key, at: offset) }
                }
                if index == nil { otherKeys.append(key) }
            }
            count += 1
            try parser.readColon()
            if let index {
                _ = parser.nextValueByte()
                let start = parser.readPosition
                try member(index, &self)
                // Not read: read whole, as a projection keeps a member it names.
                if parser.readPosition == start { _ = try parser.parseValue() }
            } else if case .readWhole = others {
                _ = try parser.parseValue()
            } else {
                try parser.skipValue()
            }
            if try parser.passReadSeparator(closedBy: UInt8(ascii: "}")) { return true }
        }
    }

    /// Reads an array element by element: `element` reads each one, or leaves it to be read
    /// whole. False (the value read whole and let go) when it is not an array.
    @discardableResult
    public mutating func readArray(_ element: (inout JSONReader) throws(JSONError) -> Void) throws(JSONError) -> Bool {
        guard parser.nextValueByte() == UInt8(ascii: "[") else {
            _ = try parser.parseValue()
            return false
        }
        if try parser.enterReadContainer(closedBy: UInt8(ascii: "]")) { return true }
        while true {
            try reading(element)
            if try parser.passReadSeparator(closedBy: UInt8(ascii: "]")) { return true }
        }
    }

    /// The value as a string; nil when it is not one.
    public mutating func string() throws(JSONError) -> String? {
        guard parser.nextValueByte() == UInt8(ascii: "\"") else {
            _ = try parser.parseValue()
            return nil
        }
        let (plain, decoded) = try parser.readStringInPlace()
        return decoded ?? plain.map { String(decoding: parser.inputBytes($0), as: UTF8.self) }
    }

    /// The value as an instant (``EventTime/parse(_:)`` of a string); nil when it is not a
    /// string or not an instant.
    public mutating func time() throws(JSONError) -> EventTime? {
        guard parser.nextValueByte() == UInt8(ascii: "\"") else {
            _ = try parser.parseValue()
            return nil
        }
        let (plain, decoded) = try parser.readStringInPlace()
        if let plain { return EventTime.parse(utf8: parser.inputBytes(plain)) }
        return decoded.flatMap { try? EventTime.parse($0) }
    }

    /// The value as ``JSONValue/int64Value`` reads it; nil when it is not a number or not such
    /// an integer.
    public mutating func int64() throws(JSONError) -> Int64? {
        guard let first = parser.nextValueByte(), first == UInt8(ascii: "-") || JSONNumberLiteral.isDigit(first) else {
            _ = try parser.parseValue()
            return nil
        }
        let literal = try parser.scanNumber()
        return JSONNumberLiteral.scaledValue(ofBytes: parser.inputBytes(literal), scale: 0, allowsFraction: false)
    }

    /// The value made whole, as ``JSONValue/parse(_:)`` makes it.
    public mutating func value() throws(JSONError) -> JSONValue {
        try parser.parseValue()
    }

    /// Runs `body` on the value ahead, and reads the value whole if it took none of it (as a
    /// projection keeps a document or an element of what it keeps).
    private mutating func reading<Value>(_ body: (inout JSONReader) throws(JSONError) -> Value) throws(JSONError) -> Value {
        _ = parser.nextValueByte()
        let start = parser.readPosition
        let value = try body(&self)
        if parser.readPosition == start { _ = try parser.parseValue() }
        return value
    }
}
