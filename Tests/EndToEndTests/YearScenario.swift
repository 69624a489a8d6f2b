import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// A year of a shop's events for many members, spending included: orders and refunds,
/// check-ins, reviews, redemptions, cash offsets, transfers (some to members who do not
/// exist), adjustments, and members who stop buying.
struct YearScenario {
    var events: [CloudEvent] = []

    static let start: Int64 = 1_767_196_800_000  // 2026-01-01T00:00:00+08:00
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000

    init(members: Int, seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var pending: [(time: Int64, rank: Int, id: String, event: CloudEvent)] = []
        var counter = 0
        func add(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject = JSONObject()) {
            counter += 1
            let id = "y\(counter)"
            var event = CloudEvent(id: id, source: "year-shop", type: type, time: EventTime(millis: time), subject: member, data: .object(data))
            // Adjustments are an operator's, signed with the command key.
            if type == EventType.adjust { event = testCommandKeys.sign(event) }
            pending.append((time, Rank.of(eventType: type), id, event))
        }
        let rewards = ["tea-set", "coupon-20", "express-delivery", "plant-a-tree"]
        for index in 0..<members {
            let member = "y\(index)"
            let registered = Self.start + Int64.random(in: 0..<30, using: &random) * Self.day + Int64.random(in: 8...20, using: &random) * Self.hour
            add(EventType.memberRegistered, member, registered)
            let stopsBuyingAfterWeek = Double.random(in: 0..<1, using: &random) < 0.2 ? Int.random(in: 8...20, using: &random) : 53
            var orders = 0
            for week in 0..<52 {
                let weekStart = Self.start + Int64(week) * 7 * Self.day
                func at(_ dayOfWeek: Int, _ hour: Int) -> Int64 { weekStart + Int64(dayOfWeek) * Self.day + Int64(hour) * Self.hour + Int64.random(in: 0..<3_600_000, using: &random) }
                if weekStart < registered { continue }
                if week < stopsBuyingAfterWeek, Double.random(in: 0..<1, using: &random) < 0.35 {
                    orders += 1
                    let orderID = "\(member)-o\(orders)"
                    let paid = Int64.random(in: 2_000...80_000, using: &random)
                    let time = at(Int.random(in: 0...6, using: &random), 20)
                    var order: JSONObject = ["orderId": .string(orderID), "paidMinor": .int(paid)]
                    if Bool.random(using: &random) {
                        order["lines"] = .array([
                            .object(["category": "high-margin", "paidMinor": .int(paid / 3)]),
                            .object(["category": "home", "paidMinor": .int(paid - paid / 3)]),
                        ])
                    }
                    add(EventType.orderPaid, member, time, order)
                    if Double.random(in: 0..<1, using: &random) < 0.15 {
                        let amount = Bool.random(using: &random) ? paid : Int64.random(in: 1...paid, using: &random)
                        add(EventType.orderRefunded, member, time + Int64.random(in: 1...3, using: &random) * Self.day,
                            ["orderId": .string(orderID), "refundId": .string("\(orderID)-r"), "refundMinor": .int(amount)])
                    }
                }
                add(EventType.checkedIn, member, at(Int.random(in: 0...6, using: &random), 8))
                if Double.random(in: 0..<1, using: &random) < 0.2 { add(EventType.reviewPosted, member, at(2, 12)) }
                if Double.random(in: 0..<1, using: &random) < 0.06 {
                    add(EventType.redeem, member, at(3, 15), ["rewardId": .string(rewards[Int.random(in: 0..<rewards.count, using: &random)])])
                }
                if Double.random(in: 0..<1, using: &random) < 0.05 {
                    add(EventType.cashOffset, member, at(4, 19), [
                        "orderId": .string("\(member)-checkout-\(week)"), "orderMinor": .int(Int64.random(in: 1_000...50_000, using: &random)),
                        "points": .int(Int64.random(in: 100...2_000, using: &random)),
                    ])
                }
                if Double.random(in: 0..<1, using: &random) < 0.04 {
                    let recipient = Double.random(in: 0..<1, using: &random) < 0.15 ? "ghost-\(index)" : "y\(Int.random(in: 0..<members, using: &random))"
                    add(EventType.transfer, member, at(5, 11), ["toMemberId": .string(recipient), "points": .int(Int64.random(in: 100...1_500, using: &random))])
                }
                if Double.random(in: 0..<1, using: &random) < 0.01 {
                    var adjustment: JSONObject = ["points": .int(Int64.random(in: -500...500, using: &random) | 1), "operator": "support-7"]
                    if Double.random(in: 0..<1, using: &random) < 0.9 { adjustment["reason"] = "service recovery" }
                    add(EventType.adjust, member, at(1, 10), adjustment)
                }
            }
        }
        pending.sort { ($0.time, $0.rank, $0.id) < ($1.time, $1.rank, $1.id) }
        events = pending.map(\.event)
    }

    /// The records to publish, in time order.
    var records: [(topic: String, key: String, value: [UInt8])] {
        events.map { (Topics.inputTopic(forEventType: $0.type)!.name, $0.subject!, $0.encoded()) }
    }
}
