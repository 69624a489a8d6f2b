import Foundation
import Messaging
import Storage

/// Rebuilds a service's store from its changelog topic: the latest state of every row the
/// service's batches committed (``ChangeCapture``), read whole and applied in one transaction,
/// so that a restore cut short leaves the store as empty as it found it.
enum ChangelogRestore {
    /// The key of the record that ends a batch's changes. No row change has it: theirs start
    /// with a table name.
    static let batchEndKey: [UInt8] = [0]

    /// A changelog that cannot be restored from.
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether the store has applied nothing yet: no input offset stored.
    static func storeIsEmpty(_ database: Database) throws -> Bool {
        try database.prepare("SELECT count(*) FROM offsets").queryOne { $0.int64(0) } == 0
    }

    /// Reads `topic` from its beginning to the ends it has when the restore starts, and applies
    /// every record to the store. A partition whose first records the broker has deleted
    /// (retention, or a topic created without compaction) is refused: a store restored from
    /// part of its changelog would be wrong without saying so.
    /// - Returns: how many row changes were applied.
    static func restore(
        into database: Database, capture: ChangeCapture, topic: String, configuration: ServiceConfiguration, logger: Logger
    ) throws -> Int {
        var settings = ConsumerConfiguration(
            bootstrapServers: configuration.bootstrapServers, groupID: "\(configuration.groupID)-restore", extra: configuration.kafkaSettings)
        settings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(settings, listener: StartingOffsets())
        defer { consumer.close() }
        let count = try consumer.partitionCounts(of: [topic])[topic] ?? 0
        let partitions = (0..<count).map { TopicPartition(topic: topic, partition: $0) }
        let bounds = try consumer.logBounds(of: partitions)
        if let lost = bounds.sorted(by: { $0.key.partition < $1.key.partition }).first(where: { $0.value.low > 0 }) {
            throw Refused(description: "\(lost.key) starts at offset \(lost.value.low): the broker has deleted the first records of the changelog, "
                + "so the store cannot be restored from it (the topic must be compacted, never deleted by time). "
                + "Restore the data directory from a copy, or rebuild the store from the input topics (replay)")
        }
        var remaining = bounds.filter { $0.value.high > 0 }.mapValues(\.high)
        guard !remaining.isEmpty else { return 0 }
        let total = remaining.values.reduce(0, +)
        logger.info("restoring the store from the changelog", ["topic": topic, "records": String(total)])
        try consumer.assign(Dictionary(uniqueKeysWithValues: remaining.keys.map { ($0, Int64(0)) }))
        var applied = 0
        var lastProgress = Date()
        // A batch's changes wait for its end record: on a broker without transactions (the
        // embedded one) a dead instance may have sent only some of its last batch.
        var unfinished: [TopicPartition: [ConsumedRecord]] = [:]
        try database.transaction {
            while !remaining.isEmpty {
                guard Date().timeIntervalSince(lastProgress) < 60 else {
                    throw Refused(description: "the changelog \(topic) gave nothing for 60 s with \(remaining.values.reduce(0, +)) records still to read")
                }
                switch consumer.poll(timeoutMilliseconds: 100) {
                case .record(let record):
                    lastProgress = Date()
                    guard let end = remaining[record.topicPartition], record.offset < end else { continue }
                    if record.offset + 1 >= end { remaining[record.topicPartition] = nil }
                    guard let key = record.key else {
                        throw Refused(description: "\(record.topicPartition)@\(record.offset) has no key: it is no row change")
                    }
                    guard key == batchEndKey else {
                        unfinished[record.topicPartition, default: []].append(record)
                        continue
                    }
                    for change in unfinished.removeValue(forKey: record.topicPartition) ?? [] {
                        do {
                            try capture.apply(RowChange(encodedKey: change.key!, encodedValue: change.value))
                        } catch {
                            throw Refused(description: "\(change.topicPartition)@\(change.offset): \(error)")
                        }
                        applied += 1
                    }
                case .endOfPartition(let partition, let offset):
                    if let end = remaining[partition], offset >= end { remaining[partition] = nil }
                case .error(let error, let partition?, let offset) where error.code == KafkaError.offsetOutOfRange:
                    throw Refused(description: "\(partition): the broker deleted records from offset \(offset) on while the store was restored from them")
                case .error(let error, _, _):
                    logger.warning("changelog consumer error", ["error": error.description])
                case nil:
                    break
                }
            }
        }
        let leftOut = unfinished.values.reduce(0) { $0 + $1.count }
        logger.info("restored the store from the changelog", [
            "topic": topic, "rows": String(applied), "leftOut": String(leftOut),
            "why": leftOut > 0 ? "the last batch's end never reached the changelog: the batch is applied again from its input" : "",
        ])
        return applied
    }
}
