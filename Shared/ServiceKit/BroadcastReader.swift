import Foundation
import Messaging

/// Reads a service's broadcast topics (campaign definitions) whole, in every instance, from
/// the offsets kept in the service's database. It assigns itself every partition of the
/// topics directly, without a group: Kafka-side offsets are never used.
final class BroadcastReader: RebalanceListener {
    private var consumer: KafkaConsumer!
    private let logger: Logger
    private var assigned: Set<TopicPartition> = []
    private var caughtUp: Set<TopicPartition> = []
    /// The next offset to read of each partition.
    private var positions: [TopicPartition: Int64] = [:]

    init(configuration: ServiceConfiguration, topics: [String], logger: Logger,
         storedOffsets: ([TopicPartition]) throws -> [TopicPartition: Int64]) throws {
        self.logger = logger
        consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: configuration.bootstrapServers, groupID: "\(configuration.groupID)-broadcast", extra: configuration.kafkaSettings),
            listener: self)
        // Every partition the cluster has, whatever the catalogue's default.
        var partitions: [TopicPartition] = []
        for (topic, count) in try consumer.partitionCounts(of: topics) {
            partitions += (0..<count).map { TopicPartition(topic: topic, partition: $0) }
        }
        assigned = Set(partitions)
        let offsets = try storedOffsets(partitions)
        positions = offsets
        try consumer.assign(Dictionary(uniqueKeysWithValues: partitions.map { ($0, offsets[$0]) }))
    }

    /// Whether every partition has been read to its end once.
    var isCaughtUp: Bool { caughtUp.isSuperset(of: assigned) }

    /// Whether the broker has reported records of a partition that have not been read yet
    /// (the high watermark of the last fetch, a cache lookup): task records wait for them, so
    /// a definition is never passed over because its fetch was slow.
    var isBehind: Bool {
        assigned.contains { partition in
            guard let high = consumer.cachedWatermarks(of: partition)?.high else { return false }
            return (positions[partition] ?? 0) < high
        }
    }

    /// Up to `maxRecords` records, waiting at most `timeoutMilliseconds` for the first.
    func poll(maxRecords: Int, timeoutMilliseconds: Int32) -> [ConsumedRecord] {
        var records: [ConsumedRecord] = []
        var timeout = timeoutMilliseconds
        while records.count < maxRecords, let event = consumer.poll(timeoutMilliseconds: timeout) {
            timeout = 0
            switch event {
            case .record(let record):
                records.append(record)
                positions[record.topicPartition] = record.offset + 1
            case .endOfPartition(let partition, let offset):
                caughtUp.insert(partition)
                positions[partition] = max(positions[partition] ?? offset, offset)
            case .error(let error, _, _): logger.warning("broadcast consumer error", ["error": error.description])
            }
        }
        return records
    }

    func close() { consumer.close() }

    // Never called: the reader joins no group.
    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    func partitionsRevoked(_ partitions: [TopicPartition]) {}
}
