import Testing

@testable import Basics
@testable import LoyaltyDomain

/// The tier rules against DOMAIN.md, "Tiers" and "Exact semantics".
@Suite struct TierRulesTests {
    func rules() throws -> TierRules { TierRules(program: try referenceProgram()) }
    func member() -> TierMember { TierMember(member: "m", since: at("2026-01-01T00:00:00+08:00")) }
    func order(_ id: String, _ paid: Int64) -> OrderPaid { OrderPaid(orderID: id, paidMinor: paid) }

    @Test func referenceLadderHasDomainFigures() throws {
        let levels = try referenceProgram().tiers.levels
        #expect(levels.map(\.id) == ["newcomer", "growth", "gold", "platinum", "black-diamond"])
        #expect(levels.map(\.multiplierTenths) == [10, 12, 15, 18, 20])
        #expect(levels.map(\.qualifyingSpendMinor) == [0, 100_000, 500_000, 2_000_000, 5_000_000])
        #expect(levels[1].ordersInAMonth == 3)
        #expect(try referenceProgram().tiers.qualifyingWindowDays == 365)
    }

    @Test func everyThresholdIsReachedExactlyAtItsAmount() throws {
        let rules = try rules()
        for (threshold, expected) in [(99_999, "newcomer"), (100_000, "growth"), (499_999, "growth"), (500_000, "gold"),
                                      (1_999_999, "gold"), (2_000_000, "platinum"), (5_000_000, "black-diamond")] as [(Int64, String)] {
            var m = member()
            _ = rules.pay(order("o", threshold), at: at("2026-03-01T10:00:00+08:00"), member: &m)
            #expect(rules.policy.levels[m.level].id == expected, "\(threshold)")
        }
    }

    @Test func aLargeOrderJumpsSeveralLevelsAndItsBonusUsesTheTierBefore() throws {
        let rules = try rules()
        var m = member()
        // 600,000 fen: base 6,000 at Newcomer (×1.0) earns no bonus; then straight to Gold.
        let first = rules.pay(order("o1", 600_000), at: at("2026-03-01T10:00:00+08:00"), member: &m)
        #expect(first.grants.isEmpty)
        #expect(first.changes.map(\.to) == ["gold"])
        #expect(first.changes.first?.from == "newcomer")
        #expect(first.changes.first?.qualifyingSpendMinor == 600_000)
        // Next order at Gold (×1.5): base 1,234 → floor(1234 × 0.5) = 617.
        let second = rules.pay(order("o2", 123_456), at: at("2026-03-02T10:00:00+08:00"), member: &m)
        #expect(second.grants == [TierBonusCommand(orderID: "o2", points: 617)])
        #expect(second.changes.isEmpty)
    }

    @Test func threeOrdersInACalendarMonthReachGrowth() throws {
        let rules = try rules()
        var m = member()
        _ = rules.pay(order("o1", 1_000), at: at("2026-03-01T00:00:00+08:00"), member: &m)
        _ = rules.pay(order("o2", 1_000), at: at("2026-03-15T10:00:00+08:00"), member: &m)
        #expect(m.level == 0)
        // The third in the same local month (03-31 23:59 local is still March).
        let third = rules.pay(order("o3", 1_000), at: at("2026-03-31T15:59:00Z"), member: &m)
        #expect(third.changes.first?.reason == "orders-in-a-month")
        #expect(m.level == 1)

        var n = member()
        _ = rules.pay(order("o1", 1_000), at: at("2026-03-30T10:00:00+08:00"), member: &n)
        _ = rules.pay(order("o2", 1_000), at: at("2026-03-31T10:00:00+08:00"), member: &n)
        _ = rules.pay(order("o3", 1_000), at: at("2026-03-31T16:00:00Z"), member: &n)  // 04-01 local
        #expect(n.level == 0, "two in March and one in April are not three in a month")
    }

    @Test func spendFallsOutOfTheRollingWindowAfter365Days() throws {
        let rules = try rules()
        var m = member()
        _ = rules.pay(order("o1", 90_000), at: at("2026-01-10T10:00:00+08:00"), member: &m)
        // 365 days later to the millisecond, the first order is out of the window (T − 365 d, T].
        #expect(rules.qualifyingSpend(of: m, at: at("2027-01-10T09:59:59.999+08:00")) == 90_000)
        #expect(rules.qualifyingSpend(of: m, at: at("2027-01-10T10:00:00+08:00")) == 0)
        _ = rules.pay(order("o2", 20_000), at: at("2027-01-10T10:00:00+08:00"), member: &m)
        #expect(m.level == 0, "90,000 fell out: 20,000 alone is not Growth")
        var n = member()
        _ = rules.pay(order("o1", 90_000), at: at("2026-01-10T10:00:00+08:00"), member: &n)
        _ = rules.pay(order("o2", 20_000), at: at("2027-01-10T09:59:59+08:00"), member: &n)
        #expect(n.level == 1, "one second earlier both count: 110,000")
    }

    @Test func refundsReverseTheBonusProportionallyAndNeverDowngrade() throws {
        let rules = try rules()
        var m = member()
        _ = rules.pay(order("big", 600_000), at: at("2026-03-01T10:00:00+08:00"), member: &m)  // Gold
        _ = rules.pay(order("o", 33_333), at: at("2026-03-02T10:00:00+08:00"), member: &m)  // base 333, bonus floor(333 × 0.5) = 166
        #expect(m.orders["o"]?.bonus == 166)
        // floor(166 × 10000 / 33333) = 49; floor(166 × 33333 / 33333) = 166 → 117 more.
        let first = rules.refund(OrderRefunded(orderID: "o", refundID: "r1", refundMinor: 10_000), at: at("2026-03-03T10:00:00+08:00"), member: &m)
        #expect(first.reversals == [TierBonusCommand(orderID: "o", points: 49, refundID: "r1")])
        let second = rules.refund(OrderRefunded(orderID: "o", refundID: "r2", refundMinor: 23_333), at: at("2026-03-04T10:00:00+08:00"), member: &m)
        #expect(second.reversals.first?.points == 117)
        // A full refund of the big order: spend drops below Gold, the tier stays.
        _ = rules.refund(OrderRefunded(orderID: "big", refundID: "r3", refundMinor: 600_000), at: at("2026-03-05T10:00:00+08:00"), member: &m)
        #expect(rules.policy.levels[m.level].id == "gold")
        #expect(rules.qualifyingSpend(of: m, at: at("2026-03-05T10:00:00+08:00")) == 0)
        // Refunds the points service refuses change nothing here.
        #expect(rules.refund(OrderRefunded(orderID: "o", refundID: "r1", refundMinor: 1), at: at("2026-03-06T10:00:00+08:00"), member: &m) == TierDecision())
        #expect(rules.refund(OrderRefunded(orderID: "nope", refundID: "r9", refundMinor: 1), at: at("2026-03-06T10:00:00+08:00"), member: &m) == TierDecision())
    }

    @Test func monthEndDowngradesAfterTwoEmptyMonthsAndWarnsAfterOne() throws {
        let rules = try rules()
        var m = member()
        _ = rules.pay(order("o1", 600_000), at: at("2026-01-20T10:00:00+08:00"), member: &m)  // Gold in January
        // 1 February: January had an order.
        #expect(rules.monthEnd(at: at("2026-02-01T00:00:00+08:00"), member: &m).changes.isEmpty)
        // 1 March: February empty, January not → at risk.
        let risk = rules.monthEnd(at: at("2026-03-01T00:00:00+08:00"), member: &m)
        #expect(risk.changes.map(\.kind) == [.atRisk])
        #expect(risk.changes.first?.reason == "no-orders-last-month")
        // 1 April: February and March empty → down one level, to Growth.
        let down = rules.monthEnd(at: at("2026-04-01T00:00:00+08:00"), member: &m)
        #expect(down.changes.map(\.kind) == [.downgraded])
        #expect(down.changes.first?.to == "growth")
        // 1 May and 1 June: still nothing → Newcomer, and never below.
        _ = rules.monthEnd(at: at("2026-05-01T00:00:00+08:00"), member: &m)
        #expect(m.level == 0)
        #expect(rules.monthEnd(at: at("2026-06-01T00:00:00+08:00"), member: &m).changes.isEmpty)
    }

    @Test func monthEndAtYearAndLeapYearBoundaries() throws {
        let rules = try rules()
        var m = member()
        _ = rules.pay(order("o1", 600_000), at: at("2027-12-31T23:59:00+08:00"), member: &m)  // December 2027
        #expect(rules.monthEnd(at: at("2028-01-01T00:00:00+08:00"), member: &m).changes.isEmpty)
        #expect(rules.monthEnd(at: at("2028-02-01T00:00:00+08:00"), member: &m).changes.map(\.kind) == [.atRisk])
        // 29 February 2028 is in February: an order then keeps March's boundary quiet.
        _ = rules.pay(order("o2", 100), at: at("2028-02-29T12:00:00+08:00"), member: &m)
        #expect(rules.monthEnd(at: at("2028-03-01T00:00:00+08:00"), member: &m).changes.isEmpty)
    }

    @Test func newcomersAreNeverWarnedOrDowngraded() throws {
        var m = member()
        #expect(try rules().monthEnd(at: at("2026-05-01T00:00:00+08:00"), member: &m) == TierDecision())
    }

    @Test func badLaddersAreRefusedNamingTheField() throws {
        let reference = String(decoding: try ReferenceProgramBytes.load(), as: UTF8.self)
        for (from, to, path) in [
            (#""multiplier": 1.2"#, #""multiplier": 0.8"#, "tiers.levels[1].multiplier"),
            (#""qualifyingSpendMinor": 500000"#, #""qualifyingSpendMinor": 50000"#, "tiers.levels[2].qualifyingSpendMinor"),
            (#""qualifyingWindowDays": 365"#, #""qualifyingWindowDays": 0"#, "tiers.qualifyingWindowDays"),
        ] {
            let text = reference.replacingOccurrences(of: from, with: to)
            #expect(text != reference)
            #expect(throws: ProgramError.self) { try Program.load(json: Array(text.utf8)) }
            do { _ = try Program.load(json: Array(text.utf8)) } catch { #expect(error.path == path) }
        }
    }
}

import ReferenceProgram

enum ReferenceProgramBytes {
    static func load() throws -> [UInt8] { try ReferenceProgram.bytes() }
}
