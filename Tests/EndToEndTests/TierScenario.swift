import Foundation
import LoyaltyDomain
import Messaging

/// A year of orders and refunds for many members, with spending habits from occasional to
/// heavy, and what the points and tiers services must make of it, computed here from
/// DOMAIN.md's tier rules for the reference program, independently of the services' code.
struct TierScenario {
    var events: [CloudEvent] = []
    var expectedTier: [String: String] = [:]
    /// Tier change ids (`tier-change/<member>/<cause>`) with their `change` kind.
    var expectedChanges: [String: String] = [:]
    /// The tier bonus of each order, by the order event id (0: no grant).
    var expectedBonus: [String: Int64] = [:]
    var expectedNet: [String: Int64] = [:]
    var expectedEarned: [String: Int64] = [:]

    static let start: Int64 = 1_767_196_800_000  // 2026-01-01T00:00:00+08:00
    static let day: Int64 = 86_400_000

    init(members: Int, seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var pending: [(time: Int64, rank: Int, id: String, event: CloudEvent)] = []
        var counter = 0
        func add(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject) {
            counter += 1
            let id = "t\(counter)"
            pending.append((time, Rank.of(eventType: type), id, CloudEvent(
                id: id, source: "tier-shop", type: type, time: EventTime(millis: time), subject: member, data: .object(data))))
        }
        for index in 0..<members {
            let member = "t\(index)"
            add(EventType.memberRegistered, member, Self.start + Int64(index), [:])
            // Habits: order probability a week and a typical amount.
            let habit = Int.random(in: 0..<4, using: &random)
            let (perWeek, amounts): (Double, ClosedRange<Int64>) = [(0.15, 2_000...20_000), (0.5, 5_000...40_000), (0.8, 20_000...200_000), (0.3, 100_000...900_000)][habit]
            let stopsAfterWeek = Double.random(in: 0..<1, using: &random) < 0.3 ? Int.random(in: 4...40, using: &random) : 52
            var orders = 0
            for week in 0..<min(52, stopsAfterWeek) {
                guard Double.random(in: 0..<1, using: &random) < perWeek else { continue }
                orders += 1
                let time = Self.start + Int64(week) * 7 * Self.day + Int64.random(in: 1...(6 * Self.day), using: &random)
                let paid = Int64.random(in: amounts, using: &random)
                let orderID = "\(member)-o\(orders)"
                add(EventType.orderPaid, member, time, ["orderId": .string(orderID), "paidMinor": .int(paid)])
                if Double.random(in: 0..<1, using: &random) < 0.2 {
                    let amount = Bool.random(using: &random) ? paid : Int64.random(in: 1...paid, using: &random)
                    add(EventType.orderRefunded, member, time + Int64.random(in: 1...10, using: &random) * Self.day,
                        ["orderId": .string(orderID), "refundId": .string("\(orderID)-r"), "refundMinor": .int(amount)])
                }
            }
            // A last small order on 31 December, so every partition's stream passes 1 December.
            add(EventType.orderPaid, member, Self.start + 364 * Self.day + 23 * 3_600_000, ["orderId": .string("\(member)-last"), "paidMinor": 100])
        }
        pending.sort { ($0.time, $0.rank, $0.id) < ($1.time, $1.rank, $1.id) }
        events = pending.map(\.event)
        computeExpectations()
    }

    var records: [(topic: String, key: String, value: [UInt8])] {
        events.map { (Topics.inputTopic(forEventType: $0.type)!.name, $0.subject!, $0.encoded()) }
    }

    /// DOMAIN.md's tier rules for the reference ladder, written out plainly.
    private mutating func computeExpectations() {
        let ids = ["newcomer", "growth", "gold", "platinum", "black-diamond"]
        let multipliers: [Int64] = [10, 12, 15, 18, 20]
        struct Order { var paid: Int64; var base: Int64; var bonus: Int64; var refunded: Int64 = 0; var baseBack: Int64 = 0; var bonusBack: Int64 = 0 }
        struct Member {
            var tier = TierModel()
            var orders: [String: Order] = [:]
        }
        var members: [String: Member] = [:]
        for event in events {
            let id = event.subject!
            var m = members[id] ?? Member()
            let time = event.time.millis
            // Month boundaries at or before this event fire first (above Newcomer only).
            for change in m.tier.monthEnds(upTo: time) {
                expectedChanges["tier-change/\(id)/month-end/\(change.boundary)"] = change.change
            }
            let data = event.data.objectValue ?? JSONObject()
            switch event.type {
            case EventType.orderPaid:
                let paid = data["paidMinor"]!.int64Value!
                let base = paid / 100
                let bonus = base * (multipliers[m.tier.level] - 10) / 10
                expectedBonus[event.id] = bonus
                m.orders[data["orderId"]!.stringValue!] = Order(paid: paid, base: base, bonus: bonus)
                if m.tier.pay(paid, at: time) { expectedChanges["tier-change/\(id)/\(event.id)"] = "upgraded" }
            case EventType.orderRefunded:
                let orderID = data["orderId"]!.stringValue!
                var order = m.orders[orderID]!
                let amount = data["refundMinor"]!.int64Value!
                order.refunded += amount
                m.tier.refund(amount, at: time)
                order.baseBack = order.base * order.refunded / order.paid
                order.bonusBack = order.bonus * order.refunded / order.paid
                m.orders[orderID] = order
            default:
                break
            }
            members[id] = m
        }
        for (id, m) in members {
            expectedTier[id] = ids[m.tier.level]
            let earned = m.orders.values.reduce(0) { $0 + $1.base + $1.bonus }
            expectedEarned[id] = earned
            expectedNet[id] = earned - m.orders.values.reduce(0) { $0 + $1.baseBack + $1.bonusBack }
        }
    }
}
