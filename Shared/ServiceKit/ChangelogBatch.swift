import Storage

/// The row changes of one batch's transaction, packed into a single outbox row: writing and
/// deleting one row a batch costs the loop far less than one a changed row (about eight an
/// event). The relay unpacks it into the changelog's records, one per row keyed by table and
/// primary key (what compaction and the restore read), then the batch-end record.
///
/// Format: a 4-byte big-endian length and the name of the copy of the store that wrote the
/// batch, and the batch's 8-byte number (the batch-end record carries both: ``ChangelogCopy``); then
/// for each change, a 4-byte length and the key, then 0 for a tombstone, or 1, a 4-byte length
/// and the value.
enum ChangelogBatch {
    /// Packs `changes`, refusing any whose record would be over `limit` bytes, as an output
    /// of that size is refused.
    static func pack(_ changes: [RowChange], copy: String, sequence: Int64, topic: String, limit: Int) throws -> [UInt8] {
        var packed: [UInt8] = []
        packed.reserveCapacity(changes.count * 128)
        appendLength(copy.utf8.count, to: &packed)
        packed += copy.utf8
        for shift in stride(from: 56, through: 0, by: -8) { packed.append(UInt8(truncatingIfNeeded: UInt64(bitPattern: sequence) >> UInt64(shift))) }
        for change in changes {
            let key = change.encodedKey
            let value = change.encodedValue
            let size = key.count + (value?.count ?? 0)
            guard size <= limit else { throw OutputTooLarge(topic: topic, bytes: size, limit: limit) }
            appendLength(key.count, to: &packed)
            packed += key
            if let value {
                packed.append(1)
                appendLength(value.count, to: &packed)
                packed += value
            } else {
                packed.append(0)
            }
        }
        return packed
    }

    /// The changelog records of a packed batch, in commit order, closed by its batch-end record.
    /// - Throws: ``ChangelogBatchFormatError`` for bytes ``pack(_:copy:sequence:topic:limit:)`` did not write.
    static func records(of packed: [UInt8]) throws -> [(key: [UInt8], value: [UInt8]?)] {
        var records: [(key: [UInt8], value: [UInt8]?)] = []
        var at = 0
        func take(_ count: Int) throws -> [UInt8] {
            guard count >= 0, packed.count - at >= count else { throw ChangelogBatchFormatError(offset: at) }
            defer { at += count }
            return Array(packed[at..<(at + count)])
        }
        func length() throws -> Int { try take(4).reduce(0) { $0 << 8 | Int($1) } }
        let copy = String(decoding: try take(try length()), as: UTF8.self)
        let sequence = Int64(bitPattern: try take(8).reduce(0) { $0 << 8 | UInt64($1) })
        while at < packed.count {
            let key = try take(try length())
            switch try take(1)[0] {
            case 0: records.append((key, nil))
            case 1: records.append((key, try take(try length())))
            default: throw ChangelogBatchFormatError(offset: at - 1)
            }
        }
        records.append((ChangelogRestore.batchEndKey, ChangelogRestore.batchEndValue(rows: records.count, copy: copy, sequence: sequence)))
        return records
    }

    private static func appendLength(_ length: Int, to bytes: inout [UInt8]) {
        let value = UInt32(length)
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}

/// An outbox row for the changelog that is not a packed batch of row changes: a damaged store.
struct ChangelogBatchFormatError: Error, CustomStringConvertible {
    var offset: Int
    var description: String { "a changelog row of the outbox is damaged at byte \(offset): it is not a packed batch of row changes" }
}
