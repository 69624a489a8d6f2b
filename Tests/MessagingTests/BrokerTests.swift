import Foundation
import Testing

@testable import Messaging

/// Producer and consumer against the embedded broker on loopback.
@Suite(.serialized) struct BrokerTests {
    final class Listener: RebalanceListener {
        var startOffsets: [TopicPartition: Int64] = [:]
        var assigned: [TopicPartition] = []
        var revoked: [TopicPartition] = []
        func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
            assigned += partitions
            return startOffsets
        }
        func partitionsRevoked(_ partitions: [TopicPartition]) { revoked += partitions }
    }

    let topicA = TopicSpec(name: "test.a", partitions: 4, compacted: false, key: "k", summary: "")
    let topicB = TopicSpec(name: "test.b", partitions: 4, compacted: false, key: "k", summary: "")

    func consumeAll(_ consumer: KafkaConsumer, count: Int, seconds: Double = 30) -> [ConsumedRecord] {
        var records: [ConsumedRecord] = []
        let deadline = Date().addingTimeInterval(seconds)
        while records.count < count && Date() < deadline {
            if case .record(let record) = consumer.poll(timeoutMilliseconds: 100) { records.append(record) }
        }
        return records
    }

    @Test func deliveryReportsNameTheirRecordsAndKeysCoPartition() throws {
        let broker = try EmbeddedBroker(topics: [topicA, topicB])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        for index in 0..<200 {
            let key = Array("member-\(index % 37)".utf8)
            try producer.send(topic: topicA.name, key: key, value: Array("a\(index)".utf8), tag: UInt64(1000 + index))
            try producer.send(topic: topicB.name, key: key, value: Array("b\(index)".utf8), tag: UInt64(5000 + index))
        }
        #expect(producer.flush(timeoutMilliseconds: 10_000))
        let reports = producer.takeDeliveryReports()
        #expect(reports.count == 400)
        let failures = reports.filter { $0.error != nil }.count
        #expect(failures == 0)
        // Our own murmur2 agrees with librdkafka's partitioner on every record.
        for report in reports {
            let index = Int(report.tag >= 5000 ? report.tag - 5000 : report.tag - 1000)
            #expect(Murmur2Partitioner.partition(of: Array("member-\(index % 37)".utf8), partitions: 4) == report.partition)
        }
        let expectedTags: Set<UInt64> = Set((0..<200).map { UInt64(1000 + $0) }).union((0..<200).map { UInt64(5000 + $0) })
        let tags = Set(reports.map(\.tag))
        #expect(tags == expectedTags)

        let listener = Listener()
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "g-\(UUID())"), listener: listener)
        try consumer.subscribe([topicA.name, topicB.name])
        let records = consumeAll(consumer, count: 400)
        #expect(records.count == 400)
        // The same key lands on the same partition number in both topics (murmur2 partitioner).
        var partitionOfKey: [String: [String: Int32]] = [:]
        for record in records { partitionOfKey[record.keyString!, default: [:]][record.topic] = record.partition }
        #expect(partitionOfKey.count == 37)
        for (_, byTopic) in partitionOfKey { #expect(byTopic[topicA.name] == byTopic[topicB.name]) }
        // Within a partition, records keep the order they were produced in.
        let aValues = records.filter { $0.topic == topicA.name && $0.keyString == "member-0" }.map { String(decoding: $0.value!, as: UTF8.self) }
        #expect(aValues == stride(from: 0, to: 200, by: 37).map { "a\($0)" })
        #expect(Set(listener.assigned.map(\.topic)) == [topicA.name, topicB.name])
        consumer.close()
    }

    @Test func assignmentStartsAtTheOffsetsTheListenerGives() throws {
        let broker = try EmbeddedBroker(topics: [topicA])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        for index in 0..<40 { try producer.send(topic: topicA.name, key: Array("k".utf8), value: Array("\(index)".utf8)) }
        #expect(producer.flush(timeoutMilliseconds: 10_000))
        let partition = try #require(producer.takeDeliveryReports().first?.partition)

        let listener = Listener()
        listener.startOffsets = [TopicPartition(topic: topicA.name, partition: partition): 25]
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "g-\(UUID())"), listener: listener)
        try consumer.subscribe([topicA.name])
        let records = consumeAll(consumer, count: 15)
        #expect(records.map(\.offset) == Array(25..<40))
        #expect(records.first.map { String(decoding: $0.value!, as: UTF8.self) } == "25")
        consumer.close()
        #expect(!listener.revoked.isEmpty)
    }

    @Test func tombstonesWithTheirKafkaTimestampAndEndOfPartitionArrive() throws {
        let broker = try EmbeddedBroker(topics: [topicA])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let sentAt = Int64(Date().timeIntervalSince1970 * 1000)
        try producer.send(topic: topicA.name, key: Array("k".utf8), value: nil)
        #expect(producer.flush(timeoutMilliseconds: 10_000))
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "g-\(UUID())"), listener: Listener())
        try consumer.subscribe([topicA.name])
        var tombstone: ConsumedRecord?
        var endsSeen = Set<Int32>()
        let deadline = Date().addingTimeInterval(20)
        while (tombstone == nil || endsSeen.count < 4) && Date() < deadline {
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record): tombstone = record
            case .endOfPartition(let partition, _): endsSeen.insert(partition.partition)
            default: break
            }
        }
        #expect(tombstone != nil && tombstone?.value == nil)
        // The embedded broker keeps the writer's timestamp (it has no LogAppendTime), and the
        // consumer says so: the margin of time-out-of-range trusts only the broker's.
        #expect(tombstone?.timestampType == .createTime)
        let timestamp = try #require(tombstone?.timestamp)
        #expect(timestamp >= sentAt - 1_000 && timestamp <= Int64(Date().timeIntervalSince1970 * 1000) + 1_000)
        #expect(endsSeen.count == 4)
        consumer.close()
    }
}
