import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

/// The same events, published to the input topics in two different interleavings, give
/// byte-identical ledger output: the service applies each task in event-time order, whatever
/// order the topics were written in.
@Suite(.serialized) struct PointsDeterminismTests {
    /// Runs the real `points` executable over `records` on a fresh broker until its inbox holds
    /// `inputs` events, and returns the ledger topic's records, partition by partition.
    func ledger(publishing records: [(topic: String, key: String, value: [UInt8])], inputs: Int) throws -> [Int32: [[UInt8]]] {
        let directory = try temporaryDirectory("points-determinism")
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker()
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        for record in records {
            try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
        }
        #expect(producer.flush(timeoutMilliseconds: 30_000))

        let service = ServiceProcess(
            name: "points",
            environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_TASK_IDLE_MS": "10000",
            ],
            log: directory.appendingPathComponent("points.log"))
        try service.start()
        // Done when every event is in the inbox and the outbox is empty.
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path))
        let deadline = Date().addingTimeInterval(240)
        while Date() < deadline {
            usleep(250_000)
            guard let applied = try? database.prepare("SELECT COUNT(*) FROM inbox").queryOne(row: { $0.int64(0) }),
                  let unsent = try? database.prepare("SELECT COUNT(*) FROM outbox").queryOne(row: { $0.int64(0) }) else { continue }
            if applied >= Int64(inputs) && unsent == 0 { break }
        }
        #expect(service.stop() == 0)

        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name])
        reader.readToEnd(seconds: 60)
        reader.close()
        var byPartition: [Int32: [[UInt8]]] = [:]
        for record in reader.records.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
            byPartition[record.partition, default: []].append(record.value!)
        }
        return byPartition
    }

    @Test func twoInterleavingsGiveByteIdenticalLedgers() throws {
        let scenario = PointsScenario(members: 120, days: 40, seed: 7, duplicateShare: 0.01, badRecords: false, grants: true)
        // First: as the shop wrote them, in time order across topics.
        let inTimeOrder = scenario.records
        // Second: one topic after another, commands first, members last.
        let topicOrder = [Topics.pointsCommands.name, Topics.engagement.name, Topics.orders.name, Topics.members.name]
        let topicByTopic = topicOrder.flatMap { topic in scenario.records.filter { $0.topic == topic } }
        #expect(topicByTopic.count == inTimeOrder.count)
        #expect(topicByTopic.map(\.value) != inTimeOrder.map(\.value))

        let inputs = scenario.events.count + scenario.derivedCommands
        #expect(scenario.derivedCommands > 0, "referrals exercise commands the service sends itself")
        let first = try ledger(publishing: inTimeOrder, inputs: inputs)
        let second = try ledger(publishing: topicByTopic, inputs: inputs)
        let entries = first.values.reduce(0) { $0 + $1.count }
        #expect(entries > scenario.events.count / 2, "the ledger has content")
        #expect(first.keys.sorted() == second.keys.sorted())
        for partition in first.keys.sorted() {
            let a = first[partition]!
            let b = second[partition] ?? []
            #expect(a.count == b.count, "partition \(partition)")
            if let index = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) {
                Issue.record("partition \(partition) differs at record \(index):\n\(String(decoding: a[index], as: UTF8.self))\n\(String(decoding: b[index], as: UTF8.self))")
            }
        }
    }
}
