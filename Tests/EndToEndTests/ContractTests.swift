import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Testing

extension EndToEndSecondLane {
    /// The published contracts hold: every record the four services publish, and every input
    /// the test sends, validates against its JSON Schema in docs/schemas (checked by Python's
    /// jsonschema, through scripts/validate-events).
    @Suite struct ContractTests {
        /// A small shop's two members over a year and a half: every kind of input, most kinds of output.
        static func history() -> [(topic: String, json: String)] {
            var events: [(String, String)] = []
            var counter = 0
            func add(_ type: String, _ member: String, _ time: String, _ data: String) {
                counter += 1
                let topic = Topics.inputTopic(forEventType: type)!.name
                events.append((topic, #"{"specversion":"1.0","id":"c\#(counter)","source":"shop","type":"\#(type)","time":"\#(time)","subject":"\#(member)","data":\#(data)}"#))
            }
            add("member.registered", "ann", "2026-01-01T09:00:00+08:00", #"{"channels":{"sms":"13800138000","email":"ann@example.com"},"marketingConsent":true,"locale":"en","birthday":"1990-02-10","preferredChannel":"sms"}"#)
            add("member.registered", "ben", "2026-01-02T09:00:00+08:00", #"{"referrerId":"ann","channels":{"push":"tok-ben"},"marketingConsent":false,"locale":"zh-CN"}"#)
            add("order.paid", "ann", "2026-01-03T10:00:00+08:00", #"{"orderId":"A1","paidMinor":250000,"lines":[{"category":"apparel","paidMinor":150000},{"category":"high-margin","paidMinor":100000}]}"#)
            add("order.refunded", "ann", "2026-01-05T10:00:00+08:00", #"{"orderId":"A1","refundId":"F1","refundMinor":50000}"#)
            add("order.paid", "ben", "2026-01-06T10:00:00+08:00", #"{"orderId":"B1","paidMinor":30000}"#)
            for day in 1...31 { add("engagement.checked-in", "ann", String(format: "2026-01-%02dT08:00:00+08:00", day), "{}") }
            add("engagement.review-posted", "ann", "2026-01-20T12:00:00+08:00", "{}")
            add("engagement.content-shared", "ann", "2026-01-20T12:05:00+08:00", "{}")
            add("engagement.task-completed", "ann", "2026-01-20T12:10:00+08:00", #"{"task":"newcomer"}"#)
            add("points.redeem", "ann", "2026-02-01T12:00:00+08:00", #"{"rewardId":"express-delivery"}"#)
            add("points.cash-offset", "ann", "2026-02-02T12:00:00+08:00", #"{"orderId":"A2","orderMinor":20000,"points":100}"#)
            add("points.transfer", "ann", "2026-02-03T12:00:00+08:00", #"{"toMemberId":"ben","points":100}"#)
            add("points.transfer", "ann", "2026-02-03T13:00:00+08:00", #"{"toMemberId":"ghost","points":100}"#)
            add("points.redeem", "ben", "2026-02-04T12:00:00+08:00", #"{"rewardId":"tea-set"}"#)
            add("order.paid", "ann", "2026-02-18T10:00:00+08:00", #"{"orderId":"A3","paidMinor":1200000}"#)
            add("member.updated", "ben", "2026-03-01T10:00:00+08:00", #"{"locale":"en"}"#)
            add("order.paid", "ben", "2026-06-01T10:00:00+08:00", #"{"orderId":"B2","paidMinor":10000}"#)
            add("member.closed", "ben", "2026-06-02T10:00:00+08:00", "{}")
            add("order.paid", "ann", "2027-04-15T10:00:00+08:00", #"{"orderId":"A4","paidMinor":10000}"#)
            add("order.paid", "nobody", "2026-01-04T10:00:00+08:00", #"{"orderId":"N1","paidMinor":10000}"#)
            return events
        }

        @Test func everyRecordPublishedMatchesItsSchema() throws {
            let directory = try temporaryDirectory("contracts-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let history = Self.history()
            for (topic, json) in history {
                let member = try CloudEvent.decode(Array(json.utf8)).subject!
                try producer.send(topic: topic, key: Array(member.utf8), value: Array(json.utf8))
            }
            let adjustment = testCommandKeys.sign(CloudEvent(
                id: "c-adjust", source: "loyalty/cli", type: EventType.adjust, time: try EventTime.parse("2026-02-05T10:00:00+08:00"), subject: "ann",
                data: .object(["points": 30, "reason": "goodwill", "operator": "ops-1"])))
            try producer.send(topic: Topics.pointsCommands.name, key: Array("ann".utf8), value: adjustment.encoded())
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let names = ["points", "tiers", "campaigns", "notifications"]
            let services = names.map { name in
                ServiceProcess(name: name, environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0",
                ], log: directory.appendingPathComponent("\(name).log"))
            }
            for service in services { try service.start() }
            defer { for service in services { _ = service.stop() } }
            let probe = try EndProbe(bootstrap: broker.bootstrapServers)
            let inputs: [String: [String]] = [
                "points": [Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name],
                "tiers": [Topics.orders.name], "campaigns": [Topics.members.name, Topics.orders.name, Topics.engagement.name],
                "notifications": [Topics.members.name, Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name],
            ]
            // Until every service has read all of its inputs, twice in a row a second apart.
            let deadline = Date().addingTimeInterval(120)
            var settled = 0
            while settled < 2 && Date() < deadline {
                settled = names.allSatisfy { probe.hasReadToEnd($0, in: directory, topics: inputs[$0]!) } ? settled + 1 : 0
                usleep(1_000_000)
            }
            #expect(settled == 2, "every service read its inputs to their end")

            // Every topic the platform writes (the instance directory is operational, not an event).
            let outputs = Topics.all.map(\.name).filter {
                ![Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.instances.name].contains($0)
                    && !Topics.changelogs.map(\.name).contains($0)
            }
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: outputs)
            defer { reader.close() }
            reader.readToEnd(seconds: 30)
            let types = Set(reader.records.compactMap { try? CloudEvent.decode($0.value ?? []).type })
            #expect(types.isSuperset(of: ["points.earned", "points.released", "points.reversed", "points.redeemed", "points.refused", "points.balance",
                                          "points.grant", "tier.upgraded", "tier.status", "campaign.rewarded", "campaign.results",
                                          "notification.requested", "loyalty.dead-letter"]), "\(types.sorted())")
            // The four member views, assembled by `loyalty member`, agree with what was published.
            let cli = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path], log: directory.appendingPathComponent("ann.json"))
            try cli.startWith(arguments: ["member", "ann", "--json"])
            cli.process?.waitUntilExit()
            let page = try JSONValue.parse(Array(try #require(
                try String(contentsOf: directory.appendingPathComponent("ann.json"), encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("{") }).utf8))
            #expect(page["problems"] == nil, "\(page["problems"]?.jsonString ?? "")")
            let entries = reader.records.filter { $0.topic == Topics.pointsLedger.name }.compactMap { try? CloudEvent.decode($0.value ?? []) }
                .filter { $0.subject == "ann" && $0.data["balanceAfter"] != nil }
            #expect(page["points"]?["entries"]?.arrayValue?.count == entries.count)
            #expect(page["points"]?["balance"]?["net"]?.int64Value == entries.reduce(0) { $0 + ($1.data["points"]?.int64Value ?? 0) })
            let changes = reader.records.filter { $0.topic == Topics.tierChanges.name }.compactMap { try? CloudEvent.decode($0.value ?? []) }.filter { $0.subject == "ann" }
            #expect(page["tiers"]?["history"]?.arrayValue?.map { $0["to"]?.stringValue } == changes.map { $0.data["to"]?.stringValue })
            #expect(page["campaigns"]?["badges"]?.arrayValue?.contains { $0["badge"]?.stringValue == "streak-30" } == true, "31 check-ins in a row")
            let messages = reader.records.filter { $0.topic == Topics.notifications.name }.compactMap { try? CloudEvent.decode($0.value ?? []) }.filter { $0.subject == "ann" }
            #expect(page["notifications"]?["sent"]?.arrayValue?.count == messages.count)
            #expect(page["notifications"]?["channels"]?["sms"]?.stringValue == "138****8000", "addresses masked")

            let sent = history.map { topic, json in ConsumedRecord(topic: topic, partition: 0, offset: 0, key: nil, value: Array(json.utf8)) }
            try expectRecordsMatchTheirSchemas(reader.records + sent, in: directory)
        }
    }
}
