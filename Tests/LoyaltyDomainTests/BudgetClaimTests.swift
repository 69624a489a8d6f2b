import Testing

@testable import Basics
@testable import LoyaltyDomain

/// Budgets decided in two halves (`BudgetView`, `BudgetKeeper`): members in stores of their
/// own claim of one keeper, which decides the claims in the order one store applies their
/// triggers. Over a half-year of members whose budgets run out, the decisions, every member's
/// state and the budgets' totals are those of one store that counts.
@Suite struct BudgetClaimTests {
    let rules: CampaignRules
    let campaigns: [CampaignDefinition]

    init() throws {
        let program = try referenceProgram()
        rules = CampaignRules(program: program)
        let tiers = program.tiers.levels.map(\.id)
        campaigns = try [
            // The multiplier walk: two budgeted candidates (one capped per member, one with a
            // control group) above an unbudgeted one with a cap of its own.
            #"{"id":"triple","version":1,"name":"T","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":3},"budgetPoints":5000,"memberCap":{"points":400}}"#,
            #"{"id":"double","version":1,"name":"D","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":2},"budgetPoints":3000,"controlSharePercent":30}"#,
            #"{"id":"half","version":1,"name":"H","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":1.5},"memberCap":{"rewards":2}}"#,
            // Awards each on its own: an order's fixed points, a check-in streak, a birthday,
            // win-back after 20 quiet days, and a coupon whose budget bounds no points.
            #"{"id":"order-bonus","version":1,"name":"O","trigger":{"event":"order.paid"},"reward":{"points":40},"budgetPoints":2500,"memberCap":{"rewards":5}}"#,
            #"{"id":"streak","version":1,"name":"S","trigger":{"event":"check-in","when":"checkIn.streakDays == 3"},"reward":{"points":30,"badge":"s3"},"budgetPoints":600}"#,
            #"{"id":"birthday","version":1,"name":"B","trigger":{"event":"birthday"},"reward":{"points":100},"budgetPoints":1500}"#,
            #"{"id":"win-back","version":1,"name":"W","trigger":{"event":"dormant","days":20},"reward":{"points":25,"coupon":"W10"},"budgetPoints":400}"#,
            #"{"id":"coupon","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"coupon":"C5"},"budgetPoints":1,"memberCap":{"rewards":1}}"#,
        ].map { try CampaignDefinition.load(try JSONValue.parse(Array($0.utf8)), tiers: tiers) }
    }

    /// What a member does, at its time.
    enum Input {
        case register(birthday: String)
        case pay(OrderPaid)
        case refund(OrderRefunded)
        case checkIn(streakDay: Int64)
    }

    /// A reproducible half-year: 90 members registering in January, paying orders (one in
    /// five refunded in part), some checking in on consecutive days.
    func history() -> [(time: EventTime, member: Int, input: Input)] {
        var random = SplitMix(seed: 20261205)
        var inputs: [(time: EventTime, member: Int, input: Input)] = []
        let start = at("2026-01-01T00:00:00+08:00")
        let day = EventTime.dayMillis
        for member in 0..<90 {
            let registered = start.adding(milliseconds: Int64(random.below(28 * 24)) * 3_600_000 + Int64(member))
            let month = 1 + random.below(6), dayOfMonth = 1 + random.below(28)
            let birthday = "1990-0\(month)-\(dayOfMonth < 10 ? "0" : "")\(dayOfMonth)"
            inputs.append((registered, member, .register(birthday: birthday)))
            var time = registered
            for order in 0..<(2 + random.below(9)) {
                time = time.adding(milliseconds: Int64(1 + random.below(25)) * day + Int64(random.below(86_400_000)))
                let id = "o-\(member)-\(order)"
                let paid = Int64(3_000 + random.below(60_000))
                inputs.append((time, member, .pay(OrderPaid(orderID: id, paidMinor: paid))))
                if random.below(5) == 0 {
                    let refundAt = time.adding(milliseconds: Int64(1 + random.below(5)) * day)
                    inputs.append((refundAt, member, .refund(OrderRefunded(orderID: id, refundID: "r-\(id)", refundMinor: paid / 3))))
                }
            }
            if random.below(2) == 0 {
                let first = registered.adding(milliseconds: Int64(1 + random.below(60)) * day)
                for streakDay in 1...Int64(2 + random.below(4)) {
                    inputs.append((first.adding(milliseconds: (streakDay - 1) * day), member, .checkIn(streakDay: streakDay)))
                }
            }
        }
        return inputs.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
    }

    /// Applies the history in event-time order, each member's timers firing before the first
    /// input at or after their due time, and returns every decision in order. `decide`
    /// applies one input or timer of one member, to the member's state wherever it keeps it.
    func replay(_ decide: (_ member: Int, _ apply: (inout CampaignMember, inout CampaignTotals) -> CampaignDecision) -> CampaignDecision)
        -> [CampaignDecision]
    {
        var timers: [[CampaignTimer]] = Array(repeating: [], count: 90)
        var decisions: [CampaignDecision] = []
        func record(_ decision: CampaignDecision, of member: Int) {
            decisions.append(decision)
            if decision.cancelsDormantTimers { timers[member].removeAll { $0.kind == .dormant } }
            for timer in decision.timers {
                timers[member].removeAll { $0.kind == timer.kind && $0.ref == timer.ref }
                timers[member].append(timer)
            }
        }
        func fireTimers(before time: EventTime?) {
            while true {
                let due = timers.indices.flatMap { member in timers[member].map { (member: member, timer: $0) } }
                    .filter { time == nil || $0.timer.due <= time! }
                    .min { ($0.timer.due, $0.timer.kind == .birthday ? 0 : 1, $0.member) < ($1.timer.due, $1.timer.kind == .birthday ? 0 : 1, $1.member) }
                guard let due else { return }
                timers[due.member].removeAll { $0 == due.timer }
                let decision = decide(due.member) { member, totals in
                    switch due.timer.kind {
                    case .birthday: rules.birthday(at: due.timer.due, member: &member, campaigns: campaigns, totals: &totals)
                    case .dormant: rules.dormant(campaign: due.timer.ref, at: due.timer.due, member: &member, campaigns: campaigns, totals: &totals)
                    }
                }
                record(decision, of: due.member)
            }
        }
        for (time, member, input) in history() {
            fireTimers(before: time)
            let decision = decide(member) { state, totals in
                switch input {
                case .register(let birthday):
                    try! rules.register(["birthday": .string(birthday)], at: time, member: &state, campaigns: campaigns)
                case .pay(let order): rules.pay(order, at: time, member: &state, campaigns: campaigns, totals: &totals)
                case .refund(let refund): rules.refund(refund, at: time, member: &state, totals: &totals)
                case .checkIn(let streakDay): rules.checkIn(streakDay: streakDay, at: time, member: &state, campaigns: campaigns, totals: &totals)
                }
            }
            record(decision, of: member)
        }
        fireTimers(before: at("2026-09-01T00:00:00+08:00"))
        return decisions
    }

    @Test func membersClaimingOfOneKeeperGetWhatOneStoreGrants() throws {
        // One store: every member's state and the budgets counted in one place.
        var oneStore = CampaignTotals()
        var oneStoreMembers: [Int: CampaignMember] = [:]
        let counted = replay { member, apply in
            var state = oneStoreMembers[member] ?? CampaignMember(member: "m-\(member)", since: EventTime(millis: 0))
            defer { oneStoreMembers[member] = state }
            return apply(&state, &oneStore)
        }

        // Three stores, members by number mod 3, and the keeper: each trigger is applied to a
        // copy first to learn its claim, then again with the keeper's answer.
        var stores = Array(repeating: CampaignTotals(), count: 3)
        var storeMembers: [Int: CampaignMember] = [:]
        var keeper = BudgetKeeper()
        var claims = 0
        let claimed = replay { member, apply in
            var state = storeMembers[member] ?? CampaignMember(member: "m-\(member)", since: EventTime(millis: 0))
            defer { storeMembers[member] = state }
            var probeState = state
            var probe = stores[member % 3]
            probe.budgetView = .probing
            probe.claim = BudgetClaim()
            _ = apply(&probeState, &probe)
            if !probe.claim.isEmpty { claims += 1 }
            stores[member % 3].budgetView = .answered(probe.claim.isEmpty ? [:] : keeper.decide(probe.claim))
            return apply(&state, &stores[member % 3])
        }

        #expect(counted.count == claimed.count)
        let first = zip(counted, claimed).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(first == nil, "decision \(first?.offset ?? 0): one store \(String(describing: first?.element.0)), claimed \(String(describing: first?.element.1))")
        for member in 0..<90 {
            #expect(oneStoreMembers[member] == storeMembers[member], "member \(member)")
        }
        // The keeper's totals are the one store's, and the stores' results add up to its.
        for campaign in campaigns.filter({ $0.budgetPoints != nil }).map(\.id) {
            #expect(keeper.granted[campaign, default: 0] == oneStore.budgetGranted[campaign, default: 0], "\(campaign)")
        }
        for campaign in campaigns.map(\.id) {
            let summed = stores.reduce(Int64(0)) { $0 + ($1.results[campaign]?.pointsGranted ?? 0) }
            #expect(summed == oneStore.results[campaign]?.pointsGranted ?? 0, "\(campaign)")
            let rewards = stores.reduce(Int64(0)) { $0 + ($1.results[campaign]?.rewards ?? 0) }
            #expect(rewards == oneStore.results[campaign]?.rewards ?? 0, "\(campaign)")
        }

        // The history reaches what the keeper is for: budgets spent to the last point, the
        // walk falling through to later candidates once they are, and a coupon's budget bounding nothing.
        for (campaign, budget) in [("triple", Int64(5000)), ("double", 3000), ("order-bonus", 2500), ("streak", 600), ("birthday", 1500)] {
            #expect(oneStore.budgetGranted[campaign] == budget, "\(campaign) spent its whole budget")
        }
        let awards = counted.flatMap(\.awards)
        let lastTriple = awards.lastIndex { $0.campaign == "triple" } ?? 0
        #expect(awards[lastTriple...].contains { $0.campaign == "double" } && awards[lastTriple...].contains { $0.campaign == "half" })
        #expect(awards.filter { $0.campaign == "coupon" }.count > 1, "a coupon is never refused for its budget")
        #expect(awards.contains { $0.campaign == "win-back" })
        #expect(claims > 100)
    }

    @Test func theKeeperCutsTheLastGrantAndGrantsOneCandidateOfAWalk() {
        var keeper = BudgetKeeper(granted: ["a": 90])
        let walk = BudgetClaim(asks: [
            .init(campaign: "a", budgetPoints: 100, points: 30, inMultiplierWalk: true),
            .init(campaign: "b", budgetPoints: 100, points: 50, inMultiplierWalk: true),
            .init(campaign: "c", budgetPoints: 20, points: 50, inMultiplierWalk: false),
        ])
        #expect(keeper.decide(walk) == ["a": 10, "b": 0, "c": 20])
        #expect(keeper.decide(walk) == ["a": 0, "b": 50, "c": 0])
        #expect(keeper.granted == ["a": 100, "b": 50, "c": 20])
    }
}

/// A small reproducible generator (SplitMix64).
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
