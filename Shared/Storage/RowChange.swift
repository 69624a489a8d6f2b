/// The state of one row after a transaction: what a changelog carries so that a store can be
/// rebuilt from it. Its key names the row (table and primary key); its value is the whole row,
/// or nothing for a deleted row (a tombstone), so the latest record of each key is enough.
public struct RowChange: Sendable, Equatable {
    /// The table.
    public var table: String
    /// The primary-key values, in the order of the table's columns.
    public var key: [SQLValue]
    /// Every column's value, in the table's order; nil when the row was deleted.
    public var row: [SQLValue]?

    public init(table: String, key: [SQLValue], row: [SQLValue]?) {
        self.table = table
        self.key = key
        self.row = row
    }

    /// The record key: the table's name, a zero byte, then the key values.
    public var encodedKey: [UInt8] {
        var bytes = Array(table.utf8)
        bytes.append(0)
        RowValuesCodec.append(key, to: &bytes)
        return bytes
    }

    /// The record value: the row's values, or nil for a tombstone.
    public var encodedValue: [UInt8]? {
        row.map { values in
            var bytes: [UInt8] = []
            RowValuesCodec.append(values, to: &bytes)
            return bytes
        }
    }

    /// Reads a change back from a record's key and value.
    /// - Throws: ``RowChangeFormatError`` for bytes this codec did not write.
    public init(encodedKey: [UInt8], encodedValue: [UInt8]?) throws {
        guard let zero = encodedKey.firstIndex(of: 0), zero > 0 else {
            throw RowChangeFormatError(detail: "the key names no table")
        }
        table = String(decoding: encodedKey[..<zero], as: UTF8.self)
        key = try RowValuesCodec.decode(encodedKey[(zero + 1)...])
        row = try encodedValue.map { try RowValuesCodec.decode($0[...]) }
    }
}

/// A changelog record that is not a row change this platform wrote.
public struct RowChangeFormatError: Error, Sendable, CustomStringConvertible {
    public var detail: String
    /// Creates the error with what is wrong with the change.
    public init(detail: String) { self.detail = detail }
    public var description: String { "not a row change: \(detail)" }
}

/// SQLite values as bytes: a tag per value (0 NULL, 1 integer, 2 real, 3 text, 4 blob), then
/// 8 big-endian bytes for numbers or a 4-byte length and the bytes for text and blobs. The
/// storage class survives, so a restored row compares equal to the original.
enum RowValuesCodec {
    static func append(_ values: [SQLValue], to bytes: inout [UInt8]) {
        for value in values {
            switch value {
            case .null: bytes.append(0)
            case .integer(let number): bytes.append(1); appendBigEndian(UInt64(bitPattern: number), to: &bytes)
            case .real(let number): bytes.append(2); appendBigEndian(number.bitPattern, to: &bytes)
            case .text(let text): bytes.append(3); appendLengthPrefixed(Array(text.utf8), to: &bytes)
            case .blob(let blob): bytes.append(4); appendLengthPrefixed(blob, to: &bytes)
            }
        }
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws -> [SQLValue] {
        var values: [SQLValue] = []
        var at = bytes.startIndex
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard bytes.endIndex - at >= count else { throw RowChangeFormatError(detail: "a value runs past the end") }
            defer { at += count }
            return bytes[at..<(at + count)]
        }
        func number() throws -> UInt64 { try take(8).reduce(0) { $0 << 8 | UInt64($1) } }
        while at < bytes.endIndex {
            let tag = try take(1).first!
            switch tag {
            case 0: values.append(.null)
            case 1: values.append(.integer(Int64(bitPattern: try number())))
            case 2: values.append(.real(Double(bitPattern: try number())))
            case 3, 4:
                let length = Int(try take(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                let content = Array(try take(length))
                values.append(tag == 3 ? .text(String(decoding: content, as: UTF8.self)) : .blob(content))
            default: throw RowChangeFormatError(detail: "unknown value tag \(tag)")
            }
        }
        return values
    }

    private static func appendBigEndian(_ number: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: number >> UInt64(shift))) }
    }

    private static func appendLengthPrefixed(_ content: [UInt8], to bytes: inout [UInt8]) {
        let length = UInt32(content.count)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        bytes += content
    }
}
