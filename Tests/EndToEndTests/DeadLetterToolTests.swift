import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Testing

extension EndToEndSecondLane {
    /// The dead-letter tools on a running system: a record refused for a cause an operator then
    /// fixes is sent back with `loyalty dlq redrive` and applied once, however often it is sent.
    @Suite struct DeadLetterToolTests {
        func cli(_ arguments: [String], _ directory: URL, _ broker: EmbeddedBroker, log name: String) throws -> (status: Int32, output: String) {
            let log = directory.appendingPathComponent(name)
            let process = ServiceProcess(name: "loyalty", environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try process.startWith(arguments: arguments)
            process.process?.waitUntilExit()
            return (process.process?.terminationStatus ?? -1, try String(contentsOf: log, encoding: .utf8))
        }

        @Test func aDeadLetterIsRedrivenAfterItsCauseIsFixedAndAppliedOnce() throws {
            let directory = try temporaryDirectory("dlq-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            try producer.send(topic: Topics.members.name, key: Array("ivy".utf8), value: Array(
                #"{"specversion":"1.0","id":"ir","source":"shop","type":"member.registered","time":"2026-03-01T09:00:00+08:00","subject":"ivy","data":{}}"#.utf8))
            // Signed with a new key the points service has not been given yet.
            let newKey = try CommandKeys.parse("k2=second-key-secret-0000000002")
            let adjustment = newKey.sign(CloudEvent(
                id: "adj-ivy-1", source: "loyalty/cli", type: EventType.adjust, time: try EventTime.parse("2026-03-02T09:00:00+08:00"), subject: "ivy",
                data: .object(["points": 40, "reason": "goodwill", "operator": "ops-2"])))
            try producer.send(topic: Topics.pointsCommands.name, key: Array("ivy".utf8), value: adjustment.encoded())
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let oldKeys = "k1=first-key-secret-00000000001"
            func runPoints(keys: String, until done: () -> Bool) -> Bool {
                let points = ServiceProcess(name: "points", environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_COMMAND_KEYS": keys,
                ], log: directory.appendingPathComponent("points.log"))
                guard (try? points.start()) != nil else { return false }
                defer { _ = points.stop() }
                let deadline = Date().addingTimeInterval(60)
                while !done() && Date() < deadline { usleep(200_000) }
                return done()
            }
            #expect(runPoints(keys: oldKeys) { serviceApplied(in: directory, "points") >= 1 && serviceCount(in: directory, "points", "SELECT COALESCE(SUM(next_offset), 0) FROM offsets") >= 2 })
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM ledger WHERE member = 'ivy'") == 0)

            let listed = try cli(["dlq", "list", "--reason", "unauthenticated-command"], directory, broker, log: "list.log")
            #expect(listed.status == 0)
            #expect(listed.output.contains("dead-letter/points/loyalty.points.commands/"), "\(listed.output)")
            let letterID = try #require(listed.output.split(separator: "\n").first { $0.hasPrefix("dead-letter/") }?.split(separator: "\t").first)
            let shown = try cli(["dlq", "show", String(letterID)], directory, broker, log: "show.log")
            #expect(shown.output.contains("original record (loyalty.points.commands"))
            #expect(shown.output.contains("adj-ivy-1"))

            // The fix: the new key deployed, first, the old one kept for what it signed. Then the
            // record is sent back, twice (an operator who is not sure it went).
            let redriven = try cli(["dlq", "redrive", "--reason", "unauthenticated-command"], directory, broker, log: "redrive.log")
            #expect(redriven.status == 0 && redriven.output.contains("sent 1 records back"), "\(redriven.output)")
            _ = try cli(["dlq", "redrive", String(letterID)], directory, broker, log: "redrive-again.log")
            let bothKeys = "k2=second-key-secret-0000000002,\(oldKeys)"
            #expect(runPoints(keys: bothKeys) { serviceCount(in: directory, "points", "SELECT COALESCE(SUM(next_offset), 0) FROM offsets") >= 4 })
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM ledger WHERE member = 'ivy'") == 1)
            #expect(serviceCount(in: directory, "points", "SELECT SUM(points) FROM ledger WHERE member = 'ivy'") == 40)
            #expect(try cli(["dlq", "redrive"], directory, broker, log: "bad.log").status == 1)
        }
    }
}
