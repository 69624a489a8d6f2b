import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

@testable import CampaignsService

/// The campaigns service's handlers on a real database, through the exactly-once transaction.
@Suite struct CampaignsProcessorTests {
    final class Harness {
        let directory: URL
        let applier: BatchApplier<CampaignsProcessor>
        var offsets: [String: Int64] = [:]

        /// `partitions` above 1: each record on its key's partition, so members fall in several tasks.
        init(inboxHorizonDays: Int64? = nil, partitions: Int32 = 1, budgets: BudgetDecisions = .counted) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("campaigns-tests-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            applier = try Self.open(directory, inboxHorizonDays: inboxHorizonDays, partitions: partitions, budgets: budgets)
        }

        static func open(
            _ directory: URL, inboxHorizonDays: Int64? = nil, partitions: Int32 = 1, budgets: BudgetDecisions = .counted
        ) throws -> BatchApplier<CampaignsProcessor> {
            let program = try Program.load(json: ReferenceProgram.bytes())
            let defaults = try CampaignDefinition.loadFile(json: ReferenceProgram.campaignsBytes(), tiers: program.tiers.levels.map(\.id))
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("campaigns.sqlite").path))
            // By default one partition, so that every member's records, all on partition 0, share one task and stream time.
            let applier = try BatchApplier(
                database: database, processor: CampaignsProcessor(program: program, defaults: defaults, commandKeys: testKeys, budgets: budgets), timerMode: .streamTime,
                partitionCount: partitions, inboxHorizon: inboxHorizonDays.map { $0 * 86_400_000 })
            applier.commandKeys = testKeys
            return applier
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        func record(_ event: CloudEvent, topic: String) -> ConsumedRecord {
            offsets[topic, default: 0] += 1
            let key = Array(event.subject!.utf8)
            let partition = applier.partitionCount > 1 && topic != Topics.campaignDefinitions.name
                ? Murmur2Partitioner.partition(of: key, partitions: applier.partitionCount) : 0
            return ConsumedRecord(topic: topic, partition: partition, offset: offsets[topic]!, key: key, value: event.encoded())
        }

        @discardableResult
        func apply(_ events: [(CloudEvent, String)]) throws -> [(topic: String, event: CloudEvent)] {
            try applyRows(events).map { ($0.topic, try CloudEvent.decode($0.value!)) }
        }

        /// What applying `events` in one batch published, as the outbox holds it.
        func applyRows(_ events: [(CloudEvent, String)]) throws -> [OutboxRow] {
            let polled = events.map { event, topic -> PolledRecord<CampaignRecord> in
                let record = record(event, topic: topic)
                let decoded: Result<Decoded<CampaignRecord>, Rejection>
                do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                return PolledRecord(record: record, decoded: decoded)
            }
            return try applier.apply(polled).outbox
        }

        @discardableResult
        func define(_ events: [CloudEvent]) throws -> [(topic: String, event: CloudEvent)] {
            try applier.applyBroadcast(events.map { record($0, topic: Topics.campaignDefinitions.name) })
                .outbox.map { ($0.topic, try CloudEvent.decode($0.value!)) }
        }
    }

    static func event(_ id: String, _ type: String, _ member: String, _ time: String, _ data: JSONObject = [:], source: String = "shop") throws -> CloudEvent {
        CloudEvent(id: id, source: source, type: type, time: try EventTime.parse(time), subject: member, data: .object(data))
    }
    static func registered(_ member: String, _ time: String, _ data: JSONObject = [:]) throws -> (CloudEvent, String) {
        (try event("reg-\(member)", EventType.memberRegistered, member, time, data), Topics.members.name)
    }
    static func paid(_ id: String, _ member: String, _ paid: Int64, _ time: String) throws -> (CloudEvent, String) {
        (try event(id, EventType.orderPaid, member, time, ["orderId": .string("O-\(id)"), "paidMinor": .int(paid)]), Topics.orders.name)
    }
    static func definition(_ json: String, from time: String) throws -> CloudEvent {
        let data = try JSONValue.parse(Array(json.utf8))
        let id = data["id"]!.stringValue!
        return testKeys.sign(CloudEvent(id: "def-\(id)-\(data["version"]!.int64Value!)", source: "loyalty/cli", type: "campaign.defined",
                                        time: try EventTime.parse(time), subject: id, data: data))
    }

    func grants(_ outputs: [(topic: String, event: CloudEvent)]) -> [(campaign: String, points: Int64)] {
        outputs.filter { $0.topic == Topics.pointsCommands.name && $0.event.type == EventType.pointsGrant }
            .map { ($0.event.data["campaignId"]?.stringValue ?? "", $0.event.data["points"]?.int64Value ?? 0) }
    }

    @Test func lookalikeMemberIdsAreTwoMembersWhicheverBatchTheyShare() throws {
        // One `String`, two record keys and two rows: "Zoé" composed and decomposed.
        let composed = "Zo\u{E9}"
        let decomposed = "Zoe\u{301}"
        let events = [
            try Self.registered(composed, "2026-03-01T09:00:00+08:00"), try Self.registered(decomposed, "2026-03-01T09:01:00+08:00"),
            try Self.paid("o1", composed, 600_000, "2026-03-01T10:00:00+08:00"), try Self.paid("o2", decomposed, 10_000, "2026-03-01T10:01:00+08:00"),
        ]
        let oneBatch = try Harness()
        try oneBatch.apply(events)
        let eventByEvent = try Harness()
        for event in events { try eventByEvent.apply([event]) }
        func stored(_ harness: Harness) throws -> [[UInt8]: [UInt8]] {
            let rows = try harness.applier.database.prepare("SELECT member, tier FROM campaign_members").query { (Array($0.string(0).utf8), $0.blob(1)) }
            return Dictionary(rows) { $0 + $1 }
        }
        let levels = try Program.load(json: ReferenceProgram.bytes()).tiers.levels
        let members = try stored(oneBatch)
        #expect(try members.mapValues { try TierMember.decode($0, levels: levels).level } == [Array(composed.utf8): 2, Array(decomposed.utf8): 0])
        #expect(try stored(eventByEvent) == members)
    }

    @Test func closingAMemberErasesTheBirthdayAndItsTimer() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00", ["birthday": "1990-07-15"])])
        func stored() throws -> String {
            String(decoding: try h.applier.database.prepare("SELECT state FROM campaign_members WHERE member = 'm'").queryOne { $0.blob(0) } ?? [], as: UTF8.self)
        }
        func birthdayTimers() throws -> Int64 {
            try h.applier.database.prepare("SELECT count(*) FROM timers WHERE member = 'm' AND kind = 'birthday'").queryOne { $0.int64(0) } ?? -1
        }
        #expect(try stored().contains("07-15") && birthdayTimers() == 1)
        try h.apply([(try Self.event("close", EventType.memberClosed, "m", "2026-02-01T10:00:00+08:00"), Topics.members.name)])
        #expect(try !stored().contains("07-15"), "the birthday is gone from the store")
        #expect(try birthdayTimers() == 0, "and so is the timer whose due time would tell it")
        try h.apply([(try Self.event("upd", EventType.memberUpdated, "m", "2026-02-02T10:00:00+08:00", ["birthday": "08-01"]), Topics.members.name)])
        #expect(try !stored().contains("08-01") && birthdayTimers() == 0, "a closed member's profile stays erased")
    }

    @Test func aRegistrationReadAfterTheClosureKeepsNoBirthday() throws {
        let h = try Harness()
        try h.apply([(try Self.event("close", EventType.memberClosed, "m", "2026-02-01T10:00:00+08:00"), Topics.members.name)])
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00", ["birthday": "1990-07-15"])])
        let state = String(decoding: try h.applier.database.prepare("SELECT state FROM campaign_members WHERE member = 'm'").queryOne { $0.blob(0) } ?? [], as: UTF8.self)
        #expect(!state.contains("07-15"))
        #expect(try h.applier.database.prepare("SELECT count(*) FROM timers WHERE member = 'm'").queryOne { $0.int64(0) } == 0, "no birthday, no dormancy timers")
    }

    @Test func anOrderDatedFarBeforeTheRegistrationIsDeadLetteredAsIfItHadComeFirst() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2026-03-01T10:00:00+08:00")])
        // A week is the wait of an unknown member's events (reference program): eight days is past it.
        let out = try h.apply([try Self.paid("early", "m", 10_000, "2026-02-21T10:00:00+08:00"), try Self.paid("near", "m", 10_000, "2026-02-25T10:00:00+08:00")])
        let deadLetters = out.filter { $0.topic == Topics.deadLetters.name }
        #expect(deadLetters.map { $0.event.data["reason"]?.stringValue } == ["member-not-registered"])
        #expect(deadLetters.first?.event.data["detail"]?.stringValue?.contains("before the member's registration") == true)
    }

    @Test func aPaidOrderOnMemberDaySendsTheBonusAsAGrantAndPublishesRewardAndResults() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00"), try Self.paid("o0", "m", 100, "2026-01-02T10:00:00+08:00")])
        let out = try h.apply([try Self.paid("o1", "m", 12_345, "2026-03-18T10:00:00+08:00")])
        let grant = try #require(out.first { $0.topic == Topics.pointsCommands.name }?.event)
        #expect(grant.type == EventType.pointsGrant && grant.source == "loyalty/campaigns")
        #expect(grant.id == "campaign-grant/member-day/o1")
        #expect(grant.time == (try EventTime.parse("2026-03-18T10:00:00+08:00")), "the grant carries its cause's event time")
        #expect(grant.data["component"]?.stringValue == "campaign-bonus" && grant.data["orderId"]?.stringValue == "O-o1")
        #expect(grant.data["points"]?.int64Value == 123)
        let reward = try #require(out.first { $0.topic == Topics.campaignRewards.name }?.event)
        #expect(reward.type == "campaign.rewarded" && reward.data["multiplier"]?.stringValue == nil && reward.data["points"]?.int64Value == 123)
        let results = try #require(out.last { $0.topic == Topics.campaignResults.name && $0.event.subject == "member-day" }?.event)
        #expect(results.data["pointsGranted"]?.int64Value == 123 && results.data["membersReached"]?.int64Value == 1)
    }

    /// Every paid order restarts each dormancy clock: one timer per dormant campaign stays,
    /// due that campaign's days after the last order, and the win-back comes once, then.
    @Test func aPaidOrderMovesEveryWinBackToItsDaysAfterTheLastOrder() throws {
        let h = try Harness()
        let comeback = #"{"id":"comeback","version":1,"name":"Comeback","trigger":{"event":"dormant","days":20},"reward":{"points":40}}"#
        try h.define([try Self.definition(comeback, from: "2025-12-01T00:00:00+08:00")])
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00")])
        try h.apply([try Self.paid("o1", "m", 100, "2026-01-05T10:00:00+08:00")])
        try h.apply([try Self.paid("o2", "m", 100, "2026-01-10T10:00:00+08:00"), try Self.paid("o3", "m", 100, "2026-01-15T10:00:00+08:00")])
        func dormantTimers() throws -> [String] {
            try h.applier.database.prepare("SELECT ref, due FROM timers WHERE member = 'm' AND kind = 'dormant' ORDER BY ref").query {
                "\($0.string(0)) \(EventTime(millis: $0.int64(1)).rfc3339)"
            }
        }
        let lastOrder = try EventTime.parse("2026-01-15T10:00:00+08:00")
        #expect(try dormantTimers() == ["comeback \(lastOrder.adding(days: 20).rfc3339)", "win-back \(lastOrder.adding(days: 30).rfc3339)"])

        // Another member's records move the stream time on; the win-backs fire as it passes them.
        func rewards(_ outputs: [(topic: String, event: CloudEvent)]) -> [String] {
            outputs.filter { $0.topic == Topics.campaignRewards.name && $0.event.subject == "m" }.compactMap { $0.event.data["campaignId"]?.stringValue }
        }
        #expect(rewards(try h.apply([try Self.registered("other", "2026-02-03T10:00:00+08:00")])).isEmpty, "19 days after the last order: nothing yet")
        #expect(rewards(try h.apply([try Self.paid("x1", "other", 100, "2026-02-04T10:00:01+08:00")])) == ["comeback"])
        #expect(rewards(try h.apply([try Self.paid("x2", "other", 100, "2026-03-30T10:00:00+08:00")])).filter { $0 == "win-back" }.count
            == (ControlGroup.isControl(campaign: "win-back", member: "m", sharePercent: 10) ? 0 : 1))
        #expect(try dormantTimers().isEmpty, "once a spell")
    }

    @Test func theMemberViewListsPaidOrdersAndWhatEachCampaignGave() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00"), try Self.paid("o0", "m", 100, "2026-01-02T10:00:00+08:00")])
        try h.apply([try Self.paid("o1", "m", 12_345, "2026-03-18T10:00:00+08:00")])
        let view = try #require(try h.applier.processor.memberView("m", in: h.applier.database, asOf: nil)?.objectValue)
        #expect(view["member"]?.stringValue == "m" && view["paidOrders"]?.int64Value == 2 && view["rewardedReferrals"]?.int64Value == 0)
        let memberDay = view["campaigns"]?.arrayValue?.first { $0["campaign"]?.stringValue == "member-day" }
        #expect(memberDay?["rewards"]?.int64Value == 1 && memberDay?["points"]?.int64Value == 123 && memberDay?["controlGroup"] == .bool(false))
        #expect(try h.applier.processor.memberView("nobody", in: h.applier.database, asOf: nil) == nil)
    }

    @Test func aMemberKeepsItsLatestOrdersAndFindsOlderOnesApartWhateverTheBatching() throws {
        func at(_ minute: Int) -> String { "2026-03-18T1\(minute / 60):\(String(format: "%02d", minute % 60)):00+08:00" }
        func refund(_ id: String, of order: String, _ minor: Int64, _ minute: Int) throws -> (CloudEvent, String) {
            (try Self.event("e-\(id)-\(minute)", EventType.orderRefunded, "m", at(minute),
                            ["orderId": .string(order), "refundId": .string(id), "refundMinor": .int(minor)]), Topics.orders.name)
        }
        // Thirty orders on member day, each with a campaign bonus; then refunds, some of orders kept apart.
        var events = [try Self.registered("m", "2026-01-01T10:00:00+08:00"), try Self.paid("o0", "m", 100, "2026-01-02T10:00:00+08:00")]
        for number in 1...30 { events.append(try Self.paid("o\(number)", "m", 12_000, at(number))) }
        events.append(try refund("R-1", of: "O-o1", 6_000, 40))  // an order kept apart: half its bonus back
        events.append(try refund("R-1", of: "O-o2", 6_000, 41))  // a repeated refund id: nothing
        events.append(try Self.paid("o2", "m", 12_000, at(42)))  // a repeated order: nothing
        for number in 1...20 { events.append(try refund("F\(number)", of: "O-o\(number + 3)", 1_200, 50 + number)) }
        events.append(try refund("F1", of: "O-o30", 1_200, 80))  // a refund id kept apart: nothing

        let oneBatch = try Harness()
        let published = try oneBatch.apply(events)
        let eventByEvent = try Harness()
        var publishedOneByOne: [(topic: String, event: CloudEvent)] = []
        for event in events { publishedOneByOne += try eventByEvent.apply([event]) }
        // Results records follow the batches (one per campaign and batch); every other output is the same.
        func withoutResults(_ outputs: [(topic: String, event: CloudEvent)]) -> [String] {
            outputs.filter { $0.topic != Topics.campaignResults.name }.map { "\($0.event.id) \($0.event.data["points"]?.int64Value ?? 0)" }
        }
        #expect(withoutResults(publishedOneByOne) == withoutResults(published))
        let reversals = published.filter { $0.event.type == EventType.pointsReverse }
        #expect(reversals.count == 21, "R-1 once and F1…F20; the repeats reverse nothing")
        #expect(reversals.first?.event.data["points"]?.int64Value == 60 && reversals.first?.event.data["orderId"]?.stringValue == "O-o1")
        #expect(grants(published).filter { $0.campaign == "member-day" }.count == 30, "o1…o30, not the repeated o2")

        func stored(_ harness: Harness) throws -> [String] {
            let database = harness.applier.database
            return try database.prepare("SELECT member, state, tier, orders_apart, refunds_apart FROM campaign_members").query {
                "\($0.string(0)) \(SHA256.lowercaseHex($0.blob(1))) \(SHA256.lowercaseHex($0.blob(2))) \($0.int64(3)) \($0.int64(4))"
            } + database.prepare("SELECT * FROM campaign_orders ORDER BY member, order_id").query { row in
                (0..<11).map { row.isNull($0) ? "-" : row.string($0) }.joined(separator: " ")
            } + database.prepare("SELECT refund_id FROM campaign_refund_ids ORDER BY refund_id").query { $0.string(0) }
        }
        #expect(try stored(oneBatch) == stored(eventByEvent))
        let count = { (sql: String) in try oneBatch.applier.database.prepare(sql).queryOne { $0.int64(0) } }
        #expect(try count("SELECT COUNT(*) FROM campaign_orders") == 15, "o0…o14 apart, o15…o30 kept")
        #expect(try count("SELECT COUNT(*) FROM campaign_orders WHERE bonus_campaign = 'member-day'") == 14)
        #expect(try count("SELECT COUNT(*) FROM campaign_refund_ids") == 5)
    }

    @Test func aChangedDefinitionAppliesFromItsTimeOnAndABadOneIsDeadLettered() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00"), try Self.paid("o0", "m", 100, "2026-01-02T10:00:00+08:00")])
        let v2 = #"{"id":"member-day","version":2,"name":"Member day x3","schedule":{"daysOfMonth":[18]},"trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":3}}"#
        #expect(try h.define([try Self.definition(v2, from: "2026-04-18T12:00:00+08:00")]).isEmpty)
        // Before its time the old version holds, from it the new one: decided on event time.
        #expect(grants(try h.apply([try Self.paid("o1", "m", 10_000, "2026-04-18T11:59:59+08:00")])).map(\.points) == [100])
        #expect(grants(try h.apply([try Self.paid("o2", "m", 10_000, "2026-04-18T12:00:00+08:00")])).map(\.points) == [200])

        let bad = try h.define([
            try Self.definition(#"{"id":"oops","version":1,"name":"Oops","trigger":{"event":"order.paid","when":"order.total > 1"},"reward":{"points":5}}"#, from: "2026-04-19T00:00:00+08:00"),
            try Self.definition(v2.replacingOccurrences(of: "x3", with: "x4"), from: "2026-04-19T00:00:00+08:00"),
        ])
        #expect(bad.map(\.event.type) == ["loyalty.dead-letter", "loyalty.dead-letter"])
        #expect(bad[0].event.data["reason"]?.stringValue == "invalid-campaign")
        #expect(bad[0].event.data["detail"]?.stringValue?.contains("trigger.when: column 1: unknown field order.total") == true)
        #expect(bad[1].event.data["detail"]?.stringValue?.contains("version 2 is already defined differently") == true)
        #expect(grants(try h.apply([try Self.paid("o3", "m", 10_000, "2026-05-18T12:00:00+08:00")])).map(\.points) == [200], "the service went on")

        // Retired: nothing from its time on. A restart reads every version back from the database.
        let retire = CloudEvent(id: "ret", source: "loyalty/cli", type: "campaign.retired", time: try EventTime.parse("2026-06-01T00:00:00+08:00"),
                                subject: "member-day", data: .object(["campaignId": "member-day", "version": 3]))
        // Unsigned, a retirement is refused like any definition; signed, it takes effect.
        #expect(try h.define([retire]).first?.event.data["reason"]?.stringValue == "unauthenticated-command")
        try h.define([testKeys.sign(retire)])
        let reopened = try Harness.open(h.directory)
        let polled = [try Self.paid("o4", "m", 10_000, "2026-05-18T13:00:00+08:00"), try Self.paid("o5", "m", 10_000, "2026-06-18T13:00:00+08:00")].map { event, topic in
            let record = h.record(event, topic: topic)
            return PolledRecord(record: record, decoded: Result<Decoded<CampaignRecord>, Rejection> { () throws(Rejection) in try reopened.processor.decode(record) })
        }
        let after = try reopened.apply(polled).outbox.map { ($0.topic, try CloudEvent.decode($0.value!)) }
        #expect(grants(after).map(\.points) == [200], "v2 on 18 May, nothing after the retirement on 1 June")
    }

    @Test func theBudgetHoldsUnderRedeliveryAndGrantsExactlyWhatIsLeft() throws {
        let h = try Harness()
        try h.define([try Self.definition(
            #"{"id":"tiny","version":1,"name":"Tiny","trigger":{"event":"order.paid"},"reward":{"points":40},"budgetPoints":100}"#,
            from: "2026-01-01T00:00:00+08:00")])
        var members: [(CloudEvent, String)] = []
        for index in 0..<5 { members.append(try Self.registered("m\(index)", "2026-01-01T10:00:00+08:00")) }
        try h.apply(members)
        let orders = try (0..<5).map { try Self.paid("o\($0)", "m\($0)", 100, "2026-02-0\($0 + 1)T10:00:00+08:00") }
        let first = grants(try h.apply(orders)).filter { $0.campaign == "tiny" }.map(\.points)
        // The same records again (a redelivery after a crash): the inbox drops them.
        let again = grants(try h.apply(orders)).filter { $0.campaign == "tiny" }
        #expect(first == [40, 40, 20])
        #expect(again.isEmpty)
    }

    @Test func eachTaskPublishesItsOwnMembersResultsAndOneStoreHoldsTheBudgetAcrossThem() throws {
        let h = try Harness(partitions: 4)
        try h.define([try Self.definition(
            #"{"id":"tiny","version":1,"name":"Tiny","trigger":{"event":"order.paid"},"reward":{"points":40},"budgetPoints":100}"#,
            from: "2026-01-01T00:00:00+08:00")])
        let members = (0..<5).map { "m\($0)" }
        let taskOf = Dictionary(uniqueKeysWithValues: members.map { ($0, Murmur2Partitioner.partition(of: Array($0.utf8), partitions: 4)) })
        try h.apply(try members.map { try Self.registered($0, "2026-01-01T10:00:00+08:00") })
        var rows: [OutboxRow] = []
        for (index, member) in members.enumerated() {
            rows += try h.applyRows([try Self.paid("o\(index)", member, 100, "2026-02-0\(index + 1)T10:00:00+08:00")])
        }
        let events = try rows.map { (row: $0, event: try CloudEvent.decode($0.value!)) }
        let granted = events.filter { $0.row.topic == Topics.pointsCommands.name && $0.event.data["campaignId"]?.stringValue == "tiny" }
        #expect(granted.map { $0.event.data["points"]?.int64Value } == [40, 40, 20], "the budget is exact across tasks")
        let rewardedTasks = Set(granted.compactMap { $0.event.subject.flatMap { taskOf[$0] } })
        #expect(rewardedTasks.count >= 2, "the rewarded members fall in more than one task: m0–m2 in \(rewardedTasks)")

        let results = events.filter { $0.row.topic == Topics.campaignResults.name && $0.event.subject == "tiny" }
        for (row, event) in results {
            let task = try #require(event.data["task"]?.int64Value)
            #expect(row.key.map { String(decoding: $0, as: UTF8.self) } == "tiny/task-\(task)")
            #expect(event.id == "campaign-results/tiny/task-\(task)/\(event.data["revision"]?.int64Value ?? -1)")
            #expect(event.data["tasks"]?.int64Value == 4)
            // A task's record counts its own members alone.
            let own = granted.filter { $0.event.subject.flatMap { taskOf[$0] } == Int32(task) && $0.event.time <= event.time }
            #expect(event.data["pointsGranted"]?.int64Value == own.reduce(0) { $0 + ($1.event.data["points"]?.int64Value ?? 0) })
        }
        #expect(Set(results.compactMap { $0.event.data["task"]?.int64Value }) == Set(rewardedTasks.map(Int64.init)))
        var board = CampaignResultsBoard()
        for (_, event) in results { board.add(campaign: "tiny", data: try #require(event.data.objectValue)) }
        let combined = try #require(board.combined("tiny"))
        #expect(combined["pointsGranted"]?.int64Value == 100 && combined["membersReached"]?.int64Value == 3 && combined["rewards"]?.int64Value == 3)
        #expect(combined["budgetPoints"]?.int64Value == 100 && combined["budgetLeft"]?.int64Value == 0)
        #expect(combined["tasksReporting"]?.int64Value == Int64(rewardedTasks.count))
    }

    @Test func checkInStreaksAreCountedByThePointsRuleFromTheShopsCheckIns() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", "2025-12-31T10:00:00+08:00")])
        var inputs: [(CloudEvent, String)] = []
        for day in 1...30 {
            let date = "2026-01-\(day < 10 ? "0" : "")\(day)"
            inputs.append((try Self.event("ci-\(day)", EventType.checkedIn, "m", "\(date)T08:00:00+08:00"), Topics.engagement.name))
            // A second check-in the same day counts nothing, as points refuses it.
            if day == 29 { inputs.append((try Self.event("ci-again", EventType.checkedIn, "m", "\(date)T20:00:00+08:00"), Topics.engagement.name)) }
        }
        // Reviews and redemptions are read for their time only: neither applied nor dead-lettered.
        inputs.append((try Self.event("review", EventType.reviewPosted, "m", "2026-01-30T09:00:00+08:00"), Topics.engagement.name))
        inputs.append((try Self.event("redeem", EventType.redeem, "m", "2026-01-30T09:30:00+08:00", ["points": 100]), Topics.pointsRequests.name))
        let out = try h.apply(inputs)
        #expect(out.filter { $0.topic == Topics.campaignRewards.name }.map { $0.event.data["badge"]?.stringValue } == ["streak-30"])
        #expect(out.first { $0.topic == Topics.campaignRewards.name }?.event.time == (try EventTime.parse("2026-01-30T08:00:00+08:00")))
        #expect(grants(out).map(\.points) == [50])
        #expect(out.filter { $0.topic == Topics.deadLetters.name }.isEmpty)
        // A break of a day starts the streak again: day 30 of the new one is a month away.
        let later = try h.apply([(try Self.event("ci-gap", EventType.checkedIn, "m", "2026-02-01T08:00:00+08:00"), Topics.engagement.name)])
        #expect(later.filter { $0.topic == Topics.campaignRewards.name }.isEmpty)
    }

    @Test func referralsAreSentToTheReferrersTaskAndCountedUnderTheMonthlyCap() throws {
        let h = try Harness()
        try h.apply([try Self.registered("boss", "2026-01-01T10:00:00+08:00")])
        var registrations: [(CloudEvent, String)] = []
        for index in 0..<5 {
            // The last one's profile campaigns cannot read: points still registers it and rewards the referrer.
            let profile: JSONObject = index == 4 ? ["referrerId": "boss", "birthday": "1990-13-01"] : ["referrerId": "boss"]
            registrations.append(try Self.registered("friend\(index)", "2026-01-0\(index + 2)T10:00:00+08:00", profile))
        }
        registrations.append(try Self.registered("self", "2026-01-08T10:00:00+08:00", ["referrerId": "self"]))
        // A second registration of a member: points refuses it (already-registered), and counts nothing.
        registrations.append((try Self.event("again", EventType.memberRegistered, "friend0", "2026-01-09T10:00:00+08:00", ["referrerId": "boss"]), Topics.members.name))
        let sent = try h.apply(registrations)
        let referrals = sent.filter { $0.topic == Topics.campaignCommands.name }
        #expect(referrals.count == 5, "a self-referral and a second registration are never counted")
        #expect(sent.filter { $0.topic == Topics.deadLetters.name }.map { $0.event.data["reason"]?.stringValue } == ["invalid-event"])
        #expect(referrals.map(\.event.id).contains("referral/reg-friend4"))
        #expect(referrals.allSatisfy { $0.event.subject == "boss" && $0.event.type == EventType.campaignsReferral && $0.event.signature != nil })
        // The referrer's task applies them (here the same harness): the fifth earns the champion badge.
        let counted = try h.apply(referrals.map { ($0.event, $0.topic) })
        #expect(counted.filter { $0.topic == Topics.campaignRewards.name }.map { $0.event.data["badge"]?.stringValue } == ["referral-5"])
        #expect(grants(counted).map(\.points) == [200])
        // A referral forged by anyone else is dead-lettered, never counted.
        var forged = referrals[0].event
        forged.id = "forged"
        forged.source = "shop"
        let refused = try h.apply([(forged, Topics.campaignCommands.name)])
        #expect(refused.filter { $0.topic == Topics.deadLetters.name }.map { $0.event.data["reason"]?.stringValue } == ["forbidden-source"])
    }

    /// Referral commands sent again months later, by a store restored from a changelog that
    /// lagged its outputs, after the inbox let them go: counted once.
    @Test func referralsSentAgainAfterTheInboxForgotThemAreCountedOnce() throws {
        let h = try Harness(inboxHorizonDays: 30)
        try h.apply([try Self.registered("boss", "2026-01-01T10:00:00+08:00")])
        let registrations = try (0..<5).map { try Self.registered("friend\($0)", "2026-01-0\($0 + 2)T10:00:00+08:00", ["referrerId": "boss"]) }
        let referrals = try h.apply(registrations).filter { $0.topic == Topics.campaignCommands.name }.map { ($0.event, $0.topic) }
        #expect(referrals.count == 5)
        // Four of them; then the stream goes on for months.
        try h.apply(Array(referrals.prefix(4)))
        try h.apply([try Self.registered("later", "2026-05-01T10:00:00+08:00")])
        // All five again: the first four are known, the fifth (as late, and new) earns the badge.
        let again = try h.apply(referrals)
        #expect(again.filter { $0.topic == Topics.campaignRewards.name }.map { $0.event.data["badge"]?.stringValue } == ["referral-5"])
        let view = try h.applier.processor.memberView("boss", in: h.applier.database, asOf: nil)
        #expect(view?["rewardedReferrals"]?.int64Value == 5)
    }

    @Test func anOrderReadBeforeItsRegistrationWaitsForIt() throws {
        let h = try Harness()
        // The order topic was read first: the order (after registering, in event time) waits.
        #expect(grants(try h.apply([try Self.paid("o1", "m", 10_000, "2026-03-02T10:00:00+08:00")])).isEmpty)
        let out = try h.apply([try Self.registered("m", "2026-03-01T10:00:00+08:00")])
        #expect(grants(out).map(\.campaign) == ["first-order"], "the first order, 1 day after registering: ×5")
        #expect(grants(out).map(\.points) == [400])
        // A member who never registers: the waiting event is dead-lettered after the wait.
        try h.apply([try Self.paid("o2", "ghost", 10_000, "2026-03-02T10:00:00+08:00")])
        let later = try h.apply([try Self.registered("n", "2026-03-10T10:00:00+08:00")])
        let dead = later.filter { $0.topic == Topics.deadLetters.name }
        #expect(dead.map { $0.event.data["reason"]?.stringValue } == ["member-not-registered"])
    }

    @Test func badProfilesAreDeadLetteredWithTheirReason() throws {
        let h = try Harness()
        let out = try h.apply([try Self.registered("m", "2026-01-01T10:00:00+08:00", ["birthday": "1990-13-01"])])
        #expect(out.map(\.event.type) == ["loyalty.dead-letter"])
        #expect(out[0].event.data["detail"]?.stringValue == "data.birthday: expected MM-DD or YYYY-MM-DD")
    }
}

/// The command key campaign definitions are signed with in these tests.
let testKeys = try! CommandKeys.parse("test=campaigns-test-secret-001")

/// Results kept before they were per task, and read from the topic.
@Suite struct CampaignResultsPerTaskTests {
    @Test func resultsKeptBeforeTasksBecomeTaskZerosAndStillCountAgainstTheBudget() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("campaigns-migration-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("campaigns.sqlite").path))
        try database.migrate(RuntimeSchema.migrations + CampaignsSchema.migrations.filter { $0.version < 103 })
        var writer = JSONWriter()
        writer.beginObject()
        for (key, value) in [("revision", 7), ("membersReached", 3), ("rewards", 3), ("pointsGranted", 90), ("pointsReversed", 0),
                             ("couponsIssued", 0), ("badgesAwarded", 0)] as [(String, Int64)] {
            writer.key(escaping: key); writer.int(value)
        }
        for group in ["treated", "control"] {
            writer.key(escaping: group); writer.beginObject()
            for key in ["members", "triggers", "orders", "revenueMinor"] { writer.key(escaping: key); writer.int(0) }
            writer.endObject()
        }
        writer.endObject()
        try database.prepare("INSERT INTO campaign_results(campaign, results) VALUES('tiny', ?)").run(.blob(writer.bytes))
        #expect(try database.migrate(CampaignsSchema.migrations) == [103, 104])
        let rows = try database.prepare("SELECT campaign, task FROM campaign_task_results").query { ($0.string(0), $0.int64(1)) }
        #expect(rows.map { "\($0.0)/\($0.1)" } == ["tiny/0"])
        database.close()

        // The budget of 100 has 10 left: one member's 40 is cut to 10, in task 0 or not.
        let applier = try CampaignsProcessorTests.Harness.open(directory, partitions: 4)
        let define = try CampaignsProcessorTests.definition(
            #"{"id":"tiny","version":1,"name":"Tiny","trigger":{"event":"order.paid"},"reward":{"points":40},"budgetPoints":100}"#,
            from: "2026-01-01T00:00:00+08:00")
        _ = try applier.applyBroadcast([ConsumedRecord(
            topic: Topics.campaignDefinitions.name, partition: 0, offset: 0, key: Array("tiny".utf8), value: define.encoded())])
        var offset: Int64 = 0
        func apply(_ event: (CloudEvent, String)) throws -> [CloudEvent] {
            offset += 1
            let key = Array(event.0.subject!.utf8)
            let record = ConsumedRecord(
                topic: event.1, partition: Murmur2Partitioner.partition(of: key, partitions: 4), offset: offset, key: key, value: event.0.encoded())
            let decoded: Result<Decoded<CampaignRecord>, Rejection>
            do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
            return try applier.apply([PolledRecord(record: record, decoded: decoded)]).outbox.map { try CloudEvent.decode($0.value!) }
        }
        _ = try apply(try CampaignsProcessorTests.registered("late", "2026-01-01T10:00:00+08:00"))
        let out = try apply(try CampaignsProcessorTests.paid("o1", "late", 100, "2026-02-01T10:00:00+08:00"))
        #expect(out.filter { $0.type == EventType.pointsGrant && $0.data["campaignId"]?.stringValue == "tiny" }.map { $0.data["points"]?.int64Value } == [10])
        let results = try #require(out.last { $0.type == "campaign.results" && $0.subject == "tiny" })
        #expect(results.data["budgetLeft"]?.int64Value == 0)
        applier.database.close()
    }

    /// A changelog an older release began holds results by campaign alone: a restore by this
    /// release places them as task 0's, as the migration does, and so does a deletion.
    @Test func resultsLoggedBeforeTasksAreRestoredAsTaskZeros() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("campaigns-logged-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let applier = try CampaignsProcessorTests.Harness.open(directory, partitions: 4)
        defer { applier.database.close() }
        let database = applier.database
        let capture = try RuntimeSchema.changelogCapture(of: database, upgrades: applier.processor.loggedRowUpgrades)
        func results() throws -> [String] {
            try database.prepare("SELECT campaign, task, hex(results) FROM campaign_task_results ORDER BY campaign").query {
                "\($0.string(0))/\($0.int64(1))/\($0.string(2))"
            }
        }
        try database.transaction {
            for (campaign, bytes) in [("tiny", [UInt8]([1, 2])), ("gone", [3])] {
                try capture.apply(RowChange(table: "campaign_results", key: [.text(campaign)], row: [.text(campaign), .blob(bytes)]))
            }
        }
        #expect(try results() == ["gone/0/03", "tiny/0/0102"])
        try database.transaction { try capture.apply(RowChange(table: "campaign_results", key: [.text("gone")], row: nil)) }
        #expect(try results() == ["tiny/0/0102"])
    }

    @Test func theBoardAddsEachTasksNewestAndCountsARecordFromBeforeTasksAsTaskZerosUntilItPublishes() throws {
        func record(task: Int64?, revision: Int64, granted: Int64, left: Int64, members: Int64 = 1) -> JSONObject {
            var data: JSONObject = [
                "campaignId": "c", "revision": .int(revision), "membersReached": .int(members), "rewards": .int(members),
                "pointsGranted": .int(granted), "pointsReversed": 0, "budgetPoints": 1_000, "budgetLeft": .int(left),
                "couponsIssued": 0, "badgesAwarded": 0,
                "treated": ["members": .int(members), "triggers": 1, "orders": 2, "revenueMinor": 300], "control": ["members": 0, "triggers": 0, "orders": 0, "revenueMinor": 0],
            ]
            if let task { data["task"] = .int(task); data["tasks"] = 12 }
            return data
        }
        var board = CampaignResultsBoard()
        // Before tasks, the whole campaign as one store had it (that store's task 0 keeps it on).
        board.add(campaign: "c", data: record(task: nil, revision: 9, granted: 500, left: 500, members: 5))
        #expect(board.combined("c")?["pointsGranted"]?.int64Value == 500)
        // Another task publishes first: the old record still stands for task 0.
        board.add(campaign: "c", data: record(task: 5, revision: 2, granted: 100, left: 400))
        #expect(board.combined("c")?["pointsGranted"]?.int64Value == 600 && board.combined("c")?["budgetLeft"]?.int64Value == 400)
        // Task 0 publishes its results, the old ones among them: the old record is set aside.
        board.add(campaign: "c", data: record(task: 0, revision: 12, granted: 600, left: 300, members: 6))
        // An older revision of task 0, read after the newer one (a compacted topic read again): ignored.
        board.add(campaign: "c", data: record(task: 0, revision: 11, granted: 550, left: 350, members: 5))
        let combined = try #require(board.combined("c"))
        #expect(combined["pointsGranted"]?.int64Value == 700 && combined["membersReached"]?.int64Value == 7)
        #expect(combined["revision"]?.int64Value == 14 && combined["tasksReporting"]?.int64Value == 2 && combined["tasks"]?.int64Value == 12)
        #expect(combined["budgetLeft"]?.int64Value == 300, "the budget as the record read last (written last) left it")
        #expect(combined["treated"]?["orders"]?.int64Value == 4 && combined["treated"]?["revenueMinor"]?.int64Value == 600)
        #expect(board.campaigns == ["c"] && board.combined("other") == nil)
    }
}
