import ReferenceProgram
import Testing
@testable import Basics
@testable import LoyaltyDomain

// The points lifecycle against DOMAIN.md ("Points: spending", "Points: expiry and inactivity",
// "Exact semantics"), with the reference program: FIFO spending over lots, redemptions, cash
// offset, transfers with give-back, admin adjustments, lot expiry and its warning, inactivity
// deductions. Every expected number is worked out by hand; the comments show the arithmetic.
// Lots are numbered L1, L2, … per member in creation order.

/// The reference rules, plus a reward cheaper than the minimum redemption (the loader refuses
/// such a program, so it is added after loading).
private func rulesWithCheapReward() throws -> PointsRules {
    var program = try referenceProgram()
    program.catalogue["sticker"] = Program.Reward(id: "sticker", kind: .goods, name: "Sticker", points: 50, stock: nil)
    return PointsRules(program: program)
}

/// A member with a debt of 500 and nothing else: o1 earned 500, they were redeemed, then o1
/// was refunded in full (the reversal finds no points left, so all of it is debt).
private func memberInDebt(_ member: String = "m1", rules: PointsRules, sourceLocation: SourceLocation = #_sourceLocation) -> PointsHarness {
    var m = PointsHarness.registered(member, at: "2026-01-01T09:00:00+08:00", rules: rules)
    m.pay("o1", 50_000, at: "2026-01-05T10:00:00+08:00")  // L1: 500 pending
    m.release("L1", at: "2026-01-12T10:00:00+08:00")
    m.redeem("express-delivery", at: "2026-01-13T10:00:00+08:00")  // −500
    m.refund("o1", "r1", 50_000, at: "2026-01-14T10:00:00+08:00")  // −500, all of it debt
    #expect(m.balance == Balance(available: 0, pending: 0, debt: 500), sourceLocation: sourceLocation)
    return m
}

/// The one refusal of `decision`, checking that the account did not change.
private func refusedReason(
    _ m: inout PointsHarness, subject: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ step: (inout PointsHarness) -> PointsDecision
) -> String? {
    let before = m.account
    let takenBefore = m.unitsTaken
    let decision = step(&m)
    #expect(m.unitsTaken == takenBefore, "a refusal takes no stock", sourceLocation: sourceLocation)
    let refusal = onlyRefusal(decision, sourceLocation: sourceLocation)
    #expect(decision.inactivityDue == nil, sourceLocation: sourceLocation)
    #expect(m.account == before, "a refusal changes nothing", sourceLocation: sourceLocation)
    #expect(refusal?.subject == subject, sourceLocation: sourceLocation)
    #expect(refusal?.member == m.member, sourceLocation: sourceLocation)
    return refusal?.reason.rawValue
}

@Suite struct PointsLifecycleTests {
    // MARK: FIFO spending

    @Test func spendingTakesSoonestExpiringLotsFirstThenOldestAndNeverPendingOnes() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.pay("o1", 30_000, at: "2026-01-28T10:00:00+08:00")  // L1: 300 pending, available 02-04 → expires 2027-03-01
        m.earnAtOnce(200, at: "2026-01-30T10:00:00+08:00")  // L2: 200, available 01-30 → expires 2027-02-01
        m.release("L1", at: "2026-02-04T10:00:00+08:00")
        m.earnAtOnce(400, at: "2026-02-10T10:00:00+08:00")  // L3: 400, expires 2027-03-01 (as L1, created later)
        m.pay("o2", 10_000, at: "2026-02-20T10:00:00+08:00")  // L4: 100 pending until 02-27
        #expect(m.lot("L1")?.expiresAt == at("2027-03-01T00:00:00+08:00"))
        #expect(m.lot("L2")?.expiresAt == at("2027-02-01T00:00:00+08:00"))
        #expect(m.lot("L3")?.expiresAt == at("2027-03-01T00:00:00+08:00"))
        #expect(m.balance == Balance(available: 900, pending: 100, debt: 0))

        // 250: all of L2 (the soonest expiry, though created after L1), then 50 of L1 (same
        // expiry as L3, created first).
        let offset = try #require(onlyEntry(m.cashOffset(250, order: "shop-1", orderMinor: 100_000, at: "2026-02-21T10:00:00+08:00")))
        #expect(offset.lots == [LotChange(lotID: "L2", delta: -200), LotChange(lotID: "L1", delta: -50)])
        #expect(offset.points == -250)
        #expect(offset.availableDelta == -250)
        #expect(offset.pendingDelta == 0)
        #expect(offset.balanceAfter == Balance(available: 650, pending: 100, debt: 0))
        #expect(m.lot("L2") == nil)
        #expect(m.lot("L1")?.remaining == 250)
        #expect(m.lot("L1")?.points == 300)
        #expect(m.lot("L3")?.remaining == 400)

        // 500: the rest of L1, then 250 of L3; the pending L4 is not touched.
        let redeemed = try #require(onlyEntry(m.redeem("express-delivery", at: "2026-02-22T10:00:00+08:00")))
        #expect(redeemed.lots == [LotChange(lotID: "L1", delta: -250), LotChange(lotID: "L3", delta: -250)])
        #expect(redeemed.balanceAfter == Balance(available: 150, pending: 100, debt: 0))
        #expect(m.lot("L1") == nil)
        #expect(m.lot("L3")?.remaining == 150)
        #expect(m.lot("L4")?.remaining == 100)
        #expect(m.lot("L4")?.pending == true)

        // Pending points cannot be spent: 150 available (+ 100 pending) do not pay 200.
        #expect(refusedReason(&m, subject: "cash-offset") {
            $0.cashOffset(200, order: "shop-2", orderMinor: 100_000, at: "2026-02-23T10:00:00+08:00")
        } == "insufficient-balance")
        m.checkLifecycleInvariants()
    }

    @Test func lotsOfOneExpiryAreTakenInCreationOrder() throws {
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(100, at: "2026-03-02T10:00:00+08:00")  // L1, expires 2027-04-01
        m.earnAtOnce(100, at: "2026-03-05T10:00:00+08:00")  // L2, expires 2027-04-01
        m.earnAtOnce(100, at: "2026-03-20T10:00:00+08:00")  // L3, expires 2027-04-01
        let sent = try #require(onlyEntry(m.transfer(150, to: "m2", at: "2026-03-21T10:00:00+08:00")))
        #expect(sent.lots == [LotChange(lotID: "L1", delta: -100), LotChange(lotID: "L2", delta: -50)])
        #expect(m.acct.lots.map(\.id) == ["L2", "L3"])
        #expect(m.lot("L2")?.remaining == 50)
        #expect(m.lot("L3")?.remaining == 100)
        m.checkLifecycleInvariants()
    }

    // MARK: Redemption

    @Test func redemptionSpendsCostTimesQuantityAndTakesStockOnlyForStockedRewards() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(7_000, at: "2026-03-01T10:00:00+08:00")  // L1
        let tea = m.redeem("tea-set", quantity: 2, at: "2026-03-02T10:00:00+08:00", id: "r1")
        let entry = try #require(onlyEntry(tea))
        #expect(entry.kind == .redeemed)
        #expect(entry.member == "m1")
        #expect(entry.causeID == "r1")
        #expect(entry.time == at("2026-03-02T10:00:00+08:00"))
        #expect(entry.points == -6_000)  // 3000 × 2
        #expect(entry.availableDelta == -6_000)
        #expect(entry.pendingDelta == 0)
        #expect(entry.debtDelta == 0)
        #expect(entry.lots == [LotChange(lotID: "L1", delta: -6_000)])
        #expect(entry.balanceAfter == Balance(available: 1_000, pending: 0, debt: 0))
        #expect(entry.details.contains { $0.key == "reward" && $0.value == "tea-set" })
        #expect(entry.details.contains { $0.key == "quantity" && $0.value == "2" })
        #expect(m.unitsTaken == ["tea-set": 2])
        #expect(tea.commands.isEmpty)
        #expect(m.acct.lifetime.redeemed == 6_000)
        #expect(m.lot("L1")?.remaining == 1_000)

        // Rewards without stock take none.
        let express = m.redeem("express-delivery", at: "2026-03-03T10:00:00+08:00")
        #expect(onlyEntry(express)?.points == -500)
        #expect(onlyEntry(express)?.kind == .redeemed)

        let tree = m.redeem("plant-a-tree", at: "2026-03-04T10:00:00+08:00")  // a charity donation
        #expect(onlyEntry(tree)?.points == -100)
        #expect(m.unitsTaken == ["tea-set": 2])

        #expect(m.balance == Balance(available: 400, pending: 0, debt: 0))  // 7000 − 6000 − 500 − 100
        #expect(m.acct.lifetime.redeemed == 6_600)
        #expect(m.acct.lifetime.spent == 6_600)
        #expect(m.acct.lifetime.earned == 7_000)
        m.checkLifecycleInvariants()
    }

    @Test func redemptionRefusalsFollowTheOrderOfChecks() throws {
        let rules = try rulesWithCheapReward()
        // In debt (available 0): every later check would fail too.
        var debtor = memberInDebt(rules: rules)
        func redeem(_ reward: String, _ quantity: Int64 = 1, stock: Int64? = nil) -> (inout PointsHarness) -> PointsDecision {
            { $0.redeem(reward, quantity: quantity, at: "2026-03-01T10:00:00+08:00", stockLeft: { _ in stock }) }
        }
        #expect(refusedReason(&debtor, subject: "redemption", redeem("no-such-reward")) == "unknown-reward")
        #expect(refusedReason(&debtor, subject: "redemption", redeem("sticker")) == "below-minimum")  // 50 < 100
        #expect(refusedReason(&debtor, subject: "redemption", redeem("sticker", 2)) == "negative-balance")  // 100: the minimum
        #expect(refusedReason(&debtor, subject: "redemption", redeem("express-delivery")) == "negative-balance")
        #expect(refusedReason(&debtor, subject: "redemption", redeem("tea-set", stock: 0)) == "negative-balance")
        let refusal = try #require(debtor.redeem("no-such-reward", at: "2026-03-02T10:00:00+08:00", id: "x1").refusals.first)
        #expect(refusal.detail == "no-such-reward")
        #expect(refusal.causeID == "x1")
        #expect(refusal.time == at("2026-03-02T10:00:00+08:00"))

        // 499 available: not enough for 500.
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: rules)
        m.earnAtOnce(499, at: "2026-02-01T10:00:00+08:00")
        m.pay("o1", 100_000, at: "2026-02-02T10:00:00+08:00")  // 1000 pending do not count
        #expect(refusedReason(&m, subject: "redemption", redeem("express-delivery")) == "insufficient-balance")
        #expect(refusedReason(&m, subject: "redemption", redeem("sticker")) == "below-minimum")
        #expect(refusedReason(&m, subject: "redemption", redeem("plant-a-tree", 5)) == "insufficient-balance")  // 500 > 499
        // The minimum is per redemption: 2 × 50 = 100 is enough.
        let stickers = try #require(onlyEntry(m.redeem("sticker", quantity: 2, at: "2026-02-03T10:00:00+08:00")))
        #expect(stickers.points == -100)
        #expect(m.balance == Balance(available: 399, pending: 1_000, debt: 0))
    }

    @Test func outOfStockUsesTheStockLeftOrElseTheProgramStock() throws {
        var program = try referenceProgram()
        program.catalogue["tea-set"]?.stock = 1
        let limited = PointsRules(program: program)
        let reference = try referenceRules()
        func rich(_ rules: PointsRules) -> PointsHarness {
            var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: rules)
            m.earnAtOnce(20_000, at: "2026-02-01T10:00:00+08:00")
            return m
        }
        func redeem(_ quantity: Int64, stock: Int64?) -> (inout PointsHarness) -> PointsDecision {
            { $0.redeem("tea-set", quantity: quantity, at: "2026-03-01T10:00:00+08:00", stockLeft: { $0 == "tea-set" ? stock : nil }) }
        }
        var m = rich(reference)
        #expect(refusedReason(&m, subject: "redemption", redeem(1, stock: 0)) == "out-of-stock")
        #expect(refusedReason(&m, subject: "redemption", redeem(3, stock: 2)) == "out-of-stock")
        // Exactly what is left may be taken.
        let two = m.redeem("tea-set", quantity: 2, at: "2026-03-02T10:00:00+08:00", stockLeft: { _ in 2 })
        #expect(onlyEntry(two)?.points == -6_000)
        #expect(m.unitsTaken == ["tea-set": 2])
        // Otherwise the reward's task counts from the program's stock (200 in the reference) what it gave out.
        let fromProgram = m.redeem("tea-set", at: "2026-03-03T10:00:00+08:00")
        #expect(onlyEntry(fromProgram)?.points == -3_000)
        #expect(m.unitsTaken == ["tea-set": 3])

        // A program stock of 1: 2 units are out of stock, 1 is not.
        var l = rich(limited)
        #expect(refusedReason(&l, subject: "redemption", redeem(2, stock: nil)) == "out-of-stock")
        let one = l.redeem("tea-set", at: "2026-03-02T10:00:00+08:00")
        #expect(onlyEntry(one)?.points == -3_000)
        #expect(l.unitsTaken == ["tea-set": 1])
        // A reward without stock is unlimited.
        let coupons = l.redeem("coupon-20", quantity: 5, at: "2026-03-03T10:00:00+08:00")
        #expect(onlyEntry(coupons)?.points == -10_000)
        #expect(l.unitsTaken == ["tea-set": 1])
        #expect(l.balance == Balance(available: 7_000, pending: 0, debt: 0))  // 20000 − 3000 − 10000
    }

    // MARK: Reward stock, reserved from the reward's task

    @Test func aStockedRewardsPointsAreSetAsideUntilItsTaskAnswersAndOnlyThenSpentOrRefused() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(7_000, at: "2026-03-01T10:00:00+08:00")
        let before = m.balance
        let asked = m.apply(.redeem(Redemption(rewardID: "tea-set", quantity: 2)), at: "2026-03-02T10:00:00+08:00", id: "r1")
        // Nothing is decided yet: no entry, no refusal, the balance as it was; one reservation
        // to the reward's key, at the request's time.
        #expect(asked.entries.isEmpty && asked.refusals.isEmpty)
        #expect(asked.commands == [.reserveStock(
            StockReservation(rewardID: "tea-set", quantity: 2, member: "m1", requestID: "r1"), time: at("2026-03-02T10:00:00+08:00"))])
        #expect(StockReservation.key(of: "tea-set") == "reward/tea-set")
        #expect(m.balance == before)
        #expect(m.acct.spendable == 1_000)
        // A request of the same instant sees the 6,000 gone: whatever it spends is refused
        // beyond 1,000, and an unlimited reward is spent at once from what is left.
        #expect(onlyRefusal(m.apply(.redeem(Redemption(rewardID: "coupon-20")), at: "2026-03-02T10:00:00+08:00", id: "r2"))?.reason == .insufficientBalance)
        #expect(onlyRefusal(m.cashOffset(1_001, order: "o9", orderMinor: 1_000_000, at: "2026-03-02T10:00:00+08:00"))?.reason == .insufficientBalance)
        #expect(onlyRefusal(m.transfer(1_001, to: "m2", at: "2026-03-02T10:00:00+08:00"))?.reason == .insufficientBalance)
        #expect(onlyEntry(m.apply(.redeem(Redemption(rewardID: "express-delivery")), at: "2026-03-02T10:00:00+08:00", id: "r3"))?.points == -500)
        #expect(m.acct.spendable == 500)

        // Granted: the entry is the request's, as if decided when asked.
        let granted = m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 2, requestID: "r1", refusal: nil), time: at("2026-03-02T10:00:00+08:00")))
        let entry = try #require(onlyEntry(granted))
        #expect(entry.kind == .redeemed && entry.causeID == "r1" && entry.points == -6_000)
        #expect(entry.time == at("2026-03-02T10:00:00+08:00"))
        #expect(entry.details.contains { $0.key == "reward" && $0.value == "tea-set" })
        #expect(m.balance == Balance(available: 500, pending: 0, debt: 0))
        #expect(m.acct.heldRedemptions.isEmpty && m.acct.spendable == 500)
        #expect(m.acct.lifetime.redeemed == 6_500)
        // An answer again (its request answered already) changes nothing.
        let account = m.account
        let again = m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 2, requestID: "r1", refusal: nil), time: at("2026-03-02T10:00:00+08:00")))
        #expect(again == PointsDecision() && m.account == account)

        // Refused: the points are spendable again, and the refusal is the request's.
        m.earnAtOnce(3_000, at: "2026-03-03T09:00:00+08:00")
        m.apply(.redeem(Redemption(rewardID: "tea-set")), at: "2026-03-03T10:00:00+08:00", id: "r4")
        #expect(m.acct.spendable == 500)
        let refused = try #require(onlyRefusal(m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 1, requestID: "r4", refusal: .outOfStock), time: at("2026-03-03T10:00:00+08:00")))))
        #expect(refused.reason == .outOfStock && refused.causeID == "r4" && refused.id == "r4/refused" && refused.detail == "tea-set")
        #expect(refused.subject == "redemption" && refused.time == at("2026-03-03T10:00:00+08:00"))
        #expect(m.acct.spendable == 3_500 && m.balance == Balance(available: 3_500, pending: 0, debt: 0))
        m.checkLifecycleInvariants()
    }

    @Test func anAnswerGoesToTheRequestOfItsExactIdNotToALookalike() throws {
        // Two requests whose ids are one `String` ("R-é" composed and decomposed) but two rows
        // of the reward's reservations: each answer settles its own.
        let composed = "R-\u{E9}"
        let decomposed = "R-e\u{301}"
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(9_000, at: "2026-03-01T10:00:00+08:00")
        m.apply(.redeem(Redemption(rewardID: "tea-set", quantity: 2)), at: "2026-03-02T10:00:00+08:00", id: composed)
        m.apply(.redeem(Redemption(rewardID: "tea-set", quantity: 1)), at: "2026-03-02T10:01:00+08:00", id: decomposed)
        #expect(m.acct.spendable == 0)
        let refused = try #require(onlyRefusal(m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 1, requestID: decomposed, refusal: .outOfStock), time: at("2026-03-02T10:01:00+08:00")))))
        #expect(Array(refused.causeID.utf8) == Array(decomposed.utf8) && m.acct.spendable == 3_000, "the 3,000 of the one-set request come back")
        let granted = try #require(onlyEntry(m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 2, requestID: composed, refusal: nil), time: at("2026-03-02T10:00:00+08:00")))))
        #expect(Array(granted.causeID.utf8) == Array(composed.utf8) && granted.points == -6_000)
        #expect(m.acct.heldRedemptions.isEmpty && m.balance == Balance(available: 3_000, pending: 0, debt: 0))
        m.checkLifecycleInvariants()
    }

    @Test func whatIsTakenAtTheInstantBetweenAskingAndAnswerBecomesDebtAsHadTheRedemptionComeFirst() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(3_000, at: "2026-03-01T10:00:00+08:00")
        m.apply(.redeem(Redemption(rewardID: "tea-set")), at: "2026-03-02T10:00:00+08:00", id: "r1")
        // An operator's correction of the same instant takes 2,000 of the 3,000 set aside.
        m.adjust(-2_000, reason: "duplicate credit", at: "2026-03-02T10:00:00+08:00")
        let granted = m.deliver(.answerStock(
            member: "m1", StockAnswer(rewardID: "tea-set", quantity: 1, requestID: "r1", refusal: nil), time: at("2026-03-02T10:00:00+08:00")))
        #expect(onlyEntry(granted)?.points == -3_000)
        #expect(m.balance == Balance(available: 0, pending: 0, debt: 2_000))
        m.checkLifecycleInvariants()
    }

    @Test func aRewardsTaskGivesUnitsWhileTheProgramsStockLasts() throws {
        var program = try referenceProgram()
        program.catalogue["tea-set"]?.stock = 3
        let rules = PointsRules(program: program)
        func ask(_ reward: String, _ quantity: Int64, taken: Int64) -> ReasonCode? {
            rules.reserve(StockReservation(rewardID: reward, quantity: quantity, member: "m1", requestID: "r1"), taken: taken).refusal
        }
        #expect(ask("tea-set", 3, taken: 0) == nil)
        #expect(ask("tea-set", 1, taken: 2) == nil)
        #expect(ask("tea-set", 2, taken: 2) == .outOfStock)
        #expect(ask("tea-set", 1, taken: 3) == .outOfStock)
        // A reward the program no longer lists, or no longer limits, since it was asked for.
        #expect(ask("retired-reward", 1, taken: 0) == .unknownReward)
        #expect(ask("coupon-20", 1_000, taken: 5_000) == nil)
        let answer = rules.reserve(StockReservation(rewardID: "tea-set", quantity: 2, member: "m1", requestID: "r9"), taken: 0)
        #expect(answer == StockAnswer(rewardID: "tea-set", quantity: 2, requestID: "r9", refusal: nil))
    }

    // MARK: Cash offset

    @Test func cashOffsetPaysAtMostHalfTheOrderAtOneFenAPoint() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(20_000, at: "2026-03-01T10:00:00+08:00")
        // 100 points = 1 CNY, so a point is a fen; 50% of 10000 fen = 5000 points.
        #expect(refusedReason(&m, subject: "cash-offset") {
            $0.cashOffset(5_001, order: "shop-1", orderMinor: 10_000, at: "2026-03-02T10:00:00+08:00")
        } == "exceeds-offset-limit")
        // 50% of 9999 fen is 4999.5 fen: 5000 points are too many, 4999 are not.
        #expect(refusedReason(&m, subject: "cash-offset") {
            $0.cashOffset(5_000, order: "shop-odd", orderMinor: 9_999, at: "2026-03-02T10:00:00+08:00")
        } == "exceeds-offset-limit")
        let refusal = try #require(m.cashOffset(5_001, order: "shop-1", orderMinor: 10_000, at: "2026-03-02T10:00:00+08:00").refusals.first)
        #expect(refusal.orderID == "shop-1")
        #expect(onlyEntry(m.cashOffset(4_999, order: "shop-odd", orderMinor: 9_999, at: "2026-03-02T11:00:00+08:00"))?.points == -4_999)

        let exact = try #require(onlyEntry(m.cashOffset(5_000, order: "shop-1", orderMinor: 10_000, at: "2026-03-02T12:00:00+08:00", id: "c1")))
        #expect(exact.kind == .cashOffset)
        #expect(exact.orderID == "shop-1")
        #expect(exact.causeID == "c1")
        #expect(exact.points == -5_000)
        #expect(exact.availableDelta == -5_000)
        #expect(exact.details.contains { $0.key == "valueMinor" && $0.value == "5000" })
        #expect(exact.balanceAfter == Balance(available: 10_001, pending: 0, debt: 0))  // 20000 − 4999 − 5000
        #expect(m.acct.lifetime.cashOffset == 9_999)
        #expect(m.acct.lifetime.spent == 9_999)
        #expect(m.acct.lifetime.redeemed == 0)
        m.checkLifecycleInvariants()
    }

    @Test func cashOffsetValueFollowsThePointsPerCNYOfTheProgram() throws {
        var program = try referenceProgram()
        program.spending.cashOffsetPointsPerCNY = 50  // a point is 2 fen
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: PointsRules(program: program))
        m.earnAtOnce(5_000, at: "2026-03-01T10:00:00+08:00")
        // 2501 points pay 5002 fen > 50% of 10000.
        #expect(refusedReason(&m, subject: "cash-offset") {
            $0.cashOffset(2_501, order: "shop-1", orderMinor: 10_000, at: "2026-03-02T10:00:00+08:00")
        } == "exceeds-offset-limit")
        let entry = try #require(onlyEntry(m.cashOffset(2_500, order: "shop-1", orderMinor: 10_000, at: "2026-03-02T11:00:00+08:00")))
        #expect(entry.points == -2_500)
        #expect(entry.details.contains { $0.key == "valueMinor" && $0.value == "5000" })
    }

    @Test func cashOffsetRefusalsFollowTheOrderOfChecks() throws {
        var debtor = memberInDebt(rules: try referenceRules())
        func offset(_ points: Int64) -> (inout PointsHarness) -> PointsDecision {
            { $0.cashOffset(points, order: "shop-1", orderMinor: 1_000, at: "2026-03-01T10:00:00+08:00") }
        }
        #expect(refusedReason(&debtor, subject: "cash-offset", offset(501)) == "exceeds-offset-limit")
        #expect(refusedReason(&debtor, subject: "cash-offset", offset(500)) == "negative-balance")
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(100, at: "2026-02-01T10:00:00+08:00")
        m.pay("o1", 100_000, at: "2026-02-27T10:00:00+08:00")  // 1000 pending
        #expect(refusedReason(&m, subject: "cash-offset", offset(200)) == "insufficient-balance")
        #expect(onlyEntry(m.cashOffset(100, order: "shop-1", orderMinor: 1_000, at: "2026-03-01T10:00:00+08:00"))?.points == -100)
    }

    // MARK: Transfers

    @Test func transferDebitsTheSenderAndCreditsTheRecipientAFreshLotAtTheTransferTime() throws {
        let rules = try referenceRules()
        var m1 = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: rules)
        var m2 = PointsHarness.registered("m2", at: "2026-02-01T09:00:00+08:00", rules: rules)
        m1.checkEveryStep = true
        m2.checkEveryStep = true
        m1.earnAtOnce(1_000, at: "2026-01-20T10:00:00+08:00")  // L1, expires 2027-02-01

        let sent = m1.transfer(500, to: "m2", at: "2026-03-31T20:00:00+08:00", id: "t1")
        let out = try #require(onlyEntry(sent))
        #expect(out.kind == .transferredOut)
        #expect(out.causeID == "t1")
        #expect(out.points == -500)
        #expect(out.availableDelta == -500)
        #expect(out.lots == [LotChange(lotID: "L1", delta: -500)])
        #expect(out.balanceAfter == Balance(available: 500, pending: 0, debt: 0))
        #expect(out.details.contains { $0.key == "to" && $0.value == "m2" })
        #expect(sent.commands == [.transferCredit(
            recipient: "m2", leg: TransferLeg(counterpart: "m1", transferID: "t1", points: 500), time: at("2026-03-31T20:00:00+08:00"))])
        #expect(m1.acct.lifetime.transferredOut == 500)
        #expect(m1.acct.lifetime.spent == 500)

        // The recipient checks in on 04-02 before the credit is applied; the credit still
        // carries the transfer's time: available 03-31 20:00 → expires 2027-04-01.
        m2.apply(.checkedIn, at: "2026-04-02T10:00:00+08:00")  // m2's L1: 1, expires 2027-05-01
        let credit = m2.deliver(try #require(sent.commands.first))
        let into = try #require(onlyEntry(credit))
        #expect(credit.commands.isEmpty)
        #expect(into.kind == .transferredIn)
        #expect(into.member == "m2")
        #expect(into.time == at("2026-03-31T20:00:00+08:00"))
        #expect(into.points == 500)
        #expect(into.availableDelta == 500)
        #expect(into.debtDelta == 0)
        #expect(into.lots == [LotChange(lotID: "L2", delta: 500, expiresAt: at("2027-04-01T00:00:00+08:00"))])
        #expect(into.balanceAfter == Balance(available: 501, pending: 0, debt: 0))
        #expect(into.details.contains { $0.key == "transfer" && $0.value == "t1" })
        #expect(into.details.contains { $0.key == "from" && $0.value == "m1" })
        #expect(credit.expiries == [at("2027-04-01T00:00:00+08:00")])
        let lot = try #require(m2.lot("L2"))
        #expect(lot.availableAt == at("2026-03-31T20:00:00+08:00"))
        #expect(lot.expiresAt == at("2027-04-01T00:00:00+08:00"))
        #expect(lot.points == 500)
        #expect(lot.remaining == 500)
        #expect(!lot.pending)
        #expect(m2.acct.lifetime.transferredIn == 500)
        #expect(m2.acct.lifetime.earned == 1)  // a transfer is not an earning
        // The transferred lot expires first, so it is spent first though created later.
        #expect(onlyEntry(m2.redeem("plant-a-tree", at: "2026-04-03T10:00:00+08:00"))?.lots == [LotChange(lotID: "L2", delta: -100)])
        m1.checkLifecycleInvariants()
        m2.checkLifecycleInvariants()
    }

    @Test func aTransferCreditRepaysTheRecipientsDebtFirst() throws {
        let rules = try referenceRules()
        var sender = PointsHarness.registered("m5", at: "2026-01-01T09:00:00+08:00", rules: rules)
        sender.earnAtOnce(1_000, at: "2026-02-01T10:00:00+08:00")
        var debtor = memberInDebt("m2", rules: rules)  // debt 500
        let sent = sender.transfer(700, to: "m2", at: "2026-03-01T10:00:00+08:00")
        let command = try #require(sent.commands.first)
        let into = try #require(onlyEntry(debtor.deliver(command)))
        #expect(into.points == 700)
        #expect(into.availableDelta == 200)
        #expect(into.debtDelta == -500)
        #expect(debtor.balance == Balance(available: 200, pending: 0, debt: 0))
        #expect(debtor.acct.lots.map(\.remaining) == [200])
        #expect(debtor.acct.lifetime.transferredIn == 700)
        debtor.checkLifecycleInvariants()
    }

    @Test func aTransferToAMemberThatDoesNotExistIsGivenBackAsAFreshLot() throws {
        let rules = try referenceRules()
        var m1 = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: rules)
        var ghost = PointsHarness(member: "ghost", rules: rules)
        m1.checkEveryStep = true
        m1.earnAtOnce(10_000, at: "2026-01-20T10:00:00+08:00")  // L1, expires 2027-02-01

        let sent = m1.transfer(4_000, to: "ghost", at: "2026-03-12T10:00:00+08:00", id: "t1")
        #expect(onlyEntry(sent)?.kind == .transferredOut)
        let credit = ghost.deliver(try #require(sent.commands.first))
        #expect(credit.entries.isEmpty)
        #expect(credit.refusals.isEmpty)
        #expect(ghost.account == nil)
        #expect(credit.commands == [.transferReturned(
            sender: "m1", leg: TransferLeg(counterpart: "ghost", transferID: "t1", points: 4_000), time: at("2026-03-12T10:00:00+08:00"))])

        let back = m1.deliver(try #require(credit.commands.first))
        let returned = try #require(onlyEntry(back))
        #expect(returned.kind == .returned)
        #expect(returned.time == at("2026-03-12T10:00:00+08:00"))
        #expect(returned.points == 4_000)
        #expect(returned.availableDelta == 4_000)
        #expect(returned.lots == [LotChange(lotID: "L2", delta: 4_000, expiresAt: at("2027-04-01T00:00:00+08:00"))])
        #expect(returned.balanceAfter == Balance(available: 10_000, pending: 0, debt: 0))
        #expect(returned.details.contains { $0.key == "transfer" && $0.value == "t1" })
        // A new lot with a fresh expiry (the points left L1, which expires 2027-02-01).
        #expect(back.expiries == [at("2027-04-01T00:00:00+08:00")])
        let lot = try #require(m1.lot("L2"))
        #expect(lot.availableAt == at("2026-03-12T10:00:00+08:00"))
        #expect(lot.expiresAt == at("2027-04-01T00:00:00+08:00"))
        #expect(m1.lot("L1")?.remaining == 6_000)
        // The sender sees both steps.
        #expect(m1.entries.map(\.kind) == [.earned, .transferredOut, .returned])
        #expect(m1.acct.lifetime.transferredOut == 4_000)
        #expect(m1.acct.lifetime.givenBack == 4_000)
        #expect(m1.acct.lifetime.transferredIn == 0)
        #expect(m1.acct.lifetime.spent == 4_000)

        // Given back, it still counts for the day: 4000 + 1001 > 5000.
        #expect(refusedReason(&m1, subject: "transfer") { $0.transfer(1_001, to: "m2", at: "2026-03-12T11:00:00+08:00") } == "daily-limit")
        #expect(onlyEntry(m1.transfer(1_000, to: "m2", at: "2026-03-12T12:00:00+08:00"))?.points == -1_000)
        m1.checkLifecycleInvariants()
    }

    @Test func aTransferToAMemberRegisteredAfterItIsGivenBack() throws {
        let rules = try referenceRules()
        var m1 = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: rules)
        m1.earnAtOnce(1_000, at: "2026-02-01T10:00:00+08:00")
        var late = PointsHarness.registered("m3", at: "2026-03-15T10:00:00.001+08:00", rules: rules)
        var onTime = PointsHarness.registered("m4", at: "2026-03-15T10:00:00+08:00", rules: rules)

        let toLate = m1.transfer(300, to: "m3", at: "2026-03-15T10:00:00+08:00", id: "t1")
        let refused = late.deliver(try #require(toLate.commands.first))
        #expect(refused.entries.isEmpty)
        #expect(late.acct.balance == Balance())
        #expect(refused.commands == [.transferReturned(
            sender: "m1", leg: TransferLeg(counterpart: "m3", transferID: "t1", points: 300), time: at("2026-03-15T10:00:00+08:00"))])

        // Registered at the very instant of the transfer: credited.
        let toOnTime = m1.transfer(200, to: "m4", at: "2026-03-15T10:00:00+08:00", id: "t2")
        let credited = onTime.deliver(try #require(toOnTime.commands.first))
        #expect(onlyEntry(credited)?.kind == .transferredIn)
        #expect(credited.commands.isEmpty)
        #expect(onTime.balance == Balance(available: 200, pending: 0, debt: 0))
    }

    @Test func transferRefusalsFollowTheOrderOfChecks() throws {
        let rules = try referenceRules()
        var debtor = memberInDebt(rules: rules)
        func transfer(_ points: Int64, to recipient: String = "m2") -> (inout PointsHarness) -> PointsDecision {
            { $0.transfer(points, to: recipient, at: "2026-03-01T10:00:00+08:00") }
        }
        #expect(refusedReason(&debtor, subject: "transfer", transfer(50, to: "m1")) == "self-transfer")
        #expect(refusedReason(&debtor, subject: "transfer", transfer(6_000, to: "m1")) == "self-transfer")
        #expect(refusedReason(&debtor, subject: "transfer", transfer(50)) == "below-minimum")
        #expect(refusedReason(&debtor, subject: "transfer", transfer(99)) == "below-minimum")
        #expect(refusedReason(&debtor, subject: "transfer", transfer(100)) == "negative-balance")
        #expect(refusedReason(&debtor, subject: "transfer", transfer(6_000)) == "negative-balance")
        #expect(debtor.transfer(99, to: "m2", at: "2026-03-01T10:00:00+08:00").refusals.first?.detail == "m2")

        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: rules)
        m.earnAtOnce(1_000, at: "2026-02-01T10:00:00+08:00")
        m.pay("o1", 1_000_000, at: "2026-02-27T10:00:00+08:00")  // 10000 pending do not count
        #expect(refusedReason(&m, subject: "transfer", transfer(5_001)) == "daily-limit")  // not insufficient-balance
        #expect(refusedReason(&m, subject: "transfer", transfer(1_001)) == "insufficient-balance")
        #expect(refusedReason(&m, subject: "transfer", transfer(99)) == "below-minimum")
        // 100 is the minimum.
        #expect(onlyEntry(m.transfer(100, to: "m2", at: "2026-03-01T10:00:00+08:00"))?.points == -100)
        #expect(m.balance == Balance(available: 900, pending: 10_000, debt: 0))
    }

    @Test func transfersAreLimitedToFiveThousandALocalDay() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(20_000, at: "2026-03-01T10:00:00+08:00")
        #expect(onlyEntry(m.transfer(3_000, to: "m2", at: "2026-03-10T09:00:00+08:00"))?.points == -3_000)
        // 3000 + 2000 = 5000: exactly the limit.
        #expect(onlyEntry(m.transfer(2_000, to: "m3", at: "2026-03-10T20:00:00+08:00"))?.points == -2_000)
        // 23:59:59 local is still 03-10.
        #expect(refusedReason(&m, subject: "transfer") { $0.transfer(100, to: "m2", at: "2026-03-10T15:59:59Z") } == "daily-limit")
        // 16:00Z is 00:00 on 03-11 local: a new day.
        #expect(onlyEntry(m.transfer(100, to: "m2", at: "2026-03-10T16:00:00Z"))?.points == -100)
        // 100 + 4901 > 5000; 100 + 4900 is not.
        #expect(refusedReason(&m, subject: "transfer") { $0.transfer(4_901, to: "m2", at: "2026-03-11T12:00:00+08:00") } == "daily-limit")
        #expect(onlyEntry(m.transfer(4_900, to: "m2", at: "2026-03-11T13:00:00+08:00"))?.points == -4_900)
        // Refused transfers do not count.
        #expect(refusedReason(&m, subject: "transfer") { $0.transfer(99, to: "m2", at: "2026-03-12T09:00:00+08:00") } == "below-minimum")
        #expect(refusedReason(&m, subject: "transfer") { $0.transfer(5_001, to: "m2", at: "2026-03-12T09:30:00+08:00") } == "daily-limit")
        #expect(onlyEntry(m.transfer(5_000, to: "m2", at: "2026-03-12T10:00:00+08:00"))?.points == -5_000)
        // 20000 − 3000 − 2000 − 100 − 4900 − 5000
        #expect(m.balance == Balance(available: 5_000, pending: 0, debt: 0))
        #expect(m.acct.lifetime.transferredOut == 15_000)
        m.checkLifecycleInvariants()
    }

    // MARK: Adjustments

    @Test func anAdjustmentNeedsAReason() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(300, at: "2026-02-01T10:00:00+08:00")
        #expect(refusedReason(&m, subject: "adjustment") { $0.adjust(100, reason: nil, at: "2026-03-01T10:00:00+08:00") } == "missing-reason")
        #expect(refusedReason(&m, subject: "adjustment") { $0.adjust(-100, reason: nil, at: "2026-03-01T10:00:00+08:00") } == "missing-reason")
    }

    @Test func anAdjustmentUpIsACreditThatRepaysDebtFirst() throws {
        var m = memberInDebt(rules: try referenceRules())  // debt 500, lifetime earned 500
        m.checkEveryStep = true
        let first = try #require(onlyEntry(m.adjust(200, reason: "goodwill", at: "2026-03-01T10:00:00+08:00", id: "a1")))
        #expect(first.kind == .adjusted)
        #expect(first.causeID == "a1")
        #expect(first.points == 200)
        #expect(first.availableDelta == 0)
        #expect(first.debtDelta == -200)
        #expect(first.balanceAfter == Balance(available: 0, pending: 0, debt: 300))
        #expect(first.details.contains { $0.key == "reason" && $0.value == "goodwill" })
        let second = try #require(onlyEntry(m.adjust(500, reason: "goodwill", at: "2026-03-02T10:00:00+08:00")))
        #expect(second.points == 500)
        #expect(second.availableDelta == 200)
        #expect(second.debtDelta == -300)
        #expect(m.balance == Balance(available: 200, pending: 0, debt: 0))
        #expect(m.acct.lots.map(\.remaining) == [200])
        #expect(m.acct.lifetime.adjustedUp == 700)
        #expect(m.acct.lifetime.earned == 500)  // an adjustment is not an earning
        m.checkLifecycleInvariants()
    }

    @Test func anAdjustmentDownTakesSoonestExpiringLotsAndTheRestBecomesDebt() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(100, at: "2026-01-20T10:00:00+08:00")  // L1, expires 2027-02-01
        m.earnAtOnce(50, at: "2026-02-10T10:00:00+08:00")  // L2, expires 2027-03-01
        let partial = try #require(onlyEntry(m.adjust(-120, reason: "correction", at: "2026-03-01T10:00:00+08:00")))
        #expect(partial.kind == .adjusted)
        #expect(partial.points == -120)
        #expect(partial.lots == [LotChange(lotID: "L1", delta: -100), LotChange(lotID: "L2", delta: -20)])
        #expect(partial.balanceAfter == Balance(available: 30, pending: 0, debt: 0))
        #expect(m.lot("L2")?.remaining == 30)

        let intoDebt = try #require(onlyEntry(m.adjust(-60, reason: "fraud", at: "2026-03-02T10:00:00+08:00")))
        #expect(intoDebt.points == -60)
        #expect(intoDebt.availableDelta == -30)
        #expect(intoDebt.debtDelta == 30)
        #expect(intoDebt.lots == [LotChange(lotID: "L2", delta: -30)])
        #expect(intoDebt.balanceAfter == Balance(available: 0, pending: 0, debt: 30))
        // A member in debt can still be adjusted down.
        let more = try #require(onlyEntry(m.adjust(-20, reason: "fraud", at: "2026-03-03T10:00:00+08:00")))
        #expect(more.lots.isEmpty)
        #expect(more.debtDelta == 20)
        #expect(m.balance == Balance(available: 0, pending: 0, debt: 50))
        #expect(m.acct.lifetime.adjustedDown == 200)
        #expect(refusedReason(&m, subject: "redemption") { $0.redeem("plant-a-tree", at: "2026-03-04T10:00:00+08:00") } == "negative-balance")
        m.checkLifecycleInvariants()
    }

    // MARK: Expiry

    @Test func expiryIsMidnightOnTheFirstOfTheThirteenthMonthAfterAvailability() throws {
        let rules = try referenceRules()
        let cases: [(available: String, expires: String)] = [
            ("2026-03-15T10:00:00+08:00", "2027-04-01T00:00:00+08:00"),
            ("2026-03-31T16:30:00Z", "2027-05-01T00:00:00+08:00"),  // 2026-04-01 00:30 local
            ("2026-12-31T23:30:00+08:00", "2028-01-01T00:00:00+08:00"),
            ("2027-01-31T12:00:00+08:00", "2028-02-01T00:00:00+08:00"),
            ("2028-02-29T12:00:00+08:00", "2029-03-01T00:00:00+08:00"),
        ]
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: rules)
        for (index, (available, expires)) in cases.enumerated() {
            #expect(rules.expiry(availableAt: at(available)) == at(expires), "available \(available)")
            let credit = m.earnAtOnce(10, at: available)
            #expect(credit.expiries == [at(expires)], "available \(available)")
            #expect(m.lot("L\(index + 1)")?.expiresAt == at(expires), "available \(available)")
        }
        // 2027-04-01 00:00 local is the end of 2027-03-31.
        #expect(at("2027-04-01T00:00:00+08:00") == at("2027-03-31T16:00:00Z"))
        // An order component: available 168 h after the order, in the next month.
        m.pay("o1", 10_000, at: "2026-03-25T10:00:00+08:00")  // available 2026-04-01 10:00
        #expect(m.lot("L6")?.expiresAt == at("2027-05-01T00:00:00+08:00"))
    }

    @Test func expiryRemovesWhatIsLeftOfThatExpiryInOneEntry() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.earnAtOnce(150, at: "2026-03-05T10:00:00+08:00")  // L1, expires 2027-04-01
        m.earnAtOnce(200, at: "2026-03-20T10:00:00+08:00")  // L2, expires 2027-04-01
        m.earnAtOnce(50, at: "2026-04-02T10:00:00+08:00")  // L3, expires 2027-05-01
        m.redeem("plant-a-tree", at: "2026-06-01T10:00:00+08:00")  // 100 of L1: 50 left
        #expect(m.lot("L1")?.remaining == 50)

        let warning = m.warn(of: "2027-04-01T00:00:00+08:00", at: "2027-03-02T00:00:00+08:00")
        #expect(warning.entries.isEmpty)
        #expect(warning.warnings == [ExpiryWarning(
            member: "m1", expiresAt: at("2027-04-01T00:00:00+08:00"), points: 250, time: at("2027-03-02T00:00:00+08:00"))])

        let expired = m.expire(at: "2027-04-01T00:00:00+08:00")
        let entry = try #require(onlyEntry(expired))
        #expect(entry.kind == .expired)
        #expect(entry.member == "m1")
        #expect(entry.time == at("2027-04-01T00:00:00+08:00"))
        #expect(entry.points == -250)  // 50 + 200
        #expect(entry.availableDelta == -250)
        #expect(entry.pendingDelta == 0)
        #expect(entry.debtDelta == 0)
        #expect(entry.lots == [LotChange(lotID: "L1", delta: -50), LotChange(lotID: "L2", delta: -200)])
        #expect(entry.balanceAfter == Balance(available: 50, pending: 0, debt: 0))
        #expect(m.acct.lifetime.expired == 250)
        // Another expiry is untouched.
        #expect(m.acct.lots.map(\.id) == ["L3"])
        #expect(m.lot("L3")?.remaining == 50)
        // Firing again finds nothing.
        #expect(m.expire(at: "2027-04-01T00:00:00+08:00").entries.isEmpty)

        #expect(m.warn(of: "2027-05-01T00:00:00+08:00", at: "2027-04-01T00:00:00+08:00").warnings.map(\.points) == [50])
        // All of it spent before its expiry: no warning, no entry.
        m.cashOffset(50, order: "shop-1", orderMinor: 1_000, at: "2027-04-10T10:00:00+08:00")
        #expect(m.warn(of: "2027-05-01T00:00:00+08:00", at: "2027-04-01T00:00:00+08:00").warnings.isEmpty)
        let nothing = m.expire(at: "2027-05-01T00:00:00+08:00")
        #expect(nothing.entries.isEmpty)
        #expect(nothing.refusals.isEmpty)
        #expect(m.acct.lifetime.expired == 250)
        #expect(m.balance == Balance())
        m.checkLifecycleInvariants()
    }

    @Test func theWarningIsThirtyTimesTwentyFourHoursBeforeTheExpiry() throws {
        let rules = try referenceRules()
        #expect(rules.warningTime(for: at("2027-04-01T00:00:00+08:00")) == at("2027-03-02T00:00:00+08:00"))
        #expect(rules.warningTime(for: at("2027-03-01T00:00:00+08:00")) == at("2027-01-30T00:00:00+08:00"))
        #expect(rules.warningTime(for: at("2028-03-01T00:00:00+08:00")) == at("2028-01-31T00:00:00+08:00"))  // 2028-02 has 29 days
        #expect(rules.warningTime(for: at("2027-05-01T00:00:00+08:00")) == at("2027-04-01T00:00:00+08:00"))
        let expiry = at("2027-04-01T00:00:00+08:00")
        #expect(expiry.millis - rules.warningTime(for: expiry).millis == 30 * 86_400_000)
    }

    @Test func oneWarningPerMemberAndExpiryInstant() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.earnAtOnce(300, at: "2026-03-05T10:00:00+08:00")  // expires 2027-04-01
        m.earnAtOnce(40, at: "2026-04-05T10:00:00+08:00")  // expires 2027-05-01
        let a = try #require(m.warn(of: "2027-04-01T00:00:00+08:00", at: "2027-03-02T00:00:00+08:00").warnings.first)
        let again = try #require(m.warn(of: "2027-04-01T00:00:00+08:00", at: "2027-03-05T00:00:00+08:00").warnings.first)
        let other = try #require(m.warn(of: "2027-05-01T00:00:00+08:00", at: "2027-04-01T00:00:00+08:00").warnings.first)
        #expect(a.points == 300)
        #expect(other.points == 40)
        #expect(a.id == again.id)
        #expect(a.id != other.id)
        let otherMember = ExpiryWarning(member: "m2", expiresAt: at("2027-04-01T00:00:00+08:00"), points: 300, time: a.time)
        #expect(a.id != otherMember.id)
    }

    // MARK: Inactivity

    @Test func registrationStartsTheInactivityClockAndAcceptedPaidOrdersRestartIt() throws {
        var m = PointsHarness(member: "m1", rules: try referenceRules())
        let registration = m.apply(.registered(referrerID: nil), at: "2026-01-01T09:00:00+08:00")
        // 2026-01-01 + 90 days (31 + 28 + 31) = 2026-04-01.
        #expect(registration.inactivityDue == at("2026-04-01T09:00:00+08:00"))
        #expect(m.acct.inactivityDue == at("2026-04-01T09:00:00+08:00"))
        // 2026-02-10 + 90 days = 2026-05-11.
        // The order moves the member's clock; the timer already set stays (no new timer).
        let paid = m.pay("o1", 12_345, at: "2026-02-10T10:00:00+08:00")
        #expect(paid.inactivityDue == nil)
        #expect(m.acct.inactivityDue == at("2026-05-11T10:00:00+08:00"))
        // A refused duplicate order and engagement do not restart it.
        #expect(m.pay("o1", 12_345, at: "2026-03-01T10:00:00+08:00").inactivityDue == nil)
        #expect(m.apply(.checkedIn, at: "2026-03-02T10:00:00+08:00").inactivityDue == nil)
        #expect(m.acct.inactivityDue == at("2026-05-11T10:00:00+08:00"))
        // The timer set at registration fires early: it deducts nothing and re-arms for the clock.
        let before = m.account
        let early = m.deduct(at: "2026-04-01T09:00:00+08:00")
        #expect(early.entries.isEmpty)
        #expect(early.inactivityDue == at("2026-05-11T10:00:00+08:00"))
        #expect(m.account == before)
    }

    @Test func inactivityDeductsTenPercentFlooredFromSoonestExpiringLotsEveryNinetyDays() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.pay("o1", 12_345, at: "2026-02-10T10:00:00+08:00")  // L1: 123, available 02-17 → expires 2027-03-01
        m.release("L1", at: "2026-02-17T10:00:00+08:00")
        m.earnAtOnce(1_000, at: "2026-03-01T10:00:00+08:00")  // L2, expires 2027-04-01
        #expect(m.acct.inactivityDue == at("2026-05-11T10:00:00+08:00"))

        // floor(1123 × 10%) = 112, from L1.
        let first = m.deduct(at: "2026-05-11T10:00:00+08:00")
        let entry = try #require(onlyEntry(first))
        #expect(entry.kind == .deducted)
        #expect(entry.member == "m1")
        #expect(entry.time == at("2026-05-11T10:00:00+08:00"))
        #expect(entry.points == -112)
        #expect(entry.availableDelta == -112)
        #expect(entry.debtDelta == 0)
        #expect(entry.lots == [LotChange(lotID: "L1", delta: -112)])
        #expect(entry.balanceAfter == Balance(available: 1_011, pending: 0, debt: 0))
        #expect(m.lot("L1")?.remaining == 11)
        #expect(m.acct.lifetime.deducted == 112)
        // 2026-05-11 + 90 days = 2026-08-09.
        #expect(first.inactivityDue == at("2026-08-09T10:00:00+08:00"))
        #expect(m.acct.inactivityDue == at("2026-08-09T10:00:00+08:00"))

        // Again, on the reduced balance: floor(1011 × 10%) = 101: L1's 11, then 90 of L2.
        let second = m.deduct(at: "2026-08-09T10:00:00+08:00")
        #expect(onlyEntry(second)?.lots == [LotChange(lotID: "L1", delta: -11), LotChange(lotID: "L2", delta: -90)])
        #expect(onlyEntry(second)?.points == -101)
        #expect(m.balance == Balance(available: 910, pending: 0, debt: 0))
        #expect(second.inactivityDue == at("2026-11-07T10:00:00+08:00"))
        #expect(m.acct.lifetime.deducted == 213)

        // A paid order restarts the clock (2026-09-01 + 90 days = 2026-11-30); the old timer does nothing.
        m.pay("o2", 100, at: "2026-09-01T10:00:00+08:00")  // L3: 1
        #expect(m.acct.inactivityDue == at("2026-11-30T10:00:00+08:00"))
        m.release("L3", at: "2026-09-08T10:00:00+08:00")
        #expect(m.deduct(at: "2026-11-07T10:00:00+08:00").entries.isEmpty)
        #expect(m.acct.inactivityDue == at("2026-11-30T10:00:00+08:00"))
        #expect(m.balance == Balance(available: 911, pending: 0, debt: 0))
        // floor(911 × 10%) = 91 from L2 (expires 2027-04-01, before L3's 2027-10-01).
        let third = m.deduct(at: "2026-11-30T10:00:00+08:00")
        #expect(onlyEntry(third)?.lots == [LotChange(lotID: "L2", delta: -91)])
        #expect(third.inactivityDue == at("2027-02-28T10:00:00+08:00"))
        #expect(m.balance == Balance(available: 820, pending: 0, debt: 0))
        #expect(m.acct.lifetime.deducted == 304)
        m.checkLifecycleInvariants()
    }

    @Test func aDeductionOfZeroLeavesNoEntryButMovesTheClock() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        m.checkEveryStep = true
        m.apply(.checkedIn, at: "2026-01-01T10:00:00+08:00")  // L1: 1
        m.apply(.reviewPosted, at: "2026-01-01T11:00:00+08:00")  // L2: 3
        m.apply(.contentShared, at: "2026-01-01T12:00:00+08:00")  // L3: 5
        // floor(9 × 10%) = 0.
        let zero = m.deduct(at: "2026-04-01T09:00:00+08:00")
        #expect(zero.entries.isEmpty)
        #expect(zero.refusals.isEmpty)
        #expect(zero.inactivityDue == at("2026-06-30T09:00:00+08:00"))
        #expect(m.acct.inactivityDue == at("2026-06-30T09:00:00+08:00"))
        #expect(m.balance == Balance(available: 9, pending: 0, debt: 0))
        #expect(m.acct.lifetime.deducted == 0)
        m.apply(.checkedIn, at: "2026-04-02T10:00:00+08:00")  // L4: 1, expires 2027-05-01
        // floor(10 × 10%) = 1, from L1 (expires 2027-02-01, the first created).
        let one = m.deduct(at: "2026-06-30T09:00:00+08:00")
        #expect(onlyEntry(one)?.lots == [LotChange(lotID: "L1", delta: -1)])
        #expect(one.inactivityDue == at("2026-09-28T09:00:00+08:00"))
        #expect(m.balance == Balance(available: 9, pending: 0, debt: 0))
        m.checkLifecycleInvariants()
    }

    @Test func aDeductionCountsAvailablePointsOnly() throws {
        var program = try referenceProgram()
        program.inactivity.afterDays = 3  // shorter than the pending period
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: PointsRules(program: program))
        m.checkEveryStep = true
        m.earnAtOnce(55, at: "2026-01-01T10:00:00+08:00")  // L1
        m.pay("o1", 50_000, at: "2026-01-02T10:00:00+08:00")  // L2: 500 pending; due 01-05 10:00
        // floor(55 × 10%) = 5; the 500 pending neither count nor pay.
        let entry = try #require(onlyEntry(m.deduct(at: "2026-01-05T10:00:00+08:00")))
        #expect(entry.points == -5)
        #expect(entry.lots == [LotChange(lotID: "L1", delta: -5)])
        #expect(m.balance == Balance(available: 50, pending: 500, debt: 0))
        // In debt nothing is available: nothing to deduct.
        var debtor = memberInDebt(rules: try referenceRules())
        let due = try #require(debtor.acct.inactivityDue)
        #expect(due == at("2026-04-05T10:00:00+08:00"))  // o1 at 2026-01-05 + 90 days
        #expect(debtor.deduct(at: "2026-04-05T10:00:00+08:00").entries.isEmpty)
        #expect(debtor.balance == Balance(available: 0, pending: 0, debt: 500))
    }

    // MARK: Balance record and stored form

    @Test func balanceRecordHasTheNextExpiryAndLifetimeSpentAndExpired() throws {
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: try referenceRules())
        #expect(m.acct.balanceJSON["nextExpiry"] == nil)
        m.earnAtOnce(300, at: "2026-01-10T10:00:00+08:00")  // L1, expires 2027-02-01
        m.earnAtOnce(200, at: "2026-01-20T10:00:00+08:00")  // L2, expires 2027-02-01
        m.earnAtOnce(400, at: "2026-02-10T10:00:00+08:00")  // L3, expires 2027-03-01
        func nextExpiry() -> (at: EventTime?, points: Int64?) {
            let next = m.acct.balanceJSON["nextExpiry"]
            return (next?["at"]?.stringValue.map { at($0) }, next?["points"]?.int64Value)
        }
        #expect(nextExpiry().at == at("2027-02-01T00:00:00+08:00"))
        #expect(nextExpiry().points == 500)
        m.redeem("plant-a-tree", at: "2026-03-01T10:00:00+08:00")  // L1: 200 left
        #expect(nextExpiry().points == 400)
        m.cashOffset(150, order: "shop-1", orderMinor: 1_000, at: "2026-03-02T10:00:00+08:00")  // L1: 50 left
        #expect(nextExpiry().points == 250)
        m.transfer(100, to: "m2", at: "2026-03-03T10:00:00+08:00")  // L1 gone, L2: 150 left
        #expect(nextExpiry().at == at("2027-02-01T00:00:00+08:00"))
        #expect(nextExpiry().points == 150)
        m.expire(at: "2027-02-01T00:00:00+08:00")  // 150
        #expect(nextExpiry().at == at("2027-03-01T00:00:00+08:00"))
        #expect(nextExpiry().points == 400)
        #expect(m.acct.nextExpiry?.at == at("2027-03-01T00:00:00+08:00"))
        #expect(m.acct.nextExpiry?.points == 400)

        let json = m.acct.balanceJSON
        #expect(json["memberId"]?.stringValue == "m1")
        #expect(json["available"]?.int64Value == 400)
        #expect(json["pending"]?.int64Value == 0)
        #expect(json["debt"]?.int64Value == 0)
        #expect(json["lifetimeEarned"]?.int64Value == 900)
        #expect(json["lifetimeSpent"]?.int64Value == 350)  // 100 redeemed + 150 at checkout + 100 sent
        #expect(json["lifetimeRedeemed"]?.int64Value == 100)
        #expect(json["lifetimeCashOffset"]?.int64Value == 150)
        #expect(json["lifetimeTransferredOut"]?.int64Value == 100)
        #expect(json["lifetimeExpired"]?.int64Value == 150)
        #expect(json["lifetimeDeducted"]?.int64Value == 0)
        #expect(json["lifetimeGivenBack"]?.int64Value == 0)
    }

    @Test func storedFormKeepsTransfersInactivityAndEveryLifetimeFigure() throws {
        let rules = try referenceRules()
        var m = PointsHarness.registered(at: "2026-01-01T09:00:00+08:00", rules: rules)
        m.earnAtOnce(10_000, at: "2026-02-01T10:00:00+08:00")
        m.transfer(3_000, to: "m2", at: "2026-03-10T10:00:00+08:00")
        m.transfer(1_000, to: "m3", at: "2026-03-10T11:00:00+08:00")
        m.transfer(500, to: "m2", at: "2026-03-11T10:00:00+08:00")
        m.pay("o1", 10_000, at: "2026-03-12T10:00:00+08:00")
        let account = try #require(m.account)
        #expect(account.inactivityDue == at("2026-06-10T10:00:00+08:00"))  // 2026-03-12 + 90 days
        let day10 = try #require(LocalDate(year: 2026, month: 3, day: 10)).dayNumber
        #expect(account.transfersByDay.count(in: day10) == 4_000)
        #expect(account.transfersByDay.count(in: day10 + 1) == 500)

        var rich = account
        // Distinct values, so two fields swapped in the stored form would show.
        rich.lifetime = LifetimeTotals(earned: 101, reversed: 102)
        rich.lifetime.redeemed = 103
        rich.lifetime.cashOffset = 104
        rich.lifetime.transferredOut = 105
        rich.lifetime.transferredIn = 106
        rich.lifetime.givenBack = 107
        rich.lifetime.expired = 108
        rich.lifetime.deducted = 109
        rich.lifetime.adjustedUp = 110
        rich.lifetime.adjustedDown = 111
        let bytes = rich.encoded()
        let decoded = try PointsAccount.decode(bytes)
        #expect(decoded == rich)
        #expect(decoded.encoded() == bytes)
        #expect(decoded.lifetime.adjustedDown == 111)
        #expect(decoded.transfersByDay.count(in: day10) == 4_000)
        #expect(decoded.inactivityDue == at("2026-06-10T10:00:00+08:00"))
        #expect(decoded.transfersByDay.retention == account.transfersByDay.retention)
    }

    // MARK: Invariants

    @Test func invariantsHoldThroughSpendingTransfersDebtExpiryAndInactivity() throws {
        let rules = try referenceRules()
        var m1 = PointsHarness.registered("m1", at: "2026-01-01T09:00:00+08:00", rules: rules)
        var m2 = PointsHarness.registered("m2", at: "2026-01-02T09:00:00+08:00", rules: rules)
        var ghost = PointsHarness(member: "ghost", rules: rules)
        m1.checkEveryStep = true
        m2.checkEveryStep = true

        m1.pay("o1", 80_000, at: "2026-01-05T10:00:00+08:00")  // L1: 800 pending, expires 2027-02-01
        #expect(m1.acct.inactivityDue == at("2026-04-05T10:00:00+08:00"))
        m1.apply(.checkedIn, at: "2026-01-06T08:00:00+08:00")  // L2: 1, expires 2027-02-01
        m1.release("L1", at: "2026-01-12T10:00:00+08:00")  // 801 available
        m1.earnAtOnce(500, at: "2026-02-03T10:00:00+08:00")  // L3: 500, expires 2027-03-01
        #expect(onlyEntry(m1.redeem("express-delivery", at: "2026-02-04T10:00:00+08:00"))?.lots
            == [LotChange(lotID: "L1", delta: -500)])
        #expect(onlyEntry(m1.cashOffset(301, order: "shop-1", orderMinor: 1_000, at: "2026-02-05T10:00:00+08:00"))?.lots
            == [LotChange(lotID: "L1", delta: -300), LotChange(lotID: "L2", delta: -1)])
        let toM2 = m1.transfer(200, to: "m2", at: "2026-02-06T10:00:00+08:00", id: "t1")  // L3: 300 left
        m2.deliver(try #require(toM2.commands.first))  // m2's L1: 200
        let toGhost = m1.transfer(100, to: "ghost", at: "2026-02-06T11:00:00+08:00", id: "t2")  // L3: 200 left
        let back = ghost.deliver(try #require(toGhost.commands.first))
        m1.deliver(try #require(back.commands.first))  // L4: 100, expires 2027-03-01
        // 200 + 100 (given back, still counted) + 4701 > 5000.
        #expect(onlyRefusal(m1.transfer(4_701, to: "m2", at: "2026-02-06T12:00:00+08:00"))?.reason.rawValue == "daily-limit")
        #expect(m1.balance == Balance(available: 300, pending: 0, debt: 0))
        m1.pay("o2", 30_000, at: "2026-02-10T10:00:00+08:00")  // L5: 300 pending, expires 2027-03-01
        // floor(800 × 50000 / 80000) = 500: o1's own lot is spent, so L3 (200) and L4 (100) by
        // (expiry, creation), and 200 as debt; the pending L5 is not touched.
        let refund = try #require(onlyEntry(m1.refund("o1", "rf1", 50_000, at: "2026-02-11T10:00:00+08:00")))
        #expect(refund.lots == [LotChange(lotID: "L3", delta: -200), LotChange(lotID: "L4", delta: -100)])
        #expect(m1.balance == Balance(available: 0, pending: 300, debt: 200))
        #expect(onlyRefusal(m1.redeem("plant-a-tree", at: "2026-02-12T10:00:00+08:00"))?.reason.rawValue == "negative-balance")
        m1.adjust(150, reason: "goodwill", at: "2026-02-13T10:00:00+08:00")  // L6 goes to the debt: 50 left
        #expect(m1.balance == Balance(available: 0, pending: 300, debt: 50))
        m1.release("L5", at: "2026-02-17T10:00:00+08:00")  // 50 to the debt, 250 left
        #expect(m1.balance == Balance(available: 250, pending: 0, debt: 0))
        m1.adjust(-100, reason: "correction", at: "2026-02-18T10:00:00+08:00")  // L5: 150
        m1.earnAtOnce(1_000, at: "2026-03-05T10:00:00+08:00")  // L7, expires 2027-04-01
        #expect(m1.acct.inactivityDue == at("2026-05-11T10:00:00+08:00"))
        // floor(1150 × 10%) = 115, from L5.
        #expect(onlyEntry(m1.deduct(at: "2026-05-11T10:00:00+08:00"))?.lots == [LotChange(lotID: "L5", delta: -115)])
        m1.pay("o3", 10_000, at: "2026-06-01T10:00:00+08:00")  // L8: 100 pending, expires 2027-07-01
        #expect(m1.acct.inactivityDue == at("2026-08-30T10:00:00+08:00"))
        m1.release("L8", at: "2026-06-08T10:00:00+08:00")
        #expect(m1.deduct(at: "2026-08-09T10:00:00+08:00").entries.isEmpty)  // stale
        // floor(1135 × 10%) = 113: L5's 35, then 78 of L7.
        #expect(onlyEntry(m1.deduct(at: "2026-08-30T10:00:00+08:00"))?.lots
            == [LotChange(lotID: "L5", delta: -35), LotChange(lotID: "L7", delta: -78)])
        #expect(onlyEntry(m1.deduct(at: "2026-11-28T10:00:00+08:00"))?.points == -102)  // floor(1022 × 10%)
        #expect(m1.warn(of: "2027-02-01T00:00:00+08:00", at: "2027-01-02T00:00:00+08:00").warnings.isEmpty)
        #expect(m1.expire(at: "2027-02-01T00:00:00+08:00").entries.isEmpty)
        #expect(m1.warn(of: "2027-03-01T00:00:00+08:00", at: "2027-01-30T00:00:00+08:00").warnings.isEmpty)
        #expect(onlyEntry(m1.deduct(at: "2027-02-26T10:00:00+08:00"))?.points == -92)  // floor(920 × 10%)
        #expect(m1.expire(at: "2027-03-01T00:00:00+08:00").entries.isEmpty)
        #expect(m1.warn(of: "2027-04-01T00:00:00+08:00", at: "2027-03-02T00:00:00+08:00").warnings.map(\.points) == [728])
        #expect(onlyEntry(m1.expire(at: "2027-04-01T00:00:00+08:00"))?.points == -728)

        m2.redeem("plant-a-tree", at: "2026-02-07T10:00:00+08:00")

        // 2701 earned − 500 reversed − 500 redeemed − 301 at checkout − 300 sent + 100 given back
        // + 150 − 100 adjusted − 422 deducted − 728 expired = 100.
        #expect(m1.balance == Balance(available: 100, pending: 0, debt: 0))
        #expect(m1.entries.reduce(Int64(0)) { $0 + $1.points } == 100)
        #expect(m1.acct.lots.map(\.id) == ["L8"])
        #expect(m1.acct.nextExpiry?.at == at("2027-07-01T00:00:00+08:00"))
        #expect(m1.acct.nextExpiry?.points == 100)
        let lifetime = m1.acct.lifetime
        #expect(lifetime.earned == 2_701)  // 800 + 1 + 500 + 300 + 1000 + 100
        #expect(lifetime.reversed == 500)
        #expect(lifetime.redeemed == 500)
        #expect(lifetime.cashOffset == 301)
        #expect(lifetime.transferredOut == 300)
        #expect(lifetime.transferredIn == 0)
        #expect(lifetime.givenBack == 100)
        #expect(lifetime.adjustedUp == 150)
        #expect(lifetime.adjustedDown == 100)
        #expect(lifetime.deducted == 422)  // 115 + 113 + 102 + 92
        #expect(lifetime.expired == 728)
        #expect(lifetime.spent == 1_101)
        #expect(m1.entries.count == 22)
        #expect(m1.refusals.map(\.reason.rawValue) == ["daily-limit", "negative-balance"])
        #expect(Set(m1.entries.map(\.id)).count == m1.entries.count)
        m1.checkLifecycleInvariants()

        #expect(m2.balance == Balance(available: 100, pending: 0, debt: 0))
        #expect(m2.acct.lifetime.transferredIn == 200)
        #expect(m2.acct.lifetime.redeemed == 100)
        m2.checkLifecycleInvariants()
    }
}

// MARK: Decoding the points commands

private func decodedCommand(_ type: String, _ data: JSONValue, sourceLocation: SourceLocation = #_sourceLocation) -> PointsInput? {
    do {
        return try PointsInput.decode(type: type, data: data)
    } catch {
        Issue.record("\(type) \(data) did not decode: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Expects an `invalid-event` whose detail names `field`.
private func expectInvalidCommand(
    _ type: String, _ data: JSONValue, naming field: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        let input = try PointsInput.decode(type: type, data: data)
        Issue.record("expected \(type) \(data) to be refused, got \(input)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code.rawValue == "invalid-event", sourceLocation: sourceLocation)
        #expect(error.detail.contains(field), "detail \"\(error.detail)\" should name \(field)", sourceLocation: sourceLocation)
    }
}

@Suite struct PointsCommandDecodingTests {
    @Test func redeemDecodesWithQuantityOneByDefault() {
        #expect(decodedCommand("points.redeem", ["rewardId": "tea-set"]) == .redeem(Redemption(rewardID: "tea-set", quantity: 1)))
        #expect(decodedCommand("points.redeem", ["rewardId": "tea-set", "quantity": nil]) == .redeem(Redemption(rewardID: "tea-set", quantity: 1)))
        #expect(decodedCommand("points.redeem", ["rewardId": "tea-set", "quantity": 3]) == .redeem(Redemption(rewardID: "tea-set", quantity: 3)))
        #expect(decodedCommand("points.redeem", ["rewardId": "x", "quantity": 1_000]) == .redeem(Redemption(rewardID: "x", quantity: 1_000)))
        // An unknown reward decodes: the rule refuses it.
        #expect(decodedCommand("points.redeem", ["rewardId": "no-such"]) == .redeem(Redemption(rewardID: "no-such")))
        expectInvalidCommand("points.redeem", ["rewardId": "tea-set", "quantity": 0], naming: "data.quantity")
        expectInvalidCommand("points.redeem", ["rewardId": "tea-set", "quantity": 1_001], naming: "data.quantity")
        expectInvalidCommand("points.redeem", ["rewardId": "tea-set", "quantity": -1], naming: "data.quantity")
        expectInvalidCommand("points.redeem", ["rewardId": "tea-set", "quantity": "2"], naming: "data.quantity")
        expectInvalidCommand("points.redeem", ["rewardId": "tea-set", "quantity": .number("1.5")], naming: "data.quantity")
        expectInvalidCommand("points.redeem", [:], naming: "data.rewardId")
        expectInvalidCommand("points.redeem", ["rewardId": ""], naming: "data.rewardId")
        expectInvalidCommand("points.redeem", ["rewardId": 5], naming: "data.rewardId")
    }

    @Test func cashOffsetDecodes() {
        #expect(decodedCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000, "points": 5_000])
            == .cashOffset(CashOffset(orderID: "shop-1", orderMinor: 10_000, points: 5_000)))
        // Over the limit still decodes: the rule refuses it.
        #expect(decodedCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000, "points": 9_000])
            == .cashOffset(CashOffset(orderID: "shop-1", orderMinor: 10_000, points: 9_000)))
        expectInvalidCommand("points.cash-offset", ["orderMinor": 10_000, "points": 5_000], naming: "data.orderId")
        expectInvalidCommand("points.cash-offset", ["orderId": "", "orderMinor": 10_000, "points": 5_000], naming: "data.orderId")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "points": 5_000], naming: "data.orderMinor")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 0, "points": 5_000], naming: "data.orderMinor")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000], naming: "data.points")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000, "points": 0], naming: "data.points")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000, "points": -5], naming: "data.points")
        expectInvalidCommand("points.cash-offset", ["orderId": "shop-1", "orderMinor": 10_000, "points": "5"], naming: "data.points")
    }

    @Test func transferDecodes() {
        #expect(decodedCommand("points.transfer", ["toMemberId": "m2", "points": 500]) == .transfer(Transfer(recipient: "m2", points: 500)))
        // Below the minimum still decodes: the rule refuses it.
        #expect(decodedCommand("points.transfer", ["toMemberId": "m2", "points": 99]) == .transfer(Transfer(recipient: "m2", points: 99)))
        expectInvalidCommand("points.transfer", ["points": 500], naming: "data.toMemberId")
        expectInvalidCommand("points.transfer", ["toMemberId": "", "points": 500], naming: "data.toMemberId")
        expectInvalidCommand("points.transfer", ["recipient": "m2", "points": 500], naming: "data.toMemberId")
        expectInvalidCommand("points.transfer", ["toMemberId": "m2"], naming: "data.points")
        expectInvalidCommand("points.transfer", ["toMemberId": "m2", "points": 0], naming: "data.points")
        expectInvalidCommand("points.transfer", ["toMemberId": "m2", "points": -100], naming: "data.points")
    }

    @Test func adjustDecodesEitherWayWithAnOptionalReasonThatTheRuleRequires() throws {
        #expect(decodedCommand("points.adjust", ["points": -250, "reason": "fraud"]) == .adjust(Adjustment(points: -250, reason: "fraud")))
        #expect(decodedCommand("points.adjust", ["points": 300, "reason": "goodwill"]) == .adjust(Adjustment(points: 300, reason: "goodwill")))
        #expect(decodedCommand("points.adjust", ["points": 300]) == .adjust(Adjustment(points: 300, reason: nil)))
        #expect(decodedCommand("points.adjust", ["points": 300, "reason": nil]) == .adjust(Adjustment(points: 300, reason: nil)))
        #expect(decodedCommand("points.adjust", ["points": 300, "reason": "  "]) == .adjust(Adjustment(points: 300, reason: nil)))
        expectInvalidCommand("points.adjust", ["points": 0, "reason": "x"], naming: "data.points")
        expectInvalidCommand("points.adjust", ["reason": "x"], naming: "data.points")
        expectInvalidCommand("points.adjust", ["points": "5", "reason": "x"], naming: "data.points")
        expectInvalidCommand("points.adjust", ["points": 5, "reason": 7], naming: "data.reason")

        // Without a reason it decodes, and the rule refuses it.
        let input = try #require(decodedCommand("points.adjust", ["points": 300]))
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        let before = m.account
        #expect(onlyRefusal(m.apply(input, at: "2026-03-02T10:00:00+08:00"))?.reason.rawValue == "missing-reason")
        #expect(m.account == before)
    }

    @Test func transferCreditAndGiveBackDecode() {
        #expect(decodedCommand("points.transfer-credit", ["fromMemberId": "m1", "transferId": "t1", "points": 500])
            == .transferCredit(TransferLeg(counterpart: "m1", transferID: "t1", points: 500)))
        #expect(decodedCommand("points.transfer-returned", ["toMemberId": "ghost", "transferId": "t1", "points": 500])
            == .transferReturned(TransferLeg(counterpart: "ghost", transferID: "t1", points: 500)))
        expectInvalidCommand("points.transfer-credit", ["transferId": "t1", "points": 500], naming: "data.fromMemberId")
        expectInvalidCommand("points.transfer-credit", ["fromMemberId": "", "transferId": "t1", "points": 500], naming: "data.fromMemberId")
        expectInvalidCommand("points.transfer-credit", ["fromMemberId": "m1", "points": 500], naming: "data.transferId")
        expectInvalidCommand("points.transfer-credit", ["fromMemberId": "m1", "transferId": "t1", "points": 0], naming: "data.points")
        expectInvalidCommand("points.transfer-returned", ["transferId": "t1", "points": 500], naming: "data.toMemberId")
        expectInvalidCommand("points.transfer-returned", ["toMemberId": "", "transferId": "t1", "points": 500], naming: "data.toMemberId")
        expectInvalidCommand("points.transfer-returned", ["toMemberId": "ghost", "transferId": "", "points": 500], naming: "data.transferId")
        expectInvalidCommand("points.transfer-returned", ["toMemberId": "ghost", "transferId": "t1"], naming: "data.points")
    }

    @Test func pointsCommandsOrderBetweenEngagementAndGrants() {
        // Equal times: member events, orders, refunds, engagement, points commands, grants.
        let engagement = Rank.of(eventType: "engagement.checked-in")
        let grants = Rank.of(eventType: "points.grant")
        for type in ["points.redeem", "points.cash-offset", "points.transfer", "points.adjust"] {
            #expect(Rank.of(eventType: type) > engagement, "\(type)")
            #expect(Rank.of(eventType: type) < grants, "\(type)")
        }
        // A transfer's credit is a command derived like a grant; the give-back, caused by the
        // credit, ranks above it: what a record causes sorts after the record.
        #expect(Rank.of(eventType: "points.transfer-credit") == grants)
        #expect(Rank.of(eventType: "points.transfer-credit") > Rank.of(eventType: "points.transfer"))
        #expect(Rank.of(eventType: "points.transfer-returned") > Rank.of(eventType: "points.transfer-credit"))
        #expect(Rank.of(eventType: "points.referral-reward") > Rank.of(eventType: "order.paid"))
        // Only the points service may send them.
        #expect(EventType.internalCommands.isSuperset(of: ["points.transfer-credit", "points.transfer-returned"]))
        #expect(!EventType.internalCommands.contains("points.transfer"))
        #expect(!EventType.internalCommands.contains("points.adjust"))
    }
}

// MARK: The program file's spending, catalogue and inactivity

private func referenceProgramObject() throws -> JSONObject {
    try #require(try JSONValue.parse(ReferenceProgram.bytes()).objectValue)
}

/// The reference program with `section.key` set to `value` (removed when nil).
private func programEditing(_ section: String, _ key: String, _ value: JSONValue?) throws -> JSONObject {
    var root = try referenceProgramObject()
    var object = try #require(root[section]?.objectValue, "no section \(section)")
    #expect(object[key] != nil || value != nil, "no member \(section).\(key)")
    object[key] = value
    root[section] = .object(object)
    return root
}

/// The reference program with `catalogue[index].key` set to `value` (removed when nil).
private func programEditingReward(_ index: Int, _ key: String, _ value: JSONValue?) throws -> JSONObject {
    var root = try referenceProgramObject()
    var rewards = try #require(root["catalogue"]?.arrayValue)
    var reward = try #require(rewards[index].objectValue)
    reward[key] = value
    rewards[index] = .object(reward)
    root["catalogue"] = .array(rewards)
    return root
}

private func programLoadError(_ root: JSONObject, sourceLocation: SourceLocation = #_sourceLocation) -> ProgramError? {
    do {
        _ = try Program.load(json: JSONValue.object(root).serialized())
        Issue.record("expected the program to be refused", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

private func programLoads(_ root: JSONObject) throws -> Program {
    try Program.load(json: JSONValue.object(root).serialized())
}

@Suite struct ProgramSpendingTests {
    @Test func referenceProgramHasTheSpendingCatalogueAndInactivityFigures() throws {
        let program = try referenceProgram()
        #expect(program.spending == Program.Spending(
            minimumRedemptionPoints: 100, cashOffsetPointsPerCNY: 100, cashOffsetMaxPercentOfOrder: 50,
            transferMinimumPoints: 100, transferDailyLimitPoints: 5_000))
        #expect(program.inactivity == Program.Inactivity(afterDays: 90, deductionPercent: 10))
        #expect(program.lots.expiryWarningDays == 30)
        #expect(program.lots.expiryMonthsAfterAvailable == 12)
        let rewards = program.catalogue.values.sorted { $0.id < $1.id }
        #expect(rewards.map(\.id) == ["coupon-20", "express-delivery", "plant-a-tree", "tea-set"])
        #expect(rewards.map(\.kind) == [.coupon, .service, .charity, .goods])
        #expect(rewards.map(\.points) == [2_000, 500, 100, 3_000])
        #expect(rewards.map(\.stock) == [nil, nil, nil, 200])
        #expect(rewards.allSatisfy { !$0.name.isEmpty })
        #expect(rewards.allSatisfy { $0.points >= program.spending.minimumRedemptionPoints })
    }

    @Test func aRewardCheaperThanTheMinimumRedemptionIsRefusedNamingIt() throws {
        let cheap = programLoadError(try programEditingReward(3, "points", 99))
        #expect(cheap?.path == "catalogue[3].points")
        #expect(programLoadError(try programEditingReward(0, "points", 0))?.path == "catalogue[0].points")
        #expect(programLoadError(try programEditingReward(1, "points", -100))?.path == "catalogue[1].points")
        // Raising the minimum above express delivery's 500 refuses it (the first one too cheap).
        #expect(programLoadError(try programEditing("spending", "minimumRedemptionPoints", 600))?.path == "catalogue[2].points")
        // Exactly the minimum is fine.
        #expect(try programLoads(try programEditingReward(2, "points", 100)).catalogue["express-delivery"]?.points == 100)
    }

    @Test func badRewardsAreRefusedNamingTheField() throws {
        let kind = programLoadError(try programEditingReward(1, "kind", "voucher"))
        #expect(kind?.path == "catalogue[1].kind")
        #expect(kind?.problem.contains("voucher") == true)
        #expect(programLoadError(try programEditingReward(0, "kind", "Goods"))?.path == "catalogue[0].kind")
        #expect(programLoadError(try programEditingReward(2, "id", "tea-set"))?.path == "catalogue[2].id")
        #expect(programLoadError(try programEditingReward(0, "stock", -1))?.path == "catalogue[0].stock")
        #expect(programLoadError(try programEditingReward(0, "points", nil))?.path == "catalogue[0].points")
        #expect(programLoadError(try programEditingReward(3, "id", nil))?.path == "catalogue[3].id")
        #expect(try programLoads(try programEditingReward(0, "stock", 0)).catalogue["tea-set"]?.stock == 0)
        #expect(try programLoads(try programEditingReward(1, "stock", 10)).catalogue["coupon-20"]?.stock == 10)
    }

    @Test func pointsPerCNYMustDivideOneHundred() throws {
        for value: Int64 in [30, 7, 200, 99] {
            #expect(programLoadError(try programEditing("spending", "cashOffsetPointsPerCNY", .int(value)))?.path
                == "spending.cashOffsetPointsPerCNY", "\(value)")
        }
        #expect(programLoadError(try programEditing("spending", "cashOffsetPointsPerCNY", 0))?.path == "spending.cashOffsetPointsPerCNY")
        for value: Int64 in [1, 20, 50, 100] {
            #expect(try programLoads(try programEditing("spending", "cashOffsetPointsPerCNY", .int(value))).spending.cashOffsetPointsPerCNY == value)
        }
    }

    @Test func percentagesMustBeFromZeroToOneHundred() throws {
        for (section, key) in [("spending", "cashOffsetMaxPercentOfOrder"), ("inactivity", "deductionPercent")] {
            #expect(programLoadError(try programEditing(section, key, 101))?.path == "\(section).\(key)")
            #expect(programLoadError(try programEditing(section, key, -1))?.path == "\(section).\(key)")
            #expect(try programLoads(try programEditing(section, key, 0)).spending.cashOffsetMaxPercentOfOrder == (key == "deductionPercent" ? 50 : 0))
            #expect(try programLoads(try programEditing(section, key, 100)).inactivity.deductionPercent == (key == "deductionPercent" ? 100 : 10))
        }
    }

    @Test func missingSpendingFieldsAreNamed() throws {
        let fields: [(String, String)] = [
            ("spending", "minimumRedemptionPoints"), ("spending", "cashOffsetPointsPerCNY"),
            ("spending", "cashOffsetMaxPercentOfOrder"), ("spending", "transferMinimumPoints"),
            ("spending", "transferDailyLimitPoints"), ("inactivity", "afterDays"), ("inactivity", "deductionPercent"),
            ("lots", "expiryWarningDays"),
        ]
        for (section, key) in fields {
            let error = programLoadError(try programEditing(section, key, nil))
            #expect(error?.path == "\(section).\(key)")
            #expect(error?.problem == "missing", "\(section).\(key)")
        }
        for section in ["spending", "catalogue", "inactivity"] {
            var root = try referenceProgramObject()
            root[section] = nil
            #expect(programLoadError(root)?.path == section)
        }
        #expect(programLoadError(try programEditing("inactivity", "afterDays", 0))?.path == "inactivity.afterDays")
        #expect(programLoadError(try programEditing("spending", "transferMinimumPoints", 0))?.path == "spending.transferMinimumPoints")
        #expect(programLoadError(try programEditing("lots", "expiryWarningDays", -1))?.path == "lots.expiryWarningDays")
    }
}
