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

    init(configuration: ServiceConfiguration, topics: [String], logger: Logger,
         storedOffsets: ([TopicPartition]) throws -> [TopicPartition: Int64]) throws {
        self.logger = logger
        consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: configuration.bootstrapServers, groupID: "\(configuration.groupID)-broadcast"),
            listener: self)
        // Every partition the cluster has, whatever the catalogue's default.
        var partitions: [TopicPartition] = []
        for (topic, count) in try consumer.partitionCounts(of: topics) {
            partitions += (0..<count).map { TopicPartition(topic: topic, partition: $0) }
        }
        assigned = Set(partitions)
        let offsets = try storedOffsets(partitions)
        try consumer.assign(Dictionary(uniqueKeysWithValues: partitions.map { ($0, offsets[$0]) }))
    }

    /// Whether every partition has been read to its end once.
    var isCaughtUp: Bool { caughtUp.isSuperset(of: assigned) }

    /// Up to `maxRecords` records, waiting at most `timeoutMilliseconds` for the first.
    func poll(maxRecords: Int, timeoutMilliseconds: Int32) -> [ConsumedRecord] {
        var records: [ConsumedRecord] = []
        var timeout = timeoutMilliseconds
        while records.count < maxRecords, let event = consumer.poll(timeoutMilliseconds: timeout) {
            timeout = 0
            switch event {
            case .record(let record): records.append(record)
            case .endOfPartition(let partition, _): caughtUp.insert(partition)
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
