import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

extension EndToEndSecondLane {
    /// All four executables on the embedded broker over a year for 600 members, the
    /// notifications service killed twice: every message the policy calls for is published once,
    /// none in quiet hours, none without consent, none over the daily cap; every point earned is in
    /// one digest at most; contact data never reaches the log unmasked.
    @Suite struct NotificationsEndToEndTests {
        struct Message {
            var member: String
            var type: String
            var category: String
            var sendAt: EventTime
            var causes: [String]
            var key: String
        }

        @Test func aYearOfMessagesFollowsThePolicyExactlyOnceThroughKills() throws {
            // 600 members: their year's ledger (about 22 MB) stays within what the embedded broker
            // keeps of each partition (about 5 MiB), so notifications, killed twice while points
            // runs ahead, never finds ledger records deleted before it read them.
            let scenario = CampaignScenario(members: 600, seed: 66, spending: true)
            let directory = try temporaryDirectory("notifications-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for record in scenario.records { try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value) }
            #expect(producer.flush(timeoutMilliseconds: 60_000))
            let reader = try TopicReader(
                bootstrap: broker.bootstrapServers,
                topics: [Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name, Topics.notifications.name, Topics.deadLetters.name])
            defer { reader.close() }
            let environment = [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_SESSION_TIMEOUT_MS": "3000", "LOYALTY_LOG_LEVEL": "debug", "LOYALTY_WAIT_FOR": "points,tiers,campaigns",
                // Partitions paused at a few hundred records: notifications, waiting for the
                // marks of the services behind the ledger, must still read on to those marks.
                "LOYALTY_PAUSE_RECORDS": "200",
            ]
            let services = ["points", "tiers", "campaigns", "notifications"].map {
                ServiceProcess(name: $0, environment: environment, log: directory.appendingPathComponent("\($0).log"))
            }
            for service in services { try service.start() }
            let notifications = services[3]
            func count(_ service: String, _ sql: String) -> Int64 { serviceCount(in: directory, service, sql) }
            // Killed twice while it works.
            for threshold in [1_000, 3_000] {
                let deadline = Date().addingTimeInterval(120)
                while reader.records.filter({ $0.topic == Topics.notifications.name }).count < threshold && Date() < deadline { reader.poll(milliseconds: 300) }
                #expect(notifications.isRunning, "see \(directory.path)/notifications.log")
                notifications.kill()
                try notifications.start()
            }
            // Done when every service has read its inputs to their ends with nothing left to
            // publish, twice in a row (one service's output is another's input).
            let probe = try EndProbe(bootstrap: broker.bootstrapServers)
            let inputs = [
                "points": [Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsCommands.name],
                "tiers": [Topics.orders.name],
                "campaigns": [Topics.members.name, Topics.orders.name, Topics.engagement.name],
                "notifications": [Topics.members.name, Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name],
            ]
            var settled = 0
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline && settled < 2 {
                reader.poll(milliseconds: 1_000)
                let done = inputs.allSatisfy { service, topics in
                    count(service, "SELECT COUNT(*) FROM outbox") == 0 && probe.hasReadToEnd(service, in: directory, topics: topics)
                }
                settled = done ? settled + 1 : 0
            }
            #expect(settled == 2, "every service read its inputs to the end")
            for service in services { #expect(service.stop() == 0, "\(service.name) stops cleanly; last errors: [\(service.lastErrors)]") }

            // What the notifications service read, and what it published.
            var profiles: [String: JSONObject] = [:]
            for event in scenario.events where event.type == EventType.memberRegistered { profiles[event.subject!] = event.data.objectValue! }
            var transactional: [String: (member: String, type: String, time: EventTime)] = [:]
            var marketing: [String: (member: String, time: EventTime)] = [:]
            var earned: [String: (member: String, points: Int64, time: EventTime)] = [:]
            var messages: [String: Message] = [:]
            // Every record the four services published in the year matches its schema.
            try expectRecordsMatchTheirSchemas(reader.records, in: directory)
            var raw: [String: [UInt8]] = [:]
            var conflicting = 0
            var noChannel = 0
            for record in reader.records {
                guard let value = record.value, let event = try? CloudEvent.decode(value) else { continue }
                let member = event.subject ?? ""
                switch (record.topic, event.type) {
                case (Topics.pointsLedger.name, "points.earned"):
                    earned[event.id] = (member, event.data["points"]?.int64Value ?? 0, event.time)
                case (Topics.pointsLedger.name, "points.expiry-warning"):
                    transactional[event.id] = (member, "points-expiring", event.time)
                case (Topics.pointsLedger.name, "points.redeemed"):
                    transactional[event.id] = (member, "redemption-done", event.time)
                case (Topics.pointsLedger.name, "points.refused") where event.data["subject"]?.stringValue == "redemption":
                    transactional[event.id] = (member, "redemption-refused", event.time)
                case (Topics.pointsLedger.name, "points.transferred-in"):
                    transactional[event.id] = (member, "transfer-received", event.time)
                case (Topics.tierChanges.name, let type):
                    transactional[event.id] = (member, ["tier.upgraded": "tier-up", "tier.downgraded": "tier-down", "tier.at-risk": "tier-at-risk"][type] ?? type, event.time)
                case (Topics.campaignRewards.name, _):
                    marketing[event.id] = (member, event.time)
                case (Topics.notifications.name, _):
                    if let known = raw[event.id], known != value { conflicting += 1 }
                    raw[event.id] = value
                    let data = event.data
                    messages[event.id] = Message(
                        member: member, type: data["type"]!.stringValue!, category: data["category"]!.stringValue!, sendAt: event.time,
                        causes: data["causes"]!.arrayValue!.compactMap(\.stringValue), key: data["idempotencyKey"]!.stringValue!)
                case (Topics.deadLetters.name, _):
                    if event.data["reason"]?.stringValue == "no-channel" { noChannel += 1 }
                default:
                    break
                }
            }
            #expect(!transactional.isEmpty && !marketing.isEmpty && !earned.isEmpty && messages.count > 3_000, "\(messages.count) messages")
            #expect(Set(transactional.values.map(\.type)).isSuperset(of: ["tier-up", "tier-down", "tier-at-risk", "redemption-done", "redemption-refused", "transfer-received"]))
            #expect(conflicting == 0, "a re-published message has the same bytes")
            #expect(Set(messages.values.map(\.key)).count == messages.count, "one message per idempotency key")

            func hasChannel(_ member: String) -> Bool { !(profiles[member]?["channels"]?.objectValue?.members.isEmpty ?? true) }
            func consents(_ member: String) -> Bool { profiles[member]?["marketingConsent"]?.boolValue == true }
            let calendar = ProgramCalendar(offset: try UTCOffset.parse("+08:00"))
            func minute(_ time: EventTime) -> Int { calendar.localMinuteOfDay(of: time) }
            func quiet(_ time: EventTime) -> Bool { minute(time) >= 22 * 60 || minute(time) < 8 * 60 }

            // Transactional: exactly one message per cause, at its time, for members with a channel;
            // a no-channel dead letter otherwise.
            var byCause: [String: [Message]] = [:]
            for message in messages.values where message.category != "digest" {
                for cause in message.causes { byCause[cause, default: []].append(message) }
            }
            var wrong: [String] = []
            var expectedNoChannel = 0
            for (id, cause) in transactional {
                let sent = byCause[id] ?? []
                if hasChannel(cause.member) {
                    if sent.count != 1 || sent[0].type != cause.type || sent[0].sendAt != cause.time { wrong.append("\(id): \(sent.count) \(cause.type)") }
                } else {
                    expectedNoChannel += 1
                    if !sent.isEmpty { wrong.append("\(id): sent to a member with no channel") }
                }
            }
            #expect(wrong.isEmpty, "\(wrong.count): \(wrong.prefix(5))")
            #expect(noChannel >= expectedNoChannel, "members with no channel get a dead letter, not silence")

            // Marketing: never without consent, never in quiet hours, at most two a local day, and
            // as many as the cap allows of the triggers due each day.
            var perDay: [String: Int] = [:]
            var marketingWrong: [String] = []
            for message in messages.values where message.category == "marketing" {
                guard message.causes.count == 1, let cause = marketing[message.causes[0]], cause.member == message.member else {
                    marketingWrong.append("\(message.causes): no such reward"); continue
                }
                if !consents(message.member) { marketingWrong.append("\(message.member): without consent") }
                if quiet(message.sendAt) { marketingWrong.append("\(message.member): at \(message.sendAt)") }
                if (byCause[message.causes[0]]?.count ?? 0) != 1 { marketingWrong.append("\(message.causes[0]): sent twice") }
                perDay["\(message.member)/\(calendar.localDate(of: message.sendAt))", default: 0] += 1
            }
            #expect(marketingWrong.isEmpty, "\(marketingWrong.count): \(marketingWrong.prefix(5))")
            #expect(perDay.values.allSatisfy { $0 <= 2 }, "the daily cap")
            var due: [String: Int] = [:]
            for (_, cause) in marketing where consents(cause.member) && hasChannel(cause.member) {
                var sendAt = cause.time
                if quiet(sendAt) {
                    let date = calendar.localDate(of: sendAt)
                    let eight = calendar.startOfDay(date).adding(hours: 8)
                    sendAt = eight > sendAt ? eight : eight.adding(days: 1)
                }
                // Held past the last event of the year: the stream never reaches that morning.
                guard sendAt.millis <= CampaignScenario.end else { continue }
                due["\(cause.member)/\(calendar.localDate(of: sendAt))", default: 0] += 1
            }
            let short = due.filter { (perDay[$0.key] ?? 0) != min(2, $0.value) }
            #expect(short.isEmpty, "\(short.count) member-days with the wrong number of marketing messages: \(short.prefix(5))")
            #expect(due.values.contains { $0 > 2 }, "the year reaches the cap somewhere")

            // Digests: at the digest hour, one a member and day, every earned entry in one at most,
            // and every entry of a day whose digest time has passed in exactly one.
            var inDigest: [String: Int] = [:]
            var digestWrong: [String] = []
            var digestDays = Set<String>()
            for message in messages.values where message.category == "digest" {
                if minute(message.sendAt) != 8 * 60 { digestWrong.append("\(message.member) at \(message.sendAt)") }
                if !digestDays.insert("\(message.member)/\(message.sendAt.millis)").inserted { digestWrong.append("two digests for \(message.member)") }
                for cause in message.causes {
                    inDigest[cause, default: 0] += 1
                    if earned[cause]?.member != message.member { digestWrong.append("\(cause) is not an entry of \(message.member)") }
                }
            }
            let cutoff = EventTime(millis: CampaignScenario.end - 3 * CampaignScenario.day)
            for (id, entry) in earned where hasChannel(entry.member) && entry.points > 0 {
                let times = inDigest[id] ?? 0
                if times > 1 || (entry.time < cutoff && times != 1) { digestWrong.append("\(id) in \(times) digests") }
            }
            #expect(digestWrong.isEmpty, "\(digestWrong.count): \(digestWrong.prefix(5))")
            #expect(count("notifications", "SELECT COUNT(*) FROM notification_suppressed WHERE reason = 'daily-cap'") > 0)

            // Contact data is masked in the log (debug level logs every message).
            let log = String(decoding: FileManager.default.contents(atPath: directory.appendingPathComponent("notifications.log").path) ?? Data(), as: UTF8.self)
            let addresses = Set(profiles.values.flatMap { $0["channels"]?.objectValue?.members.compactMap(\.value.stringValue) ?? [] })
            var logged = 0
            for line in log.split(separator: "\n") where line.contains("\"msg\":\"notification\"") {
                guard let to = (try? JSONValue.parse(Array(line.utf8)))?["to"]?.stringValue else { continue }
                logged += 1
                #expect(!addresses.contains(to) && to.contains("*"), "logged unmasked: \(to)")
            }
            #expect(logged > 0)
            let phoneDigits = log.utf8.split(separator: UInt8(ascii: "\"")).contains { $0.count == 11 && $0.allSatisfy { (48...57).contains($0) } }
            #expect(!phoneDigits, "no phone number in full")
        }
    }
}
