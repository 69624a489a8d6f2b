import Foundation
import LoyaltyDomain
import Messaging

/// A year for many members, made to set off every reference campaign: birthdays (29 February
/// among them), first orders soon after and long after joining, member days, Double 11, Gold
/// members in their birthday month, refunds, 30-day check-in streaks, referral champions and
/// dormant spells. The campaign points each member must end with are computed here from
/// DOMAIN.md's rules written out plainly, independently of the services' code.
struct CampaignScenario {
    var events: [CloudEvent] = []
    /// Net campaign points per member (granted minus reversed) of the reference campaigns.
    var expectedPoints: [String: Int64] = [:]
    /// Reward counts per campaign (badges, coupons, birthday points, multiplier grants).
    var expectedRewards: [String: Int] = [:]
    /// Win-back coupons per member.
    var expectedCoupons: [String: Int] = [:]
    /// Campaign grants and reversals the points service must apply (reference campaigns).
    var expectedLedgerEntries = 0
    /// Check-ins that count on a streak, and referrals rewarded.
    var rewardedCheckIns = 0
    var rewardedReferrals = 0

    static let start: Int64 = 1_767_196_800_000  // 2026-01-01T00:00:00+08:00
    static let end: Int64 = start + 364 * day + 23 * 3_600_000  // 2026-12-31T23:00:00+08:00
    static let day: Int64 = 86_400_000
    static let offset: Int64 = 8 * 3_600_000

    /// `spending` adds redemptions and transfers (for the notifications test); profiles
    /// (channels, locale, consent) come from a generator of their own, so the rest of the year
    /// is the same either way.
    init(members count: Int, seed: UInt64, spending: Bool = false) {
        var random = SeededRandom(seed: seed)
        var profiles = SeededRandom(seed: seed &+ 1)
        var pending: [(time: Int64, rank: Int, id: String, event: CloudEvent)] = []
        var counter = 0
        func add(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject) {
            counter += 1
            let id = "c\(counter)"
            pending.append((time, Rank.of(eventType: type), id, CloudEvent(
                id: id, source: "campaign-shop", type: type, time: EventTime(millis: time), subject: member, data: .object(data))))
        }
        var registeredAt: [Int64] = []
        var referralsOf: [Int: Int] = [:]
        for index in 0..<count {
            let member = "c\(index)"
            // Most join in the first weeks, the rest through the year.
            let joined = Self.start + (index % 3 == 0 ? Int64.random(in: 0...(300 * Self.day), using: &random) : Int64.random(in: 0...(20 * Self.day), using: &random))
            registeredAt.append(joined)
            var data: JSONObject = [:]
            if index % 10 != 9 {
                let month = Int.random(in: 1...12, using: &random)
                let day = index % 97 == 0 ? 29 : Int.random(in: 1...28, using: &random)
                data["birthday"] = .string(String(format: "19%02d-%02d-%02d", 70 + index % 30, index % 97 == 0 ? 2 : month, day))
            }
            // Referral champions: the first members each bring in several later ones.
            let referrer = index >= 40 && index % 4 == 0 ? Int(index / 4) % 40 : nil
            if let referrer, registeredAt[referrer] < joined {
                data["referrerId"] = .string("c\(referrer)")
                referralsOf[referrer, default: 0] += 1
            }
            // Contact data: most members have a channel or two, some none; most consent.
            var channels: JSONObject = [:]
            if Int.random(in: 0..<10, using: &profiles) < 6 { channels["push"] = .string("push-\(member)") }
            if Int.random(in: 0..<10, using: &profiles) < 3 { channels["wechat"] = .string("wx-\(member)") }
            if Int.random(in: 0..<10, using: &profiles) < 4 { channels["sms"] = .string(String(format: "139%08d", index)) }
            if Int.random(in: 0..<10, using: &profiles) < 4 { channels["email"] = .string("\(member)@example.com") }
            data["channels"] = .object(channels)
            if Bool.random(using: &profiles), let preferred = ["push", "wechat", "sms", "email"].randomElement(using: &profiles) {
                data["preferredChannel"] = .string(preferred)
            }
            data["locale"] = .string(Bool.random(using: &profiles) ? "en" : "zh-CN")
            data["marketingConsent"] = .bool(Int.random(in: 0..<10, using: &profiles) < 7)
            add(EventType.memberRegistered, member, joined, data)
            if spending && index % 5 == 2 {
                // A redemption some can afford and some cannot, and a transfer to the member before.
                let when = max(joined, Self.start + 150 * Self.day) + Int64.random(in: 0...(150 * Self.day), using: &profiles)
                add(EventType.redeem, member, when, ["rewardId": .string(index % 2 == 0 ? "plant-a-tree" : "tea-set")])
                if index > 0 {
                    add(EventType.transfer, member, when + 3_600_000, ["toMemberId": .string("c\(index - 1)"), "points": 100])
                }
            }

            let habit = Int.random(in: 0..<4, using: &random)
            let (perWeek, amounts): (Double, ClosedRange<Int64>) = [(0.1, 2_000...20_000), (0.4, 5_000...40_000), (0.7, 20_000...200_000), (0.3, 100_000...900_000)][habit]
            let stopsAfterWeek = Double.random(in: 0..<1, using: &random) < 0.3 ? Int.random(in: 4...40, using: &random) : 52
            var orders = 0
            let firstWeek = Int((joined - Self.start) / (7 * Self.day)) + (index % 7 == 0 ? 6 : 0)
            for week in firstWeek..<min(52, stopsAfterWeek + firstWeek) {
                guard Double.random(in: 0..<1, using: &random) < perWeek else { continue }
                orders += 1
                var time = Self.start + Int64(week) * 7 * Self.day + Int64.random(in: 1...(6 * Self.day), using: &random)
                // Some orders on member days and on Double 11.
                if Int.random(in: 0..<6, using: &random) == 0 {
                    let date = LocalDate(dayNumber: (time + Self.offset) / Self.day)
                    time = LocalDate(year: date.year, month: date.month, day: 18)!.dayNumber * Self.day - Self.offset + Int64.random(in: 0..<Self.day, using: &random)
                }
                if week == 45, Bool.random(using: &random) {
                    time = LocalDate(year: 2026, month: 11, day: 11)!.dayNumber * Self.day - Self.offset + Int64.random(in: 0..<Self.day, using: &random)
                }
                guard time > joined, time < Self.end else { continue }
                let paid = Int64.random(in: amounts, using: &random)
                let orderID = "\(member)-o\(orders)"
                add(EventType.orderPaid, member, time, ["orderId": .string(orderID), "paidMinor": .int(paid)])
                let refundAt = time + Int64.random(in: 1...10, using: &random) * Self.day
                if Double.random(in: 0..<1, using: &random) < 0.15, refundAt < Self.end {
                    let amount = Bool.random(using: &random) ? paid : Int64.random(in: 1...paid, using: &random)
                    add(EventType.orderRefunded, member, refundAt,
                        ["orderId": .string(orderID), "refundId": .string("\(orderID)-r"), "refundMinor": .int(amount)])
                }
            }
            // One in six keeps a check-in streak of 28 to 35 days, some twice.
            if index % 6 == 1 {
                for _ in 0..<(index % 12 == 1 ? 2 : 1) {
                    let first = max(joined + Self.day, Self.start + Int64.random(in: 0...(300 * Self.day), using: &random))
                    let length = Int.random(in: 28...35, using: &random)
                    let firstDay = (first + Self.offset) / Self.day
                    for offset in 0..<length {
                        let time = (firstDay + Int64(offset)) * Self.day - Self.offset + 9 * 3_600_000
                        if time > joined && time < Self.end { add(EventType.checkedIn, member, time, [:]) }
                    }
                }
            }
            // Everyone's last event: a small order on 31 December, so every stream reaches the end.
            add(EventType.orderPaid, member, Self.end + Int64(index), ["orderId": .string("\(member)-last"), "paidMinor": 100])
        }
        pending.sort { ($0.time, $0.rank, $0.id) < ($1.time, $1.rank, $1.id) }
        events = pending.map(\.event)
        computeExpectations()
    }

    var records: [(topic: String, key: String, value: [UInt8])] {
        events.map { (Topics.inputTopic(forEventType: $0.type)!.name, $0.subject!, $0.encoded()) }
    }

    /// DOMAIN.md, "Campaigns", "Tiers" and "Exact semantics" for the reference program.
    private mutating func computeExpectations() {
        struct Order { var paid: Int64; var bonus: Int64; var refunded: Int64 = 0; var bonusBack: Int64 = 0 }
        struct Member {
            var registered: Int64
            var birthday: (month: Int, day: Int)?
            var tier = TierModel()
            var orders: [String: Order] = [:]
            var paidOrders = 0
            var dormantFrom: Int64
            var dormantRewarded = false
            var nextBirthday: Int64?
            var lastCheckInDay: Int64?
            var streak = 0
            var referrals = 0
            var points: Int64 = 0
        }
        func localDate(_ time: Int64) -> LocalDate { LocalDate(dayNumber: Int64((Double(time + Self.offset) / Double(Self.day)).rounded(.down))) }
        func birthdayInstant(after time: Int64, _ b: (month: Int, day: Int)) -> Int64 {
            var year = localDate(time).year
            while true {
                let day = min(b.day, LocalDate.daysInMonth(year: year, month: b.month))
                let instant = LocalDate(year: year, month: b.month, day: day)!.dayNumber * Self.day - Self.offset
                if instant > time { return instant }
                year += 1
            }
        }
        var members: [String: Member] = [:]
        func reward(_ campaign: String, _ points: Int64, _ m: inout Member) {
            expectedRewards[campaign, default: 0] += 1
            m.points += points
            if points > 0 { expectedLedgerEntries += 1 }
        }
        // Timers due by `time` fire first, in due order: birthday before win-back at one instant.
        func fireTimers(_ id: String, upTo time: Int64, _ m: inout Member) {
            while true {
                let birthdayDue = m.nextBirthday.flatMap { $0 <= time ? $0 : nil }
                let dormantDue = !m.dormantRewarded && m.dormantFrom + 30 * Self.day <= time ? m.dormantFrom + 30 * Self.day : nil
                guard birthdayDue != nil || dormantDue != nil else { return }
                if let due = birthdayDue, dormantDue == nil || due <= dormantDue! {
                    if m.registered < due { reward("birthday", 100, &m) }
                    m.nextBirthday = birthdayInstant(after: due, m.birthday!)
                } else if dormantDue != nil {
                    m.dormantRewarded = true
                    if !ControlGroup.isControl(campaign: "win-back", member: id, sharePercent: 10) {
                        reward("win-back", 0, &m)
                        expectedCoupons[id, default: 0] += 1
                    }
                }
            }
        }
        var referrerOf: [String: String] = [:]
        for event in events where event.type == EventType.memberRegistered {
            if let referrer = event.data["referrerId"]?.stringValue { referrerOf[event.subject!] = referrer }
        }
        for event in events {
            let id = event.subject!
            let time = event.time.millis
            let data = event.data.objectValue ?? JSONObject()
            if event.type == EventType.memberRegistered {
                var m = Member(registered: time, dormantFrom: time)
                if let text = data["birthday"]?.stringValue {
                    let parts = text.split(separator: "-").map { Int($0)! }
                    m.birthday = (parts[1], parts[2])
                    m.nextBirthday = birthdayInstant(after: time, m.birthday!)
                }
                members[id] = m
                // The referrer's reward (it registered earlier: always accepted here).
                if let referrer = referrerOf[id], var r = members[referrer] {
                    fireTimers(referrer, upTo: time, &r)
                    rewardedReferrals += 1
                    r.referrals += 1
                    if r.referrals == 5 { reward("referral-5", 200, &r) }
                    members[referrer] = r
                }
                continue
            }
            var m = members[id]!
            fireTimers(id, upTo: time, &m)
            _ = m.tier.monthEnds(upTo: time)
            switch event.type {
            case EventType.orderPaid:
                let paid = data["paidMinor"]!.int64Value!
                let base = paid / 100
                let date = localDate(time)
                var multiplier: Int64 = 10
                if m.paidOrders == 0 && time <= m.registered + 30 * Self.day { multiplier = max(multiplier, 50) }
                if date.day == 18 { multiplier = max(multiplier, 20) }
                if date.month == 11 && date.day == 11 { multiplier = max(multiplier, 20) }
                if m.tier.level >= 2, let b = m.birthday, b.month == date.month { multiplier = max(multiplier, 20) }
                let bonus = base * (multiplier - 10) / 10
                if bonus > 0 {
                    let campaign = multiplier == 50 ? "first-order" : "multiplier-x2"
                    reward(campaign, bonus, &m)
                }
                m.orders[data["orderId"]!.stringValue!] = Order(paid: paid, bonus: bonus)
                _ = m.tier.pay(paid, at: time)
                m.paidOrders += 1
                m.dormantFrom = time
                m.dormantRewarded = false
            case EventType.orderRefunded:
                let orderID = data["orderId"]!.stringValue!
                var order = m.orders[orderID]!
                let amount = data["refundMinor"]!.int64Value!
                order.refunded += amount
                m.tier.refund(amount, at: time)
                let back = order.bonus * order.refunded / order.paid
                if back > order.bonusBack {
                    m.points -= back - order.bonusBack
                    expectedLedgerEntries += 1
                    order.bonusBack = back
                }
                m.orders[orderID] = order
            case EventType.checkedIn:
                let day = (time + Self.offset) / Self.day
                // Two streaks of one member may overlap: a second check-in that day earns nothing.
                guard m.lastCheckInDay != day else { break }
                m.streak = m.lastCheckInDay == day - 1 ? m.streak + 1 : 1
                m.lastCheckInDay = day
                rewardedCheckIns += 1
                if m.streak == 30 { reward("streak-30", 50, &m) }
            default:
                break
            }
            members[id] = m
        }
        for (id, var m) in members {
            fireTimers(id, upTo: Self.end + 100_000, &m)
            expectedPoints[id] = m.points
        }
    }
}
