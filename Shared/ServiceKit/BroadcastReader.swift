import Foundation
import Messaging

/// Reads a service's broadcast topics (campaign definitions) whole, in every instance, from
/// the offsets kept in the service's database. A consumer group of its own per process gives
/// it every partition; Kafka-side offsets are never used.
final class BroadcastReader: RebalanceListener {
    private var consumer: KafkaConsumer!
    private let storedOffsets: ([TopicPartition]) throws -> [TopicPartition: Int64]
    private let logger: Logger
    private var assigned: Set<TopicPartition> = []
    private var caughtUp: Set<TopicPartition> = []

    init(configuration: ServiceConfiguration, topics: [String], logger: Logger,
         storedOffsets: @escaping ([TopicPartition]) throws -> [TopicPartition: Int64]) throws {
        self.storedOffsets = storedOffsets
        self.logger = logger
        var consumerConfiguration = ConsumerConfiguration(
            bootstrapServers: configuration.bootstrapServers,
            groupID: "\(configuration.groupID)-broadcast-\(UUID().uuidString.lowercased())")
        consumerConfiguration.sessionTimeoutMilliseconds = configuration.sessionTimeoutMilliseconds
        consumer = try KafkaConsumer(consumerConfiguration, listener: self)
        try consumer.subscribe(topics)
    }

    /// Whether every partition has been read to its end once.
    var isCaughtUp: Bool { !assigned.isEmpty && caughtUp.isSuperset(of: assigned) }

    /// Up to `maxRecords` records, waiting at most `timeoutMilliseconds` for the first.
    func poll(maxRecords: Int, timeoutMilliseconds: Int32) -> [ConsumedRecord] {
        var records: [ConsumedRecord] = []
        var timeout = timeoutMilliseconds
        while records.count < maxRecords, let event = consumer.poll(timeoutMilliseconds: timeout) {
            timeout = 0
            switch event {
            case .record(let record): records.append(record)
            case .endOfPartition(let partition, _): caughtUp.insert(partition)
            case .error(let error): logger.warning("broadcast consumer error", ["error": error.description])
            }
        }
        return records
    }

    func close() { consumer.close() }

    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        assigned = Set(partitions)
        do {
            return try storedOffsets(partitions)
        } catch {
            // Reading again from the start is safe: applying a known definition changes nothing.
            logger.warning("cannot read broadcast offsets; reading from the start", ["error": "\(error)"])
            return [:]
        }
    }

    func partitionsRevoked(_ partitions: [TopicPartition]) {
        assigned.subtract(partitions)
    }
}
