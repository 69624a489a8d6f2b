import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEnd {
    /// A service whose database belongs to another cluster refuses to start instead of
    /// skipping the new cluster's records as if it had applied them.
    @Suite struct StaleStateTests {
        func publishRegistrations(_ broker: EmbeddedBroker, count: Int) throws {
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for index in 0..<count {
                let event = CloudEvent(id: "r\(index)", source: "shop", type: EventType.memberRegistered, time: EventTime(millis: 1_767_542_400_000),
                                       subject: "same-member", data: .object(JSONObject()))
                try producer.send(topic: Topics.members.name, key: Array("same-member".utf8), value: event.encoded())
            }
            #expect(producer.flush(timeoutMilliseconds: 10_000))
        }

        @Test func stateFromAnEarlierBrokerIsRefusedWithAClearError() throws {
            let directory = try temporaryDirectory("points-stale")
            defer { try? FileManager.default.removeItem(at: directory) }
            let log = directory.appendingPathComponent("points.log")

            let first = try EmbeddedBroker()
            try publishRegistrations(first, count: 30)
            let run = ServiceProcess(name: "points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": first.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try run.start()
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, !((try? String(contentsOf: log, encoding: .utf8))?.contains("partitions assigned") ?? false) { usleep(200_000) }
            usleep(2_000_000)
            #expect(run.stop() == 0)

            // A new, empty cluster with fewer records than the database has applied.
            let second = try EmbeddedBroker()
            try publishRegistrations(second, count: 2)
            let again = ServiceProcess(name: "points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": second.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try again.start()
            let exitDeadline = Date().addingTimeInterval(60)
            while again.isRunning && Date() < exitDeadline { usleep(200_000) }
            #expect(!again.isRunning, "the service refuses to run")
            #expect(again.stop() == 1)
            let text = try String(contentsOf: log, encoding: .utf8)
            #expect(text.contains("is past the end of the partition"))
        }
    }
}
