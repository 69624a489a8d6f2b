import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEndSecondLane {
    /// Every service decides "the same event" the same way: a re-send laid out differently is a
    /// duplicate in each service that reads it, and a re-send with a changed value a conflict.
    @Suite struct DuplicatePolicyTests {
        static let registered = #"{"specversion":"1.0","id":"dup-reg","source":"shop","type":"member.registered","time":"2026-03-01T09:00:00+08:00","subject":"dana","data":{"channels":{"sms":"13800138000"},"marketingConsent":true,"locale":"en"}}"#
        static let registeredRelaidOut = """
            {"data": {"locale": "en", "marketingConsent": true, "channels": {"sms": "13800138000"}},
             "subject": "dana", "time": "2026-03-01T01:00:00Z", "type": "member.registered", "source": "shop", "id": "dup-reg", "specversion": "1.0"}
            """
        static let registeredChanged = #"{"specversion":"1.0","id":"dup-reg","source":"shop","type":"member.registered","time":"2026-03-01T09:00:00+08:00","subject":"dana","data":{"channels":{"sms":"13800138001"},"marketingConsent":true,"locale":"en"}}"#
        static let paid = #"{"specversion":"1.0","id":"dup-ord","source":"shop","type":"order.paid","time":"2026-03-02T20:15:00+08:00","subject":"dana","data":{"orderId":"D-1","paidMinor":32000,"lines":[{"category":"apparel","paidMinor":32000}]}}"#
        static let paidRelaidOut = """
            { "specversion" : "1.0", "id" : "dup-ord", "source" : "shop", "type" : "order.paid", "time" : "2026-03-02T12:15:00.000Z", "subject" : "dana",
              "data" : { "lines" : [ { "paidMinor" : 32000, "category" : "apparel" } ], "paidMinor" : 32000, "orderId" : "D-1" } }
            """

        static let paidChanged = #"{"specversion":"1.0","id":"dup-ord","source":"shop","type":"order.paid","time":"2026-03-02T20:15:00+08:00","subject":"dana","data":{"orderId":"D-1","paidMinor":32100,"lines":[{"category":"apparel","paidMinor":32100}]}}"#

        @Test func aReSendLaidOutDifferentlyIsADuplicateInEveryService() throws {
            let directory = try temporaryDirectory("duplicates-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func send(_ name: String, _ json: String) throws {
                try producer.send(topic: name, key: Array("dana".utf8), value: Array(json.utf8))
            }
            try send(Topics.members.name, Self.registered)
            try send(Topics.orders.name, Self.paid)
            try send(Topics.members.name, Self.registeredRelaidOut)
            try send(Topics.orders.name, Self.paidRelaidOut)
            try send(Topics.members.name, Self.registeredChanged)
            try send(Topics.orders.name, Self.paidChanged)
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let names = ["points", "tiers", "campaigns", "notifications"]
            let services = names.map { name in
                ServiceProcess(
                    name: name,
                    environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path],
                    log: directory.appendingPathComponent("\(name).log"))
            }
            for service in services { try service.start() }
            defer { for service in services { _ = service.stop() } }

            // Points and campaigns read both events, tiers the order only, notifications the registration only.
            let reads = ["points": 2, "tiers": 1, "campaigns": 2, "notifications": 1]
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.deadLetters.name])
            defer { reader.close() }
            let deadline = Date().addingTimeInterval(120)
            var conflicts: [String: [String]] = [:]
            var details: [String] = []
            while Date() < deadline {
                reader.poll(milliseconds: 500)
                conflicts = [:]
                details = []
                for record in reader.records {
                    let letter = try CloudEvent.decode(record.value!)
                    conflicts[letter.data["service"]?.stringValue ?? "?", default: []].append(letter.data["reason"]?.stringValue ?? "?")
                    details.append("\(letter.data["service"]?.stringValue ?? "?"): \(letter.data["detail"]?.stringValue ?? "?")")
                }
                if names.allSatisfy({ conflicts[$0]?.count == reads[$0] }) { break }
            }
            // The conflicting registrations carry a phone number: no dead letter repeats it.
            #expect(!reader.records.contains { String(decoding: $0.value ?? [], as: UTF8.self).contains("13800138001") })
            // Offsets past every copy in each service's store: all of them were read.
            usleep(2_000_000)
            for name in names {
                #expect(conflicts[name] == Array(repeating: "conflicting-duplicate", count: reads[name]!),
                        "\(name): only the changed copies are conflicts: \(details)")
                #expect(serviceCount(in: directory, name, "SELECT COUNT(*) FROM inbox WHERE event_id IN ('dup-reg', 'dup-ord')") == Int64(reads[name]!),
                        "\(name) applied each event once")
            }
        }
    }
}
