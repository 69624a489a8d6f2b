/// Why a JSON text was rejected, and where.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The zero-based byte offset of the offending input.
    public var offset: Int
    /// A complete sentence for humans that already includes the offset,
    /// e.g. `"unexpected character 'x' at byte 12"`.
    public var message: String

    /// Creates an error.
    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }

    /// The ``message``.
    public var description: String { message }
}

extension JSONValue {
    /// The maximum nesting of arrays and objects that ``parse(_:)`` accepts.
    ///
    /// Bounds the parser's recursion, so hostile input cannot exhaust the stack.
    public static let maximumDepth = 128

    /// Parses one JSON value from UTF-8 bytes, strictly by RFC 8259.
    ///
    /// Rejected: trailing commas, comments, leading zeros, `NaN`/`Infinity`, unescaped
    /// control characters, invalid escapes, unpaired UTF-16 surrogates, invalid UTF-8,
    /// anything but whitespace after the value, nesting deeper than ``maximumDepth``,
    /// and duplicate keys within an object (an event with two `"paidMinor"` members
    /// must not be silently ambiguous).
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONError) -> JSONValue {
        let result = bytes.withContiguousStorageIfAvailable(parseResult)
            ?? Array(bytes).withUnsafeBufferPointer(parseResult)
        return try result.get()
    }

    /// Parses one JSON value from a string. See ``parse(_:)``.
    public static func parse(_ text: String) throws(JSONError) -> JSONValue {
        var text = text
        // `withUTF8` only copies when the string is not already native UTF-8.
        return try text.withUTF8(parseResult).get()
    }

    /// Parses one JSON value from UTF-8 bytes, keeping only the object members `projection`
    /// names (see ``JSONProjection``): a reader that needs a few fields of a large document
    /// makes no numbers or containers for the rest, and no strings but those with escapes or
    /// non-ASCII text (decoded to be checked).
    ///
    /// The members left out are checked as strictly as ``parse(_:)`` checks them, with the
    /// same errors, except that they are not checked for duplicate keys: they are not read.
    public static func parse(_ bytes: [UInt8], keeping projection: JSONProjection) throws(JSONError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { input in
            var parser = JSONParser(input: input)
            return Result { () throws(JSONError) in try parser.parseDocument(keeping: projection) }
        }.get()
    }

    // The buffer-access APIs are `rethrows`, which would erase the typed error,
    // so the parse runs inside them as a non-throwing closure returning a `Result`.
    private static func parseResult(_ input: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, JSONError> {
        var parser = JSONParser(input: input)
        return Result { () throws(JSONError) in try parser.parseDocument() }
    }
}

/// A recursive-descent parser over a contiguous UTF-8 buffer.
///
/// Strings without escapes are decoded straight from the input slice; only
/// escaped strings are assembled in the reusable `scratch` buffer.
struct JSONParser {
    private let input: UnsafeBufferPointer<UInt8>
    private var position = 0
    private var depth = 0
    /// Reused by every escaped string, so decoding them allocates only the result.
    private var scratch: [UInt8] = []

    /// Objects up to this size check for duplicate keys by scanning; larger ones use a set.
    static let linearKeyCheckLimit = 16
    private static let initialMemberCapacity = 8

    init(input: UnsafeBufferPointer<UInt8>) {
        self.input = input
    }

    mutating func parseDocument(keeping projection: JSONProjection = .whole) throws(JSONError) -> JSONValue {
        let value = try parseValue(keeping: projection)
        try finishDocument()
        return value
    }

    // MARK: Values

    mutating func parseValue() throws(JSONError) -> JSONValue {
        skipWhitespace()
        guard position < input.count else { throw unexpected(expecting: "a value") }
        switch input[position] {
        case UInt8(ascii: "{"): return .object(try parseObject())
        case UInt8(ascii: "["): return .array(try parseArray())
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw unexpected(expecting: "a value")
        }
    }

    /// A value of which only the members `projection` names are kept, when it is an object.
    private mutating func parseValue(keeping projection: JSONProjection) throws(JSONError) -> JSONValue {
        guard let members = projection.members else { return try parseValue() }
        skipWhitespace()
        guard current == UInt8(ascii: "{") else { return try parseValue() }
        return .object(try parseObject(keeping: members))
    }

    /// An object of which only the members named in `kept` are made; the others are checked
    /// and passed over.
    private mutating func parseObject(keeping kept: [JSONProjection.Member]) throws(JSONError) -> JSONObject {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // "{"

        var members: [JSONMember] = []
        members.reserveCapacity(kept.count)
        var keySet: Set<String>?
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            return JSONObject()
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw unexpected(expecting: "a string key") }
            let keyOffset = position
            let wanted: JSONProjection.Member?
            let key: String?
            if let end = scanPlainString() {
                let text = input.extracting(keyOffset + 1..<end)
                wanted = kept.first { $0.key.count == text.count && $0.key.elementsEqual(text) }
                key = wanted.map { _ in String(decoding: text, as: UTF8.self) }
            } else {
                // Escapes or non-ASCII: compared as decoded text, as a full parse would.
                let text = try parseStringSlowPath(from: keyOffset + 1)
                wanted = kept.first { $0.name.utf8.count == text.utf8.count && $0.name == text }
                key = text
            }
            if wanted != nil, let key, isDuplicate(key, in: members, keySet: &keySet) {
                throw failure("duplicate key \(quoted(key))", at: keyOffset)
            }

            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw unexpected(expecting: "':' after the key") }
            position += 1
            if let wanted, let key {
                members.append(JSONMember(key: key, value: try parseValue(keeping: wanted.projection)))
            } else {
                try skipValue()
            }

            if try passSeparator(closedBy: UInt8(ascii: "}")) { return JSONObject(members) }
        }
    }

    /// Checks the value at `position` as ``parseValue()`` would and moves past it, making nothing.
    mutating func skipValue() throws(JSONError) {
        skipWhitespace()
        guard position < input.count else { throw unexpected(expecting: "a value") }
        switch input[position] {
        case UInt8(ascii: "{"): try skipContainer(closedBy: UInt8(ascii: "}"))
        case UInt8(ascii: "["): try skipContainer(closedBy: UInt8(ascii: "]"))
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try parseLiteral("true")
        case UInt8(ascii: "f"): try parseLiteral("false")
        case UInt8(ascii: "n"): try parseLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw unexpected(expecting: "a value")
        }
    }

    /// Checks an object (`closer` is `}`) or an array (`]`) as a full parse would, apart from
    /// duplicate keys, and moves past it.
    private mutating func skipContainer(closedBy closer: UInt8) throws(JSONError) {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // "{" or "["
        let isObject = closer == UInt8(ascii: "}")
        skipWhitespace()
        if current == closer {
            position += 1
            return
        }
        while true {
            if isObject {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw unexpected(expecting: "a string key") }
                try skipString()
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw unexpected(expecting: "':' after the key") }
                position += 1
            }
            try skipValue()
            if try passSeparator(closedBy: closer) { return }
        }
    }

    private mutating func parseObject() throws(JSONError) -> JSONObject {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // "{"

        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            return JSONObject()
        }
        // Event objects typically have several members; growing from 1 through 2, 4 and 8
        // would cost more than a slightly oversized first allocation.
        var members: [JSONMember] = []
        members.reserveCapacity(Self.initialMemberCapacity)
        var keySet: Set<String>?
        var lengths = KeyLengths()
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw unexpected(expecting: "a string key") }
            let keyOffset = position
            let key = try parseString()
            if lengths.mayMatch(key, scanning: members.count < Self.linearKeyCheckLimit && keySet == nil),
               isDuplicate(key, in: members, keySet: &keySet) {
                throw failure("duplicate key \(quoted(key))", at: keyOffset)
            }

            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw unexpected(expecting: "':' after the key") }
            position += 1
            members.append(JSONMember(key: key, value: try parseValue()))

            if try passSeparator(closedBy: UInt8(ascii: "}")) { return JSONObject(members) }
        }
    }

    private mutating func parseArray() throws(JSONError) -> [JSONValue] {
        try enterContainer()
        defer { depth -= 1 }
        position += 1  // "["

        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            position += 1
            return elements
        }
        while true {
            elements.append(try parseValue())
            if try passSeparator(closedBy: UInt8(ascii: "]")) { return elements }
        }
    }

    /// After a member (`closer` is `}`) or an element (`]`): moves past a comma and returns
    /// false, or past `closer` and returns true. A comma before `closer` is a trailing comma.
    /// Inlined: a call per member cost more than the four loops' own work (callgrind).
    @inline(__always)
    private mutating func passSeparator(closedBy closer: UInt8) throws(JSONError) -> Bool {
        skipWhitespace()
        switch current {
        case UInt8(ascii: ","):
            let commaOffset = position
            position += 1
            skipWhitespace()
            if current == closer { throw failure("trailing comma", at: commaOffset) }
            return false
        case closer:
            position += 1
            return true
        default:
            throw unexpected(expecting: closer == UInt8(ascii: "}") ? "',' or '}'" : "',' or ']'")
        }
    }

    private mutating func enterContainer() throws(JSONError) {
        guard depth < JSONValue.maximumDepth else {
            throw failure("nesting deeper than \(JSONValue.maximumDepth) levels", at: position)
        }
        depth += 1
    }

    /// The UTF-8 lengths of an object's keys so far, folded into 64 bits. The scan for a
    /// duplicate compares lengths before text (``JSONObject/index(ofKey:in:)``), so a key whose
    /// length no earlier key has cannot match one: its scan is passed over. Most keys of an
    /// object differ in length, and the scans were 2 % of a simulation (callgrind).
    private struct KeyLengths {
        private var seen: UInt64 = 0

        /// Whether the check for `key` must run: always when the object is checked with a set
        /// (`scanning` false, as the set holds canonically equal keys of any length equal);
        /// when scanning, only if an earlier key may have its length. Notes the length.
        mutating func mayMatch(_ key: String, scanning: Bool) -> Bool {
            let bit: UInt64 = 1 << UInt64(key.utf8.count & 63)
            defer { seen |= bit }
            return !scanning || seen & bit != 0
        }
    }

    private func isDuplicate(_ key: String, in members: [JSONMember], keySet: inout Set<String>?) -> Bool {
        if keySet != nil {
            return !keySet!.insert(key).inserted
        }
        if members.count < Self.linearKeyCheckLimit {
            return JSONObject.index(ofKey: key, in: members) != nil
        }
        keySet = Set(members.lazy.map(\.key))
        return !keySet!.insert(key).inserted
    }

    private mutating func parseLiteral(_ literal: StaticString) throws(JSONError) {
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard current == byte else { throw unexpected(expecting: "'\(literal)'") }
            position += 1
        }
    }

    // MARK: Numbers

    /// Validates `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` and returns its text.
    private mutating func parseNumber() throws(JSONError) -> String {
        String(decoding: input.extracting(try scanNumber()), as: UTF8.self)
    }

    /// Validates a number (see ``parseNumber()``), moves past it and returns where it is.
    mutating func scanNumber() throws(JSONError) -> Range<Int> {
        let start = position
        if current == UInt8(ascii: "-") { position += 1 }
        guard let first = current, JSONNumberLiteral.isDigit(first) else { throw unexpected(expecting: "a digit") }
        position += 1
        if first == UInt8(ascii: "0") {
            if let next = current, JSONNumberLiteral.isDigit(next) {
                throw failure("leading zero in number", at: position - 1)
            }
        } else {
            skipDigits()
        }
        if current == UInt8(ascii: ".") {
            position += 1
            try requireDigits(after: "the decimal point")
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            try requireDigits(after: "the exponent")
        }
        return start..<position
    }

    private mutating func requireDigits(after what: String) throws(JSONError) {
        guard let byte = current, JSONNumberLiteral.isDigit(byte) else {
            throw unexpected(expecting: "a digit after \(what)")
        }
        skipDigits()
    }

    private mutating func skipDigits() {
        while position < input.count, JSONNumberLiteral.isDigit(input[position]) {
            position += 1
        }
    }

    // MARK: Strings

    /// Parses a string starting at its opening quote.
    private mutating func parseString() throws(JSONError) -> String {
        let start = position + 1
        if let end = scanPlainString() {
            return String(decoding: input.extracting(start..<end), as: UTF8.self)
        }
        return try parseStringSlowPath(from: start)
    }

    /// Checks a string as ``parseString()`` would and moves past it, making nothing of a plain one.
    private mutating func skipString() throws(JSONError) {
        let start = position + 1
        if scanPlainString() == nil { _ = try parseStringSlowPath(from: start) }
    }

    /// Moves past a string of printable ASCII without escapes, starting at its opening quote,
    /// and returns where its text ends (its closing quote). For any other string, returns nil
    /// at the first byte that is not such, for ``parseStringSlowPath(from:)`` to go on from.
    private mutating func scanPlainString() -> Int? {
        position += 1  // opening quote
        // Fast path: printable ASCII without escapes, which is nearly every key and value.
        // Eight bytes at a time while a whole word is left, stopping at the first byte that is
        // a quote, a backslash, a control character or not ASCII (its high bit set).
        if let base = input.baseAddress {
            while position + 8 <= input.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self))
                let stops = JSONWord.escapedBytes(word) | (word & 0x8080_8080_8080_8080)
                if stops == 0 {
                    position += 8
                    continue
                }
                position += stops.trailingZeroBitCount / 8
                break
            }
        }
        while position < input.count {
            let byte = input[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return position - 1
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            position += 1
        }
        return nil
    }

    /// Continues a string that contains escapes or non-ASCII, validating both.
    private mutating func parseStringSlowPath(from start: Int) throws(JSONError) -> String {
        scratch.removeAll(keepingCapacity: true)
        var hasEscapes = false
        var runStart = start  // first byte not yet copied to `scratch`
        while position < input.count {
            let byte = input[position]
            switch byte {
            case UInt8(ascii: "\""):
                let end = position
                position += 1
                guard hasEscapes else {
                    return String(decoding: input.extracting(start..<end), as: UTF8.self)
                }
                scratch.append(contentsOf: input.extracting(runStart..<end))
                return String(decoding: scratch, as: UTF8.self)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                scratch.append(contentsOf: input.extracting(runStart..<position))
                try parseEscape()
                runStart = position
            case 0..<0x20:
                throw failure("unescaped control character \(hex(byte)) in string", at: position)
            case 0x20..<0x80:
                position += 1
            default:
                try skipUTF8Sequence()
            }
        }
        throw failure("unterminated string", at: position)
    }

    /// Decodes the escape at `position` (a backslash) and appends its UTF-8 to `scratch`.
    private mutating func parseEscape() throws(JSONError) {
        let escapeOffset = position
        position += 1
        guard let letter = current else { throw failure("unterminated string", at: position) }
        position += 1
        let decoded: UInt8
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded = letter
        case UInt8(ascii: "b"): decoded = 0x08
        case UInt8(ascii: "f"): decoded = 0x0C
        case UInt8(ascii: "n"): decoded = 0x0A
        case UInt8(ascii: "r"): decoded = 0x0D
        case UInt8(ascii: "t"): decoded = 0x09
        case UInt8(ascii: "u"):
            try appendUnicodeEscape(startingAt: escapeOffset)
            return
        default:
            throw failure("invalid escape sequence '\\\(describeRaw(letter))'", at: escapeOffset)
        }
        scratch.append(decoded)
    }

    /// Decodes `\uXXXX`, or a `\uD8xx\uDCxx` surrogate pair, whose hex digits start at `position`.
    private mutating func appendUnicodeEscape(startingAt escapeOffset: Int) throws(JSONError) {
        let unit = try parseHexQuad()
        let scalarValue: UInt32
        switch unit {
        case 0xD800...0xDBFF:
            guard position + 1 < input.count,
                  input[position] == UInt8(ascii: "\\"),
                  input[position + 1] == UInt8(ascii: "u")
            else { throw unpairedSurrogate(unit, at: escapeOffset) }
            position += 2
            let low = try parseHexQuad()
            guard (0xDC00...0xDFFF).contains(low) else { throw unpairedSurrogate(unit, at: escapeOffset) }
            scalarValue = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
        case 0xDC00...0xDFFF:
            throw unpairedSurrogate(unit, at: escapeOffset)
        default:
            scalarValue = unit
        }
        // Neither unwrap can fail: surrogates were excluded above, and UTF-8 encodes every scalar.
        let scalar = Unicode.Scalar(scalarValue)!
        scratch.append(contentsOf: UTF8.encode(scalar)!)
    }

    private mutating func parseHexQuad() throws(JSONError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current else { throw failure("unterminated string", at: position) }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure("invalid hex digit \(describe(byte)) in \\u escape", at: position)
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    private func unpairedSurrogate(_ unit: UInt32, at offset: Int) -> JSONError {
        let digits = String(unit, radix: 16, uppercase: true)
        return failure("unpaired surrogate \\u\(digits) in string", at: offset)
    }

    /// Checks the multi-byte UTF-8 sequence at `position` (RFC 3629: shortest form,
    /// no surrogates, at most U+10FFFF) and moves past it.
    private mutating func skipUTF8Sequence() throws(JSONError) {
        let lead = input[position]
        let length: Int
        // The allowed range of the second byte; later bytes are always 0x80...0xBF.
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: throw failure("invalid UTF-8 byte \(hex(lead)) in string", at: position)
        }
        for index in 1..<length {
            let offset = position + index
            let allowed = index == 1 ? secondRange : 0x80...0xBF
            guard offset < input.count, allowed.contains(input[offset]) else {
                throw failure("invalid UTF-8 sequence in string", at: position)
            }
        }
        position += length
    }

    // MARK: Scanning

    private var current: UInt8? {
        position < input.count ? input[position] : nil
    }

    private mutating func skipWhitespace() {
        while position < input.count {
            switch input[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    // MARK: Reading in place (JSONReader)

    /// The first byte of the value at `position`, past white space; nil at the end.
    mutating func nextValueByte() -> UInt8? {
        skipWhitespace()
        return current
    }

    /// Moves past a string at `position` (its opening quote): where its text is when it is
    /// plain (printable ASCII without escapes), else its decoded text.
    mutating func readStringInPlace() throws(JSONError) -> (plain: Range<Int>?, decoded: String?) {
        let start = position + 1
        if let end = scanPlainString() { return (start..<end, nil) }
        return (nil, try parseStringSlowPath(from: start))
    }

    /// Enters the object or array at `position` (its opening bracket); true when it is empty
    /// (and passed, closer and all).
    mutating func enterReadContainer(closedBy closer: UInt8) throws(JSONError) -> Bool {
        try enterContainer()
        position += 1
        skipWhitespace()
        guard current == closer else { return false }
        position += 1
        depth -= 1
        return true
    }

    /// After a member or an element: true when `closer` ended the container (and it is left).
    mutating func passReadSeparator(closedBy closer: UInt8) throws(JSONError) -> Bool {
        guard try passSeparator(closedBy: closer) else { return false }
        depth -= 1
        return true
    }

    /// Reads a member's key, at its opening quote (past white space); returns the key, and
    /// where it began for errors. The colon is read apart (``readColon()``), after the check
    /// for a duplicate, as a parse checks them.
    mutating func readMemberKey() throws(JSONError) -> (plain: Range<Int>?, decoded: String?, offset: Int) {
        skipWhitespace()
        guard current == UInt8(ascii: "\"") else { throw unexpected(expecting: "a string key") }
        let offset = position
        let key = try readStringInPlace()
        return (key.plain, key.decoded, offset)
    }

    /// Reads the colon after a member's key.
    mutating func readColon() throws(JSONError) {
        skipWhitespace()
        guard current == UInt8(ascii: ":") else { throw unexpected(expecting: "':' after the key") }
        position += 1
    }

    /// The error for a key read twice in one object.
    func duplicateKey(_ key: String, at offset: Int) -> JSONError {
        failure("duplicate key \(quoted(key))", at: offset)
    }

    /// Where the reader is.
    var readPosition: Int { position }

    /// The input's bytes in `range`.
    func inputBytes(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> {
        input.extracting(range)
    }

    /// Checks that nothing but white space follows the document's value.
    mutating func finishDocument() throws(JSONError) {
        skipWhitespace()
        guard position == input.count else {
            throw failure("unexpected \(describe(input[position])) after the JSON value", at: position)
        }
    }

    // MARK: Errors

    private func failure(_ problem: String, at offset: Int) -> JSONError {
        JSONError(offset: offset, message: "\(problem) at byte \(offset)")
    }

    /// "unexpected character 'x' at byte 12 (expected ...)" or "unexpected end of input ...".
    private func unexpected(expecting expectation: String) -> JSONError {
        let found = current.map(describe) ?? "end of input"
        return JSONError(offset: position, message: "unexpected \(found) at byte \(position) (expected \(expectation))")
    }

    private func describe(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? "character '\(describeRaw(byte))'" : "byte \(hex(byte))"
    }

    private func describeRaw(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? String(UnicodeScalar(byte)) : hex(byte)
    }

    private func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16, uppercase: true)
        return byte < 0x10 ? "0x0\(digits)" : "0x\(digits)"
    }

    private func quoted(_ key: String) -> String {
        var writer = JSONWriter(capacity: key.utf8.count + 2)
        writer.string(key)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
