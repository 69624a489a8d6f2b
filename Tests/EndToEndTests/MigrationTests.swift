import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEndSecondLane {
    /// A shop moving to the platform brings its members' balances with `loyalty import-balances`.
    @Suite struct MigrationTests {
        func cli(_ arguments: [String], _ directory: URL, broker: EmbeddedBroker) throws -> (status: Int32, output: String) {
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString).log")
            defer { try? FileManager.default.removeItem(at: log) }
            let process = ServiceProcess(name: "loyalty", environment: [
                "LOYALTY_DATA_DIR": directory.path, "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers,
            ], log: log)
            try process.startWith(arguments: arguments)
            process.process?.waitUntilExit()
            return (process.stop(), try String(contentsOf: log, encoding: .utf8))
        }

        @Test func openingBalancesAreImportedOnceWithTheirOwnExpiry() throws {
            let directory = try temporaryDirectory("migration-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for member in ["mia", "noah"] {
                try producer.send(topic: Topics.members.name, key: Array(member.utf8), value: Array(
                    #"{"specversion":"1.0","id":"reg-\#(member)","source":"shop","type":"member.registered","time":"2026-11-01T09:00:00+08:00","subject":"\#(member)","data":{}}"#.utf8))
            }
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            let file = directory.appendingPathComponent("balances.jsonl")
            let at = ["--system", "old-crm", "--operator", "ops-7", "--at", "2026-12-01T00:00:00+08:00"]

            // One bad line sends nothing.
            try """
                {"memberId":"mia","lots":[{"points":300,"expiresAt":"2027-01-31T23:59:59+08:00"},{"points":120,"expiresAt":"2027-12-31T23:59:59+08:00"}]}
                {"memberId":"noah","lots":[{"points":0,"expiresAt":"2027-01-31T23:59:59+08:00"}]}
                """.write(to: file, atomically: true, encoding: .utf8)
            let refused = try cli(["import-balances", file.path] + at, directory, broker: broker)
            #expect(refused.status == 1 && refused.output.contains("line 2: invalid-event: data.lots[0].points must be between 1 and 1000000000"), "\(refused.output)")

            try """
                {"memberId":"mia","lots":[{"points":300,"expiresAt":"2027-01-31T23:59:59+08:00"},{"points":120,"expiresAt":"2027-12-31T23:59:59+08:00"}]}
                {"memberId":"noah","lots":[{"points":75,"expiresAt":"2027-06-30T23:59:59+08:00"}]}
                """.write(to: file, atomically: true, encoding: .utf8)
            let first = try cli(["import-balances", file.path] + at, directory, broker: broker)
            #expect(first.status == 0 && first.output.contains("published 2 opening balances from old-crm"), "\(first.output)")
            let again = try cli(["import-balances", file.path] + at, directory, broker: broker)
            #expect(again.status == 0, "\(again.output)")

            let points = ServiceProcess(name: "points", environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
            ], log: directory.appendingPathComponent("points.log"))
            try points.start()
            defer { _ = points.stop() }
            let probe = try EndProbe(bootstrap: broker.bootstrapServers)
            let deadline = Date().addingTimeInterval(60)
            while !probe.hasReadToEnd("points", in: directory, topics: [Topics.members.name, Topics.pointsCommands.name]) && Date() < deadline {
                usleep(200_000)
            }
            #expect(serviceCount(in: directory, "points", "SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = 'mia'") == 420)
            #expect(serviceCount(in: directory, "points", "SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = 'noah'") == 75)
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM ledger WHERE kind = 'imported'") == 3, "the second run changed nothing")

            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsCommands.name, Topics.pointsLedger.name, Topics.pointsBalances.name])
            defer { reader.close() }
            var ledger: [CloudEvent] = []
            let readDeadline = Date().addingTimeInterval(30)
            while ledger.count < 3 && Date() < readDeadline {
                reader.poll(milliseconds: 500)
                ledger = try reader.records.filter { $0.topic == Topics.pointsLedger.name }.map { try CloudEvent.decode($0.value!) }
            }
            #expect(Set(ledger.map(\.id)) == ["opening-balance/old-crm/mia/imported/1", "opening-balance/old-crm/mia/imported/2", "opening-balance/old-crm/noah/imported/1"])
            #expect(ledger.allSatisfy { $0.type == "points.imported" && $0.time == (try? EventTime.parse("2026-12-01T00:00:00+08:00")) })
            try expectRecordsMatchTheirSchemas(reader.records, in: directory)
        }
    }
}
