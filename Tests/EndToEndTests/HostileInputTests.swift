import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEnd {
    /// Records written to the shop-facing topics by someone who means harm: none of them stops
    /// a service or moves a clock; each is dead-lettered with its reason and the good records
    /// behind it are applied.
    @Suite struct HostileInputTests {
        static func event(_ id: String, _ type: String, _ time: String, _ member: String, _ data: String) -> [UInt8] {
            Array(#"{"specversion":"1.0","id":"\#(id)","source":"shop","type":"\#(type)","time":"\#(time)","subject":"\#(member)","data":\#(data)}"#.utf8)
        }

        static func deadLetters(_ broker: EmbeddedBroker, until enough: ([CloudEvent]) -> Bool, seconds: Double = 90) throws -> [CloudEvent] {
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.deadLetters.name])
            defer { reader.close() }
            let deadline = Date().addingTimeInterval(seconds)
            var letters: [CloudEvent] = []
            while Date() < deadline {
                reader.poll(milliseconds: 500)
                letters = try reader.records.map { try CloudEvent.decode($0.value!) }
                if enough(letters) { break }
            }
            return letters
        }

        @Test func poisonPayloadsAndFarFutureEventsAreDeadLetteredAndTheServicesGoOn() throws {
            let directory = try temporaryDirectory("hostile-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func send(_ topic: TopicSpec, _ value: [UInt8]) throws {
                try producer.send(topic: topic.name, key: Array("mallory".utf8), value: value)
            }
            try send(Topics.members, Self.event("h-reg", EventType.memberRegistered, "2026-03-01T09:00:00+08:00", "mallory", "{}"))
            // 600 KB of quotes: once escaped whole into a dead letter the producer refused,
            // stopping points, tiers and campaigns at every start.
            try send(Topics.orders, [UInt8](repeating: UInt8(ascii: "\""), count: 600_000))
            // A check-in dated 9999: once moved the partition's clock to the end of time.
            try send(Topics.engagement, Self.event("h-far", EventType.checkedIn, "9999-12-31T00:00:00+08:00", "mallory", "{}"))
            // Commands in the platform's name, unsigned: once minted a million and 10^14 points.
            try send(Topics.pointsCommands, Array(#"{"specversion":"1.0","id":"h-grant","source":"loyalty/evil","type":"points.grant","time":"2026-03-01T10:00:00+08:00","subject":"mallory","data":{"component":"campaign-reward","points":1000000}}"#.utf8))
            try send(Topics.pointsCommands, Array(#"{"specversion":"1.0","id":"h-credit","source":"loyalty/points","type":"points.transfer-credit","time":"2026-03-01T10:00:00+08:00","subject":"mallory","data":{"fromMemberId":"nobody","transferId":"X","points":100000000000000}}"#.utf8))
            // A progress mark in tiers' name, unsigned: it would let points run ahead of tiers' grants.
            try producer.send(topic: Topics.pointsCommands.name, key: nil, value: Array(
                #"{"specversion":"1.0","id":"h-mark","source":"loyalty/tiers","type":"stream.progress","time":"9999-12-31T00:00:00+08:00","data":{"producer":"tiers","task":0,"idle":true}}"#.utf8))
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array("free-points".utf8), value: Array(
                #"{"specversion":"1.0","id":"h-def","source":"loyalty/cli","type":"campaign.defined","time":"2026-01-01T00:00:00+08:00","subject":"free-points","data":{"id":"free-points","version":1,"name":"Free","trigger":{"event":"order.paid"},"reward":{"points":100000}}}"#.utf8))
            // A big order of mallory's put on another partition than the key's (a producer with
            // another partitioner): its task holds none of mallory's state.
            let home = Murmur2Partitioner.partition(of: Array("mallory".utf8), partitions: Topics.partitionCount)
            try producer.send(
                topic: Topics.orders.name, key: Array("mallory".utf8),
                value: Self.event("h-stray", EventType.orderPaid, "2026-03-02T09:00:00+08:00", "mallory", #"{"orderId":"H-0","paidMinor":1000000}"#),
                partition: (home + 1) % Topics.partitionCount)
            try send(Topics.orders, Self.event("h-ord", EventType.orderPaid, "2026-03-02T10:00:00+08:00", "mallory", #"{"orderId":"H-1","paidMinor":10000}"#))
            try send(Topics.engagement, Self.event("h-chk", EventType.checkedIn, "2026-03-02T11:00:00+08:00", "mallory", "{}"))
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let names = ["points", "tiers", "campaigns"]
            let services = names.map { name in
                ServiceProcess(
                    name: name, environment: [
                        "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                        "LOYALTY_WAIT_FOR": "tiers,campaigns",
                    ],
                    log: directory.appendingPathComponent("\(name).log"))
            }
            for service in services { try service.start() }
            defer { for service in services { _ = service.stop() } }

            let expected: Set<String> = [
                "points:not-json", "points:time-out-of-range", "points:unauthenticated-command", "tiers:not-json", "campaigns:not-json",
                "campaigns:unauthenticated-command", "campaigns:time-out-of-range",
                "points:wrong-partition", "tiers:wrong-partition", "campaigns:wrong-partition",
            ]
            let letters = try Self.deadLetters(broker) { letters in
                expected.isSubset(of: Set(letters.map { "\($0.data["service"]?.stringValue ?? ""):\($0.data["reason"]?.stringValue ?? "")" }))
            }
            let seen = Set(letters.map { "\($0.data["service"]?.stringValue ?? ""):\($0.data["reason"]?.stringValue ?? "")" })
            #expect(seen == expected, "\(letters.map { $0.data["detail"]?.stringValue ?? "" })")
            for letter in letters where letter.data["reason"]?.stringValue == "not-json" {
                #expect(letter.data["payloadTruncated"] == .bool(true))
                #expect(letter.data["payloadBytes"]?.int64Value == 600_000)
                #expect(letter.data["topic"]?.stringValue == Topics.orders.name)
            }
            // The good records behind them are applied, and the clock stayed in 2026.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline,
                  serviceCount(in: directory, "points", "SELECT COUNT(*) FROM inbox WHERE event_id IN ('h-ord', 'h-chk')") < 2 { usleep(200_000) }
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM inbox WHERE event_id IN ('h-ord', 'h-chk')") == 2)
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM inbox WHERE event_id = 'h-stray'") == 0)
            // 100 for the order, 400 of first-order bonus (signed by campaigns), 1 for the check-in:
            // nothing from the forged commands, the forged campaign or the stray order.
            let ledgerDeadline = Date().addingTimeInterval(30)
            while Date() < ledgerDeadline,
                  serviceCount(in: directory, "points", "SELECT SUM(points) FROM ledger WHERE member = 'mallory'") < 501 { usleep(200_000) }
            usleep(1_000_000)
            #expect(serviceCount(in: directory, "points", "SELECT SUM(points) FROM ledger WHERE member = 'mallory'") == 501)
            #expect(letters.filter { $0.data["reason"]?.stringValue == "unauthenticated-command" }.count == 4, "two commands, a progress mark and a definition")
            let year2027 = try EventTime.parse("2027-01-01T00:00:00+08:00").millis
            #expect(serviceCount(in: directory, "points", "SELECT MAX(stream_time) FROM task_clock") < year2027)
            // Timers run from the good records' times (expiry 13 months on), none from the year 9999.
            let year2100 = try EventTime.parse("2100-01-01T00:00:00+08:00").millis
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM timers WHERE due > \(year2100)") == 0)
            #expect(serviceCount(in: directory, "points", "SELECT COUNT(*) FROM timers") > 0)
            for service in services { #expect(service.isRunning, "\(service.name) keeps running") }
        }

        /// Points with its one store, and tiers with a store per task (where the strikes are
        /// counted in the store of the record's task); tiers also with the trap taken while
        /// applying, on a thread of a task's own (a thread per task: the record's task is not
        /// the loop's thread's).
        @Test(arguments: [("points", "service", "FAULT_CRASH_ON"), ("tiers", "task", "FAULT_CRASH_ON"), ("tiers", "task", "FAULT_CRASH_APPLYING_ON")])
        func aRecordAServiceFailsOnAtTwoStartsInARowIsSetAsideAsPoison(service: String, layout: String, fault: String) throws {
            let directory = try temporaryDirectory("poison-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            // A member whose task is not applied on the loop's thread (task 0's).
            let member = try #require(["pat", "pat-2", "pat-3", "pat-4"].first {
                Murmur2Partitioner.partition(of: Array($0.utf8), partitions: Topics.partitionCount) != 0
            })
            func send(_ topic: TopicSpec, _ value: [UInt8]) throws {
                try producer.send(topic: topic.name, key: Array(member.utf8), value: value)
            }
            try send(Topics.members, Self.event("p-reg", EventType.memberRegistered, "2026-03-01T09:00:00+08:00", member, "{}"))
            try send(Topics.orders, Self.event("p-1", EventType.orderPaid, "2026-03-02T10:00:00+08:00", member, #"{"orderId":"P-1","paidMinor":10000}"#))
            // The injected trap stands for any crash a record provokes (an overflow, a stack overflow).
            try send(Topics.orders, Self.event("p-bad", EventType.orderPaid, "2026-03-03T10:00:00+08:00", member, #"{"orderId":"TRAP-HERE","paidMinor":10000}"#))
            try send(Topics.orders, Self.event("p-3", EventType.orderPaid, "2026-03-04T10:00:00+08:00", member, #"{"orderId":"P-3","paidMinor":20000}"#))
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let log = directory.appendingPathComponent("\(service).log")
            let environment = [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_\(fault)": "TRAP-HERE", "LOYALTY_STORE_LAYOUT": layout,
                "LOYALTY_THREADS": String(Topics.partitionCount),
            ]
            // Two starts die on the record: a service that crashes at the same place every time.
            for start in 1...2 {
                let instance = ServiceProcess(name: service, environment: environment, log: log)
                try instance.start()
                let deadline = Date().addingTimeInterval(60)
                while instance.isRunning && Date() < deadline { usleep(100_000) }
                #expect(!instance.isRunning, "start \(start) dies on the record")
                #expect(instance.stop() != 0)
            }
            // The third sets it aside and goes on.
            let instance = ServiceProcess(name: service, environment: environment, log: log)
            try instance.start()
            defer { _ = instance.stop() }
            let letters = try Self.deadLetters(broker) { $0.contains { $0.data["reason"]?.stringValue == "poison-record" } }
            let poison = try #require(letters.first { $0.data["reason"]?.stringValue == "poison-record" })
            #expect(letters.count == 1)
            #expect(poison.data["topic"]?.stringValue == Topics.orders.name)
            #expect(poison.data["payload"]?.stringValue?.contains("TRAP-HERE") == true)
            #expect(poison.data["detail"]?.stringValue?.contains("two starts in a row") == true)
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, serviceCount(in: directory, service, "SELECT COUNT(*) FROM inbox WHERE event_id = 'p-3'") < 1 { usleep(200_000) }
            #expect(serviceCount(in: directory, service, "SELECT COUNT(*) FROM inbox WHERE event_id IN ('p-1', 'p-3')") == 2, "the orders around it")
            #expect(serviceCount(in: directory, service, "SELECT COUNT(*) FROM inbox WHERE event_id = 'p-bad'") == 0)
            #expect(instance.isRunning)
            let text = try String(contentsOf: log, encoding: .utf8)
            #expect(text.contains("the last start failed on an input record"))
            #expect(text.contains("it is dead-lettered as poison-record"))
            #expect(text.contains("LOYALTY_\(fault): a trap injected"), "the trap the test meant")
        }
    }
}
