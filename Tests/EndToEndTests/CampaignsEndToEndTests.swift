import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

extension EndToEnd {
    /// The real `points`, `tiers` and `campaigns` executables on the embedded broker: a year for
    /// 1,000 members on stream time, the campaigns service killed three times; every member's
    /// campaign points equal those computed independently, and a small-budget campaign grants
    /// exactly its budget. And a definition published mid-stream changes grants from its time on.
    @Suite struct CampaignsEndToEndTests {
        static let budgetCampaign = #"{"id":"budget-test","version":1,"name":"Small budget","trigger":{"event":"order.paid"},"reward":{"points":7},"budgetPoints":5000}"#

        static func definitionEvent(_ json: String, from time: EventTime) throws -> CloudEvent {
            let data = try JSONValue.parse(Array(json.utf8))
            let id = data["id"]!.stringValue!
            return testCommandKeys.sign(CloudEvent(
                id: "definition/\(id)/\(data["version"]!.int64Value!)", source: "loyalty/test", type: "campaign.defined",
                time: time, subject: id, data: data))
        }

        /// Reads what a year's test collects (`collect`): the ledger, rewards, results, dead letters.
        static func outputReader(_ broker: EmbeddedBroker) throws -> TopicReader {
            try TopicReader(
                bootstrap: broker.bootstrapServers,
                topics: [Topics.pointsLedger.name, Topics.campaignRewards.name, Topics.campaignResults.name, Topics.deadLetters.name])
        }

        /// The settings of points, tiers and campaigns for a year: points waits for the other two.
        static func environment(_ broker: EmbeddedBroker, _ directory: URL) -> [String: String] {
            [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_SESSION_TIMEOUT_MS": "3000", "LOYALTY_WAIT_FOR": "tiers,campaigns",
            ]
        }

        struct Outcome {
            var ledger: [String: (member: String, kind: String, campaign: String, points: Int64)] = [:]
            var rewards: [String: JSONObject] = [:]
            /// Each task's newest results: `results` adds them up by campaign.
            var resultsBoard = CampaignResultsBoard()
            var results: [String: JSONObject] { resultsBoard.combined }
            var conflicting: Set<String> = []
            var rawRewards: [String: [UInt8]] = [:]
            var deadLetters: [String] = []
        }

        func collect(_ records: ArraySlice<ConsumedRecord>, into outcome: inout Outcome) throws {
            for record in records {
                guard let value = record.value else { continue }
                switch record.topic {
                case Topics.pointsLedger.name:
                    // Only campaign entries matter here; skip the rest before parsing.
                    guard value.containsBytes(Array("campaign-".utf8)) else { continue }
                    let event = try CloudEvent.decode(value)
                    guard let source = event.data["source"]?.stringValue, source.hasPrefix("campaign-"),
                          event.type == "points.earned" || event.type == "points.reversed" else { continue }
                    outcome.ledger[event.id] = (event.subject!, event.type, event.data["details"]?["campaign"]?.stringValue ?? "?", event.data["points"]?.int64Value ?? 0)
                case Topics.campaignRewards.name:
                    let event = try CloudEvent.decode(value)
                    if let known = outcome.rawRewards[event.id], known != value { outcome.conflicting.insert(event.id) }
                    outcome.rawRewards[event.id] = value
                    outcome.rewards[event.id] = event.data.objectValue
                case Topics.deadLetters.name:
                    let event = try CloudEvent.decode(value)
                    outcome.deadLetters.append("\(event.data["service"]?.stringValue ?? "?"): \(event.data["reason"]?.stringValue ?? "?") \(event.data["detail"]?.stringValue ?? "")")
                case Topics.campaignResults.name:
                    let event = try CloudEvent.decode(value)
                    outcome.resultsBoard.add(campaign: event.subject!, type: event.type, data: event.data.objectValue!)
                default:
                    break
                }
            }
        }

        @Test func aYearOfCampaignsWithThreeKillsMatchesTheRulesAndTheBudgetIsExact() throws {
            let scenario = CampaignScenario(members: 1_000, seed: 55)
            for campaign in ["first-order", "multiplier-x2", "birthday", "streak-30", "referral-5", "win-back"] {
                #expect((scenario.expectedRewards[campaign] ?? 0) > 0, "the year sets off \(campaign)")
            }
            let directory = try temporaryDirectory("campaigns-e2e")
            defer { removeTestState(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let definition = try Self.definitionEvent(Self.budgetCampaign, from: EventTime(millis: CampaignScenario.start))
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array("budget-test".utf8), value: definition.encoded())
            // Every shop event is published before the services start, so that each task's topics
            // are merged in event-time order: a topic read to its end does not hold the merge back.
            for record in scenario.records {
                try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
            }
            #expect(producer.flush(timeoutMilliseconds: 60_000))

            let reader = try Self.outputReader(broker)
            defer { reader.close() }
            let environment = Self.environment(broker, directory)
            // The keeper of budgets decides the small budget's claims.
            let services = ["points", "tiers", "campaigns", "campaign-budgets"].map {
                ServiceProcess(name: $0, environment: environment, log: directory.appendingPathComponent("\($0).log"))
            }
            for service in services { try service.start() }
            let campaigns = services[2]
            func count(_ service: String, _ table: String) -> Int64 { serviceCount(in: directory, service, "SELECT COUNT(*) FROM \(table)") }

            // The campaigns service is killed three times while it works through the year.
            var outcome = Outcome()
            var consumed = 0
            let shopEvents = scenario.events.filter { !$0.type.hasPrefix("engagement.") }.count
            // Every check-in is applied (a second one the same day counts nothing), and each referral
            // once more, on the referrer's task.
            let checkIns = scenario.events.filter { $0.type == EventType.checkedIn }.count
            let relevant = Int64(shopEvents + checkIns + scenario.rewardedReferrals)
            var kills = 0
            for share in [0.2, 0.45, 0.7] {
                let deadline = Date().addingTimeInterval(120)
                while serviceApplied(in: directory, "campaigns") < Int64(Double(relevant) * share) && Date() < deadline {
                    reader.poll(milliseconds: 200)
                    try collect(reader.records[consumed...], into: &outcome)
                    consumed = reader.records.count
                }
                #expect(campaigns.isRunning, "see \(directory.path)/campaigns.log")
                campaigns.kill()
                try campaigns.start()
                kills += 1
            }
            #expect(kills == 3)

            let wantedEntries = scenario.expectedLedgerEntries + 715  // 5,000 / 7 rounded up: the budget's grants
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                reader.poll(milliseconds: 1_000)
                try collect(reader.records[consumed...], into: &outcome)
                consumed = reader.records.count
                if serviceApplied(in: directory, "campaigns") >= relevant && count("campaigns", "outbox") == 0 && count("points", "outbox") == 0
                    && count("campaigns", "campaign_budget_claims") == 0 && outcome.ledger.count >= wantedEntries { break }
            }
            reader.poll(milliseconds: 3_000)
            try collect(reader.records[consumed...], into: &outcome)
            #expect(outcome.deadLetters.isEmpty, "\(outcome.deadLetters.prefix(3))")
            try expectRecordsMatchTheirSchemas(reader.records, in: directory)
            for service in services { #expect(service.stop() == 0, "\(service.name) stops cleanly; last errors: [\(service.lastErrors)]") }

            // Every member's campaign points (reference campaigns), as the points ledger applied them.
            var points: [String: Int64] = [:]
            var budgetGranted: Int64 = 0
            for entry in outcome.ledger.values {
                let signed = entry.kind == "points.reversed" ? -abs(entry.points) : entry.points
                if entry.campaign == "budget-test" { budgetGranted += signed } else { points[entry.member, default: 0] += signed }
            }
            var mismatches: [String] = []
            for (member, expected) in scenario.expectedPoints where (points[member] ?? 0) != expected {
                mismatches.append("\(member): \(points[member] ?? 0) != \(expected)")
            }
            #expect(mismatches.isEmpty, "\(mismatches.count) members differ: \(mismatches.prefix(5))")
            #expect(budgetGranted == 5_000, "the small budget is granted exactly, however often the service was killed")
            #expect(outcome.results["budget-test"]?["pointsGranted"]?.int64Value == 5_000)
            #expect(outcome.results["budget-test"]?["budgetLeft"]?.int64Value == 0, "the keeper says the budget is spent")
            #expect(count("campaigns", "campaign_kept_aside") == 0, "no member still waits")

            // Rewards: once each, the same bytes after every kill, coupons only outside the control group.
            Self.expectRewardsAsTheRulesSay(outcome, scenario)
        }

        /// Each reward once, with the same bytes whenever published again, as many of each
        /// campaign as the rules give, coupons only outside the control group, and win-back's
        /// results (added up over its tasks) counting them and its control group.
        static func expectRewardsAsTheRulesSay(_ outcome: Outcome, _ scenario: CampaignScenario, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(outcome.conflicting.isEmpty, "a reward published again has the same bytes", sourceLocation: sourceLocation)
            var byCampaign: [String: Int] = [:]
            var coupons: [String: Int] = [:]
            for reward in outcome.rewards.values {
                let campaign = reward["campaignId"]!.stringValue!
                byCampaign[["member-day", "double-11", "birthday-month"].contains(campaign) ? "multiplier-x2" : campaign, default: 0] += 1
                if reward["coupon"] != nil { coupons[reward["memberId"]!.stringValue!, default: 0] += 1 }
            }
            for campaign in ["first-order", "multiplier-x2", "birthday", "streak-30", "referral-5", "win-back"] {
                #expect(byCampaign[campaign] == scenario.expectedRewards[campaign], "\(campaign)", sourceLocation: sourceLocation)
            }
            #expect(coupons == scenario.expectedCoupons, sourceLocation: sourceLocation)
            let winBack = outcome.results["win-back"]
            #expect((winBack?["control"]?["members"]?.int64Value ?? 0) > 0, "the control group was held out and measured", sourceLocation: sourceLocation)
            #expect(winBack?["couponsIssued"]?.int64Value == Int64(scenario.expectedRewards["win-back"] ?? -1), sourceLocation: sourceLocation)
        }

        /// Campaigns with a store per task on two hosts that share only Kafka, while points and
        /// tiers run as before: a second host joins and takes tasks, the first is lost (killed, its
        /// data directory deleted, a new instance started with an empty one, which restores its
        /// tasks from the changelog), and the second leaves, its tasks restored on the first.
        /// Every member's campaign points, every reward, and the campaigns' results added up over
        /// their tasks equal what the rules give for the year.
        @Test func aYearOfCampaignsWithAStorePerTaskOnHostsThatShareOnlyKafkaMatchesTheRules() throws {
            let scenario = CampaignScenario(members: 1_000, seed: 55)
            let directory = try temporaryDirectory("campaigns-tasks")
            defer { removeTestState(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            // The small budget spans every task, on whichever host: the keeper decides it.
            let definition = try Self.definitionEvent(Self.budgetCampaign, from: EventTime(millis: CampaignScenario.start))
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array("budget-test".utf8), value: definition.encoded())
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            try publish(scenario.records, to: broker)
            let reader = try Self.outputReader(broker)
            defer { reader.close() }
            let environment = Self.environment(broker, directory)
            let hosts = ["host-a", "host-b"].map { directory.appendingPathComponent($0) }
            for host in hosts { try FileManager.default.createDirectory(at: host, withIntermediateDirectories: true) }
            let campaignsOn = hosts.enumerated().map { index, host in
                ServiceProcess(
                    name: "campaigns",
                    environment: environment.merging([
                        "LOYALTY_DATA_DIR": host.path, "LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": "2", "LOYALTY_CHANGELOG": "on",
                    ]) { $1 },
                    log: directory.appendingPathComponent("campaigns-\(index).log"))
            }
            let upstream = ["points", "tiers", "campaign-budgets"].map {
                ServiceProcess(name: $0, environment: environment, log: directory.appendingPathComponent("\($0).log"))
            }
            for service in upstream { try service.start() }
            try campaignsOn[0].start()

            var outcome = Outcome()
            var consumed = 0
            func readOn(until done: () -> Bool, seconds: Double) throws {
                let deadline = Date().addingTimeInterval(seconds)
                while !done() && Date() < deadline {
                    reader.poll(milliseconds: 200)
                    try collect(reader.records[consumed...], into: &outcome)
                    consumed = reader.records.count
                }
            }
            let wanted = scenario.expectedLedgerEntries + 715  // 5,000 / 7 rounded up: the budget's grants
            let steps: [(share: Double, act: () throws -> Void)] = [
                (0.2, { try campaignsOn[1].start() }),
                (0.45, {
                    campaignsOn[0].kill()
                    for name in try FileManager.default.contentsOfDirectory(atPath: hosts[0].path) {
                        try FileManager.default.removeItem(at: hosts[0].appendingPathComponent(name))
                    }
                    try campaignsOn[0].start()
                }),
                (0.7, { #expect(campaignsOn[1].stop() == 0, "the second host leaves cleanly") }),
            ]
            for step in steps {
                try readOn(until: { outcome.ledger.count >= Int(Double(wanted) * step.share) }, seconds: 180)
                #expect(outcome.ledger.count >= Int(Double(wanted) * step.share), "the year got to \(step.share) before the next step")
                try step.act()
            }
            try readOn(until: {
                outcome.ledger.count >= wanted && serviceCount(in: hosts[0], "campaigns", "SELECT COUNT(*) FROM outbox") == 0
                    && serviceCount(in: directory, "points", "SELECT COUNT(*) FROM outbox") == 0
            }, seconds: 300)
            reader.poll(milliseconds: 3_000)
            try collect(reader.records[consumed...], into: &outcome)
            #expect(campaignsOn[0].stop() == 0)
            for service in upstream { #expect(service.stop() == 0, "\(service.name) stops cleanly; last errors: [\(service.lastErrors)]") }
            #expect(outcome.deadLetters.isEmpty, "\(outcome.deadLetters.prefix(3))")
            let logs = try (0..<2).map { try String(contentsOf: directory.appendingPathComponent("campaigns-\($0).log"), encoding: .utf8) }
            #expect(logs.joined().contains("restored the store from the changelog"), "tasks moved to hosts without their stores")

            var points: [String: Int64] = [:]
            var budgetGranted: Int64 = 0
            for entry in outcome.ledger.values {
                let signed = entry.kind == "points.reversed" ? -abs(entry.points) : entry.points
                if entry.campaign == "budget-test" { budgetGranted += signed } else { points[entry.member, default: 0] += signed }
            }
            #expect(budgetGranted == 5_000, "the small budget is granted exactly by tasks on hosts, one of them lost")
            #expect(outcome.results["budget-test"]?["pointsGranted"]?.int64Value == 5_000)
            #expect(outcome.results["budget-test"]?["budgetLeft"]?.int64Value == 0)
            let mismatches = scenario.expectedPoints.filter { (points[$0.key] ?? 0) != $0.value }.map { "\($0.key): \(points[$0.key] ?? 0) != \($0.value)" }
            #expect(mismatches.isEmpty, "\(mismatches.count) members differ: \(mismatches.prefix(5))")
            Self.expectRewardsAsTheRulesSay(outcome, scenario)
            // Each task published its own members' results; added up, they are the campaign's.
            let firstOrder = outcome.results["first-order"]
            #expect((firstOrder?["tasksReporting"]?.int64Value ?? 0) > 1, "more than one task published first-order's results")
            #expect(firstOrder?["rewards"]?.int64Value == Int64(scenario.expectedRewards["first-order"] ?? -1))
        }

        /// In both store layouts: with a store per task, every task's store applies the definition.
        @Test(arguments: ["service", "task"])
        func aDefinitionPublishedMidStreamChangesGrantsFromItsTimeWithoutARestart(layout: String) throws {
            let directory = try temporaryDirectory("campaigns-change")
            defer { removeTestState(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func send(_ event: CloudEvent, to topic: String) throws {
                try producer.send(topic: topic, key: Array(event.subject!.utf8), value: event.encoded())
            }
            func at(_ text: String) -> EventTime { try! EventTime.parse(text) }
            let members = (0..<30).map { "mid\($0)" }
            for member in members {
                try send(CloudEvent(id: "reg-\(member)", source: "shop", type: EventType.memberRegistered, time: at("2026-01-01T09:00:00+08:00"),
                                    subject: member, data: .object([:])), to: Topics.members.name)
            }
            func orders(on day: String, _ suffix: String) throws {
                for member in members {
                    try send(CloudEvent(id: "\(member)-\(suffix)", source: "shop", type: EventType.orderPaid, time: at("\(day)T12:00:00+08:00"),
                                        subject: member, data: .object(["orderId": .string("\(member)-\(suffix)"), "paidMinor": 10_000])), to: Topics.orders.name)
                }
            }
            try orders(on: "2026-01-02", "first")  // first orders (×5), so member days below are ×2 or ×3
            try orders(on: "2026-01-18", "jan")
            // A budget spans every task: the keeper decides it, in either layout (orders in March below).
            let budgeted = try Self.definitionEvent(Self.budgetCampaign, from: at("2026-03-01T00:00:00+08:00"))
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array("budget-test".utf8), value: budgeted.encoded())
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            #expect(Set(members.map { Murmur2Partitioner.partition(of: Array($0.utf8), partitions: Topics.partitionCount) }).count > 1)

            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsCommands.name, Topics.deadLetters.name])
            defer { reader.close() }
            var environment = ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_SESSION_TIMEOUT_MS": "3000"]
            environment["LOYALTY_STORE_LAYOUT"] = layout
            if layout == "task" { environment["LOYALTY_THREADS"] = "2" }
            let campaigns = ServiceProcess(name: "campaigns", environment: environment, log: directory.appendingPathComponent("campaigns.log"))
            try campaigns.start()
            var keeperEnvironment = environment
            keeperEnvironment["LOYALTY_STORE_LAYOUT"] = nil
            let keeper = ServiceProcess(name: "campaign-budgets", environment: keeperEnvironment, log: directory.appendingPathComponent("campaign-budgets.log"))
            try keeper.start()
            func grants(of campaign: String = "member-day") throws -> [String: Int64] {
                var result: [String: Int64] = [:]
                for record in reader.records where record.key != nil {
                    let event = try CloudEvent.decode(record.value!)
                    // By order: a multiplier's grant names it, a fixed reward's id ends with its cause, the order's event id.
                    guard event.data["campaignId"]?.stringValue == campaign else { continue }
                    result[event.data["orderId"]?.stringValue ?? String(event.id.split(separator: "/").last ?? "")] = event.data["points"]?.int64Value
                }
                return result
            }
            var deadline = Date().addingTimeInterval(60)
            while try grants().count < members.count && Date() < deadline { reader.poll(milliseconds: 200) }

            // Marketing triples member day from 1 February, while the service runs.
            let v2 = #"{"id":"member-day","version":2,"name":"Member day x3","schedule":{"daysOfMonth":[18]},"trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":3.0}}"#
            let change = try Self.definitionEvent(v2, from: at("2026-02-01T00:00:00+08:00"))
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array("member-day".utf8), value: change.encoded())
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            Thread.sleep(forTimeInterval: 1)
            try orders(on: "2026-02-18", "feb")
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            deadline = Date().addingTimeInterval(60)
            while try grants().count < 2 * members.count && Date() < deadline { reader.poll(milliseconds: 200) }
            // In March the small budget gives each order 7 points, claimed of the keeper.
            try orders(on: "2026-03-05", "mar")
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            deadline = Date().addingTimeInterval(60)
            while try grants(of: "budget-test").count < members.count && Date() < deadline { reader.poll(milliseconds: 200) }
            reader.poll(milliseconds: 1_000)
            #expect(campaigns.stop() == 0)
            #expect(keeper.stop() == 0)

            let granted = try grants()
            #expect(members.allSatisfy { granted["\($0)-jan"] == 100 }, "January: version 1, ×2")
            #expect(members.allSatisfy { granted["\($0)-feb"] == 200 }, "February: version 2, ×3, without a restart")
            let budgetGrants = try grants(of: "budget-test")
            #expect(members.allSatisfy { budgetGrants["\($0)-mar"] == 7 }, "March: the budgeted campaign, in the \(layout) layout: \(budgetGrants.count)")
            let log = String(decoding: FileManager.default.contents(atPath: directory.appendingPathComponent("campaigns.log").path) ?? Data(), as: UTF8.self)
            #expect(log.components(separatedBy: "\"msg\":\"starting\"").count == 2, "started once")
            let deadLetters = try reader.records.filter { $0.topic == Topics.deadLetters.name }.map { try CloudEvent.decode($0.value!) }
            let reasons = deadLetters.map { $0.data["reason"]?.stringValue ?? "?" }
            #expect(reasons.isEmpty, "\(deadLetters.map(\.data))")
        }
    }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        outer: for start in 0...(count - needle.count) {
            for offset in 0..<needle.count where self[start + offset] != needle[offset] { continue outer }
            return true
        }
        return false
    }
}
