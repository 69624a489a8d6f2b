import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Testing

extension EndToEndSecondLane {
    /// `member.closed` on the real executables: afterwards none of the member's phone numbers or
    /// e-mail addresses is readable in any topic the platform writes, in any dead letter, in any
    /// file of the data directory (databases and their write-ahead logs included) or in any log.
    @Suite struct ErasureTests {
        static func event(_ id: String, _ type: String, _ time: String, _ member: String, _ data: String) -> [UInt8] {
            Array(#"{"specversion":"1.0","id":"\#(id)","source":"shop","type":"\#(type)","time":"\#(time)","subject":"\#(member)","data":\#(data)}"#.utf8)
        }

        static func phone(_ index: Int) -> String { "1390077" + String(format: "%04d", index) }
        static func email(_ index: Int, _ version: Int) -> String { "member\(index).v\(version)@erasure.example" }
        /// A WeChat open id long enough to spill the member's row onto overflow pages, which the
        /// erasure frees: without `secure_delete` they would keep it in the file.
        static let longOpenID = "wx-" + (0..<400).map { String(format: "%08x", ($0 &* 2_654_435_761) & 0xffff_ffff) }.joined()

        /// The files under `directory` holding any of `needles`, with the needle found.
        static func filesHolding(_ needles: [String], under directory: URL) -> [String] {
            let files = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
            var found: [String] = []
            for file in files {
                guard let bytes = FileManager.default.contents(atPath: file.path) else { continue }
                let data = [UInt8](bytes)
                for needle in needles where data.contains(Array(needle.utf8)) {
                    found.append("\(file.lastPathComponent): \(needle)")
                }
            }
            return found
        }

        @Test func afterClosureNoContactDataOfTheMemberIsReadableAnywhereThePlatformWrites() throws {
            let directory = try temporaryDirectory("erasure-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func send(_ topic: TopicSpec, _ member: String, _ value: [UInt8]) throws {
                try producer.send(topic: topic.name, key: Array(member.utf8), value: value)
            }
            let count = 24
            let closed = Set(stride(from: 0, to: count, by: 2))
            for index in 0..<count {
                let member = "er\(index)"
                try send(Topics.members, member, Self.event("reg-\(member)", EventType.memberRegistered, "2026-03-01T09:\(10 + index):00+08:00", member,
                    #"{"channels":{"sms":"\#(Self.phone(index))","email":"\#(Self.email(index, 1))"\#(index == 0 ? #","wechat":"\#(Self.longOpenID)""# : "")},"preferredChannel":"sms","marketingConsent":true,"birthday":"1990-06-15"}"#))
                try send(Topics.orders, member, Self.event("o1-\(member)", EventType.orderPaid, "2026-03-02T10:\(10 + index):00+08:00", member,
                    #"{"orderId":"ER-\#(index)-1","paidMinor":250000}"#))
                // A changed address: the earlier one must go as well as the latest.
                try send(Topics.members, member, Self.event("upd-\(member)", EventType.memberUpdated, "2026-03-03T09:\(10 + index):00+08:00", member,
                    #"{"channels":{"email":"\#(Self.email(index, 2))"}}"#))
            }
            // A bad profile carrying a closed member's phone number: a dead letter, with no payload.
            try send(Topics.members, "er0", Self.event("bad-er0", EventType.memberUpdated, "2026-03-04T09:00:00+08:00", "er0",
                #"{"locale":"xx","channels":{"sms":"\#(Self.phone(0))"}}"#))
            // A profile of a member who never registers, then closes: once kept by points while it waited.
            try send(Topics.members, "ghost", Self.event("upd-ghost", EventType.memberUpdated, "2026-03-04T10:00:00+08:00", "ghost",
                #"{"channels":{"sms":"\#(Self.phone(99))","email":"\#(Self.email(99, 1))"}}"#))
            // Life goes on for the others until the closures, the last records: nothing written after
            // them overwrites what the write-ahead log held before.
            for index in 0..<count where !closed.contains(index) {
                let member = "er\(index)"
                try send(Topics.orders, member, Self.event("o2-\(member)", EventType.orderPaid, "2026-03-08T10:\(10 + index):00+08:00", member,
                    #"{"orderId":"ER-\#(index)-2","paidMinor":100000}"#))
            }
            for index in closed.sorted() {
                let member = "er\(index)"
                try send(Topics.members, member, Self.event("close-\(member)", EventType.memberClosed, "2026-03-10T09:\(10 + index):00+08:00", member, "{}"))
            }
            try send(Topics.members, "ghost", Self.event("close-ghost", EventType.memberClosed, "2026-03-10T10:00:00+08:00", "ghost", "{}"))
            // A tombstone, the shop erasing its own copy, is passed over.
            try producer.send(topic: Topics.members.name, key: Array("er0".utf8), value: nil)
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let names = ["points", "tiers", "campaigns", "notifications"]
            let services = names.map { name in
                ServiceProcess(name: name, environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                    "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0", "LOYALTY_LOG_LEVEL": "debug", "LOYALTY_HTTP_TOKEN": "sender-token",
                    "LOYALTY_WAIT_FOR": "points,tiers,campaigns",
                ], log: directory.appendingPathComponent("\(name).log"))
            }
            for service in services { try service.start() }
            defer { for service in services { _ = service.stop() } }

            // Every service has read everything (the last orders in points, tiers and campaigns;
            // the closures in notifications and campaigns; the messages the orders call for).
            let probe = try EndProbe(bootstrap: broker.bootstrapServers)
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                let done = probe.hasReadToEnd("points", in: directory, topics: [Topics.members.name, Topics.orders.name, Topics.pointsCommands.name])
                    && probe.hasReadToEnd("tiers", in: directory, topics: [Topics.orders.name])
                    && probe.hasReadToEnd("campaigns", in: directory, topics: [Topics.members.name, Topics.orders.name, Topics.engagement.name])
                    && probe.hasReadToEnd("notifications", in: directory, topics: [
                        Topics.members.name, Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name,
                    ])
                if done { break }
                usleep(300_000)
            }
            #expect(Date() < deadline, "every service read every record")
            while serviceCount(in: directory, "notifications", "SELECT COUNT(*) FROM notification_sent") < 1 && Date() < deadline { usleep(200_000) }

            let closedNeedles = closed.sorted().flatMap { [Self.phone($0), Self.email($0, 1), Self.email($0, 2)] }
                + [Self.phone(99), Self.email(99, 1), String(Self.longOpenID.suffix(64)), String(Self.longOpenID.dropFirst(1600).prefix(64))]
            let liveNeedles = (0..<count).filter { !closed.contains($0) }.flatMap { [Self.phone($0), Self.email($0, 2)] }

            // Files: databases, write-ahead logs, crash notes and logs. The erasure's checkpoint
            // follows its commit, so allow it a moment.
            var leftInFiles = Self.filesHolding(closedNeedles, under: directory)
            let filesDeadline = Date().addingTimeInterval(30)
            while !leftInFiles.isEmpty && Date() < filesDeadline {
                usleep(500_000)
                leftInFiles = Self.filesHolding(closedNeedles, under: directory)
            }
            #expect(leftInFiles.isEmpty, "closed members' contact data left in files: \(leftInFiles.prefix(10))")
            // The scan finds what is there: live members' addresses, kept by notifications alone.
            let liveFiles = Set(Self.filesHolding(liveNeedles, under: directory).map { String($0.prefix { $0 != ":" }) })
            #expect(!liveFiles.isEmpty && liveFiles.allSatisfy { $0.hasPrefix("notifications.sqlite") }, "\(liveFiles)")
            let logs = names.map { (try? String(contentsOf: directory.appendingPathComponent("\($0).log"), encoding: .utf8)) ?? "" }.joined()
            #expect(logs.contains(ContactMask.mask(Self.phone(1), channel: .sms)), "the debug lines of messages sent, with the address masked")
            #expect(!liveNeedles.contains { logs.contains($0) }, "logs carry no address in clear, of anyone")

            // Topics: everything the platform writes, dead letters included (not the shop's own
            // members topic, whose copy the shop removes by compaction).
            let written = Topics.all.map(\.name).filter { $0 != Topics.members.name && $0 != Topics.instances.name }
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: written)
            defer { reader.close() }
            reader.readToEnd(seconds: 30)
            let outputs = reader.records.map { ($0.key ?? []) + ($0.value ?? []) }
            #expect(outputs.contains { String(decoding: $0, as: UTF8.self).contains("notification.requested") }, "messages were sent")
            let leaked = (closedNeedles + liveNeedles).filter { needle in outputs.contains { $0.contains(Array(needle.utf8)) } }
            #expect(leaked.isEmpty, "no topic the platform writes carries an address: \(leaked)")
            let deadLetters = try reader.records.filter { $0.topic == Topics.deadLetters.name }.map { try CloudEvent.decode($0.value!) }
            #expect(deadLetters.contains { $0.data["reason"]?.stringValue == "invalid-event" && $0.data["payloadWithheld"] != nil && $0.data["payload"] == nil })
            #expect(!deadLetters.contains { $0.data["topic"]?.stringValue == Topics.members.name && $0.data["payload"] != nil })
            #expect(!deadLetters.contains { $0.data["reason"]?.stringValue == "empty-payload" }, "the shop's tombstone is passed over")

            // Senders look addresses up; a closed member's are gone for good.
            let api = try #require((try? String(contentsOfFile: directory.appendingPathComponent("notifications.http").path, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines))
            let live = try HTTPClient.get(api, "/members/er1/contacts/sms", token: "sender-token")
            #expect(live.status == 200)
            #expect(try JSONValue.parse(live.body)["address"]?.stringValue == Self.phone(1))
            #expect(try HTTPClient.get(api, "/members/er1/contacts/email", token: "sender-token").body.contains(Array(Self.email(1, 2).utf8)))
            #expect(try HTTPClient.get(api, "/members/er0/contacts/sms", token: "sender-token").status == 410)
            #expect(try HTTPClient.get(api, "/members/ghost/contacts/email", token: "sender-token").status == 410)
            #expect(try HTTPClient.get(api, "/members/er1/contacts/fax", token: "sender-token").status == 404)
            // `loyalty contact`, as a sender written in shell would use it.
            func contact(_ member: String) throws -> (status: Int32, output: String) {
                let output = FileManager.default.temporaryDirectory.appendingPathComponent("contact-\(UUID().uuidString).out")
                defer { try? FileManager.default.removeItem(at: output) }
                let cli = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path, "LOYALTY_HTTP_TOKEN": "sender-token"], log: output)
                try cli.startWith(arguments: ["contact", member, "sms"])
                cli.process?.waitUntilExit()
                return (cli.stop(), (try? String(contentsOf: output, encoding: .utf8)) ?? "")
            }
            let found = try contact("er3")
            #expect(found.status == 0 && found.output == Self.phone(3) + "\n")
            let refused = try contact("er2")
            #expect(refused.status != 0 && refused.output.contains("erased"), "\(refused.output)")
            for service in services { #expect(service.isRunning, "\(service.name) keeps running") }
        }
    }
}
