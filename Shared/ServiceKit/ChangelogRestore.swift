import Foundation
import Messaging
import Storage

/// Rebuilds a service's store from its changelog topic: the latest state of every row the
/// service's batches committed (``ChangeCapture``), read whole and applied in one transaction,
/// so that a restore cut short leaves the store as empty as it found it.
enum ChangelogRestore {
    /// The key of the record that ends a batch's changes. No row change has a key of one byte
    /// below 3: theirs start with a table name.
    static let batchEndKey: [UInt8] = [0]
    /// The key of the record an instance keeping the changelog writes when it starts: changes
    /// before it that no batch end closed (a dead predecessor's last batch) never count.
    static let restartKey: [UInt8] = [1]
    /// The key of the record written when the store stops keeping the changelog: nothing before
    /// it may be restored, since the store went on without logging.
    static let endedKey: [UInt8] = [2]
    /// The `store_identity` row that says the store's whole history is in its changelog.
    static let loggedSinceEmptyName = "changelog"

    /// A changelog that cannot be restored from.
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether the store's whole history is in its changelog: it kept one from when it was empty.
    static func isLoggedSinceEmpty(_ database: Database) throws -> Bool {
        try database.prepare("SELECT value FROM store_identity WHERE name = ?").queryOne(.text(loggedSinceEmptyName)) { $0.string(0) } == "on"
    }

    /// Records whether the store's whole history is in its changelog.
    static func markLoggedSinceEmpty(_ database: Database, _ logged: Bool) throws {
        try database.transaction {
            if logged {
                try database.prepare("INSERT OR REPLACE INTO store_identity(name, value) VALUES(?, 'on')").run(.text(loggedSinceEmptyName))
            } else {
                try database.prepare("DELETE FROM store_identity WHERE name = ?").run(.text(loggedSinceEmptyName))
            }
        }
    }

    /// The store's transactional producer (`transactional.id` `<group id>-changelog`), started:
    /// starting it fences every older producer of the store and aborts what it left open.
    static func producer(_ configuration: ServiceConfiguration) throws -> KafkaProducer {
        let producer = try KafkaProducer(ProducerConfiguration(
            bootstrapServers: configuration.bootstrapServers,
            extra: ["transactional.id": "\(configuration.groupID)-changelog"].merging(configuration.kafkaSettings) { $1 }))
        try producer.initTransactions(timeoutMilliseconds: 60_000)
        return producer
    }

    /// Sends one of the changelog's own records (`restartKey`, `endedKey`) in a transaction.
    static func send(_ key: [UInt8], to topic: String, through producer: KafkaProducer) throws {
        try producer.beginTransaction()
        try producer.send(topic: topic, key: key, value: [], partition: 0)
        try producer.commitTransaction(timeoutMilliseconds: 60_000)
        _ = producer.takeDeliveryReports()
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
        var unfinished = 0
        var lastProgress = Date()
        // Rows are applied as they come, a batch's in a savepoint of their own, released by
        // the batch's end record: the rows of a batch whose end never came (on a broker without
        // transactions, the embedded one, a dead instance may have sent part of its last
        // batch) are rolled back at the restart record after them, or at the end.
        try database.transaction {
            try database.execute("SAVEPOINT restore_all; SAVEPOINT restore_batch")
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
                    switch key {
                    case batchEndKey:
                        try database.execute("RELEASE restore_batch; SAVEPOINT restore_batch")
                        applied += unfinished
                        unfinished = 0
                    case restartKey:
                        try database.execute("ROLLBACK TO restore_batch")
                        unfinished = 0
                    case endedKey:
                        // The store went on without logging: nothing before this counts.
                        try database.execute("ROLLBACK TO restore_all")
                        try database.execute("SAVEPOINT restore_batch")
                        applied = 0
                        unfinished = 0
                    default:
                        do {
                            try capture.apply(RowChange(encodedKey: key, encodedValue: record.value))
                        } catch {
                            throw Refused(description: "\(record.topicPartition)@\(record.offset): \(error)")
                        }
                        unfinished += 1
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
            try database.execute("ROLLBACK TO restore_batch; RELEASE restore_all")
        }
        logger.info("restored the store from the changelog", [
            "topic": topic, "rows": String(applied), "leftOut": String(unfinished),
            "why": unfinished > 0 ? "the last batch's end never reached the changelog: the batch is applied again from its input" : "",
        ])
        return applied
    }
}
