/// A compact binary form for state a service stores and reads back on every event: integers as
/// zigzag varints, texts and lists with their length first. About a third the size of the same
/// state as JSON, and written and read without building a tree.
public struct CompactWriter {
    public private(set) var bytes: [UInt8] = []

    public init(tag: UInt8, capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
        bytes.append(tag)
    }

    public mutating func int(_ value: Int64) {
        // Zigzag: small negative numbers stay small.
        var rest = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    public mutating func int(_ value: Int) { int(Int64(value)) }

    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func string(_ value: String) {
        let utf8 = value.utf8
        int(utf8.count)
        bytes.append(contentsOf: utf8)
    }

    /// A present flag, then the value.
    public mutating func optional<T>(_ value: T?, _ write: (inout CompactWriter, T) -> Void) {
        bool(value != nil)
        if let value { write(&self, value) }
    }
}

/// Reads what a ``CompactWriter`` wrote; any truncation or malformed length is an error, never a trap.
public struct CompactReader {
    private let bytes: [UInt8]
    private var index: Int
    /// What is being read, for errors.
    private let what: String

    /// Starts after the tag byte, which must be `tag`.
    public init(_ bytes: [UInt8], tag: UInt8, what: String) throws(CompactFormError) {
        guard bytes.first == tag else { throw CompactFormError(what: what, problem: "not in the compact form") }
        self.bytes = bytes
        index = 1
        self.what = what
    }

    public var isAtEnd: Bool { index == bytes.count }

    public mutating func int() throws(CompactFormError) -> Int64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < bytes.count, shift < 64 else { throw CompactFormError(what: what, problem: "truncated number at byte \(index)") }
            let byte = bytes[index]
            index += 1
            // The tenth byte holds the last bit: anything more is not a number this wrote.
            guard shift < 63 || byte <= 1 else { throw CompactFormError(what: what, problem: "an over-long number at byte \(index - 1)") }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        return Int64(bitPattern: result >> 1) ^ -Int64(bitPattern: result & 1)
    }

    public mutating func count() throws(CompactFormError) -> Int {
        let value = try int()
        guard value >= 0, value <= bytes.count - index else { throw CompactFormError(what: what, problem: "a length of \(value) at byte \(index)") }
        return Int(value)
    }

    public mutating func bool() throws(CompactFormError) -> Bool {
        guard index < bytes.count, bytes[index] <= 1 else { throw CompactFormError(what: what, problem: "expected a flag at byte \(index)") }
        index += 1
        return bytes[index - 1] == 1
    }

    public mutating func string() throws(CompactFormError) -> String {
        let length = try count()
        let text = String(decoding: bytes[index..<index + length], as: UTF8.self)
        index += length
        return text
    }

    public mutating func optional<T>(_ read: (inout CompactReader) throws(CompactFormError) -> T) throws(CompactFormError) -> T? {
        try bool() ? try read(&self) : nil
    }
}

/// Stored state that cannot be read.
public struct CompactFormError: Error, Sendable, Equatable, CustomStringConvertible {
    public var what: String
    public var problem: String
    public var description: String { "\(what): \(problem)" }

    public init(what: String, problem: String) {
        self.what = what
        self.problem = problem
    }
}
