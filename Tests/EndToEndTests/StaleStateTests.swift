import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

extension EndToEndSecondLane {
    /// Input is never skipped silently: a store from another cluster, records deleted by
    /// retention before the service read them, and `loyalty broker` beside running services.
    @Suite struct StaleStateTests {
        func publish(_ broker: EmbeddedBroker, count: Int, member: String = "same-member", padding: Int = 0, from first: Int = 0) throws {
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let pad = String(repeating: "x", count: padding)
            for index in first..<(first + count) {
                let event = CloudEvent(id: "r\(index)", source: "shop", type: EventType.memberUpdated, time: EventTime(millis: 1_767_542_400_000 + Int64(index)),
                                       subject: member, data: .object(JSONObject(["note": .string(pad)])))
                try producer.send(topic: Topics.members.name, key: Array(member.utf8), value: event.encoded())
                if index % 1_000 == 999 { _ = producer.flush(timeoutMilliseconds: 30_000) }
            }
            #expect(producer.flush(timeoutMilliseconds: 30_000))
        }

        func waitForLog(_ log: URL, _ text: String, seconds: Double = 60) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if (try? String(contentsOf: log, encoding: .utf8))?.contains(text) ?? false { return true }
                usleep(200_000)
            }
            return false
        }

        /// Runs points until it has applied `count` records, then stops it.
        func runPoints(_ broker: EmbeddedBroker, directory: URL, log: URL, until count: Int64) throws {
            let run = ServiceProcess(name: "points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try run.start()
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, serviceCount(in: directory, "points", "SELECT COALESCE(SUM(next_offset), 0) FROM offsets") < count { usleep(200_000) }
            #expect(run.stop() == 0)
        }

        /// Starts points and expects it to refuse to run, saying `reason`.
        func expectRefusal(_ broker: EmbeddedBroker, directory: URL, log: URL, saying reason: String) throws {
            let again = ServiceProcess(name: "points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try again.start()
            let exitDeadline = Date().addingTimeInterval(60)
            while again.isRunning && Date() < exitDeadline { usleep(200_000) }
            #expect(!again.isRunning, "the service refuses to run")
            #expect(again.stop() == 1)
            let text = try String(contentsOf: log, encoding: .utf8)
            #expect(text.contains(reason), "see \(log.path)")
        }

        @Test func stateFromAnotherClusterIsRefusedWhetherItHasMoreRecordsOrFewer() throws {
            for laterCount in [2, 100] {
                let directory = try temporaryDirectory("points-stale")
                defer { try? FileManager.default.removeItem(at: directory) }
                let log = directory.appendingPathComponent("points.log")
                let first = try EmbeddedBroker(topics: Topics.all)
                try publish(first, count: 30)
                try runPoints(first, directory: directory, log: log, until: 30)
                // A new cluster, with fewer records than the store has read, or more: either way its
                // offsets mean nothing here, and skipping to them would lose records silently.
                let second = try EmbeddedBroker(topics: Topics.all)
                try publish(second, count: laterCount)
                try expectRefusal(second, directory: directory, log: log, saying: "was built from Kafka cluster")
            }
        }

        @Test func recordsDeletedBeforeTheServiceReadThemStopItNamingTheLostOffsets() throws {
            let directory = try temporaryDirectory("points-retention")
            defer { try? FileManager.default.removeItem(at: directory) }
            let log = directory.appendingPathComponent("points.log")
            let broker = try EmbeddedBroker(topics: Topics.all)
            try publish(broker, count: 10)
            try runPoints(broker, directory: directory, log: log, until: 10)
            // While the service is stopped, more than the embedded broker keeps of a partition
            // (about 5 MiB): the oldest records it has not read are deleted.
            try publish(broker, count: 7_000, padding: 1_000, from: 10)
            try expectRefusal(broker, directory: directory, log: log, saying: "were deleted (retention) before the service read them")
            let text = try String(contentsOf: log, encoding: .utf8)
            #expect(text.contains("records 10..<"), "the lost range starts at the stored offset")
        }

        @Test func theBrokerCommandNeverRemovesADatabaseInUse() throws {
            let directory = try temporaryDirectory("broker-beside")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let log = directory.appendingPathComponent("points.log")
            let points = ServiceProcess(name: "points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
            try points.start()
            #expect(waitForLog(log, "partitions assigned"))
            let database = directory.appendingPathComponent("points.sqlite").path
            // Tiers beside it with a store per task: those are the service's state too.
            let tiersLog = directory.appendingPathComponent("tiers.log")
            let tiers = ServiceProcess(
                name: "tiers",
                environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_STORE_LAYOUT": "task"],
                log: tiersLog)
            try tiers.start()
            #expect(waitForLog(tiersLog, "partitions assigned"))
            let taskStore = directory.appendingPathComponent("tiers.task-0.sqlite").path
            #expect(FileManager.default.fileExists(atPath: taskStore))

            // Asked to reset the state while points has it open: refused, nothing removed.
            let cliLog = directory.appendingPathComponent("loyalty.log")
            let reset = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path], log: cliLog)
            try reset.startWith(arguments: ["broker", "--reset-state"])
            #expect(reset.stop() == 1)
            #expect(try String(contentsOf: cliLog, encoding: .utf8).contains("open in a running service"))
            #expect(FileManager.default.fileExists(atPath: database))
            #expect(points.isRunning)
            #expect(points.stop() == 0, "\(points.lastErrors)")
            // With points stopped, tiers' task stores are still open: refused again.
            try reset.startWith(arguments: ["broker", "--reset-state"])
            #expect(reset.stop() == 1)
            let refusals = try String(contentsOf: cliLog, encoding: .utf8).components(separatedBy: "\n").filter { $0.contains("open in a running service") }
            #expect(refusals.count == 2 && refusals.last.map { $0.contains("tiers.task-0.sqlite") && !$0.contains("points.sqlite") } == true)
            #expect(FileManager.default.fileExists(atPath: taskStore))
            #expect(tiers.stop() == 0)

            // Not asked: it says the state is stale and leaves it.
            let plain = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path], log: cliLog)
            try plain.startWith(arguments: ["broker"])
            #expect(waitForLog(cliLog, "belong to an earlier broker"))
            #expect(plain.stop() == 0)
            #expect(FileManager.default.fileExists(atPath: database))

            // Asked, with nothing running: it says what it removes.
            let asked = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path], log: cliLog)
            try asked.startWith(arguments: ["broker", "--reset-state"])
            #expect(waitForLog(cliLog, "removed \(directory.path)/points.sqlite (--reset-state)"))
            #expect(waitForLog(cliLog, "removed \(taskStore) (--reset-state)"))
            #expect(asked.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: database))
            #expect(!FileManager.default.fileExists(atPath: taskStore))
        }
    }
}
