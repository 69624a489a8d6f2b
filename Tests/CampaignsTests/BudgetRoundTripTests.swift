import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

@testable import CampaignsService

/// Campaigns' tasks in stores of their own, claiming of one keeper of budgets, against one
/// store that counts: the claims, the members kept aside, the answers and the bounds that let
/// the keeper decide in the order one store applies.
@Suite struct BudgetRoundTripTests {
    typealias Campaigns = CampaignsProcessorTests
    static let budgets = BudgetDecisions.keeper(claims: BudgetKeeperProcessorTests.claims, answers: BudgetKeeperProcessorTests.answers)
    static let tasks: Int32 = 3

    /// Budgeted campaigns above the reference ones: a multiplier below first-order's ×5 and
    /// above member day's ×2, a bonus per order, a birthday gift and a win-back, each budget
    /// small enough to run out during the history.
    static let definitions = [
        #"{"id":"triple","version":1,"name":"Triple","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":3.0},"budgetPoints":2500}"#,
        #"{"id":"bonus","version":1,"name":"Bonus","trigger":{"event":"order.paid"},"reward":{"points":30},"budgetPoints":900}"#,
        #"{"id":"gift","version":1,"name":"Gift","trigger":{"event":"birthday"},"reward":{"points":150},"budgetPoints":700}"#,
        #"{"id":"comeback","version":1,"name":"Comeback","trigger":{"event":"dormant","days":20},"reward":{"points":40},"budgetPoints":300}"#,
    ]

    /// Half a year of 36 members: registrations with birthdays through the half year, orders
    /// and refunds at minutes never on a day's start (where birthdays fall), in time order.
    static func history() throws -> [(CloudEvent, String)] {
        var random = SeededRandom(seed: 13)
        var events: [(time: Int64, event: CloudEvent, topic: String)] = []
        let start = try EventTime.parse("2026-01-01T00:00:00+08:00").millis
        let day: Int64 = 86_400_000
        for member in 0..<36 {
            let id = "m-\(member)"
            let registered = start + Int64(member) * 3_600_000 + 60_000
            let birthday = String(format: "1990-%02d-%02d", 1 + Int(random.next() % 6), 1 + Int(random.next() % 28))
            events.append((registered, CloudEvent(
                id: "reg-\(id)", source: "shop", type: EventType.memberRegistered, time: EventTime(millis: registered), subject: id,
                data: ["birthday": .string(birthday)]), Topics.members.name))
            var time = registered + day
            for order in 0..<Int(4 + random.next() % 6) {
                time += Int64(1 + random.next() % 30) * day + Int64(1 + random.next() % 1_000) * 61_000
                guard time < start + 180 * day else { break }
                let paid = Int64(5_000 + random.next() % 20_000)
                let orderID = "O-\(id)-\(order)"
                events.append((time, CloudEvent(
                    id: "paid-\(id)-\(order)", source: "shop", type: EventType.orderPaid, time: EventTime(millis: time), subject: id,
                    data: ["orderId": .string(orderID), "paidMinor": .int(paid)]), Topics.orders.name))
                if random.next() % 5 == 0 {
                    events.append((time + 3 * day + 7_000, CloudEvent(
                        id: "refund-\(id)-\(order)", source: "shop", type: EventType.orderRefunded, time: EventTime(millis: time + 3 * day + 7_000),
                        subject: id, data: ["orderId": .string(orderID), "refundId": .string("R-\(id)-\(order)"), "refundMinor": .int(paid / 2)]),
                        Topics.orders.name))
                }
            }
        }
        return events.sorted { ($0.time, $0.event.id) < ($1.time, $1.event.id) }.map { ($0.event, $0.topic) }
    }

    /// A record on a topic campaigns reads for its clock alone, on each task's partition, past
    /// the history: the timers left fire.
    static func clockRecords(at time: String) throws -> [(CloudEvent, String)] {
        var members: [Int32: String] = [:]
        var index = 0
        while members.count < Int(tasks) {
            let member = "clock-\(index)"
            members[Murmur2Partitioner.partition(of: Array(member.utf8), partitions: tasks)] = members[Murmur2Partitioner.partition(of: Array(member.utf8), partitions: tasks)] ?? member
            index += 1
        }
        return try members.values.sorted().map { member in
            (CloudEvent(id: "review-\(member)", source: "shop", type: "engagement.review", time: try EventTime.parse(time), subject: member, data: [:]),
             Topics.engagement.name)
        }
    }

    struct Outcome {
        /// Grants, reversals and rewards by id, their bytes.
        var outputs: [String: [UInt8]] = [:]
        var deadLetters: [String] = []
    }

    static func collect(_ rows: [OutboxRow], into outcome: inout Outcome) throws {
        for row in rows {
            guard let value = row.value else { continue }
            switch row.topic {
            case Topics.pointsCommands.name, Topics.campaignRewards.name: outcome.outputs[try CloudEvent.decode(value).id] = value
            case Topics.deadLetters.name: outcome.deadLetters.append(try CloudEvent.decode(value).data["reason"]?.stringValue ?? "")
            default: break
            }
        }
    }

    func task(of member: String) -> Int { Int(Murmur2Partitioner.partition(of: Array(member.utf8), partitions: Self.tasks)) }

    @Test func tasksInStoresOfTheirOwnClaimingOfTheKeeperGrantWhatOneStoreGrants() throws {
        let history = try Self.history() + Self.clockRecords(at: "2026-08-01T12:00:00+08:00")
        let definitions = try Self.definitions.map { try Campaigns.definition($0, from: "2026-01-01T00:00:00+08:00") }

        // One store, one task: every trigger decided in event-time order, budgets counted.
        let one = try Campaigns.Harness()
        try one.define(definitions)
        var counted = Outcome()
        for chunk in stride(from: 0, to: history.count, by: 17) {
            try Self.collect(try one.applyRows(Array(history[chunk..<min(chunk + 17, history.count)])), into: &counted)
        }

        // Three tasks, each in a store of its own, and the keeper.
        let stores = try (0..<Int(Self.tasks)).map { _ in try Campaigns.Harness(partitions: Self.tasks, budgets: Self.budgets) }
        for store in stores { try store.define(definitions) }
        let keeper = try BudgetKeeperProcessorTests.Harness()
        var claimed = Outcome()
        var unsentClaims: [CloudEvent] = []
        var answers = 0
        var decidedInOrder: [MergeKey] = []
        var keptAside = 0
        func publish(_ rows: [OutboxRow]) throws {
            try Self.collect(rows, into: &claimed)
            unsentClaims += try rows.filter { $0.topic == BudgetKeeperProcessorTests.claims }.map { try CloudEvent.decode($0.value!) }
        }
        // What a task's progress marks promise on the claims topic: its merge (its next record,
        // or its next timer) lowered to its bound; the keeper decides a claim only below every task's.
        func promises(_ next: [Int: Int64]) throws -> MergeKey {
            var lowest = MergeKey.highest
            for (index, store) in stores.enumerated() {
                let database = store.applier.database
                let timer = try database.prepare("SELECT min(due) FROM timers WHERE task = ?").queryOne(.integer(Int64(index))) { $0.isNull(0) ? nil : $0.int64(0) } ?? nil
                var promise = MergeKey(time: min(next[index] ?? .max, timer ?? .max), rank: .min, id: "")
                let bounds = try store.applier.processor.progressBounds(of: [Int32(index)], in: database)
                if let bound = bounds[Int32(index)]?[BudgetKeeperProcessorTests.claims] { promise = min(promise, bound) }
                lowest = min(lowest, promise)
            }
            return lowest
        }
        func key(_ claim: CloudEvent) -> MergeKey { MergeKey(time: claim.time.millis, rank: Int(claim.data["rank"]!.int64Value!), id: claim.id) }

        var position = 0
        var random = SeededRandom(seed: 5)
        // Answers on their way back, with the round they arrive in: a keeper that runs behind
        // lets tasks run weeks ahead of their waiting members.
        var onTheirWay: [(round: Int, answer: CloudEvent)] = []
        var round = 0
        while position < history.count || !onTheirWay.isEmpty || !unsentClaims.isEmpty {
            round += 1
            // Each task applies its next few records, in batches of its own size.
            let end = min(history.count, position + 1 + Int(random.next() % 25))
            var byTask: [Int: [(CloudEvent, String)]] = [:]
            for event in history[position..<end] { byTask[task(of: event.0.subject!), default: []].append(event) }
            for (index, events) in byTask.sorted(by: { $0.key < $1.key }) { try publish(try stores[index].applyRows(events)) }
            position = end
            keptAside = max(keptAside, try stores.map { try $0.applier.database.prepare("SELECT count(*) FROM campaign_kept_aside").queryOne { $0.int64(0) } ?? 0 }.reduce(0, +).asInt)
            // The answers that have come back, which may release records that claim again.
            for (_, answer) in onTheirWay.filter({ $0.round <= round }) {
                try publish(try stores[task(of: answer.subject!)].applyRows([(answer, BudgetKeeperProcessorTests.answers)]))
            }
            onTheirWay.removeAll { $0.round <= round }
            // The keeper decides what every task has promised past.
            var next: [Int: Int64] = [:]
            for event in history[position...] where next[task(of: event.0.subject!)] == nil { next[task(of: event.0.subject!)] = event.0.time.millis }
            let bound = try promises(next)
            let ready = unsentClaims.filter { key($0) < bound }.sorted { key($0) < key($1) }
            unsentClaims.removeAll { key($0) < bound }
            decidedInOrder += ready.map(key)
            let decided = try keeper.apply(ready)
            #expect(decided.refused.isEmpty)
            for answer in decided.published where answer.topic == BudgetKeeperProcessorTests.answers {
                answers += 1
                onTheirWay.append((round + Int(random.next() % 40), answer.event))
            }
            #expect(round < 100_000, "the round trips end")
            if round >= 100_000 { break }
        }
        // The bounds held every claim back until no earlier one could come: the keeper decided
        // them in their causes' order, as one store applies the causes.
        let outOfOrder = zip(decidedInOrder, decidedInOrder.dropFirst()).first { !($0 < $1) }
        #expect(outOfOrder == nil, "\(String(describing: outOfOrder))")
        let finalPromise = try promises([:])
        #expect(unsentClaims.isEmpty && answers > 40, "every claim answered: \(answers); unsent \(unsentClaims.map { "\($0.id) \($0.time)" }), promise \(finalPromise)")
        #expect(keptAside > 0, "members waited for answers with records kept aside")
        for store in stores {
            #expect(try store.applier.database.prepare("SELECT count(*) FROM campaign_budget_claims").queryOne { $0.int64(0) } == 0)
            #expect(try store.applier.database.prepare("SELECT count(*) FROM campaign_kept_aside").queryOne { $0.int64(0) } == 0)
        }

        // Every grant, reversal and reward, by id and byte for byte.
        #expect(counted.deadLetters.isEmpty && claimed.deadLetters.isEmpty, "\(counted.deadLetters) \(claimed.deadLetters)")
        #expect(counted.outputs.count == claimed.outputs.count)
        let differing = counted.outputs.keys.sorted().first { counted.outputs[$0] != claimed.outputs[$0] }
        #expect(differing == nil, "\(differing ?? ""): \(String(decoding: counted.outputs[differing ?? ""] ?? [], as: UTF8.self)) vs \(String(decoding: claimed.outputs[differing ?? ""] ?? [], as: UTF8.self))")
        // Every member's state.
        let states = { (database: Database) in
            try database.prepare("SELECT member, state, tier FROM campaign_members").query { ($0.string(0), $0.blob(1) + $0.blob(2)) }
        }
        let oneStates = Dictionary(uniqueKeysWithValues: try states(one.applier.database))
        var taskStates: [String: [UInt8]] = [:]
        for store in stores { for (member, state) in try states(store.applier.database) { taskStates[member] = state } }
        #expect(oneStates.keys.sorted() == taskStates.keys.sorted())
        let differentStates = oneStates.keys.sorted().filter { oneStates[$0] != taskStates[$0] }
        #expect(differentStates.isEmpty, "members whose state differs: \(differentStates)")
        // The budgets: spent to the last point, the keeper's totals the one store's.
        let granted = Dictionary(uniqueKeysWithValues: try keeper.applier.database.prepare("SELECT campaign, granted FROM budget_granted").query { ($0.string(0), $0.int64(1)) })
        #expect(granted == ["triple": 2500, "bonus": 900, "gift": 700, "comeback": 300])
        let walkFell = counted.outputs.keys.contains { $0.hasPrefix("campaign-reward/member-day/") }
        #expect(walkFell, "once triple's budget is spent, member day's ×2 is granted")
    }
}

extension BudgetRoundTripTests {
    static func paid(_ id: String, _ member: String, _ paid: Int64, _ time: String) throws -> (CloudEvent, String) {
        try Campaigns.paid(id, member, paid, time)
    }

    static func answer(to claim: String, member: String, at time: EventTime, granted: JSONObject, source: String = "loyalty/campaign-budgets") -> (CloudEvent, String) {
        (testKeys.sign(CloudEvent(
            id: "budget-answer/\(claim)", source: source, type: EventType.campaignsBudgetAnswer, time: time, subject: member,
            data: ["claim": .string(claim), "granted": .object(granted)])), BudgetKeeperProcessorTests.answers)
    }

    @Test func aWaitingMemberKeepsItsRecordsAsideAndTheBoundsHoldWhatItStillOwes() throws {
        let h = try Campaigns.Harness(budgets: Self.budgets)
        try h.define([try Campaigns.definition(Self.definitions[1], from: "2026-01-01T00:00:00+08:00")])
        try h.apply([try Campaigns.registered("ann", "2026-01-01T10:00:00+08:00"), try Campaigns.registered("bob", "2026-01-01T10:00:00+08:00")])
        let processor = h.applier.processor, database = h.applier.database
        #expect(try processor.progressBounds(of: [0], in: database).isEmpty, "nothing owed")

        // Ann's first order asks the bonus's budget: a claim, and nothing granted yet.
        let first = try h.apply([try Self.paid("a1", "ann", 10_000, "2026-02-01T10:00:00+08:00")])
        let claim = try #require(first.first { $0.topic == BudgetKeeperProcessorTests.claims }?.event)
        #expect(claim.id == "budget-claim/a1" && claim.subject == "ann" && testKeys.verify(claim) == nil)
        #expect(claim.data["asks"] == [["campaign": "bonus", "budgetPoints": 900, "points": 30, "inMultiplierWalk": false]])
        #expect(!first.contains { $0.event.id.hasSuffix("/a1") && $0.topic != BudgetKeeperProcessorTests.claims }, "the whole trigger waits: \(first.map(\.event.id))")
        let claimTime = try EventTime.parse("2026-02-01T10:00:00+08:00").millis
        var bounds = try processor.progressBounds(of: [0], in: database)[0] ?? [:]
        #expect(bounds[Topics.pointsCommands.name] == MergeKey(time: claimTime, rank: .min, id: ""))
        #expect(bounds[Topics.campaignRewards.name] == MergeKey(time: claimTime, rank: .min, id: ""))
        #expect(bounds[BudgetKeeperProcessorTests.claims] == MergeKey(time: claimTime + 30 * 86_400_000, rank: .min, id: ""),
                "the claim is sent; what is owed on the claims topic is what the timers its answer sets may claim (win-back, 30 days on)")

        // Her next order waits behind the claim; one dated before it (late) too; Bob's does not.
        let second = try h.apply([
            try Self.paid("a2", "ann", 10_000, "2026-02-03T10:00:00+08:00"), try Self.paid("b1", "bob", 10_000, "2026-02-04T10:00:00+08:00"),
            try Self.paid("a0", "ann", 10_000, "2026-01-20T10:00:00+08:00"),
        ])
        #expect(second.filter { $0.topic == BudgetKeeperProcessorTests.claims }.map(\.event.id) == ["budget-claim/b1"])
        bounds = try processor.progressBounds(of: [0], in: database)[0] ?? [:]
        #expect(bounds[BudgetKeeperProcessorTests.claims] == MergeKey(
            time: try EventTime.parse("2026-02-03T10:00:00+08:00").millis, rank: Rank.of(eventType: EventType.orderPaid), id: "budget-claim/a2"),
            "Ann's later order will claim at its own key; the late one bounds nothing")
        #expect(bounds[Topics.pointsCommands.name] == MergeKey(time: claimTime, rank: .min, id: ""), "the earliest unanswered claim")
        // The member lookup says what Ann waits for, and how much waits behind it.
        let waiting = try #require(try processor.memberView("ann", in: database, asOf: nil)?["waitingForBudget"])
        #expect(waiting["claim"] == "budget-claim/a1" && waiting["keptAside"]?.int64Value == 2)
        #expect(try processor.memberView("bob", in: database, asOf: nil)?["waitingForBudget"]?["claim"] == "budget-claim/b1")

        // A forged answer grants nothing; the keeper's releases Ann's trigger, then what she kept aside, in order.
        let forged = try h.applyRows([Self.answer(to: "budget-claim/a1", member: "ann", at: claim.time, granted: ["bonus": 30], source: "shop")])
        #expect(forged.map(\.topic) == [Topics.deadLetters.name])
        let answered = try h.apply([Self.answer(to: "budget-claim/a1", member: "ann", at: claim.time, granted: ["bonus": 30])])
        let bonus = answered.filter { $0.topic == Topics.pointsCommands.name && $0.event.data["campaignId"]?.stringValue == "bonus" }
        #expect(bonus.map(\.event.id) == ["campaign-grant/bonus/a1"], "a1 granted; a0, released next, claims again")
        #expect(bonus.first?.event.time.millis == claimTime, "the grant carries its trigger's time")
        #expect(answered.filter { $0.topic == BudgetKeeperProcessorTests.claims }.map(\.event.id) == ["budget-claim/a0"])
        bounds = try processor.progressBounds(of: [0], in: database)[0] ?? [:]
        #expect(bounds[BudgetKeeperProcessorTests.claims] == MergeKey(
            time: try EventTime.parse("2026-02-03T10:00:00+08:00").millis, rank: Rank.of(eventType: EventType.orderPaid), id: "budget-claim/a2"),
            "a2 still waits, now behind a0's claim")

        // The same answer again changes nothing.
        let again = try h.applyRows([Self.answer(to: "budget-claim/a1", member: "ann", at: claim.time, granted: ["bonus": 30])])
        #expect(again.filter { $0.topic != Topics.campaignResults.name }.isEmpty)
    }

    /// An answer that comes back after its task has moved on past the inbox horizon (a keeper
    /// slow for months of event time) has no inbox row to be remembered by: it is applied while
    /// its member waits on it, and a copy sent again after that changes nothing, not even a
    /// kept answer.
    @Test func anAnswerOlderThanTheInboxHorizonIsAppliedOnceAndACopyChangesNothing() throws {
        let h = try Campaigns.Harness(inboxHorizonDays: 30, budgets: Self.budgets)
        try h.define([try Campaigns.definition(Self.definitions[1], from: "2026-01-01T00:00:00+08:00")])
        try h.apply([try Campaigns.registered("ann", "2026-01-01T10:00:00+08:00"), try Campaigns.registered("bob", "2026-01-01T10:00:00+08:00")])
        let first = try h.apply([try Self.paid("a1", "ann", 10_000, "2026-02-01T10:00:00+08:00")])
        let claim = try #require(first.first { $0.topic == BudgetKeeperProcessorTests.claims }?.event)
        // Cat's registration months later carries the task's stream time past the horizon.
        try h.apply([try Campaigns.registered("cat", "2026-06-01T10:00:00+08:00")])
        let answered = try h.apply([Self.answer(to: claim.id, member: "ann", at: claim.time, granted: ["bonus": 30])])
        #expect(answered.contains { $0.event.id == "campaign-grant/bonus/a1" }, "applied: \(answered.map(\.event.id))")
        #expect(try h.applier.database.prepare("SELECT COUNT(*) FROM inbox WHERE event_id LIKE 'budget-answer/%'").queryOne { $0.int64(0) } == 0, "older than the horizon: no row")
        let again = try h.applyRows([Self.answer(to: claim.id, member: "ann", at: claim.time, granted: ["bonus": 30])])
        #expect(again.filter { $0.topic != Topics.campaignResults.name }.isEmpty)
        #expect(try h.applier.database.prepare("SELECT COUNT(*) FROM campaign_budget_answers").queryOne { $0.int64(0) } == 0, "nothing kept for a claim answered")
    }

    @Test func withTheKeeperBudgetsSpanNoTaskAndResultsLeaveWhatIsLeftToIt() throws {
        let program = try Program.load(json: ReferenceProgram.bytes())
        let budgeted = try CampaignDefinition.loadFile(
            json: Array("{\"campaigns\":[\(Self.definitions[1])]}".utf8), tiers: program.tiers.levels.map(\.id))
        #expect(CampaignsProcessor(program: program, defaults: budgeted, commandKeys: testKeys).figuresSpanTasks)
        let withKeeper = CampaignsProcessor(program: program, defaults: budgeted, commandKeys: testKeys, budgets: .keeperOfTheCatalogue)
        #expect(!withKeeper.figuresSpanTasks)
        #expect(withKeeper.inputTopics.contains(Topics.campaignBudgetAnswers.name))
        #expect(withKeeper.progressTopics.contains(Topics.campaignBudgetClaims.name) && withKeeper.commandTopics.contains(Topics.campaignBudgetClaims.name))

        let h = try Campaigns.Harness(budgets: Self.budgets)
        try h.define([try Campaigns.definition(Self.definitions[1], from: "2026-01-01T00:00:00+08:00")])
        try h.apply([try Campaigns.registered("ann", "2026-01-01T10:00:00+08:00")])
        let claim = try #require(try h.apply([try Self.paid("a1", "ann", 10_000, "2026-02-01T10:00:00+08:00")])
            .first { $0.topic == BudgetKeeperProcessorTests.claims }?.event)
        let results = try h.apply([Self.answer(to: claim.id, member: "ann", at: claim.time, granted: ["bonus": 30])])
            .filter { $0.topic == Topics.campaignResults.name && $0.event.subject == "bonus" }
        #expect(results.count == 1)
        #expect(results.first?.event.data["pointsGranted"]?.int64Value == 30 && results.first?.event.data["budgetPoints"]?.int64Value == 900)
        #expect(results.first?.event.data["budgetLeft"] == .null, "what is left is the keeper's to say")
    }
}

extension Int64 {
    fileprivate var asInt: Int { Int(self) }
}
