import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

@testable import TiersService

/// The tiers service's handlers on a real database, through the exactly-once transaction.
@Suite struct TiersProcessorTests {
    final class Harness {
        let directory: URL
        let applier: BatchApplier<TiersProcessor>
        var offset: Int64 = 0

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("tiers-tests-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("tiers.sqlite").path))
            // One partition, so that every member's records, all on partition 0, share one task and stream time.
            applier = try BatchApplier(database: database, processor: TiersProcessor(program: try Program.load(json: ReferenceProgram.bytes())), timerMode: .streamTime,
                partitionCount: 1)
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        @discardableResult
        func apply(_ events: [CloudEvent]) throws -> [(topic: String, event: CloudEvent)] {
            let polled = events.map { event -> PolledRecord<TierInput> in
                offset += 1
                let record = ConsumedRecord(topic: Topics.orders.name, partition: 0, offset: offset, key: Array(event.subject!.utf8), value: event.encoded())
                let decoded: Result<Decoded<TierInput>, Rejection>
                do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                return PolledRecord(record: record, decoded: decoded)
            }
            return try applier.apply(polled).outbox.map { ($0.topic, try CloudEvent.decode($0.value!)) }
        }
    }

    func paid(_ id: String, _ member: String, _ paid: Int64, _ time: String) throws -> CloudEvent {
        CloudEvent(id: id, source: "shop", type: EventType.orderPaid, time: try EventTime.parse(time), subject: member,
                   data: .object(["orderId": .string("O-\(id)"), "paidMinor": .int(paid)]))
    }

    @Test func anOrderBeforeTheProgrammesStartIsRefused() throws {
        var program = try Program.load(json: ReferenceProgram.bytes())
        program.startsAt = try EventTime.parse("2026-03-01T00:00:00+08:00")
        let processor = TiersProcessor(program: program)
        func record(_ time: String) -> ConsumedRecord {
            let event = CloudEvent(id: "o-\(time)", source: "shop", type: EventType.orderPaid, time: try! EventTime.parse(time), subject: "m",
                                   data: ["orderId": .string("O-\(time)"), "paidMinor": 10_000])
            return ConsumedRecord(topic: Topics.orders.name, partition: 0, offset: 0, key: Array("m".utf8), value: event.encoded())
        }
        #expect(throws: Rejection(code: .beforeProgramStart, detail: "event time 2026-02-28T02:00:00.000Z is before the programme's start 2026-02-28T16:00:00.000Z")) {
            try processor.decode(record("2026-02-28T10:00:00+08:00"))
        }
        #expect(try processor.decode(record("2026-03-01T10:00:00+08:00")).eventID == "o-2026-03-01T10:00:00+08:00")
    }

    @Test func lookalikeMemberIdsAreTwoMembersWhicheverBatchTheyShare() throws {
        // One `String`, two record keys and two rows: "Zoé" composed and decomposed.
        let composed = "Zo\u{E9}"
        let decomposed = "Zoe\u{301}"
        let orders = [try paid("o1", composed, 600_000, "2026-03-01T10:00:00+08:00"), try paid("o2", decomposed, 10_000, "2026-03-01T10:01:00+08:00")]
        let oneBatch = try Harness()
        try oneBatch.apply(orders)
        let orderByOrder = try Harness()
        for order in orders { try orderByOrder.apply([order]) }
        func levels(_ harness: Harness) throws -> [[UInt8]: String] {
            let rows = try harness.applier.database.prepare("SELECT member, level FROM tier_members").query { (Array($0.string(0).utf8), $0.string(1)) }
            return Dictionary(rows) { $0 + "+" + $1 }
        }
        let expected = [Array(composed.utf8): "gold", Array(decomposed.utf8): "newcomer"]
        #expect(try levels(oneBatch) == expected)
        #expect(try levels(orderByOrder) == expected)
    }

    @Test func ordersEarnTheBonusOfTheTierBeforeThemAndMoveTheMemberUp() throws {
        let harness = try Harness()
        let first = try harness.apply([try paid("o1", "m", 600_000, "2026-03-01T10:00:00+08:00")])
        // At Newcomer no bonus; the member becomes Gold.
        #expect(!first.contains { $0.topic == Topics.pointsCommands.name })
        let change = try #require(first.first { $0.topic == Topics.tierChanges.name }?.event)
        #expect(change.type == "tier.upgraded")
        #expect(change.data["to"]?.stringValue == "gold")
        let status = try #require(first.last { $0.topic == Topics.tierStatus.name }?.event)
        #expect(status.data["tier"]?.stringValue == "gold")
        #expect(status.data["nextTier"]?.stringValue == "platinum")
        #expect(status.data["amountToNextTierMinor"]?.int64Value == 1_400_000)
        #expect(status.data["benefits"]?.arrayValue?.compactMap(\.stringValue) == ["free-shipping"])

        // The next order is counted at Gold: base 1,000 → bonus 500, a grant to the points service.
        let second = try harness.apply([try paid("o2", "m", 100_000, "2026-03-02T10:00:00+08:00")])
        let grant = try #require(second.first { $0.topic == Topics.pointsCommands.name }?.event)
        #expect(grant.id == "tier-bonus/o2")
        #expect(grant.type == EventType.pointsGrant)
        #expect(grant.source == "loyalty/tiers")
        #expect(grant.data["points"]?.int64Value == 500)
        #expect(grant.data["orderId"]?.stringValue == "O-o2")
        #expect(grant.time.rfc3339 == "2026-03-02T02:00:00.000Z")

        // A refund of half of it reverses half the bonus.
        let refund = CloudEvent(id: "f1", source: "shop", type: EventType.orderRefunded, time: try EventTime.parse("2026-03-03T10:00:00+08:00"),
                                subject: "m", data: .object(["orderId": "O-o2", "refundId": "R-1", "refundMinor": 50_000]))
        let reversal = try #require(try harness.apply([refund]).first { $0.topic == Topics.pointsCommands.name }?.event)
        #expect(reversal.type == EventType.pointsReverse)
        #expect(reversal.data["points"]?.int64Value == 250)
        #expect(reversal.data["refundId"]?.stringValue == "R-1")
    }

    @Test func aMemberKeepsItsLatestOrdersAndFindsOlderOnesApartWhateverTheBatching() throws {
        func at(_ minute: Int) -> String { "2026-03-02T1\(minute / 60):\(String(format: "%02d", minute % 60)):00+08:00" }
        func refund(_ id: String, of order: String, _ minor: Int64, _ minute: Int) -> CloudEvent {
            CloudEvent(id: "e-\(id)-\(minute)", source: "shop", type: EventType.orderRefunded, time: try! EventTime.parse(at(minute)),
                       subject: "m", data: .object(["orderId": .string(order), "refundId": .string(id), "refundMinor": .int(minor)]))
        }
        // Gold from the first order on, so every later order earns a bonus of 500.
        var events = [try paid("o1", "m", 600_000, at(0))]
        for number in 2...30 { events.append(try paid("o\(number)", "m", 100_000, at(number))) }
        events.append(refund("R-1", of: "O-o2", 50_000, 40))  // an order kept apart: half its bonus back
        events.append(refund("R-1", of: "O-o3", 50_000, 41))  // a repeated refund id: nothing
        events.append(try paid("o3", "m", 100_000, at(42)))   // a repeated order: nothing
        for number in 1...20 { events.append(refund("F\(number)", of: "O-o\(number + 3)", 1_000, 50 + number)) }
        events.append(refund("F1", of: "O-o30", 1_000, 80))  // a refund id kept apart: nothing

        let oneBatch = try Harness()
        let published = try oneBatch.apply(events)
        let eventByEvent = try Harness()
        var publishedOneByOne: [(topic: String, event: CloudEvent)] = []
        for event in events { publishedOneByOne += try eventByEvent.apply([event]) }
        // Status records follow the batches (one per member and batch); every other output is the same.
        func withoutStatus(_ outputs: [(topic: String, event: CloudEvent)]) -> [String] {
            outputs.filter { $0.topic != Topics.tierStatus.name }.map { "\($0.event.id) \($0.event.data["points"]?.int64Value ?? 0)" }
        }
        #expect(withoutStatus(publishedOneByOne) == withoutStatus(published))
        let reversals = published.filter { $0.event.type == EventType.pointsReverse }
        #expect(reversals.count == 21, "R-1 once and F1…F20; the repeats reverse nothing")
        #expect(reversals.first?.event.data["points"]?.int64Value == 250 && reversals.first?.event.data["orderId"]?.stringValue == "O-o2")
        #expect(published.filter { $0.event.type == EventType.pointsGrant }.count == 29, "o2…o30, not the repeated o3")

        func stored(_ harness: Harness) throws -> [String] {
            let database = harness.applier.database
            return try database.prepare("SELECT member, state, orders_apart, refunds_apart FROM tier_members").query {
                "\($0.string(0)) \(SHA256.lowercaseHex($0.blob(1))) \($0.int64(2)) \($0.int64(3))"
            } + database.prepare("SELECT order_id, time, paid_minor, refunded_minor, bonus, bonus_reversed FROM tier_orders ORDER BY order_id").query {
                "\($0.string(0)) \($0.int64(1)) \($0.int64(2)) \($0.int64(3)) \($0.int64(4)) \($0.int64(5))"
            } + database.prepare("SELECT refund_id FROM tier_refund_ids ORDER BY refund_id").query { $0.string(0) }
        }
        #expect(try stored(oneBatch) == stored(eventByEvent))
        let state = try #require(try oneBatch.applier.database.prepare("SELECT state FROM tier_members").queryOne { $0.blob(0) })
        let member = try TierMember.decode(state, levels: try Program.load(json: ReferenceProgram.bytes()).tiers.levels)
        #expect(member.orders.ids.sorted() == (15...30).map { "O-o\($0)" }.sorted())
        #expect(member.refundIDs.count == 16)
        #expect(try oneBatch.applier.database.prepare("SELECT COUNT(*) FROM tier_orders").queryOne { $0.int64(0) } == 14)
        #expect(try oneBatch.applier.database.prepare("SELECT COUNT(*) FROM tier_refund_ids").queryOne { $0.int64(0) } == 5)
    }

    @Test func aMemberStoredByAnEarlierBuildKeepsItsOrdersAndMovesTheOldestApart() throws {
        // An earlier build stored every order in the member's state as [id, paid, refunded, bonus,
        // reversed], without its time, and had no tables apart.
        let harness = try Harness()
        var events = [try paid("o1", "m", 600_000, "2026-03-01T10:00:00+08:00")]
        for number in 2...20 { events.append(try paid("o\(number)", "m", 100_000, "2026-03-02T10:\(String(format: "%02d", number)):00+08:00")) }
        try harness.apply(events)
        let database = harness.applier.database
        let levels = try Program.load(json: ReferenceProgram.bytes()).tiers.levels
        var member = try TierMember.decode(try #require(try database.prepare("SELECT state FROM tier_members").queryOne { $0.blob(0) }), levels: levels)
        for (id, time, paidMinor, refunded, bonus, reversed) in try database.prepare(
            "SELECT order_id, time, paid_minor, refunded_minor, bonus, bonus_reversed FROM tier_orders").query(row: {
                ($0.string(0), $0.int64(1), $0.int64(2), $0.int64(3), $0.int64(4), $0.int64(5)) }) {
            member.orders[id] = TierOrder(time: EventTime(millis: time), paidMinor: paidMinor, refundedMinor: refunded, bonus: bonus, bonusReversed: reversed)
        }
        #expect(member.orders.count == 20)
        let timeless = try NSRegularExpression(pattern: #",-?[0-9]+\]"#)
        var legacy = String(decoding: member.encodedAsJSON(levels: levels), as: UTF8.self)
        let known = try #require(legacy.range(of: #""known":\[.*?\]\]"#, options: .regularExpression))
        let knownText = String(legacy[known])
        legacy.replaceSubrange(known, with: timeless.stringByReplacingMatches(
            in: knownText, range: NSRange(knownText.startIndex..., in: knownText), withTemplate: "]"))
        #expect(legacy.contains(#"["O-o1",600000,0,0,0]"#), "five fields, as an earlier build wrote them")
        try database.execute("DELETE FROM tier_orders")
        try database.prepare("UPDATE tier_members SET state = ?, orders_apart = 0 WHERE member = 'm'").run(.blob(Array(legacy.utf8)))

        // Its orders are all found in its state: a repeat earns nothing, a refund reverses its bonus.
        let refund = CloudEvent(id: "f1", source: "shop", type: EventType.orderRefunded, time: try EventTime.parse("2026-03-03T10:00:00+08:00"),
                                subject: "m", data: .object(["orderId": "O-o2", "refundId": "R-1", "refundMinor": 50_000]))
        let outputs = try harness.apply([try paid("o3", "m", 100_000, "2026-03-03T09:00:00+08:00"), refund])
        #expect(!outputs.contains { $0.event.type == EventType.pointsGrant })
        #expect(outputs.first { $0.event.type == EventType.pointsReverse }?.event.data["points"]?.int64Value == 250)
        // Read as paid at time 0, the oldest, four of them (by id) move apart; the state keeps 16.
        #expect(try database.prepare("SELECT COUNT(*) FROM tier_orders WHERE time = 0").queryOne { $0.int64(0) } == 4)
        #expect(try database.prepare("SELECT orders_apart FROM tier_members").queryOne { $0.int64(0) } == 1)
    }

    @Test func monthEndsFireOnStreamTime() throws {
        let harness = try Harness()
        try harness.apply([try paid("o1", "m", 600_000, "2026-01-20T10:00:00+08:00")])
        // Another member's order in April moves stream time past 1 February, 1 March and 1 April.
        let later = try harness.apply([try paid("x1", "other", 100, "2026-04-02T10:00:00+08:00")])
        let changes = later.filter { $0.topic == Topics.tierChanges.name }.map(\.event)
        #expect(changes.map(\.type) == ["tier.at-risk", "tier.downgraded"])
        #expect(changes.map { $0.time.rfc3339 } == ["2026-02-28T16:00:00.000Z", "2026-03-31T16:00:00.000Z"])
        #expect(changes.last?.data["to"]?.stringValue == "growth")
        let stored = try harness.applier.database.prepare("SELECT level FROM tier_members WHERE member = 'm'").queryOne { $0.string(0) }
        #expect(stored == "growth")
    }

    @Test func otherEventTypesOnTheOrdersTopicAreDeadLettered() throws {
        let harness = try Harness()
        let odd = CloudEvent(id: "z", source: "shop", type: EventType.checkedIn, time: try EventTime.parse("2026-03-01T10:00:00+08:00"), subject: "m", data: .object([:]))
        let outputs = try harness.apply([odd])
        #expect(outputs.first?.topic == Topics.deadLetters.name)
        #expect(outputs.first?.event.data["reason"]?.stringValue == "unknown-type")
    }
}
