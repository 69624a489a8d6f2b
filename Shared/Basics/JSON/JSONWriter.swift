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
/// The writer does not check structure: inside an object, call ``key(_:)`` before each value.
public struct JSONWriter: Sendable {
    /// The UTF-8 output written so far.
    public private(set) var bytes: [UInt8]

    /// Whether the next value or key must be preceded by a comma.
    private var needsComma = false

    /// Creates a writer whose buffer reserves `capacity` bytes up front.
    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Clears the output, keeping the buffer's capacity for reuse.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        needsComma = false
    }

    // MARK: Structure

    /// Writes `{`.
    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    /// Writes `}`.
    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Writes `[`.
    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    /// Writes `]`.
    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// Writes an object member's key and the `:`; write its value next.
    public mutating func key(_ key: String) {
        separate()
        appendQuoted(key)
        bytes.append(UInt8(ascii: ":"))
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
        bytes.append(UInt8(ascii: "\""))
        time.appendRFC3339(to: &bytes)
        bytes.append(UInt8(ascii: "\""))
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
        bytes.append(contentsOf: value ? "true".utf8 : "false".utf8)
        needsComma = true
    }

    /// Writes `null`.
    public mutating func null() {
        separate()
        bytes.append(contentsOf: "null".utf8)
        needsComma = true
    }

    /// Writes a number given as its literal text, e.g. `"-3.50"`, verbatim.
    ///
    /// - Precondition: `numberLiteral` matches the JSON number grammar (checked in debug builds).
    public mutating func raw(_ numberLiteral: String) {
        assert(JSONNumberLiteral.isValid(numberLiteral), "not a JSON number literal: \(numberLiteral)")
        separate()
        bytes.append(contentsOf: numberLiteral.utf8)
        needsComma = true
    }

    /// Writes a value serialized earlier by a `JSONWriter` (``JSONValue/serialized()``),
    /// verbatim: the same bytes as writing its tree, without holding the tree.
    public mutating func embed(serializedValue bytes: [UInt8]) {
        separate()
        self.bytes.append(contentsOf: bytes)
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
                key(member.key)
                self.value(member.value)
            }
            endObject()
        }
    }

    // MARK: Encoding

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func appendDecimal(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        // Emit digits least significant first, then flip them in place: no temporary buffer.
        var magnitude = value.magnitude
        let start = bytes.count
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude != 0
        bytes[start...].reverse()
    }

    private mutating func appendQuoted(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { appendEscaped($0) }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Copies runs that need no escaping as whole slices.
    private mutating func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        var runStart = 0
        for index in utf8.indices {
            let byte = utf8[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            bytes.append(contentsOf: utf8.extracting(runStart..<index))
            runStart = index + 1
            bytes.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
            case 0x08: bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "t"))
            default:
                let hexDigits: StaticString = "0123456789abcdef"
                bytes.append(contentsOf: "u00".utf8)
                bytes.append(hexDigits.utf8Start[Int(byte >> 4)])
                bytes.append(hexDigits.utf8Start[Int(byte & 0x0F)])
            }
        }
        bytes.append(contentsOf: utf8.extracting(runStart..<utf8.count))
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
