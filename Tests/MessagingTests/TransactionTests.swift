import Foundation
import Testing

@testable import Messaging

/// The transactional producer against the embedded broker: what a changelog relies on.
@Suite struct TransactionTests {
    let topic = TopicSpec(name: "test.changelog", partitions: 3, compacted: true, key: "k", summary: "")

    func transactional(_ broker: EmbeddedBroker, id: String) throws -> KafkaProducer {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers, extra: ["transactional.id": id]))
        try producer.initTransactions(timeoutMilliseconds: 30_000)
        return producer
    }

    /// Everything a read-committed consumer sees of the topic, read to its end.
    func committedValues(_ broker: EmbeddedBroker) throws -> [String] {
        final class FromStart: RebalanceListener {
            func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
            func partitionsRevoked(_ partitions: [TopicPartition]) {}
        }
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "g-\(UUID())"), listener: FromStart())
        defer { consumer.close() }
        try consumer.assign(Dictionary(uniqueKeysWithValues: (0..<topic.partitions).map { (TopicPartition(topic: topic.name, partition: $0), Int64?(0)) }))
        var values: [String] = []
        var ended: Set<Int32> = []
        let deadline = Date().addingTimeInterval(30)
        while ended.count < topic.partitions && Date() < deadline {
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record): values.append(String(decoding: record.value ?? [], as: UTF8.self))
            case .endOfPartition(let partition, _): ended.insert(partition.partition)
            default: break
            }
        }
        #expect(ended.count == topic.partitions, "read every partition to its end")
        return values
    }

    /// (The embedded broker implements the transaction protocol but not `read_committed`: a
    /// reader there sees aborted records too, which is why a changelog also marks batch ends.)
    @Test func committedTransactionsOfAProducerAndItsSuccessorAreReadInOrder() throws {
        let broker = try EmbeddedBroker(topics: [topic])
        let first = try transactional(broker, id: "store-a")
        for batch in [["a", "b"], ["c"]] {
            try first.beginTransaction()
            for value in batch { try first.send(topic: topic.name, key: Array(value.utf8), value: Array(value.utf8), partition: 0) }
            try first.commitTransaction(timeoutMilliseconds: 30_000)
        }
        // A successor with the same id (a new instance of the store) goes on where it stopped.
        let second = try transactional(broker, id: "store-a")
        try second.beginTransaction()
        try second.send(topic: topic.name, key: Array("d".utf8), value: Array("d".utf8), partition: 0)
        try second.commitTransaction(timeoutMilliseconds: 30_000)

        let seen = try committedValues(broker)
        #expect(seen == ["a", "b", "c", "d"], "\(seen)")
    }
}
