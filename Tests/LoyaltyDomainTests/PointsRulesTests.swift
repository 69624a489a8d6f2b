import ReferenceProgram
import Testing
@testable import Basics
@testable import LoyaltyDomain

// The points rules against DOMAIN.md ("Points: earning", "Points: refunds", "Exact semantics"),
// with the reference program. Every expected number is worked out by hand from the spec's
// formulas; the comments show the arithmetic.

@Suite struct PointsRulesTests {
    // MARK: Base points

    @Test func baseWithoutLinesIsPaidOverOneHundredFloored() throws {
        let rules = try referenceRules()
        // floor(paidMinor / 100)
        let cases: [(paid: Int64, points: Int64)] = [
            (19_999, 199), (20_000, 200), (100, 1), (199, 1), (99, 0), (1, 0), (12_345, 123), (1_000_000, 10_000),
        ]
        for (paid, points) in cases {
            #expect(rules.basePoints(OrderPaid(orderID: "o", paidMinor: paid)) == points, "paidMinor \(paid)")
        }
    }

    @Test func baseWithLinesUsesCategoryMultipliers() throws {
        let rules = try referenceRules()
        func base(_ lines: [(String, Int64)], paid: Int64? = nil) -> Int64 {
            let total = lines.reduce(Int64(0)) { $0 + $1.1 }
            return rules.basePoints(OrderPaid(
                orderID: "o", paidMinor: paid ?? total, lines: lines.map { OrderLine(category: $0.0, paidMinor: $0.1) }))
        }
        #expect(base([("high-margin", 10_000)]) == 200)  // 10000 × 2.0 / 100
        #expect(base([("apparel", 10_000)]) == 100)  // other categories 1.0
        #expect(base([("", 10_000)]) == 100)
        #expect(base([("high-margin", 19_999)]) == 399)  // 39998 / 100 = 399.98
        #expect(base([("apparel", 19_999)]) == 199)
        // Mixed: (12345 × 2 + 6789 + 1) / 100 = 31480 / 100 = 314.8
        #expect(base([("high-margin", 12_345), ("apparel", 6_789), ("", 1)]) == 314)
        // The floor is taken once over the sum, not per line.
        #expect(base([("apparel", 150), ("apparel", 150)]) == 3)  // 300 / 100 (per line: 1 + 1)
        #expect(base([("high-margin", 75), ("apparel", 50)]) == 2)  // (150 + 50) / 100 (per line: 1 + 0)
        #expect(base([("high-margin", 49), ("apparel", 1)]) == 0)  // 99 / 100
        #expect(base([("high-margin", 50)]) == 1)  // 100 / 100
        // With lines the lines decide, whatever paidMinor says.
        #expect(base([("apparel", 10_000)], paid: 12_000) == 100)
        #expect(base([("high-margin", 10_000)], paid: 10_000) == 200)
    }

    @Test func baseIsExactIntegerArithmeticForLargeAmounts() throws {
        let rules = try referenceRules()
        // 9_007_199_254_740_999 = 2^53 + 7 is not a Double: a floating-point formula would round
        // it to …741_000 and give …410.
        #expect(rules.basePoints(OrderPaid(orderID: "o", paidMinor: 9_007_199_254_740_999)) == 90_071_992_547_409)
        // 2^52 × 2.0 + 7 × 1.0 = 9_007_199_254_740_999
        #expect(rules.basePoints(OrderPaid(
            orderID: "o", paidMinor: 4_503_599_627_370_503,
            lines: [OrderLine(category: "high-margin", paidMinor: 4_503_599_627_370_496), OrderLine(category: "apparel", paidMinor: 7)]))
            == 90_071_992_547_409)
        // One trillion CNY: (99_999_999_999_999 × 2 + 1) / 100 = 1_999_999_999_999.99
        #expect(rules.basePoints(OrderPaid(
            orderID: "o", paidMinor: 100_000_000_000_000,
            lines: [OrderLine(category: "high-margin", paidMinor: 99_999_999_999_999), OrderLine(category: "apparel", paidMinor: 1)]))
            == 1_999_999_999_999)
        #expect(rules.basePoints(OrderPaid(orderID: "o", paidMinor: 100_000_000_000_000)) == 1_000_000_000_000)
    }

    // MARK: Orders and pending

    @Test func orderBaseIsPendingFor168HoursThenReleased() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        let paid = m.pay("o1", 19_999, at: "2026-03-08T10:00:00+08:00")
        let earned = try #require(onlyEntry(paid))
        #expect(earned.kind == .earned)
        #expect(earned.source == "base")
        #expect(earned.orderID == "o1")
        #expect(earned.member == "m1")
        #expect(earned.sequence == 1)
        #expect(earned.time == at("2026-03-08T10:00:00+08:00"))
        #expect(earned.points == 199)
        #expect(earned.pendingDelta == 199)
        #expect(earned.availableDelta == 0)
        #expect(earned.debtDelta == 0)
        #expect(earned.balanceAfter == Balance(available: 0, pending: 199, debt: 0))
        #expect(earned.lots == [LotChange(lotID: "L1", delta: 199, expiresAt: at("2027-04-01T00:00:00+08:00"))], "a new lot says when it expires")
        // 168 hours after the order's event time.
        #expect(paid.releases == [PendingRelease(lotID: "L1", due: at("2026-03-15T10:00:00+08:00"))])

        let lot = try #require(m.lot("L1"))
        #expect(lot.pending)
        #expect(lot.source == "base")
        #expect(lot.orderID == "o1")
        #expect(lot.points == 199)
        #expect(lot.remaining == 199)
        #expect(lot.earnedAt == at("2026-03-08T10:00:00+08:00"))
        #expect(lot.availableAt == at("2026-03-15T10:00:00+08:00"))
        #expect(lot.expiresAt == at("2027-04-01T00:00:00+08:00"))
        #expect(m.balance == Balance(available: 0, pending: 199, debt: 0))
        #expect(m.acct.lifetime.earned == 199)
        #expect(m.acct.orders["o1"]?.accepted == true)
        #expect(m.acct.orders["o1"]?.components["base"]?.points == 199)

        let released = m.release("L1", at: "2026-03-15T10:00:00+08:00")
        let entry = try #require(onlyEntry(released))
        #expect(entry.kind == .released)
        #expect(entry.sequence == 2)
        #expect(entry.time == at("2026-03-15T10:00:00+08:00"))
        #expect(entry.orderID == "o1")
        #expect(entry.points == 0)
        #expect(entry.availableDelta == 199)
        #expect(entry.pendingDelta == -199)
        #expect(entry.debtDelta == 0)
        #expect(entry.balanceAfter == Balance(available: 199, pending: 0, debt: 0))
        #expect(m.lot("L1")?.pending == false)
        #expect(m.lot("L1")?.remaining == 199)
        #expect(m.balance == Balance(available: 199, pending: 0, debt: 0))
        #expect(m.acct.lifetime.earned == 199)
        m.checkInvariants()
    }

    @Test func orderTimeInAnotherOffsetIsTheSameInstant() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        // 2026-03-31T18:00Z is 2026-04-01 02:00 local; available 2026-04-07T18:00Z.
        let paid = m.pay("o1", 5_000, at: "2026-03-31T18:00:00Z")
        #expect(paid.releases == [PendingRelease(lotID: "L1", due: at("2026-04-08T02:00:00+08:00"))])
        #expect(m.lot("L1")?.expiresAt == at("2027-05-01T00:00:00+08:00"))
    }

    @Test func orderWithZeroBaseMakesNoLot() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        let paid = m.pay("o1", 99, at: "2026-03-08T10:00:00+08:00")
        #expect(paid.entries.isEmpty)
        #expect(paid.refusals.isEmpty)
        #expect(paid.releases.isEmpty)
        #expect(m.acct.lots.isEmpty)
        #expect(m.acct.lotsCreated == 0)
        #expect(m.balance == Balance())
        // The order is still an accepted order.
        #expect(m.acct.orders["o1"]?.accepted == true)
        #expect(onlyRefusal(m.pay("o1", 99, at: "2026-03-08T11:00:00+08:00"))?.reason.rawValue == "duplicate-order")
        let refund = m.refund("o1", "r1", 99, at: "2026-03-09T10:00:00+08:00")
        #expect(refund.refusals.isEmpty)
        #expect(refund.entries.isEmpty)
        #expect(m.acct.orders["o1"]?.refundedMinor == 99)
    }

    @Test func duplicateOrderIsRefusedAndChangesNothing() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 10_000, at: "2026-03-08T10:00:00+08:00")
        let before = m.account
        let again = m.pay("o1", 50_000, at: "2026-03-08T11:00:00+08:00")
        let refusal = try #require(onlyRefusal(again))
        #expect(refusal.reason.rawValue == "duplicate-order")
        #expect(refusal.subject == "order")
        #expect(refusal.orderID == "o1")
        #expect(refusal.member == "m1")
        #expect(m.account == before)
    }

    @Test func lookalikeOrderAndRefundIdsAreTwoOrdersAndTwoRefunds() throws {
        // "Café" composed and decomposed: one `String`, two ids, as the tables that keep a
        // member's older orders apart tell them, so the account must tell them too.
        let composed = "Caf\u{E9}"
        let decomposed = "Cafe\u{301}"
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        #expect(onlyEntry(m.pay(composed, 10_000, at: "2026-03-08T10:00:00+08:00"))?.points == 100)
        #expect(onlyEntry(m.pay(decomposed, 20_000, at: "2026-03-08T11:00:00+08:00"))?.points == 200, "not a duplicate of the other")
        #expect(m.acct.orders.count == 2 && m.acct.orders[decomposed]?.paidMinor == 20_000 && m.acct.orders[composed]?.paidMinor == 10_000)
        #expect(onlyEntry(m.refund(decomposed, composed, 20_000, at: "2026-03-09T10:00:00+08:00"))?.points == -200)
        #expect(onlyEntry(m.refund(composed, decomposed, 10_000, at: "2026-03-09T11:00:00+08:00"))?.points == -100, "a refund id of its own")
        #expect(onlyRefusal(m.refund(composed, decomposed, 10_000, at: "2026-03-09T12:00:00+08:00"))?.reason.rawValue == "duplicate-refund-id")
        // Stored and read back, both stay, in their bytes' order.
        let stored = m.acct.encoded()
        #expect(try PointsAccount.decode(stored) == m.acct && PointsAccount.decode(m.acct.encodedAsJSON()) == m.acct)
        #expect(m.acct.orders.sortedByID().map { Array($0.key.utf8) } == [Array(decomposed.utf8), Array(composed.utf8)])
    }

    @Test func aLookalikeOfTheMemberIsAnotherMemberToReferAndToTransferTo() throws {
        let composed = "Zo\u{E9}"
        let decomposed = "Zoe\u{301}"
        var m = PointsHarness(member: composed, rules: try referenceRules())
        let registered = m.apply(.registered(referrerID: decomposed), at: "2026-03-01T09:00:00+08:00", id: "reg")
        #expect(registered.refusals.isEmpty && registered.commands.count == 1, "a referral of another member, not a self-referral")
        m.earnAtOnce(5_000, at: "2026-03-02T10:00:00+08:00")
        let sent = m.transfer(1_000, to: decomposed, at: "2026-03-03T10:00:00+08:00")
        #expect(sent.refusals.isEmpty && sent.commands.count == 1, "\(sent.refusals.map(\.reason))")
        #expect(onlyRefusal(m.transfer(1_000, to: composed, at: "2026-03-03T11:00:00+08:00"))?.reason == .selfTransfer)
    }

    @Test func debtIsRepaidFirstFromCreditsAndReleases() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        let o1 = m.pay("o1", 10_000, at: "2026-01-10T10:00:00+08:00")  // 100 pending
        let o1Lot = try #require(o1.releases.first).lotID
        m.release(o1Lot, at: "2026-01-17T10:00:00+08:00")
        m.spend(90)  // a redemption leaves 10 of the 100
        #expect(m.balance == Balance(available: 10, pending: 0, debt: 0))

        // The refund reverses all 100: 10 from the own lot, 90 as debt.
        let refund = try #require(onlyEntry(m.refund("o1", "r1", 10_000, at: "2026-01-20T10:00:00+08:00")))
        #expect(refund.kind == .reversed)
        #expect(refund.points == -100)
        #expect(refund.availableDelta == -10)
        #expect(refund.pendingDelta == 0)
        #expect(refund.debtDelta == 90)
        #expect(refund.lots == [LotChange(lotID: o1Lot, delta: -10)])
        #expect(refund.balanceAfter == Balance(available: 0, pending: 0, debt: 90))

        // A pending credit does not repay debt (it is not available yet).
        let o2 = m.pay("o2", 5_000, at: "2026-01-21T10:00:00+08:00")
        #expect(m.balance == Balance(available: 0, pending: 50, debt: 90))

        // A credit available at once repays debt first.
        let checkIn = try #require(onlyEntry(m.apply(.checkedIn, at: "2026-01-22T10:00:00+08:00")))
        #expect(checkIn.points == 1)
        #expect(checkIn.availableDelta == 0)
        #expect(checkIn.debtDelta == -1)
        #expect(checkIn.balanceAfter == Balance(available: 0, pending: 50, debt: 89))
        let review = try #require(onlyEntry(m.apply(.reviewPosted, at: "2026-01-22T11:00:00+08:00")))
        #expect(review.points == 3)
        #expect(review.debtDelta == -3)
        #expect(review.balanceAfter == Balance(available: 0, pending: 50, debt: 86))
        // No available points were left by those credits, so no lot holds any.
        #expect(m.acct.lots.filter { !$0.pending }.isEmpty)

        // A release repays debt first: all 50 go to the debt.
        let o2Lot = try #require(o2.releases.first).lotID
        let release2 = try #require(onlyEntry(m.release(o2Lot, at: "2026-01-28T10:00:00+08:00")))
        #expect(release2.points == 0)
        #expect(release2.availableDelta == 0)
        #expect(release2.pendingDelta == -50)
        #expect(release2.debtDelta == -50)
        #expect(release2.balanceAfter == Balance(available: 0, pending: 0, debt: 36))
        #expect(m.lot(o2Lot) == nil)

        // A release larger than the debt: 36 repay it, 64 become available.
        let o3 = m.pay("o3", 10_000, at: "2026-01-29T10:00:00+08:00")
        let o3Lot = try #require(o3.releases.first).lotID
        let release3 = try #require(onlyEntry(m.release(o3Lot, at: "2026-02-05T10:00:00+08:00")))
        #expect(release3.availableDelta == 64)
        #expect(release3.pendingDelta == -100)
        #expect(release3.debtDelta == -36)
        #expect(release3.balanceAfter == Balance(available: 64, pending: 0, debt: 0))
        #expect(m.lot(o3Lot)?.remaining == 64)

        // With no debt left, a credit is all available.
        let share = try #require(onlyEntry(m.apply(.contentShared, at: "2026-02-05T11:00:00+08:00")))
        #expect(share.availableDelta == 5)
        #expect(share.debtDelta == 0)
        #expect(m.balance == Balance(available: 69, pending: 0, debt: 0))
        // Lifetime earned counts every credit as granted: 100 + 50 + 1 + 3 + 100 + 5.
        #expect(m.acct.lifetime.earned == 259)
        #expect(m.acct.lifetime.reversed == 100)
        for entry in m.entries {
            #expect(!(entry.balanceAfter.available > 0 && entry.balanceAfter.debt > 0))
        }
    }

    // MARK: Refunds

    @Test func refundsClawBackProportionallyAndCumulatively() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.pay("o1", 33_333, at: "2026-03-02T10:00:00+08:00")  // base 333, lot L1
        // reversedSoFar = floor(333 × refundedSoFar / 33333):
        // 10000 → 99; 20000 → 199; 33333 → 333. Refunds reverse 99, 100, 134.
        let first = try #require(onlyEntry(m.refund("o1", "r1", 10_000, at: "2026-03-03T10:00:00+08:00")))
        #expect(first.kind == .reversed)
        #expect(first.source == "base")
        #expect(first.orderID == "o1")
        #expect(first.refundID == "r1")
        #expect(first.points == -99)
        #expect(first.pendingDelta == -99)  // from the own lot, still pending
        #expect(first.availableDelta == 0)
        #expect(first.lots == [LotChange(lotID: "L1", delta: -99)])
        #expect(first.balanceAfter == Balance(available: 0, pending: 234, debt: 0))

        m.release("L1", at: "2026-03-09T10:00:00+08:00")
        #expect(m.balance == Balance(available: 234, pending: 0, debt: 0))

        let second = try #require(onlyEntry(m.refund("o1", "r2", 10_000, at: "2026-03-10T10:00:00+08:00")))
        #expect(second.points == -100)
        #expect(second.availableDelta == -100)  // from the own lot, now available
        #expect(second.lots == [LotChange(lotID: "L1", delta: -100)])
        #expect(second.balanceAfter == Balance(available: 134, pending: 0, debt: 0))

        let third = try #require(onlyEntry(m.refund("o1", "r3", 13_333, at: "2026-03-11T10:00:00+08:00")))
        #expect(third.points == -134)
        #expect(third.balanceAfter == Balance())
        #expect(m.lot("L1") == nil)

        // The refunds add up to the order, and the reversals to the component exactly.
        #expect(-(first.points + second.points + third.points) == 333)
        #expect(m.acct.orders["o1"]?.refundedMinor == 33_333)
        #expect(m.acct.orders["o1"]?.components["base"]?.reversed == 333)
        #expect(m.acct.lifetime.earned == 333)
        #expect(m.acct.lifetime.reversed == 333)
        #expect(onlyRefusal(m.refund("o1", "r4", 1, at: "2026-03-12T10:00:00+08:00"))?.reason.rawValue == "refund-exceeds-order")
    }

    @Test func smallRefundsAccumulateBeforeTheyReverseAPoint() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 33_333, at: "2026-03-02T10:00:00+08:00")  // base 333
        // floor(333 × 50 / 33333) = 0; floor(333 × 100 / 33333) = 0; floor(333 × 101 / 33333) = 1.
        let a = m.refund("o1", "r1", 50, at: "2026-03-03T10:00:00+08:00")
        #expect(a.entries.isEmpty)
        #expect(a.refusals.isEmpty)
        let b = m.refund("o1", "r2", 50, at: "2026-03-03T11:00:00+08:00")
        #expect(b.entries.isEmpty)
        #expect(b.refusals.isEmpty)
        let c = try #require(onlyEntry(m.refund("o1", "r3", 1, at: "2026-03-03T12:00:00+08:00")))
        #expect(c.points == -1)
        #expect(m.balance == Balance(available: 0, pending: 332, debt: 0))
        // The rest of the order reverses the rest of the component: floor(333 × 33333 / 33333) − 1 = 332.
        let rest = try #require(onlyEntry(m.refund("o1", "r4", 33_232, at: "2026-03-04T10:00:00+08:00")))
        #expect(rest.points == -332)
        #expect(m.balance == Balance())
    }

    @Test func bonusOwnersReverseTheirOwnComponentsProportionally() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        let time = "2026-03-18T10:00:00+08:00"
        m.pay("o1", 33_333, at: time)  // base 333
        m.grant(.tierBonus, 66, order: "o1", at: time)  // Growth: floor(333 × 0.2) = 66
        m.grant(.campaignBonus, 333, order: "o1", campaign: "member-day", at: time)  // floor(333 × (2 − 1))
        #expect(m.balance == Balance(available: 0, pending: 732, debt: 0))
        // Tier bonus: floor(66 × 10000/33333) = 19, floor(66 × 20000/33333) = 39, 66 → 19, 20, 27.
        // Campaign bonus: as the base, 99, 100, 134.
        let refunds: [(id: String, amount: Int64, base: Int64, tier: Int64, campaign: Int64)] = [
            ("r1", 10_000, 99, 19, 99), ("r2", 10_000, 100, 20, 100), ("r3", 13_333, 134, 27, 134),
        ]
        for (index, refund) in refunds.enumerated() {
            let when = "2026-03-2\(index)T12:00:00+08:00"
            // The points service reverses only the base; the bonus owners send their reversals.
            let decision = m.refund("o1", refund.id, refund.amount, at: when)
            let base = try #require(onlyEntry(decision))
            #expect(base.source == "base")
            #expect(base.points == -refund.base)
            let tier = try #require(onlyEntry(m.reverse(.tierBonus, refund.tier, order: "o1", refund: refund.id, at: when)))
            #expect(tier.source == "tier-bonus")
            #expect(tier.kind == .reversed)
            #expect(tier.refundID == refund.id)
            #expect(tier.points == -refund.tier)
            let campaign = try #require(onlyEntry(m.reverse(.campaignBonus, refund.campaign, order: "o1", refund: refund.id, at: when)))
            #expect(campaign.source == "campaign-bonus")
            #expect(campaign.points == -refund.campaign)
        }
        #expect(m.balance == Balance())
        #expect(m.acct.lots.isEmpty)
        #expect(m.acct.lifetime.earned == 732)
        #expect(m.acct.lifetime.reversed == 732)
        #expect(m.acct.orders["o1"]?.components["tier-bonus"]?.reversed == 66)
        #expect(m.acct.orders["o1"]?.components["campaign-bonus"]?.reversed == 333)
    }

    @Test func refundTakesOwnLotThenSoonestExpiringAvailableLotsThenDebt() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 10_000, at: "2026-01-10T10:00:00+08:00")  // L1: 100, available 01-17 → expires 2027-02-01
        m.release("L1", at: "2026-01-17T10:00:00+08:00")
        m.pay("o2", 3_000, at: "2026-01-26T10:00:00+08:00")  // L2: 30, available 02-02 → expires 2027-03-01
        m.apply(.reviewPosted, at: "2026-01-27T10:00:00+08:00")  // L3: 3, expires 2027-02-01
        m.apply(.contentShared, at: "2026-01-27T11:00:00+08:00")  // L4: 5, expires 2027-02-01
        m.release("L2", at: "2026-02-02T10:00:00+08:00")
        #expect(m.lot("L1")?.expiresAt == at("2027-02-01T00:00:00+08:00"))
        #expect(m.lot("L2")?.expiresAt == at("2027-03-01T00:00:00+08:00"))
        #expect(m.lot("L3")?.expiresAt == at("2027-02-01T00:00:00+08:00"))
        #expect(m.lot("L4")?.expiresAt == at("2027-02-01T00:00:00+08:00"))
        #expect(m.balance == Balance(available: 138, pending: 0, debt: 0))
        m.spend(90)  // a redemption takes 90 of L1 (soonest expiring, first created)
        #expect(m.lot("L1")?.remaining == 10)
        m.pay("o3", 10_000, at: "2026-02-03T09:00:00+08:00")  // L5: 100 pending; never taken for another component
        #expect(m.balance == Balance(available: 48, pending: 100, debt: 0))

        // Reverse 100 of o1: own lot L1 (10), then available lots by (expiry, creation):
        // L3 (2027-02-01, #3) 3, L4 (2027-02-01, #4) 5, L2 (2027-03-01, #2) 30; the last 52 as debt.
        let entry = try #require(onlyEntry(m.refund("o1", "r1", 10_000, at: "2026-02-03T10:00:00+08:00")))
        #expect(entry.points == -100)
        #expect(entry.lots == [
            LotChange(lotID: "L1", delta: -10), LotChange(lotID: "L3", delta: -3), LotChange(lotID: "L4", delta: -5),
            LotChange(lotID: "L2", delta: -30),
        ])
        #expect(entry.availableDelta == -48)
        #expect(entry.pendingDelta == 0)
        #expect(entry.debtDelta == 52)
        #expect(entry.balanceAfter == Balance(available: 0, pending: 100, debt: 52))
        #expect(m.acct.lots.map(\.id) == ["L5"])
        #expect(m.lot("L5")?.remaining == 100)
        #expect(m.acct.lifetime.reversed == 100)
    }

    @Test func refundTakesItsOwnPendingLotBeforeOtherAvailableLots() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.apply(.checkedIn, at: "2026-03-02T08:00:00+08:00")  // L1: 1 available
        m.pay("o1", 10_000, at: "2026-03-02T10:00:00+08:00")  // L2: 100 pending
        let entry = try #require(onlyEntry(m.refund("o1", "r1", 5_000, at: "2026-03-03T10:00:00+08:00")))
        #expect(entry.points == -50)
        #expect(entry.lots == [LotChange(lotID: "L2", delta: -50)])
        #expect(entry.pendingDelta == -50)
        #expect(entry.availableDelta == 0)
        #expect(m.balance == Balance(available: 1, pending: 50, debt: 0))
    }

    @Test func refundRefusalsFollowTheOrderOfChecks() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 10_000, at: "2026-03-02T10:00:00+08:00")
        m.pay("o2", 10_000, at: "2026-03-02T11:00:00+08:00")
        #expect(onlyEntry(m.refund("o1", "r1", 4_000, at: "2026-03-03T10:00:00+08:00"))?.points == -40)
        let before = try #require(m.account)

        func refused(_ order: String, _ refund: String, _ amount: Int64?, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
            let decision = m.refund(order, refund, amount, at: "2026-03-04T10:00:00+08:00")
            guard let refusal = onlyRefusal(decision, sourceLocation: sourceLocation) else { return nil }
            #expect(refusal.subject == "refund", sourceLocation: sourceLocation)
            #expect(refusal.member == "m1", sourceLocation: sourceLocation)
            #expect(refusal.orderID == order, sourceLocation: sourceLocation)
            #expect(refusal.refundID == refund, sourceLocation: sourceLocation)
            #expect(m.account == before, "a refused refund changes nothing", sourceLocation: sourceLocation)
            return refusal.reason.rawValue
        }
        // duplicate-refund-id comes first: it wins over an unknown order, an invalid amount, too much.
        #expect(refused("o1", "r1", 1_000) == "duplicate-refund-id")
        #expect(refused("o2", "r1", 1_000) == "duplicate-refund-id")  // refund ids are the member's, not the order's
        #expect(refused("o9", "r1", nil) == "duplicate-refund-id")
        #expect(refused("o1", "r1", 999_999) == "duplicate-refund-id")
        // unknown-order wins over an invalid amount and over too much.
        #expect(refused("o9", "r2", nil) == "unknown-order")
        #expect(refused("o9", "r2", 0) == "unknown-order")
        #expect(refused("o9", "r2", 999_999) == "unknown-order")
        // invalid-amount (not a positive integer) wins over too much.
        #expect(refused("o1", "r2", nil) == "invalid-amount")
        #expect(refused("o1", "r2", 0) == "invalid-amount")
        #expect(refused("o1", "r2", -100) == "invalid-amount")
        #expect(refused("o1", "r2", -999_999) == "invalid-amount")
        // refund-exceeds-order: 6000 of o1's 10000 are left.
        #expect(refused("o1", "r2", 6_001) == "refund-exceeds-order")
        #expect(refused("o2", "r2", 10_001) == "refund-exceeds-order")

        #expect(onlyEntry(m.refund("o1", "r2", 6_000, at: "2026-03-05T10:00:00+08:00"))?.points == -60)
        #expect(onlyRefusal(m.refund("o1", "r3", 1, at: "2026-03-05T11:00:00+08:00"))?.reason.rawValue == "refund-exceeds-order")
    }

    @Test func aRefusedRefundDoesNotUseUpItsID() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 10_000, at: "2026-03-02T10:00:00+08:00")
        #expect(onlyRefusal(m.refund("o1", "r1", 0, at: "2026-03-03T10:00:00+08:00"))?.reason.rawValue == "invalid-amount")
        #expect(onlyRefusal(m.refund("o9", "r1", 100, at: "2026-03-03T10:01:00+08:00"))?.reason.rawValue == "unknown-order")
        #expect(onlyRefusal(m.refund("o1", "r1", 20_000, at: "2026-03-03T10:02:00+08:00"))?.reason.rawValue == "refund-exceeds-order")
        #expect(!m.acct.acceptedRefundIDs.contains("r1"))
        #expect(onlyEntry(m.refund("o1", "r1", 2_500, at: "2026-03-03T10:03:00+08:00"))?.points == -25)
        #expect(onlyRefusal(m.refund("o1", "r1", 2_500, at: "2026-03-03T10:04:00+08:00"))?.reason.rawValue == "duplicate-refund-id")
        #expect(m.acct.orders["o1"]?.refundedMinor == 2_500)
    }

    @Test func refundOfAnOrderKnownOnlyFromAGrantIsUnknownOrder() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.grant(.tierBonus, 30, order: "o7", at: "2026-03-02T10:00:00+08:00")
        let before = m.account
        #expect(onlyRefusal(m.refund("o7", "r1", 100, at: "2026-03-03T10:00:00+08:00"))?.reason.rawValue == "unknown-order")
        #expect(m.account == before)
    }

    // MARK: Grants and reversals

    @Test func orderBonusGrantsArePendingWithTheOrder() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.pay("o1", 20_000, at: "2026-03-08T10:00:00+08:00")  // L1: base 200
        // The tier bonus carries the order's event time, so it is pending until the same instant.
        let tier = m.grant(.tierBonus, 40, order: "o1", at: "2026-03-08T10:00:00+08:00")
        let tierEntry = try #require(onlyEntry(tier))
        #expect(tierEntry.kind == .earned)
        #expect(tierEntry.source == "tier-bonus")
        #expect(tierEntry.orderID == "o1")
        #expect(tierEntry.points == 40)
        #expect(tierEntry.pendingDelta == 40)
        #expect(tierEntry.availableDelta == 0)
        #expect(tier.releases == [PendingRelease(lotID: "L2", due: at("2026-03-15T10:00:00+08:00"))])
        #expect(m.lot("L2")?.availableAt == m.lot("L1")?.availableAt)
        #expect(m.lot("L2")?.pending == true)
        #expect(m.lot("L2")?.expiresAt == at("2027-04-01T00:00:00+08:00"))

        // A grant's own event time decides: 10:05 → available 2026-03-15 10:05.
        let campaign = m.grant(.campaignBonus, 200, order: "o1", campaign: "member-day", at: "2026-03-08T10:05:00+08:00")
        let campaignEntry = try #require(onlyEntry(campaign))
        #expect(campaignEntry.source == "campaign-bonus")
        #expect(campaignEntry.pendingDelta == 200)
        #expect(campaignEntry.details.map(\.key) == ["campaign"])
        #expect(campaignEntry.details.map(\.value) == ["member-day"])
        #expect(campaign.releases == [PendingRelease(lotID: "L3", due: at("2026-03-15T10:05:00+08:00"))])
        #expect(m.balance == Balance(available: 0, pending: 440, debt: 0))
        #expect(m.acct.lifetime.earned == 440)
        let order = try #require(m.acct.orders["o1"])
        #expect(order.components["base"]?.points == 200)
        #expect(order.components["tier-bonus"]?.points == 40)
        #expect(order.components["campaign-bonus"]?.points == 200)

        m.releaseDue(upTo: at("2026-03-15T10:05:00+08:00"))
        #expect(m.balance == Balance(available: 440, pending: 0, debt: 0))
    }

    @Test func duplicateComponentIsRefused() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 20_000, at: "2026-03-08T10:00:00+08:00")
        m.grant(.tierBonus, 40, order: "o1", at: "2026-03-08T10:00:00+08:00")
        let before = m.account
        let again = try #require(onlyRefusal(m.grant(.tierBonus, 41, order: "o1", at: "2026-03-08T10:00:00+08:00")))
        #expect(again.reason.rawValue == "duplicate-component")
        #expect(again.subject == "tier-bonus")
        #expect(again.orderID == "o1")
        #expect(m.account == before)
        // Another component of the same order is still welcome.
        #expect(onlyEntry(m.grant(.campaignBonus, 200, order: "o1", at: "2026-03-08T10:00:00+08:00"))?.points == 200)
        #expect(onlyRefusal(m.grant(.campaignBonus, 200, order: "o1", at: "2026-03-08T10:00:00+08:00"))?.reason.rawValue == "duplicate-component")
    }

    @Test func campaignRewardWithoutOrderIsAvailableAtOnce() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        let decision = m.grant(.campaignReward, 100, campaign: "birthday", at: "2026-05-20T00:00:00+08:00")
        let entry = try #require(onlyEntry(decision))
        #expect(decision.releases.isEmpty)
        #expect(entry.kind == .earned)
        #expect(entry.source == "campaign-reward")
        #expect(entry.orderID == nil)
        #expect(entry.availableDelta == 100)
        #expect(entry.pendingDelta == 0)
        #expect(entry.details.map(\.value) == ["birthday"])
        let lot = try #require(m.lot("L1"))
        #expect(!lot.pending)
        #expect(lot.availableAt == at("2026-05-20T00:00:00+08:00"))
        #expect(lot.expiresAt == at("2027-06-01T00:00:00+08:00"))
        #expect(m.balance == Balance(available: 100, pending: 0, debt: 0))
        #expect(m.acct.lifetime.earned == 100)
    }

    @Test func grantBeforeItsOrderIsKeptAndTheOrderStillEarnsItsBase() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        // The tier bonus arrives first (another service, another topic).
        let grant = try #require(onlyEntry(m.grant(.tierBonus, 30, order: "o5", at: "2026-03-08T10:00:00+08:00")))
        #expect(grant.pendingDelta == 30)
        let paid = m.pay("o5", 15_000, at: "2026-03-08T10:00:00+08:00")
        let base = try #require(onlyEntry(paid))
        #expect(base.source == "base")
        #expect(base.points == 150)
        #expect(m.balance == Balance(available: 0, pending: 180, debt: 0))
        let order = try #require(m.acct.orders["o5"])
        #expect(order.accepted)
        #expect(order.paidMinor == 15_000)
        #expect(order.components["base"]?.points == 150)
        #expect(order.components["tier-bonus"]?.points == 30)
        // Now the order is known: a second order.paid is a duplicate, and refunds work.
        #expect(onlyRefusal(m.pay("o5", 15_000, at: "2026-03-08T11:00:00+08:00"))?.reason.rawValue == "duplicate-order")
        #expect(onlyEntry(m.refund("o5", "r1", 5_000, at: "2026-03-09T10:00:00+08:00"))?.points == -50)  // floor(150 × 5000/15000)
        #expect(onlyEntry(m.reverse(.tierBonus, 10, order: "o5", refund: "r1", at: "2026-03-09T10:00:00+08:00"))?.points == -10)
        #expect(m.balance == Balance(available: 0, pending: 120, debt: 0))
    }

    @Test func reversalsReduceTheOwnLotFirstAndAreBounded() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.pay("o1", 20_000, at: "2026-03-02T10:00:00+08:00")  // L1: 200 pending
        m.grant(.tierBonus, 40, order: "o1", at: "2026-03-02T10:00:00+08:00")  // L2: 40 pending
        m.apply(.checkedIn, at: "2026-03-03T10:00:00+08:00")  // L3: 1 available
        m.refund("o1", "r1", 10_000, at: "2026-03-04T10:00:00+08:00")  // base: 100 back from L1

        let first = try #require(onlyEntry(m.reverse(.tierBonus, 20, order: "o1", refund: "r1", at: "2026-03-04T10:00:00+08:00")))
        #expect(first.kind == .reversed)
        #expect(first.source == "tier-bonus")
        #expect(first.orderID == "o1")
        #expect(first.refundID == "r1")
        #expect(first.points == -20)
        #expect(first.lots == [LotChange(lotID: "L2", delta: -20)])
        #expect(first.pendingDelta == -20)
        #expect(first.availableDelta == 0)
        #expect(m.balance == Balance(available: 1, pending: 120, debt: 0))

        let before = m.account
        func refusedReversal(_ component: GrantComponent, _ points: Int64, order: String, sourceLocation: SourceLocation = #_sourceLocation) -> Refusal? {
            let refusal = onlyRefusal(m.reverse(component, points, order: order, refund: "r2", at: "2026-03-05T10:00:00+08:00"), sourceLocation: sourceLocation)
            #expect(m.account == before, sourceLocation: sourceLocation)
            return refusal
        }
        // 20 of the 40 are left.
        let exceeds = try #require(refusedReversal(.tierBonus, 21, order: "o1"))
        #expect(exceeds.reason.rawValue == "reversal-exceeds-component")
        #expect(exceeds.subject == "tier-bonus")
        #expect(exceeds.orderID == "o1")
        #expect(exceeds.refundID == "r2")
        #expect(refusedReversal(.campaignBonus, 1, order: "o1")?.reason.rawValue == "unknown-component")  // the order has no campaign bonus
        #expect(refusedReversal(.tierBonus, 1, order: "o9")?.reason.rawValue == "unknown-component")  // unknown order

        m.releaseDue(upTo: at("2026-03-09T10:00:00+08:00"))
        #expect(m.balance == Balance(available: 121, pending: 0, debt: 0))
        // Released, L1 (#1) and L2 (#2) expire together; the reversal still takes its own lot L2.
        let second = try #require(onlyEntry(m.reverse(.tierBonus, 20, order: "o1", refund: "r2", at: "2026-03-10T10:00:00+08:00")))
        #expect(second.lots == [LotChange(lotID: "L2", delta: -20)])
        #expect(second.availableDelta == -20)
        #expect(m.balance == Balance(available: 101, pending: 0, debt: 0))
        #expect(onlyRefusal(m.reverse(.tierBonus, 1, order: "o1", refund: "r3", at: "2026-03-10T11:00:00+08:00"))?.reason.rawValue
            == "reversal-exceeds-component")
        #expect(m.acct.lifetime.reversed == 140)
    }

    // MARK: Check-ins

    @Test func checkInStreakEarnsTwoFromTheSeventhDayAndResetsAfterAMissedDay() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        func checkIn(_ day: Int) -> LedgerEntry? {
            let text = day < 10 ? "0\(day)" : "\(day)"
            return onlyEntry(m.apply(.checkedIn, at: "2026-03-\(text)T08:00:00+08:00"))
        }
        // 03-02 … 03-09: streak days 1 … 8.
        var points: [Int64] = []
        var streak: [String] = []
        for day in 2...9 {
            let entry = checkIn(day)
            points.append(entry?.points ?? -1)
            streak.append(entry?.details.first { $0.key == "streakDay" }?.value ?? "?")
            #expect(entry?.source == "check-in")
            #expect(entry?.availableDelta == entry?.points)
        }
        #expect(points == [1, 1, 1, 1, 1, 1, 2, 2])
        #expect(streak == ["1", "2", "3", "4", "5", "6", "7", "8"])
        // 03-10 missed: 03-11 starts again at 1; day 7 of the new streak (03-17) earns 2 again.
        var after: [Int64] = []
        for day in 11...18 { after.append(checkIn(day)?.points ?? -1) }
        #expect(after == [1, 1, 1, 1, 1, 1, 2, 2])
        #expect(m.balance == Balance(available: 20, pending: 0, debt: 0))
        #expect(m.acct.streakLength == 8)
    }

    @Test func secondCheckInOnTheSameLocalDayIsRefusedAndLeavesTheStreakAlone() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        #expect(onlyEntry(m.apply(.checkedIn, at: "2026-03-13T12:00:00Z"))?.points == 1)  // 03-13 20:00 local, day 1
        #expect(onlyEntry(m.apply(.checkedIn, at: "2026-03-14T15:59:59Z"))?.points == 1)  // 03-14 23:59:59 local, day 2
        // 16:00Z on 03-14 is already 03-15 in Asia/Shanghai: a new day, day 3 of the streak.
        let third = try #require(onlyEntry(m.apply(.checkedIn, at: "2026-03-14T16:00:00Z")))
        #expect(third.details.first { $0.key == "streakDay" }?.value == "3")
        let before = m.account
        for time in ["2026-03-15T15:30:00Z", "2026-03-15T10:00:00+08:00", "2026-03-15T23:59:59+08:00"] {
            let refusal = try #require(onlyRefusal(m.apply(.checkedIn, at: time)))
            #expect(refusal.reason.rawValue == "already-checked-in-today")
            #expect(refusal.subject == "check-in")
            #expect(refusal.member == "m1")
            #expect(m.account == before)
        }
        #expect(m.acct.streakLength == 3)
        // The streak carries on the next day.
        let fourth = try #require(onlyEntry(m.apply(.checkedIn, at: "2026-03-16T00:00:00+08:00")))
        #expect(fourth.details.first { $0.key == "streakDay" }?.value == "4")
        #expect(m.balance.available == 4)
    }

    // MARK: Reviews, shares, tasks

    @Test func reviewsEarnThreeUpToFiveALocalDay() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        #expect(onlyEntry(m.apply(.reviewPosted, at: "2026-03-14T15:59:59Z"))?.points == 3)  // 03-14 local
        // Five on 03-15 local, the first at 16:00Z on 03-14.
        for time in ["2026-03-14T16:00:00Z", "2026-03-15T09:00:00+08:00", "2026-03-15T10:00:00+08:00",
                     "2026-03-15T11:00:00+08:00", "2026-03-15T12:00:00+08:00"] {
            let entry = try #require(onlyEntry(m.apply(.reviewPosted, at: time)))
            #expect(entry.points == 3)
            #expect(entry.source == "review")
        }
        let before = m.account
        let sixth = try #require(onlyRefusal(m.apply(.reviewPosted, at: "2026-03-15T23:59:59+08:00")))
        #expect(sixth.reason.rawValue == "review-daily-cap")
        #expect(sixth.subject == "review")
        #expect(m.account == before)
        #expect(onlyEntry(m.apply(.reviewPosted, at: "2026-03-15T16:00:00Z"))?.points == 3)  // 03-16 local
        #expect(m.balance.available == 21)  // 7 rewarded × 3
    }

    @Test func sharesEarnFiveUpToThreeALocalDay() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        for hour in ["09", "10", "11"] {
            let entry = try #require(onlyEntry(m.apply(.contentShared, at: "2026-03-15T\(hour):00:00+08:00")))
            #expect(entry.points == 5)
            #expect(entry.source == "share")
        }
        let before = m.account
        let fourth = try #require(onlyRefusal(m.apply(.contentShared, at: "2026-03-15T15:59:59Z")))
        #expect(fourth.reason.rawValue == "share-daily-cap")
        #expect(fourth.subject == "share")
        #expect(m.account == before)
        #expect(onlyEntry(m.apply(.contentShared, at: "2026-03-15T16:00:00Z"))?.points == 5)  // 03-16 local
        #expect(m.balance.available == 20)
    }

    @Test func tasksHaveTheirLimits() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        func task(_ name: String, _ time: String) -> PointsDecision { m.apply(.taskCompleted(task: name), at: time) }
        func refused(_ name: String, _ time: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
            let before = m.account
            let refusal = onlyRefusal(task(name, time), sourceLocation: sourceLocation)
            #expect(refusal?.subject == "task", sourceLocation: sourceLocation)
            #expect(m.account == before, sourceLocation: sourceLocation)
            return refusal?.reason.rawValue
        }

        let newcomer = try #require(onlyEntry(task("newcomer", "2026-03-02T10:00:00+08:00")))
        #expect(newcomer.points == 50)
        #expect(newcomer.source == "task")
        #expect(newcomer.details.first { $0.key == "task" }?.value == "newcomer")
        #expect(refused("newcomer", "2026-03-02T11:00:00+08:00") == "task-already-done")
        #expect(refused("newcomer", "2027-06-01T10:00:00+08:00") == "task-already-done")

        // member-day: once a calendar month, on any day of it.
        #expect(onlyEntry(task("member-day", "2026-03-18T10:00:00+08:00"))?.points == 100)
        #expect(refused("member-day", "2026-03-25T10:00:00+08:00") == "task-monthly-cap")
        #expect(refused("member-day", "2026-03-31T15:59:59Z") == "task-monthly-cap")  // 03-31 23:59:59 local
        #expect(onlyEntry(task("member-day", "2026-03-31T16:00:00Z"))?.points == 100)  // 04-01 local
        #expect(refused("member-day", "2026-04-18T10:00:00+08:00") == "task-monthly-cap")

        // browse-5: once a calendar day.
        #expect(onlyEntry(task("browse-5", "2026-04-05T09:00:00+08:00"))?.points == 10)
        #expect(refused("browse-5", "2026-04-05T21:00:00+08:00") == "task-daily-cap")
        #expect(refused("browse-5", "2026-04-05T15:59:59Z") == "task-daily-cap")
        #expect(onlyEntry(task("browse-5", "2026-04-05T16:00:00Z"))?.points == 10)  // 04-06 local

        #expect(refused("fly-to-the-moon", "2026-04-07T10:00:00+08:00") == "unknown-task")
        #expect(m.balance.available == 270)  // 50 + 100 + 100 + 10 + 10
    }

    // MARK: Late (out-of-order) events
    // A record can be applied after later ones (the task's idle time passed). Limits are still
    // "once a calendar day/month" and "count rewarded events per calendar day or month"
    // (DOMAIN.md, Caps): a late event counts against its own day or month.

    @Test func lateSecondCheckInForAnEarlierDayIsStillRefused() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        #expect(onlyEntry(m.apply(.checkedIn, at: "2026-03-09T08:00:00+08:00"))?.points == 1)
        #expect(onlyEntry(m.apply(.checkedIn, at: "2026-03-10T08:00:00+08:00"))?.points == 1)
        let before = m.account
        // A second check-in on 03-09, applied late: 03-09 already had its check-in.
        #expect(onlyRefusal(m.apply(.checkedIn, at: "2026-03-09T20:00:00+08:00"))?.reason.rawValue == "already-checked-in-today")
        #expect(m.account == before)
        #expect(m.balance.available == 2)
    }

    @Test func lateReviewsAndSharesCountAgainstTheirOwnDay() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        for minute in 0..<5 { m.apply(.reviewPosted, at: "2026-03-15T10:0\(minute):00+08:00") }
        for minute in 0..<3 { m.apply(.contentShared, at: "2026-03-15T11:0\(minute):00+08:00") }
        m.apply(.reviewPosted, at: "2026-03-16T10:00:00+08:00")
        m.apply(.contentShared, at: "2026-03-16T11:00:00+08:00")
        #expect(m.balance.available == 6 * 3 + 4 * 5)
        // A sixth review and a fourth share of 03-15, applied late.
        #expect(onlyRefusal(m.apply(.reviewPosted, at: "2026-03-15T22:00:00+08:00"))?.reason.rawValue == "review-daily-cap")
        #expect(onlyRefusal(m.apply(.contentShared, at: "2026-03-15T22:00:00+08:00"))?.reason.rawValue == "share-daily-cap")
        #expect(m.balance.available == 38)
    }

    @Test func lateTasksCountAgainstTheirOwnDayOrMonth() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.apply(.taskCompleted(task: "member-day"), at: "2026-03-18T10:00:00+08:00")
        m.apply(.taskCompleted(task: "member-day"), at: "2026-04-02T10:00:00+08:00")
        m.apply(.taskCompleted(task: "browse-5"), at: "2026-04-05T10:00:00+08:00")
        m.apply(.taskCompleted(task: "browse-5"), at: "2026-04-06T10:00:00+08:00")
        #expect(m.balance.available == 220)
        // March's member day was done; 04-05's browse-5 was done.
        #expect(onlyRefusal(m.apply(.taskCompleted(task: "member-day"), at: "2026-03-25T10:00:00+08:00"))?.reason.rawValue == "task-monthly-cap")
        #expect(onlyRefusal(m.apply(.taskCompleted(task: "browse-5"), at: "2026-04-05T20:00:00+08:00"))?.reason.rawValue == "task-daily-cap")
        #expect(m.balance.available == 220)
    }

    // MARK: Referrals and registration

    @Test func registrationNamingAReferrerRewardsTheReferrer() throws {
        let rules = try referenceRules()
        var referee = PointsHarness(member: "m2", rules: rules)
        let registration = referee.apply(.registered(referrerID: "m1"), at: "2026-03-15T10:00:00+08:00", id: "reg-m2")
        #expect(registration.refusals.isEmpty)
        #expect(registration.entries.isEmpty)
        #expect(registration.commands == [.referralReward(
            referrer: "m1", reward: ReferralReward(refereeID: "m2", registrationID: "reg-m2"), time: at("2026-03-15T10:00:00+08:00"))])
        #expect(referee.account?.registeredAt == at("2026-03-15T10:00:00+08:00"))

        // The referrer's partition applies the command at the registration's time.
        var referrer = PointsHarness.registered("m1", at: "2026-03-01T09:00:00+08:00", rules: rules)
        let reward = referrer.apply(
            .referralReward(ReferralReward(refereeID: "m2", registrationID: "reg-m2")), at: "2026-03-15T10:00:00+08:00")
        let entry = try #require(onlyEntry(reward))
        #expect(entry.member == "m1")
        #expect(entry.source == "referral")
        #expect(entry.points == 10)
        #expect(entry.availableDelta == 10)
        #expect(entry.details.first { $0.key == "referee" }?.value == "m2")
        #expect(referrer.balance == Balance(available: 10, pending: 0, debt: 0))
        #expect(referrer.acct.referralsRewarded == 1)
    }

    @Test func selfReferralIsRefusedButTheRegistrationSucceeds() throws {
        var m = PointsHarness(member: "m1", rules: try referenceRules())
        let decision = m.apply(.registered(referrerID: "m1"), at: "2026-03-15T10:00:00+08:00", id: "reg-m1")
        #expect(m.account?.registeredAt == at("2026-03-15T10:00:00+08:00"))
        #expect(decision.commands.isEmpty)
        #expect(decision.entries.isEmpty)
        let refusal = try #require(decision.refusals.first)
        #expect(decision.refusals.count == 1)
        #expect(refusal.reason.rawValue == "self-referral")
        #expect(refusal.subject == "referral")
        #expect(refusal.member == "m1")
    }

    @Test func rewardForAnUnknownReferrerIsRefusedAgainstTheReferee() throws {
        let rules = try referenceRules()
        // The referrer never registered.
        var ghost = PointsHarness(member: "m9", rules: rules)
        let reward = ReferralReward(refereeID: "m2", registrationID: "reg-m2")
        let refusal = try #require(onlyRefusal(ghost.apply(.referralReward(reward), at: "2026-03-15T10:00:00+08:00")))
        #expect(refusal.reason.rawValue == "unknown-referrer")
        #expect(refusal.subject == "referral")
        #expect(refusal.member == "m2")  // listed against the registration
        #expect(refusal.causeID == "reg-m2")
        #expect(ghost.account == nil)

        // The referrer registered after the registration that named it.
        var late = PointsHarness.registered("m9", at: "2026-03-15T10:00:01+08:00", rules: rules)
        let before = late.account
        let lateRefusal = try #require(onlyRefusal(late.apply(.referralReward(reward), at: "2026-03-15T10:00:00+08:00")))
        #expect(lateRefusal.reason.rawValue == "unknown-referrer")
        #expect(lateRefusal.member == "m2")
        #expect(late.account == before)
    }

    @Test func referralsAreCappedAtFiftyPerRegistrationMonth() throws {
        var m = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        func reward(_ n: Int, _ time: EventTime) -> PointsDecision {
            m.apply(.referralReward(ReferralReward(refereeID: "r\(n)", registrationID: "reg-r\(n)")), at: time)
        }
        // 50 registrations in March local time, the first at 03-01 00:00 local (02-28 16:00Z).
        let start = at("2026-03-01T00:00:00+08:00")
        for n in 1...50 {
            #expect(onlyEntry(reward(n, start.adding(hours: Int64(n - 1) * 14)))?.points == 10, "referral \(n)")
        }
        let before = m.account
        let capped = try #require(onlyRefusal(reward(51, at("2026-03-31T23:59:59+08:00"))))
        #expect(capped.reason.rawValue == "referral-monthly-cap")
        #expect(capped.subject == "referral")
        #expect(capped.member == "r51")  // listed against the registration
        #expect(capped.causeID == "reg-r51")
        #expect(m.account == before)
        // 2026-03-31T16:00Z is 04-01 local: a new month.
        #expect(onlyEntry(reward(52, at("2026-03-31T16:00:00Z")))?.points == 10)
        #expect(m.balance.available == 510)
        #expect(m.acct.referralsRewarded == 51)
    }

    @Test func referralCapCountsTheRegistrationsMonthEvenWhenARewardArrivesLate() throws {
        // A referral reward is a command from the referee's partition and may be applied after
        // rewards of a later month; the cap is still counted by its registration's month.
        var m = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        func reward(_ n: Int, _ time: String) -> PointsDecision {
            m.apply(.referralReward(ReferralReward(refereeID: "r\(n)", registrationID: "reg-r\(n)")), at: time)
        }
        for n in 1...50 { #expect(onlyEntry(reward(n, "2026-03-20T10:00:00+08:00"))?.points == 10) }
        #expect(onlyEntry(reward(51, "2026-04-02T10:00:00+08:00"))?.points == 10)
        // A March registration whose reward comes late: the 51st rewarded referral of March.
        #expect(onlyRefusal(reward(52, "2026-03-21T10:00:00+08:00"))?.reason.rawValue == "referral-monthly-cap")
        #expect(m.balance.available == 510)
    }

    @Test func secondRegistrationIsRefused() throws {
        var m = PointsHarness.registered("m1", at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.apply(.checkedIn, at: "2026-03-02T09:00:00+08:00")
        let before = m.account
        let decision = m.apply(.registered(referrerID: "m5"), at: "2026-03-03T09:00:00+08:00")
        let refusal = try #require(onlyRefusal(decision))
        #expect(refusal.reason.rawValue == "already-registered")
        #expect(refusal.subject == "registration")
        #expect(m.account == before)
        #expect(m.acct.registeredAt == at("2026-03-01T09:00:00+08:00"))
    }

    @Test func eventsForAnUnregisteredMemberAreKept() throws {
        let rules = try referenceRules()
        let inputs: [PointsInput] = [
            .memberUpdated, .memberClosed,
            .orderPaid(OrderPaid(orderID: "o1", paidMinor: 10_000)),
            .orderRefunded(OrderRefunded(orderID: "o1", refundID: "r1", refundMinor: 100)),
            .checkedIn, .reviewPosted, .contentShared, .taskCompleted(task: "newcomer"),
            .grant(PointsGrant(component: .tierBonus, points: 10, orderID: "o1")),
            .grant(PointsGrant(component: .campaignReward, points: 10, campaignID: "birthday")),
            .reversal(PointsReversal(component: .tierBonus, points: 1, orderID: "o1", refundID: "r1")),
        ]
        for input in inputs {
            var account: PointsAccount? = nil
            let decision = rules.apply(PointsEvent(id: "e1", time: at("2026-03-15T10:00:00+08:00"), member: "m1", input: input), to: &account)
            #expect(decision.memberUnknown, "\(input)")
            #expect(decision.entries.isEmpty)
            #expect(decision.refusals.isEmpty)
            #expect(account == nil)
        }
        var account: PointsAccount? = nil
        let registration = rules.apply(
            PointsEvent(id: "e1", time: at("2026-03-15T10:00:00+08:00"), member: "m1", input: .registered(referrerID: nil)), to: &account)
        #expect(!registration.memberUnknown)
        #expect(account?.member == "m1")
    }

    // MARK: Lots

    @Test func lotExpiryIsTheFirstOfTheThirteenthMonthAfterAvailability() throws {
        let rules = try referenceRules()
        let cases: [(available: String, expires: String)] = [
            ("2026-03-15T10:00:00+08:00", "2027-04-01T00:00:00+08:00"),
            ("2026-03-01T00:00:00+08:00", "2027-04-01T00:00:00+08:00"),
            ("2026-03-31T23:59:59+08:00", "2027-04-01T00:00:00+08:00"),
            ("2026-01-01T00:00:00+08:00", "2027-02-01T00:00:00+08:00"),
            ("2026-11-30T12:00:00+08:00", "2027-12-01T00:00:00+08:00"),
            ("2026-12-31T23:30:00+08:00", "2028-01-01T00:00:00+08:00"),
            // Local months decide: 16:30Z on 03-31 is 04-01 00:30 local.
            ("2026-03-31T16:30:00Z", "2027-05-01T00:00:00+08:00"),
            ("2026-03-31T15:59:59Z", "2027-04-01T00:00:00+08:00"),
            ("2026-12-31T16:00:00Z", "2028-02-01T00:00:00+08:00"),
        ]
        for (available, expires) in cases {
            #expect(rules.expiry(availableAt: at(available)) == at(expires), "available \(available)")
        }
        #expect(at("2027-04-01T00:00:00+08:00") == at("2027-03-31T16:00:00Z"))
    }

    @Test func lotsCarryTheirExpiry() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.apply(.reviewPosted, at: "2026-12-31T23:30:00+08:00")  // L1
        m.apply(.contentShared, at: "2026-03-31T16:30:00Z")  // L2: 04-01 local
        m.pay("o1", 10_000, at: "2026-03-25T10:00:00+08:00")  // L3: available 04-01 10:00 local
        m.apply(.checkedIn, at: "2026-03-15T10:00:00+08:00")  // L4
        #expect(m.lot("L1")?.expiresAt == at("2028-01-01T00:00:00+08:00"))
        #expect(m.lot("L2")?.expiresAt == at("2027-05-01T00:00:00+08:00"))
        #expect(m.lot("L3")?.availableAt == at("2026-04-01T10:00:00+08:00"))
        #expect(m.lot("L3")?.expiresAt == at("2027-05-01T00:00:00+08:00"))
        #expect(m.lot("L4")?.expiresAt == at("2027-04-01T00:00:00+08:00"))
    }

    // MARK: Invariants

    @Test func invariantsHoldThroughALongMixedScenario() throws {
        var m = PointsHarness.registered("m1", at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        // o1: (10000 × 2.0 + 15000 × 1.0) / 100 = 350; tier bonus (Growth) floor(350 × 0.2) = 70.
        m.pay("o1", 25_000, at: "2026-03-02T10:00:00+08:00",
              lines: [OrderLine(category: "high-margin", paidMinor: 10_000), OrderLine(category: "apparel", paidMinor: 15_000)])
        m.grant(.tierBonus, 70, order: "o1", at: "2026-03-02T10:00:00+08:00")
        m.apply(.checkedIn, at: "2026-03-02T20:00:00+08:00")  // 1
        m.apply(.reviewPosted, at: "2026-03-02T21:00:00+08:00")  // 3
        m.apply(.contentShared, at: "2026-03-03T09:00:00+08:00")  // 5
        m.apply(.taskCompleted(task: "newcomer"), at: "2026-03-03T10:00:00+08:00")  // 50
        // Refund 5000 of 25000: base floor(350 × 5000/25000) = 70; tier floor(70 × 5000/25000) = 14.
        #expect(onlyEntry(m.refund("o1", "rf1", 5_000, at: "2026-03-04T10:00:00+08:00"))?.points == -70)
        m.reverse(.tierBonus, 14, order: "o1", refund: "rf1", at: "2026-03-04T10:00:00+08:00")
        m.apply(.checkedIn, at: "2026-03-04T20:00:00+08:00")  // 1 (03-03 missed)
        m.apply(.referralReward(ReferralReward(refereeID: "m7", registrationID: "reg-m7")), at: "2026-03-05T10:00:00+08:00")  // 10
        m.pay("o2", 9_999, at: "2026-03-06T10:00:00+08:00")  // 99
        m.grant(.campaignBonus, 396, order: "o2", campaign: "first-order", at: "2026-03-06T10:00:00+08:00")  // floor(99 × 4)
        #expect(onlyRefusal(m.pay("o2", 9_999, at: "2026-03-06T11:00:00+08:00"))?.reason.rawValue == "duplicate-order")
        #expect(onlyRefusal(m.refund("o2", "rf2", 0, at: "2026-03-06T12:00:00+08:00"))?.reason.rawValue == "invalid-amount")
        m.releaseDue(upTo: at("2026-03-09T10:00:00+08:00"))  // o1's base (280 left) and tier bonus (56 left)
        #expect(m.balance == Balance(available: 70 + 336, pending: 495, debt: 0))
        // The rest of o1: base 350 − 70 = 280; tier 70 − 14 = 56.
        #expect(onlyEntry(m.refund("o1", "rf3", 20_000, at: "2026-03-10T10:00:00+08:00"))?.points == -280)
        m.reverse(.tierBonus, 56, order: "o1", refund: "rf3", at: "2026-03-10T10:00:00+08:00")
        #expect(onlyRefusal(m.refund("o1", "rf4", 1, at: "2026-03-10T11:00:00+08:00"))?.reason.rawValue == "refund-exceeds-order")
        m.grant(.campaignReward, 200, campaign: "referral-5", at: "2026-03-11T10:00:00+08:00")
        for minute in 0..<6 {
            m.apply(.reviewPosted, at: "2026-03-12T10:0\(minute):00+08:00")  // 5 × 3, the 6th refused
        }
        m.releaseDue(upTo: at("2026-03-13T10:00:00+08:00"))  // o2's base 99 and campaign bonus 396
        // Refund 5000 of 9999: base floor(99 × 5000/9999) = 49; campaign floor(396 × 5000/9999) = 198.
        #expect(onlyEntry(m.refund("o2", "rf5", 5_000, at: "2026-03-14T10:00:00+08:00"))?.points == -49)
        m.reverse(.campaignBonus, 198, order: "o2", refund: "rf5", at: "2026-03-14T10:00:00+08:00")
        m.apply(.taskCompleted(task: "browse-5"), at: "2026-03-14T11:00:00+08:00")  // 10
        m.apply(.taskCompleted(task: "browse-5"), at: "2026-03-14T12:00:00+08:00")  // refused
        for hour in 13...16 { m.apply(.contentShared, at: "2026-03-14T\(hour):00:00+08:00") }  // 3 × 5, the 4th refused

        // Earned: 350 + 70 + 1 + 3 + 5 + 50 + 1 + 10 + 99 + 396 + 200 + 15 + 10 + 15 = 1225.
        // Reversed: 70 + 14 + 280 + 56 + 49 + 198 = 667.
        #expect(m.acct.lifetime.earned == 1_225)
        #expect(m.acct.lifetime.reversed == 667)
        #expect(m.balance == Balance(available: 558, pending: 0, debt: 0))
        #expect(m.entries.count == 30)  // 20 earned, 6 reversed, 4 released
        #expect(m.entries.filter { $0.kind == .released }.count == 4)
        #expect(m.refusals.map(\.reason.rawValue) == [
            "duplicate-order", "invalid-amount", "refund-exceeds-order", "review-daily-cap", "task-daily-cap", "share-daily-cap",
        ])
        #expect(m.entries.map(\.sequence) == Array(1...30))
        // Entry ids are unique.
        #expect(Set(m.entries.map(\.id)).count == m.entries.count)
        m.checkInvariants()
    }
}

@Suite struct ZeroRewardTests {
    @Test func aRewardSetToZeroInTheProgramMakesNoEntryAndNoLot() throws {
        var program = try referenceProgram()
        program.checkIn.points = 0
        program.reviews.points = 0
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: PointsRules(program: program))
        let checkIn = m.apply(.checkedIn, at: "2026-03-01T10:00:00+08:00")
        let review = m.apply(.reviewPosted, at: "2026-03-01T11:00:00+08:00")
        #expect(checkIn.entries.isEmpty && checkIn.refusals.isEmpty)
        #expect(review.entries.isEmpty)
        #expect(m.acct.lots.isEmpty)
        #expect(m.acct.lotsCreated == 0)
        #expect(m.acct.entries == 0)
        // The check-in still counts for the day and the streak.
        #expect(m.apply(.checkedIn, at: "2026-03-01T12:00:00+08:00").refusals.first?.reason.rawValue == "already-checked-in-today")
        #expect(m.acct.streakLength == 1)
    }

    @Test func figuresThatWouldPassTheSafeMagnitudeAreRefusedNotTrapped() throws {
        var member = PointsHarness.registered(at: "2026-01-01T10:00:00+08:00", rules: try referenceRules())
        // The largest adjustment an event may carry, again and again: once trapped on overflow.
        // (Ten thousand of them reach the bound; the account starts two short of it.)
        let step = PointsInput.maximumAmountMinor
        member.apply(.adjust(Adjustment(points: step, reason: "attack")), at: "2026-01-02T09:00:00+08:00")
        member.account?.balance.available = PointsAccount.safeMagnitude - 2 * step
        member.account?.lifetime.adjustedUp = PointsAccount.safeMagnitude - 2 * step
        member.account?.lots[0].points = PointsAccount.safeMagnitude - 2 * step
        member.account?.lots[0].remaining = PointsAccount.safeMagnitude - 2 * step
        for _ in 0..<5 {
            member.apply(.adjust(Adjustment(points: step, reason: "attack")), at: "2026-01-02T10:00:00+08:00")
        }
        let accepted = PointsAccount.safeMagnitude / step
        #expect(member.account?.balance.available == accepted * step)
        #expect(member.refusals.count == 3)
        #expect(member.refusals.allSatisfy { $0.reason.rawValue == "amount-out-of-range" })
        // Spending still works; the lifetime total of adjustments stays at the bound, so a
        // further credit of that kind is refused even with room in the balance.
        member.apply(.adjust(Adjustment(points: -step, reason: "correction")), at: "2026-01-03T10:00:00+08:00")
        #expect(member.account?.balance.available == (accepted - 1) * step)
        member.apply(.adjust(Adjustment(points: step, reason: "again")), at: "2026-01-03T11:00:00+08:00")
        #expect(member.account?.balance.available == (accepted - 1) * step)
        #expect(member.refusals.count == 4)
    }
}
