/// Writes compact, canonical JSON into a byte buffer.
///
/// The output has no whitespace, keeps members and elements in the order written,
/// writes numbers as their literal text, and escapes strings minimally: `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx` (lowercase hex),
/// everything else, including `/` and non-ASCII, as raw UTF-8. Equal inputs therefore
/// always produce equal bytes.
///
/// Commas are inserted automatically, so an event can be encoded by hand without
/// building a ``JSONValue`` tree:
///
/// ```swift
/// var writer = JSONWriter()
/// writer.beginObject()
/// writer.key("memberId"); writer.string("M-1")
/// writer.key("paidMinor"); writer.int(1250)
/// writer.endObject()
/// // writer.bytes == #"{"memberId":"M-1","paidMinor":1250}"#.utf8
/// ```
///
/// The writer does not check structure: inside an object, call ``key(_:)`` (a key written in
/// the code) or ``key(escaping:)`` (one made at run time) before each value.
public struct JSONWriter: ~Copyable, @unchecked Sendable {
    // The output lives in memory the writer alone owns (it cannot be copied), so appending
    // needs neither the uniqueness check nor the generic growth path of an `Array`: writing
    // a quoted key that way took about 300 instructions, most of them that bookkeeping.
    // (Unchecked Sendable: the pointer is the writer's own and moves with it.)
    private var start: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int

    /// Whether the next value or key must be preceded by a comma.
    private var needsComma = false

    /// Creates a writer whose buffer reserves `capacity` bytes up front.
    public init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        start = .allocate(capacity: self.capacity)
    }

    deinit { start.deallocate() }

    /// The UTF-8 output written so far.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: start, count: count)) }

    /// Clears the output, keeping the buffer's capacity for reuse.
    public mutating func reset() {
        count = 0
        needsComma = false
    }

    // MARK: Structure

    /// Writes `{`.
    public mutating func beginObject() {
        separate()
        append(UInt8(ascii: "{"))
        needsComma = false
    }

    /// Writes `}`.
    public mutating func endObject() {
        append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Writes `[`.
    public mutating func beginArray() {
        separate()
        append(UInt8(ascii: "["))
        needsComma = false
    }

    /// Writes `]`.
    public mutating func endArray() {
        append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// Writes an object member's key written in the code, and the `:`; write its value next.
    /// The key is copied as it stands, without a scan for characters to escape: a key in the
    /// code has none (checked in debug builds). Keys are most of what an encoder writes, and
    /// the scan and the trip through `String` were most of writing one.
    public mutating func key(_ name: StaticString) {
        separate()
        name.withUTF8Buffer { utf8 in
            assert(!Self.needsEscaping(utf8), "a key in the code that needs escaping: \(name)")
            reserve(utf8.count + 3)
            start[count] = UInt8(ascii: "\"")
            if let base = utf8.baseAddress { (start + count + 1).initialize(from: base, count: utf8.count) }
            start[count + utf8.count + 1] = UInt8(ascii: "\"")
            start[count + utf8.count + 2] = UInt8(ascii: ":")
            count += utf8.count + 3
        }
        needsComma = false
    }

    /// Writes an object member's key made at run time (a member's id, a field's name read from
    /// input), escaped as a string is, and the `:`; write its value next.
    public mutating func key(escaping key: String) {
        separate()
        appendQuoted(key)
        append(UInt8(ascii: ":"))
        needsComma = false
    }

    // MARK: Values

    /// Writes a string value.
    public mutating func string(_ value: String) {
        separate()
        appendQuoted(value)
        needsComma = true
    }

    /// Writes a time as its RFC 3339 string (``EventTime/rfc3339``), the same bytes as
    /// `string(time.rfc3339)` without making the string or scanning it for escapes.
    public mutating func time(_ time: EventTime) {
        separate()
        reserve(EventTime.rfc3339Width + 2)
        start[count] = UInt8(ascii: "\"")
        time.writeRFC3339(into: start + count + 1)
        start[count + 1 + EventTime.rfc3339Width] = UInt8(ascii: "\"")
        count += EventTime.rfc3339Width + 2
        needsComma = true
    }

    /// Writes an integer value.
    public mutating func int(_ value: Int64) {
        separate()
        appendDecimal(value)
        needsComma = true
    }

    /// Writes an integer value.
    public mutating func int(_ value: Int) {
        int(Int64(value))
    }

    /// Writes `true` or `false`.
    public mutating func bool(_ value: Bool) {
        separate()
        if value { append("true") } else { append("false") }
        needsComma = true
    }

    /// Writes `null`.
    public mutating func null() {
        separate()
        append("null")
        needsComma = true
    }

    /// Writes a number given as its literal text, e.g. `"-3.50"`, verbatim.
    ///
    /// - Precondition: `numberLiteral` matches the JSON number grammar (checked in debug builds).
    public mutating func raw(_ numberLiteral: String) {
        assert(JSONNumberLiteral.isValid(numberLiteral), "not a JSON number literal: \(numberLiteral)")
        separate()
        var literal = numberLiteral
        literal.withUTF8 { append($0) }
        needsComma = true
    }

    /// Writes a value serialized earlier by a `JSONWriter` (``JSONValue/serialized()``),
    /// verbatim: the same bytes as writing its tree, without holding the tree.
    public mutating func embed(serializedValue bytes: [UInt8]) {
        separate()
        bytes.withUnsafeBufferPointer { append($0) }
        needsComma = true
    }

    /// Writes a whole value tree.
    public mutating func value(_ value: JSONValue) {
        switch value {
        case .null:
            null()
        case .bool(let flag):
            bool(flag)
        case .number(let literal):
            raw(literal)
        case .string(let text):
            string(text)
        case .array(let elements):
            beginArray()
            for element in elements {
                self.value(element)
            }
            endArray()
        case .object(let object):
            beginObject()
            for member in object.members {
                key(escaping: member.key)
                self.value(member.value)
            }
            endObject()
        }
    }

    // MARK: Encoding

    @inline(__always)
    private mutating func separate() {
        if needsComma { append(UInt8(ascii: ",")) }
    }

    /// Makes room for `extra` more bytes, doubling the buffer when it is full.
    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(toHold: count + extra) }
    }

    private mutating func grow(toHold needed: Int) {
        let newCapacity = max(capacity * 2, needed)
        let moved = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        moved.initialize(from: start, count: count)
        start.deallocate()
        start = moved
        capacity = newCapacity
    }

    @inline(__always)
    private mutating func append(_ byte: UInt8) {
        reserve(1)
        start[count] = byte
        count += 1
    }

    private mutating func append(_ run: UnsafeBufferPointer<UInt8>) {
        guard let base = run.baseAddress, !run.isEmpty else { return }
        reserve(run.count)
        (start + count).initialize(from: base, count: run.count)
        count += run.count
    }

    private mutating func append(_ literal: StaticString) {
        append(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    private mutating func appendDecimal(_ value: Int64) {
        // At most 20 characters: a sign and 19 digits.
        reserve(20)
        if value < 0 { append(UInt8(ascii: "-")) }
        // Digits least significant first, then flipped in place: no temporary buffer.
        var magnitude = value.magnitude
        let first = count
        repeat {
            start[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            count += 1
            magnitude /= 10
        } while magnitude != 0
        var digits = UnsafeMutableBufferPointer(start: start + first, count: count - first)
        digits.reverse()
    }

    private mutating func appendQuoted(_ string: String) {
        var string = string
        string.withUTF8 { appendQuoted($0) }
    }

    /// The string between quotes. Nearly every key and value needs no escape: those are checked
    /// eight bytes at a time and copied at once, into room made once for the whole string.
    private mutating func appendQuoted(_ utf8: UnsafeBufferPointer<UInt8>) {
        guard let source = utf8.baseAddress, !Self.needsEscaping(utf8) else {
            append(UInt8(ascii: "\""))
            appendEscaped(utf8)
            append(UInt8(ascii: "\""))
            return
        }
        reserve(utf8.count + 2)
        let destination = start + count
        destination[0] = UInt8(ascii: "\"")
        (destination + 1).initialize(from: source, count: utf8.count)
        destination[utf8.count + 1] = UInt8(ascii: "\"")
        count += utf8.count + 2
    }

    /// Whether any byte is a control character, `"` or a backslash, checked eight bytes at a
    /// time (a word flagged wrongly would only take the escaping path, which finds nothing to
    /// escape). The last word overlaps the one before it rather than leaving a tail to check
    /// byte by byte; a string shorter than a word is padded with spaces.
    private static func needsEscaping(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = utf8.baseAddress else { return false }
        guard utf8.count >= 8 else {
            var word: UInt64 = 0x2020_2020_2020_2020
            for index in 0..<utf8.count { word = word << 8 | UInt64(base[index]) }
            return JSONWord.escapedBytes(word) != 0
        }
        var index = 0
        while index + 8 < utf8.count {
            if JSONWord.escapedBytes(UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)) != 0 { return true }
            index += 8
        }
        return JSONWord.escapedBytes(UnsafeRawPointer(base + utf8.count - 8).loadUnaligned(as: UInt64.self)) != 0
    }

    /// Copies runs that need no escaping as whole slices.
    private mutating func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        var runStart = 0
        for index in utf8.indices {
            let byte = utf8[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            append(UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
            runStart = index + 1
            append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): append(byte)
            case 0x08: append(UInt8(ascii: "b"))
            case 0x0C: append(UInt8(ascii: "f"))
            case 0x0A: append(UInt8(ascii: "n"))
            case 0x0D: append(UInt8(ascii: "r"))
            case 0x09: append(UInt8(ascii: "t"))
            default:
                let hexDigits: StaticString = "0123456789abcdef"
                append("u00")
                append(hexDigits.utf8Start[Int(byte >> 4)])
                append(hexDigits.utf8Start[Int(byte & 0x0F)])
            }
        }
        append(UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count]))
    }
}

extension JSONValue {
    /// The compact canonical UTF-8 encoding of this value (see ``JSONWriter``).
    public func serialized() -> [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }

    /// The compact canonical encoding of this value as a string.
    public var jsonString: String {
        String(decoding: serialized(), as: UTF8.self)
    }
}

/// Eight bytes of JSON text at a time, for the parser's and the writer's scans of strings.
enum JSONWord {
    /// The high bit of each byte that a JSON string must escape: a control character, `"` or a
    /// backslash. A byte below 0x20, or equal to a given one, shows in its high bit after one
    /// subtraction; the borrow can also flag bytes above a flagged one, never below it, so the
    /// lowest flagged byte (the first in memory, read little-endian) is always a true one.
    @inline(__always)
    static func escapedBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quotes = word ^ (ones &* 0x22)
        let backslashes = word ^ (ones &* 0x5C)
        return (((word &- ones &* 0x20) & ~word) | ((quotes &- ones) & ~quotes) | ((backslashes &- ones) & ~backslashes)) & 0x8080_8080_8080_8080
    }
}
