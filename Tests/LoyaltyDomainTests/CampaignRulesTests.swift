import Testing

@testable import Basics
@testable import LoyaltyDomain
import ReferenceProgram

/// The campaign rules against DOMAIN.md, "Campaigns" and "Exact semantics".
@Suite struct CampaignRulesTests {
    let rules: CampaignRules
    let reference: [CampaignDefinition]
    let tiers = ["newcomer", "growth", "gold", "platinum", "black-diamond"]

    init() throws {
        let program = try referenceProgram()
        rules = CampaignRules(program: program)
        reference = try CampaignDefinition.loadFile(json: try ReferenceProgram.campaignsBytes(), tiers: program.tiers.levels.map(\.id))
    }

    func campaign(_ json: String) throws -> CampaignDefinition {
        try CampaignDefinition.load(try JSONValue.parse(Array(json.utf8)), tiers: tiers)
    }

    func member(_ id: String = "m", registered: String = "2026-01-01T10:00:00+08:00", birthday: String? = nil, consent: Bool = false) -> CampaignMember {
        var m = CampaignMember(member: id, since: at(registered))
        var data: JSONObject = ["marketingConsent": .bool(consent)]
        if let birthday { data["birthday"] = .string(birthday) }
        _ = try! rules.register(data, at: at(registered), member: &m, campaigns: reference)
        return m
    }

    func pay(_ m: inout CampaignMember, _ id: String, _ paid: Int64, at time: String, campaigns: [CampaignDefinition]? = nil,
             totals: inout CampaignTotals) -> CampaignDecision {
        rules.pay(OrderPaid(orderID: id, paidMinor: paid), at: at(time), member: &m, campaigns: campaigns ?? reference, totals: &totals)
    }

    // MARK: Schedules

    @Test func schedulesUseTheProgramsLocalDateWhateverTheEventsOffset() throws {
        let double11 = reference.first { $0.id == "double-11" }!.schedule
        // 2026-11-10T16:30Z is 11 November 00:30 in Shanghai; 11 November 16:00Z is the 12th there.
        #expect(rules.scheduleHolds(double11, at: at("2026-11-10T16:30:00Z"), birthday: nil))
        #expect(rules.scheduleHolds(double11, at: at("2026-11-11T07:59:59-08:00"), birthday: nil))
        #expect(!rules.scheduleHolds(double11, at: at("2026-11-11T16:00:00Z"), birthday: nil))
        #expect(!rules.scheduleHolds(double11, at: at("2026-11-10T23:59:59+08:00"), birthday: nil))
        let memberDay = reference.first { $0.id == "member-day" }!.schedule
        #expect(rules.scheduleHolds(memberDay, at: at("2026-02-17T16:00:00Z"), birthday: nil))
        #expect(!rules.scheduleHolds(memberDay, at: at("2026-02-18T16:00:00Z"), birthday: nil))
    }

    @Test func lastDayOfTheMonthFollowsMonthLengthsAndLeapYears() throws {
        let schedule = try campaign(#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},"schedule":{"daysOfMonth":[-1]}}"#).schedule
        for (day, expected) in [("2026-01-31", true), ("2026-02-28", true), ("2028-02-28", false), ("2028-02-29", true),
                                ("2026-04-30", true), ("2026-04-29", false), ("2026-12-31", true)] {
            #expect(rules.scheduleHolds(schedule, at: at("\(day)T23:59:00+08:00"), birthday: nil) == expected, "\(day)")
        }
        let the31st = try campaign(#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},"schedule":{"daysOfMonth":[31]}}"#).schedule
        #expect(!rules.scheduleHolds(the31st, at: at("2026-04-30T12:00:00+08:00"), birthday: nil))
    }

    @Test func weekdaysHoursWindowsAndOnceDatesCombine() throws {
        let c = try campaign(#"""
            {"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},
             "schedule":{"from":"2026-03-01T00:00:00+08:00","until":"2026-04-01T00:00:00+08:00","weekdays":["sat","sun"],"hours":[10,22]}}
            """#)
        #expect(rules.scheduleHolds(c.schedule, at: at("2026-03-07T10:00:00+08:00"), birthday: nil), "Saturday 10:00")
        #expect(!rules.scheduleHolds(c.schedule, at: at("2026-03-07T22:00:00+08:00"), birthday: nil), "22:00 is outside [10, 22)")
        #expect(!rules.scheduleHolds(c.schedule, at: at("2026-03-06T12:00:00+08:00"), birthday: nil), "Friday")
        #expect(!rules.scheduleHolds(c.schedule, at: at("2026-04-04T12:00:00+08:00"), birthday: nil), "until is exclusive")
        #expect(!rules.scheduleHolds(c.schedule, at: at("2026-02-28T12:00:00+08:00"), birthday: nil), "before from")
        let once = try campaign(#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},"schedule":{"dates":["2026-06-18"]}}"#)
        #expect(rules.scheduleHolds(once.schedule, at: at("2026-06-18T08:00:00+08:00"), birthday: nil))
        #expect(!rules.scheduleHolds(once.schedule, at: at("2027-06-18T08:00:00+08:00"), birthday: nil))
    }

    @Test func birthdayMonthAndDayIncludingTheTwentyNinthOfFebruary() throws {
        let day = try campaign(#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},"schedule":{"birthday":"day"}}"#).schedule
        let month = reference.first { $0.id == "birthday-month" }!.schedule
        let leap = Birthday.parse("02-29")!
        #expect(rules.scheduleHolds(day, at: at("2027-02-28T09:00:00+08:00"), birthday: leap), "29 Feb falls on 28 Feb in other years")
        #expect(!rules.scheduleHolds(day, at: at("2028-02-28T09:00:00+08:00"), birthday: leap))
        #expect(rules.scheduleHolds(day, at: at("2028-02-29T09:00:00+08:00"), birthday: leap))
        #expect(rules.scheduleHolds(month, at: at("2027-02-01T00:00:00+08:00"), birthday: leap), "a 29 February birthday counts as February")
        #expect(!rules.scheduleHolds(month, at: at("2027-01-31T23:59:59+08:00"), birthday: leap))
        #expect(!rules.scheduleHolds(month, at: at("2027-02-10T00:00:00+08:00"), birthday: nil), "no birthday, no birthday month")
    }

    // MARK: Audience

    @Test func audienceByTierRegistrationWindowAndConsent() throws {
        let c = try campaign(#"""
            {"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":5},
             "audience":{"tiers":["growth","platinum"],"registeredWithinDays":30,"marketingConsent":true}}
            """#)
        var m = member(consent: true)
        m.tier.level = 1
        #expect(rules.audienceHolds(c.audience, member: m, at: at("2026-01-31T10:00:00+08:00")), "exactly 30 × 24 h after registering")
        #expect(!rules.audienceHolds(c.audience, member: m, at: at("2026-01-31T10:00:00.001+08:00")))
        m.tier.level = 2
        #expect(!rules.audienceHolds(c.audience, member: m, at: at("2026-01-10T10:00:00+08:00")), "gold is not listed")
        m.tier.level = 1
        m.profile.marketingConsent = false
        #expect(!rules.audienceHolds(c.audience, member: m, at: at("2026-01-10T10:00:00+08:00")), "no consent")
        let gold = reference.first { $0.id == "birthday-month" }!.audience
        for (level, expected) in [(0, false), (1, false), (2, true), (3, true), (4, true)] {
            m.tier.level = level
            #expect(rules.audienceHolds(gold, member: m, at: at("2026-01-10T10:00:00+08:00")) == expected)
        }
    }

    @Test func nobodyIsRewardedBeforeRegisteringOrAfterClosing() {
        var totals = CampaignTotals()
        var stranger = CampaignMember(member: "x", since: at("2026-03-18T10:00:00+08:00"))
        #expect(pay(&stranger, "o1", 10_000, at: "2026-03-18T10:00:00+08:00", totals: &totals).grants.isEmpty)
        var m = member()
        m.closed = true
        #expect(pay(&m, "o1", 10_000, at: "2026-03-18T10:00:00+08:00", totals: &totals).grants.isEmpty)
    }

    // MARK: Multipliers

    @Test func onlyTheLargestMatchingMultiplierApplies() {
        var totals = CampaignTotals()
        var m = member(registered: "2026-11-01T10:00:00+08:00")
        // 11 November, first order within 30 days: double-11 (×2) and first-order (×5) match; ×5 wins.
        let first = pay(&m, "o1", 12_345, at: "2026-11-11T12:00:00+08:00", totals: &totals)
        #expect(first.grants == [CampaignGrant(campaign: "first-order", points: 123 * 4, orderID: "o1")])
        #expect(first.awards.map(\.campaign) == ["first-order"])
        // The second order that day: only double-11.
        let second = pay(&m, "o2", 10_099, at: "2026-11-11T13:00:00+08:00", totals: &totals)
        #expect(second.grants == [CampaignGrant(campaign: "double-11", points: 100, orderID: "o2")])
        #expect(pay(&m, "o2", 10_099, at: "2026-11-11T13:00:00+08:00", totals: &totals) == CampaignDecision(), "a known order id changes nothing")
        #expect(pay(&m, "o3", 10_000, at: "2026-11-12T13:00:00+08:00", totals: &totals).grants.isEmpty)
    }

    @Test func theBirthdayMonthDependsOnTheTierBeforeTheOrder() {
        var totals = CampaignTotals()
        var m = member(registered: "2025-01-01T10:00:00+08:00", birthday: "1990-04-20")
        // 5,000 CNY reaches Gold, but the order itself is decided on the tier before it.
        #expect(pay(&m, "o1", 500_000, at: "2026-04-02T10:00:00+08:00", totals: &totals).grants.isEmpty)
        let next = pay(&m, "o2", 10_000, at: "2026-04-03T10:00:00+08:00", totals: &totals)
        #expect(next.grants == [CampaignGrant(campaign: "birthday-month", points: 100, orderID: "o2")])
    }

    @Test func monthEndDowngradesAreAppliedBeforeTheNextOrder() {
        var totals = CampaignTotals()
        var m = member(registered: "2025-01-01T10:00:00+08:00", birthday: "06-15")
        _ = pay(&m, "o1", 500_000, at: "2026-02-10T10:00:00+08:00", totals: &totals)
        #expect(m.tier.level == 2)
        // No orders in March and April → down to Growth on 1 May, so June's order is not Gold.
        #expect(pay(&m, "o2", 10_000, at: "2026-06-02T10:00:00+08:00", totals: &totals).grants.isEmpty)
        var kept = member(registered: "2025-01-01T10:00:00+08:00", birthday: "06-15")
        _ = pay(&kept, "o1", 500_000, at: "2026-02-10T10:00:00+08:00", totals: &totals)
        _ = pay(&kept, "o2", 100, at: "2026-04-10T10:00:00+08:00", totals: &totals)
        _ = pay(&kept, "o3", 100, at: "2026-05-10T10:00:00+08:00", totals: &totals)
        #expect(pay(&kept, "o4", 10_000, at: "2026-06-02T10:00:00+08:00", totals: &totals).grants.map(\.campaign) == ["birthday-month"],
                "a member who kept ordering is still Gold")
    }

    @Test func refundsReverseTheCampaignBonusInProportionCumulatively() {
        var totals = CampaignTotals()
        var m = member()
        _ = pay(&m, "o1", 10_000, at: "2026-03-18T10:00:00+08:00", campaigns: reference.filter { $0.id == "member-day" }, totals: &totals)
        func refund(_ id: String, _ amount: Int64) -> [CampaignReversal] {
            rules.refund(OrderRefunded(orderID: "o1", refundID: id, refundMinor: amount), at: at("2026-03-20T10:00:00+08:00"), member: &m, totals: &totals).reversals
        }
        #expect(refund("r1", 3_333) == [CampaignReversal(campaign: "member-day", points: 33, orderID: "o1", refundID: "r1")])
        #expect(refund("r1", 3_333).isEmpty, "a repeated refund id")
        #expect(refund("r2", 6_668).isEmpty, "more than is left of the order")
        #expect(refund("r3", 6_667) == [CampaignReversal(campaign: "member-day", points: 67, orderID: "o1", refundID: "r3")])
        #expect(totals.results["member-day"]?.pointsReversed == 100)
        #expect(totals.results["member-day"]?.pointsGranted == 100, "a reversal does not refill the budget")
    }

    // MARK: Budgets and caps

    @Test func theBudgetIsNeverExceededAndTheLastGrantIsCut() throws {
        let c = try campaign(#"{"id":"small","version":1,"name":"S","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":2},"budgetPoints":250}"#)
        var totals = CampaignTotals()
        var granted: [Int64] = []
        for index in 0..<5 {
            var m = member("m\(index)")
            granted += pay(&m, "o", 10_000, at: "2026-03-01T10:00:00+08:00", campaigns: [c], totals: &totals).grants.map(\.points)
        }
        #expect(granted == [100, 100, 50])
        #expect(totals.results["small"]?.pointsGranted == 250 && totals.results["small"]?.membersReached == 3)
    }

    @Test func whenTheLargestIsSpentTheNextLargestApplies() throws {
        let big = try campaign(#"{"id":"big","version":1,"name":"B","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":3},"budgetPoints":200}"#)
        let small = try campaign(#"{"id":"small","version":1,"name":"S","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":2}}"#)
        var totals = CampaignTotals()
        var m = member()
        #expect(pay(&m, "o1", 10_000, at: "2026-03-01T10:00:00+08:00", campaigns: [small, big], totals: &totals).grants.map(\.campaign) == ["big"])
        #expect(pay(&m, "o2", 10_000, at: "2026-03-02T10:00:00+08:00", campaigns: [small, big], totals: &totals).grants.map(\.campaign) == ["small"])
    }

    @Test func perMemberCapsLimitPointsAndRewards() throws {
        let c = try campaign(#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":40},"memberCap":{"points":100,"rewards":5}}"#)
        var totals = CampaignTotals()
        var m = member()
        var points: [Int64] = []
        for day in 1...5 { points += pay(&m, "o\(day)", 100, at: "2026-03-0\(day)T10:00:00+08:00", campaigns: [c], totals: &totals).grants.map(\.points) }
        #expect(points == [40, 40, 20])
        let once = try campaign(#"{"id":"once","version":1,"name":"O","trigger":{"event":"order.paid"},"reward":{"coupon":"HELLO"},"memberCap":{"rewards":1}}"#)
        var n = member("n")
        let coupons = (1...3).flatMap { pay(&n, "o\($0)", 100, at: "2026-03-0\($0)T10:00:00+08:00", campaigns: [once], totals: &totals).awards.compactMap(\.coupon) }
        #expect(coupons == ["HELLO"])
        #expect(totals.results["once"]?.couponsIssued == 1)
    }

    // MARK: Achievements and timers

    @Test func theStreakBadgeComesWhenAStreakReachesThirtyEachTime() {
        var totals = CampaignTotals()
        var m = member()
        var badges: [String] = []
        for day: Int64 in [29, 30, 31, 60, 1, 30] {
            let decision = rules.checkIn(streakDay: day, at: at("2026-05-01T08:00:00+08:00"), member: &m, campaigns: reference, totals: &totals)
            badges += decision.awards.compactMap(\.badge)
            #expect(decision.grants.map(\.points) == (day == 30 ? [50] : []))
        }
        #expect(badges == ["streak-30", "streak-30"])
    }

    @Test func theReferralBadgeComesOnceOnTheFifthRewardedReferral() {
        var totals = CampaignTotals()
        var m = member()
        var rewards: [CampaignGrant] = []
        for index in 1...11 {
            rewards += rules.referral(referee: "r\(index)", at: at("2026-05-01T08:00:00+08:00"), member: &m, campaigns: reference, totals: &totals).grants
        }
        #expect(rewards == [CampaignGrant(campaign: "referral-5", points: 200, orderID: nil)])
    }

    @Test func birthdayPointsAtMidnightOnlyForMembersRegisteredBefore() {
        var totals = CampaignTotals()
        let m = member(registered: "2026-04-20T00:00:00+08:00", birthday: "04-20")
        let armed = m.registeredAt.map { Birthday.parse("04-20")!.next(after: $0, calendar: rules.program.calendar) }
        #expect(armed == at("2027-04-20T00:00:00+08:00"), "registered at that very instant: not strictly before, next year")
        var early = member(registered: "2026-04-19T23:59:59+08:00", birthday: "04-20")
        let decision = rules.birthday(at: at("2026-04-20T00:00:00+08:00"), member: &early, campaigns: reference, totals: &totals)
        #expect(decision.grants == [CampaignGrant(campaign: "birthday", points: 100, orderID: nil)])
        #expect(decision.timers == [CampaignTimer(kind: .birthday, ref: "birthday", due: at("2027-04-20T00:00:00+08:00"))])
        var leap = member(registered: "2026-01-01T00:00:00+08:00", birthday: "02-29")
        let due = Birthday.parse("02-29")!.next(after: at("2026-01-01T00:00:00+08:00"), calendar: rules.program.calendar)
        #expect(due == at("2026-02-28T00:00:00+08:00"))
        #expect(rules.birthday(at: due, member: &leap, campaigns: reference, totals: &totals).grants.map(\.points) == [100])
    }

    @Test func winBackOncePerSpellWithADeterministicControlGroup() {
        var totals = CampaignTotals()
        // m-42 is in bucket 10 (treated at 10%); m-7 is held out if its bucket is below 10.
        var treated = member("m-42", registered: "2026-01-01T10:00:00+08:00")
        #expect(rules.dormant(campaign: "win-back", at: at("2026-01-31T10:00:00+08:00"), member: &treated, campaigns: reference, totals: &totals)
            .awards.compactMap(\.coupon) == ["WINBACK10"])
        // A paid order ends the spell and restarts the clock; the old timer now only moves.
        let order = pay(&treated, "o1", 10_000, at: "2026-02-05T10:00:00+08:00", totals: &totals)
        #expect(order.cancelsDormantTimers && order.timers.contains(CampaignTimer(kind: .dormant, ref: "win-back", due: at("2026-03-07T10:00:00+08:00"))))
        #expect(totals.results["win-back"]?.treated.orders == 1 && totals.results["win-back"]?.treated.revenueMinor == 10_000, "an order 5 days after the trigger")
        let early = rules.dormant(campaign: "win-back", at: at("2026-03-01T10:00:00+08:00"), member: &treated, campaigns: reference, totals: &totals)
        #expect(early.awards.isEmpty && early.timers == [CampaignTimer(kind: .dormant, ref: "win-back", due: at("2026-03-07T10:00:00+08:00"))])

        let heldOut = (0..<1_000).map { "m-\($0)" }.first { ControlGroup.isControl(campaign: "win-back", member: $0, sharePercent: 10) }!
        var control = member(heldOut, registered: "2026-01-01T10:00:00+08:00")
        #expect(rules.dormant(campaign: "win-back", at: at("2026-01-31T10:00:00+08:00"), member: &control, campaigns: reference, totals: &totals).awards.isEmpty)
        _ = pay(&control, "o1", 7_000, at: "2026-02-14T10:00:00+08:00", totals: &totals)
        _ = pay(&control, "o2", 7_000, at: "2026-02-14T10:00:01+08:00", totals: &totals)
        #expect(totals.results["win-back"]?.control == CampaignResults.GroupFigures(members: 1, triggers: 1, orders: 1, revenueMinor: 7_000),
                "only orders within 14 days of the trigger count")
    }
}
