import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// A generated stream of shop events for many members, and what the points service must make
/// of it, computed here independently of the service's code from DOMAIN.md's rules for the
/// reference program.
struct PointsScenario {
    /// Unique events in the order the shop publishes them (event time order).
    var events: [CloudEvent] = []
    /// Records published as they are: the events, plus re-sent duplicates and bad records.
    var records: [(topic: String, key: String, value: [UInt8])] = []
    var expected: [String: ExpectedMember] = [:]
    /// Commands the points service sends itself (one per registration naming a referrer);
    /// they pass through its inbox like any input.
    var derivedCommands: Int {
        events.filter { $0.type == EventType.memberRegistered && $0.data["referrerId"] != nil }.count
    }
    /// Dead letters the bad records must produce, by reason.
    var expectedDeadLetters: [String: Int] = [:]

    struct ExpectedMember {
        var earned: Int64 = 0
        var reversed: Int64 = 0
        /// Ledger entry ids other than releases.
        var entryIDs: Set<String> = []
        var refusalIDs: Set<String> = []
        var net: Int64 { earned - reversed }
    }

    static let epoch: Int64 = 1_767_542_400_000  // 2026-01-05T00:00:00+08:00
    static let minute: Int64 = 60_000
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000

    /// Builds `members` members' worth of events over `days` days, with `duplicateShare`
    /// of the events re-sent and a few bad records mixed in.
    init(members: Int, days: Int, seed: UInt64, duplicateShare: Double = 0.03, badRecords: Bool = true, grants: Bool = false, referrals: Bool = true) {
        var random = SeededRandom(seed: seed)
        var pending: [(time: Int64, rank: Int, seq: Int, event: CloudEvent)] = []
        var seq = 0
        func add(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject = JSONObject()) {
            seq += 1
            // Grants come from a platform service, as the tiers service sends them.
            let source = type == EventType.pointsGrant ? "loyalty/tiers" : "test-shop"
            var event = CloudEvent(
                id: "\(member)-\(seq)", source: source, type: type, time: EventTime(millis: time), subject: member,
                data: .object(data))
            if type == EventType.pointsGrant { event = testCommandKeys.sign(event) }
            pending.append((time, Rank.of(eventType: type), seq, event))
        }
        for index in 0..<members {
            let member = "m\(index)"
            var registration = JSONObject()
            // Some name an earlier member as referrer, who may or may not have registered by then.
            if referrals, index > 0, Double.random(in: 0..<1, using: &random) < 0.2 {
                registration["referrerId"] = .string("m\(Int.random(in: 0..<index, using: &random))")
            }
            add(EventType.memberRegistered, member, Self.epoch + Int64.random(in: 0..<Self.hour * 6, using: &random), registration)
            var orderNumber = 0
            for dayNumber in 1...days {
                let dayStart = Self.epoch + Int64(dayNumber) * Self.day
                if Double.random(in: 0..<1, using: &random) < 0.7 {
                    add(EventType.checkedIn, member, dayStart + 8 * Self.hour + Int64.random(in: 0..<59, using: &random) * Self.minute)
                    if Double.random(in: 0..<1, using: &random) < 0.05 {
                        add(EventType.checkedIn, member, dayStart + 18 * Self.hour)
                    }
                }
                if Double.random(in: 0..<1, using: &random) < 0.15 {
                    for review in 0..<Int.random(in: 1...7, using: &random) {
                        add(EventType.reviewPosted, member, dayStart + 12 * Self.hour + Int64(review) * Self.minute)
                    }
                }
                if Double.random(in: 0..<1, using: &random) < 0.1 {
                    for share in 0..<Int.random(in: 1...4, using: &random) {
                        add(EventType.contentShared, member, dayStart + 13 * Self.hour + Int64(share) * Self.minute)
                    }
                }
                if Double.random(in: 0..<1, using: &random) < 0.12 {
                    orderNumber += 1
                    let orderID = "\(member)-o\(orderNumber)"
                    let paid = Int64.random(in: 1_000...200_000, using: &random)
                    var order = JSONObject()
                    order["orderId"] = .string(orderID)
                    order["paidMinor"] = .int(paid)
                    if Bool.random(using: &random) {
                        let highMargin = Int64.random(in: 0...paid, using: &random)
                        order["lines"] = .array([
                            .object(JSONObject(["category": "high-margin", "paidMinor": .int(highMargin)])),
                            .object(JSONObject(["category": "apparel", "paidMinor": .int(paid - highMargin)])),
                        ])
                    }
                    let orderTime = dayStart + 20 * Self.hour + Int64.random(in: 0..<59, using: &random) * Self.minute
                    add(EventType.orderPaid, member, orderTime, order)
                    if grants, Bool.random(using: &random) {
                        add(EventType.pointsGrant, member, orderTime, JSONObject([
                            "component": "tier-bonus", "orderId": .string(orderID), "points": .int(Int64.random(in: 1...300, using: &random)),
                        ]))
                    }
                    if Double.random(in: 0..<1, using: &random) < 0.3 {
                        var refunded: Int64 = 0
                        for refund in 1...Int.random(in: 1...2, using: &random) {
                            let amount = refund == 2 || Bool.random(using: &random) ? paid - refunded : Int64.random(in: 1...(paid - refunded), using: &random)
                            guard amount > 0 else { break }
                            refunded += amount
                            add(EventType.orderRefunded, member, orderTime + Int64(refund) * Self.day, JSONObject([
                                "orderId": .string(orderID), "refundId": .string("\(orderID)-r\(refund)"), "refundMinor": .int(amount),
                            ]))
                        }
                    }
                }
            }
            // A last check-in after every waiting period has ended.
            add(EventType.checkedIn, member, Self.epoch + Int64(days + 10) * Self.day + 9 * Self.hour)
        }
        pending.sort { ($0.time, $0.rank, $0.seq) < ($1.time, $1.rank, $1.seq) }
        events = pending.map(\.event)
        for event in events { expected[event.subject!, default: ExpectedMember()] = expected[event.subject!] ?? ExpectedMember() }
        computeExpectations()

        for event in events {
            records.append((Topics.inputTopic(forEventType: event.type)!.name, event.subject!, event.encoded()))
        }
        // Re-sent duplicates, each some way after the original.
        let duplicates = Int(Double(events.count) * duplicateShare)
        for _ in 0..<duplicates {
            let original = Int.random(in: 0..<records.count, using: &random)
            let copy = records[original]
            records.insert(copy, at: min(records.count, original + Int.random(in: 1...200, using: &random)))
        }
        if badRecords {
            records.insert((Topics.orders.name, "m0", Array("{not json".utf8)), at: records.count / 3)
            var conflicting = events.first { $0.type == EventType.orderPaid }!
            conflicting.data = .object(JSONObject(["orderId": "x", "paidMinor": 1]))
            records.insert((Topics.orders.name, conflicting.subject!, conflicting.encoded()), at: records.count / 2)
            let unknownType = CloudEvent(id: "bad-type", source: "test-shop", type: "engagement.danced", time: EventTime(millis: Self.epoch), subject: "m1", data: .object(JSONObject()))
            records.insert((Topics.engagement.name, "m1", unknownType.encoded()), at: records.count / 4)
            expectedDeadLetters = ["not-json": 1, "conflicting-duplicate": 1, "unknown-type": 1]
        }
    }

    /// DOMAIN.md's rules for these event types, written out plainly.
    private mutating func computeExpectations() {
        struct Order { var paid: Int64; var base: Int64; var refunded: Int64 = 0; var reversed: Int64 = 0; var components: [String: Int64] = [:] }
        struct State {
            var lastCheckInDay: Int64?
            var streak: Int64 = 0
            var reviews: (day: Int64, count: Int64) = (-1, 0)
            var shares: (day: Int64, count: Int64) = (-1, 0)
            var orders: [String: Order] = [:]
        }
        var states: [String: State] = [:]
        var registeredAt: [String: Int64] = [:]
        let offset: Int64 = 8 * Self.hour
        for event in events {
            let member = event.subject!
            var state = states[member] ?? State()
            var expectation = expected[member]!
            let localDay = (event.time.millis + offset) / Self.day
            let data = event.data.objectValue!
            switch event.type {
            case EventType.memberRegistered:
                registeredAt[member] = event.time.millis
                if let referrer = data["referrerId"]?.stringValue {
                    if let since = registeredAt[referrer], since <= event.time.millis {
                        expected[referrer]!.earned += 10
                        expected[referrer]!.entryIDs.insert("referral/\(event.id)/referral")
                        expectation = expected[member]!
                    } else {
                        expectation.refusalIDs.insert("referral/\(event.id)/refused")
                    }
                }
            case EventType.checkedIn:
                if state.lastCheckInDay == localDay {
                    expectation.refusalIDs.insert("\(event.id)/refused")
                } else {
                    state.streak = state.lastCheckInDay == localDay - 1 ? state.streak + 1 : 1
                    state.lastCheckInDay = localDay
                    expectation.earned += state.streak >= 7 ? 2 : 1
                    expectation.entryIDs.insert("\(event.id)/check-in")
                }
            case EventType.reviewPosted:
                if state.reviews.day != localDay { state.reviews = (localDay, 0) }
                if state.reviews.count >= 5 {
                    expectation.refusalIDs.insert("\(event.id)/refused")
                } else {
                    state.reviews.count += 1
                    expectation.earned += 3
                    expectation.entryIDs.insert("\(event.id)/review")
                }
            case EventType.contentShared:
                if state.shares.day != localDay { state.shares = (localDay, 0) }
                if state.shares.count >= 3 {
                    expectation.refusalIDs.insert("\(event.id)/refused")
                } else {
                    state.shares.count += 1
                    expectation.earned += 5
                    expectation.entryIDs.insert("\(event.id)/share")
                }
            case EventType.orderPaid:
                let paid = data["paidMinor"]!.int64Value!
                var base = paid / 100
                if let lines = data["lines"]?.arrayValue {
                    var tenths: Int64 = 0
                    for line in lines {
                        let object = line.objectValue!
                        tenths += object["paidMinor"]!.int64Value! * (object["category"]?.stringValue == "high-margin" ? 20 : 10)
                    }
                    base = tenths / 1000
                }
                state.orders[data["orderId"]!.stringValue!] = Order(paid: paid, base: base)
                expectation.earned += base
                if base > 0 { expectation.entryIDs.insert("\(event.id)/base") }
            case EventType.pointsGrant:
                let points = data["points"]!.int64Value!
                expectation.earned += points
                expectation.entryIDs.insert("\(event.id)/tier-bonus")
            case EventType.orderRefunded:
                let orderID = data["orderId"]!.stringValue!
                var order = state.orders[orderID]!
                order.refunded += data["refundMinor"]!.int64Value!
                let target = order.base * order.refunded / order.paid
                let delta = target - order.reversed
                order.reversed = target
                state.orders[orderID] = order
                expectation.reversed += delta
                if delta > 0 { expectation.entryIDs.insert("\(event.id)/base-reversal") }
            default:
                break
            }
            states[member] = state
            expected[member] = expectation
        }
    }
}
