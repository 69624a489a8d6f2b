import LoyaltyDomain
import Messaging

/// The sample stream of `loyalty demo`: a few members over three weeks of March 2026,
/// chosen so that every earning, refund and spending rule shows up once.
enum SampleStream {
    static let members = ["alice", "bob", "chen", "dana", "eli", "fang"]

    static func events() throws -> [CloudEvent] {
        var events: [CloudEvent] = []
        var counter = 0
        func add(_ type: String, _ member: String, _ time: String, _ data: JSONValue = .object(JSONObject()), id: String? = nil) throws {
            counter += 1
            events.append(CloudEvent(
                id: id ?? "demo-\(counter)", source: "demo-shop", type: type, time: try EventTime.parse(time),
                subject: member, data: data))
        }
        func order(_ id: String, _ paid: Int64, lines: [(String, Int64)] = []) -> JSONValue {
            var object = JSONObject()
            object["orderId"] = .string(id)
            object["paidMinor"] = .int(paid)
            if !lines.isEmpty {
                object["lines"] = .array(lines.map { category, amount in
                    var line = JSONObject()
                    line["category"] = .string(category)
                    line["paidMinor"] = .int(amount)
                    return .object(line)
                })
            }
            return .object(object)
        }
        func refund(_ order: String, _ id: String, _ amount: Int64) -> JSONValue {
            .object(JSONObject(["orderId": .string(order), "refundId": .string(id), "refundMinor": .int(amount)]))
        }

        // alice: a high-margin order, a ten-day check-in streak, a review, a share, the newcomer task.
        try add(EventType.memberRegistered, "alice", "2026-03-01T09:00:00+08:00", .object([
            "birthday": "1990-03-10", "locale": "en", "marketingConsent": true,
            "channels": ["push": "push-token-alice", "email": "alice@example.com"],
        ]))
        for day in 1...10 {
            try add(EventType.checkedIn, "alice", "2026-03-\(day < 10 ? "0" : "")\(day)T08:30:00+08:00")
        }
        try add(EventType.orderPaid, "alice", "2026-03-02T20:15:00+08:00", order("A-1001", 32_000, lines: [("apparel", 20_000), ("high-margin", 12_000)]))
        try add(EventType.orderPaid, "alice", "2026-03-12T19:00:00+08:00", order("A-1002", 5_000))  // after her birthday
        try add(EventType.reviewPosted, "alice", "2026-03-05T21:00:00+08:00")
        try add(EventType.contentShared, "alice", "2026-03-05T21:05:00+08:00")
        try add(EventType.taskCompleted, "alice", "2026-03-01T09:05:00+08:00", .object(JSONObject(["task": "newcomer"])))

        // bob: referred by alice; an order refunded in part.
        try add(EventType.memberRegistered, "bob", "2026-03-02T10:00:00+08:00", .object([
            "referrerId": "alice", "channels": ["email": "bob@example.com"], "preferredChannel": "email",
        ]))
        try add(EventType.orderPaid, "bob", "2026-03-03T12:00:00+08:00", order("B-2001", 15_800))
        try add(EventType.orderRefunded, "bob", "2026-03-05T12:00:00+08:00", refund("B-2001", "R-1", 5_800))

        // chen: a large order refunded in full after its points are spent down to debt; a broken streak.
        try add(EventType.memberRegistered, "chen", "2026-03-01T11:00:00+08:00", .object(["channels": ["sms": "13800138000"], "marketingConsent": true]))
        try add(EventType.orderPaid, "chen", "2026-03-04T15:30:00+08:00", order("C-3001", 99_999))
        try add(EventType.orderRefunded, "chen", "2026-03-06T09:00:00+08:00", refund("C-3001", "R-2", 60_000))
        try add(EventType.orderRefunded, "chen", "2026-03-06T09:30:00+08:00", refund("C-3001", "R-3", 39_999))
        try add(EventType.orderPaid, "chen", "2026-03-18T15:00:00+08:00", order("C-3002", 20_000))  // member day: ×2
        for day in [2, 3, 5, 6] {
            try add(EventType.checkedIn, "chen", "2026-03-0\(day)T07:45:00+08:00")
        }

        // dana: orders before registering; the order is kept and applied at registration.
        try add(EventType.orderPaid, "dana", "2026-03-03T18:00:00+08:00", order("D-4001", 8_800))
        try add(EventType.memberRegistered, "dana", "2026-03-04T09:00:00+08:00")

        // eli: refusals and a re-sent duplicate.
        try add(EventType.memberRegistered, "eli", "2026-03-02T09:00:00+08:00", .object(["channels": ["wechat": "wx-eli"]]))
        try add(EventType.orderRefunded, "eli", "2026-03-03T09:00:00+08:00", refund("NO-SUCH-ORDER", "R-4", 1_000))
        try add(EventType.checkedIn, "eli", "2026-03-03T09:00:00+08:00", id: "eli-checkin-1")
        try add(EventType.checkedIn, "eli", "2026-03-03T09:00:00+08:00", id: "eli-checkin-1")  // the same event, sent twice
        try add(EventType.checkedIn, "eli", "2026-03-03T19:00:00+08:00")
        try add(EventType.taskCompleted, "eli", "2026-03-03T19:10:00+08:00", .object(JSONObject(["task": "browse-5"])))
        try add(EventType.taskCompleted, "eli", "2026-03-03T19:20:00+08:00", .object(JSONObject(["task": "browse-5"])))

        // fang: self-referral, a refund larger than the order, the daily review cap.
        try add(EventType.memberRegistered, "fang", "2026-03-01T12:00:00+08:00", .object([
            "referrerId": "fang", "locale": "zh-CN", "channels": ["sms": "13900139000"],
        ]))
        try add(EventType.orderPaid, "fang", "2026-03-07T10:00:00+08:00", order("F-6001", 5_000))
        try add(EventType.orderRefunded, "fang", "2026-03-08T10:00:00+08:00", refund("F-6001", "R-5", 9_000))
        for minute in 10...15 {
            try add(EventType.reviewPosted, "fang", "2026-03-08T11:\(minute):00+08:00")
        }

        // Spending, once the orders' points are available: a redemption, transfers (one to a
        // member who does not exist, given back), one below the minimum, an adjustment.
        try add(EventType.transfer, "bob", "2026-03-15T10:00:00+08:00", .object(JSONObject(["toMemberId": "alice", "points": 100])))
        try add(EventType.adjust, "fang", "2026-03-16T10:00:00+08:00", .object(JSONObject(["points": 200, "reason": "late delivery", "operator": "demo-support"])))
        try add(EventType.transfer, "fang", "2026-03-17T10:00:00+08:00", .object(JSONObject(["toMemberId": "zed", "points": 150])))
        try add(EventType.transfer, "dana", "2026-03-17T11:00:00+08:00", .object(JSONObject(["toMemberId": "eli", "points": 50])))
        try add(EventType.redeem, "alice", "2026-03-18T12:00:00+08:00", .object(JSONObject(["rewardId": "express-delivery"])))

        // Everyone checks in on 20 March, after every order's 7-day pending period.
        for member in members {
            try add(EventType.checkedIn, member, "2026-03-20T09:00:00+08:00")
        }
        return events
    }
}
