import Foundation
import Testing

@testable import Messaging

/// Faults on demand in the embedded broker: their text form, and their effect on a client.
@Suite(.serialized) struct BrokerFaultTests {
    @Test func faultsReadFromTheirTextForm() throws {
        #expect(try ScheduledFault(parsing: "latency=2500,after=10,for=30")
            == ScheduledFault(.latency(milliseconds: 2500), afterMilliseconds: 10_000, forMilliseconds: 30_000))
        #expect(try ScheduledFault(parsing: "latency=Fetch:2000,count=20")
            == ScheduledFault(.requestLatency(.fetch, milliseconds: 2000, count: 20)))
        #expect(try ScheduledFault(parsing: "down,after=1.5,for=10")
            == ScheduledFault(.down, afterMilliseconds: 1500, forMilliseconds: 10_000))
        let errors = try ScheduledFault(parsing: "errors=OffsetCommit:NOT_COORDINATOR,count=3")
        #expect(errors == ScheduledFault(.requestErrors(.offsetCommit, error: 16, count: 3)))
        #expect(errors.description == "errors=OffsetCommit:NOT_COORDINATOR,count=3")
        #expect(try ScheduledFault(parsing: "topic-error=loyalty.orders:LEADER_NOT_AVAILABLE,for=5")
            == ScheduledFault(.topicError(topic: "loyalty.orders", error: 5), forMilliseconds: 5000))
        // The text form reads back as the same fault.
        for text in ["latency=Produce:100,count=2,after=3", "down,for=10", "errors=Fetch:_TRANSPORT,count=4"] {
            let fault = try ScheduledFault(parsing: text)
            #expect(try ScheduledFault(parsing: fault.description) == fault)
        }
    }

    @Test func badFaultsAreRefusedNamingWhatIsWrong() {
        func problem(_ text: String) -> String {
            do {
                _ = try ScheduledFault(parsing: text)
                return "accepted"
            } catch {
                return error.message
            }
        }
        #expect(problem("slow").contains("unknown fault slow"))
        #expect(problem("latency=Fetsh:10").contains("unknown request type Fetsh"))
        #expect(problem("errors=Fetch:NO_SUCH_ERROR").contains("unknown Kafka error NO_SUCH_ERROR"))
        #expect(problem("latency=-5").contains("latency takes milliseconds"))
        #expect(problem("down,for=x").contains("for takes seconds"))
        #expect(problem("errors=Fetch:NOT_COORDINATOR,for=5").contains("count of requests"))
        #expect(problem("down,every=5").contains("unknown option every=5"))
    }

    @Test func injectedProduceErrorsAreRetriedAndTheBrokerComesBackUp() throws {
        let topic = TopicSpec(name: "test.faults", partitions: 1, compacted: false, key: "k", summary: "")
        let broker = try EmbeddedBroker(topics: [topic])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        // A retriable error on the next three produce requests: the idempotent producer retries.
        broker.inject(.requestErrors(.produce, error: try kafkaErrorCode(named: "NOT_LEADER_FOR_PARTITION"), count: 3))
        for index in 0..<20 { try producer.send(topic: topic.name, key: Array("k".utf8), value: Array("v\(index)".utf8)) }
        #expect(producer.flush(timeoutMilliseconds: 30_000))
        #expect(producer.takeDeliveryReports().filter { $0.error == nil }.count == 20)
        // Down for a moment, then up again: what was sent meanwhile arrives, in order.
        broker.schedule([ScheduledFault(.down, forMilliseconds: 1_500)])
        usleep(200_000)
        for index in 20..<40 { try producer.send(topic: topic.name, key: Array("k".utf8), value: Array("v\(index)".utf8)) }
        #expect(producer.flush(timeoutMilliseconds: 60_000))
        let reports = producer.takeDeliveryReports()
        #expect(reports.count == 20 && reports.allSatisfy { $0.error == nil })

        final class Listener: RebalanceListener {
            func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
            func partitionsRevoked(_ partitions: [TopicPartition]) {}
        }
        let listener = Listener()
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "faults"), listener: listener)
        try consumer.assign([TopicPartition(topic: topic.name, partition: 0): nil])
        var values: [String] = []
        let deadline = Date().addingTimeInterval(30)
        while values.count < 40 && Date() < deadline {
            if case .record(let record) = consumer.poll(timeoutMilliseconds: 100) { values.append(String(decoding: record.value!, as: UTF8.self)) }
        }
        #expect(values == (0..<40).map { "v\($0)" })
        #expect(consumer.clusterID() != nil)
        consumer.close()
    }
}
