import Testing

@testable import Basics
@testable import LoyaltyDomain

/// The worked year of docs/points-lifecycle.md, step by step: if this fails, the doc is wrong.
@Suite struct WorkedYearTests {
    @Test func meisYearAsDocumented() throws {
        let rules = try referenceRules()
        var mei = PointsHarness.registered("mei", at: "2026-01-10T09:00:00+08:00", rules: rules)
        #expect(mei.acct.inactivityDue == at("2026-04-10T09:00:00+08:00"))

        mei.pay("M-1", 60_000, at: "2026-01-12T20:00:00+08:00")
        #expect(mei.acct.inactivityDue == at("2026-04-12T20:00:00+08:00"))
        mei.release("L1", at: "2026-01-19T20:00:00+08:00")
        #expect(mei.acct.lots.first?.expiresAt == at("2027-02-01T00:00:00+08:00"))
        mei.apply(.checkedIn, at: "2026-02-03T10:00:00+08:00")
        #expect(mei.balance.available == 601)

        #expect(onlyRefusal(mei.redeem("coupon-20", at: "2026-02-14T12:00:00+08:00"))?.reason.rawValue == "insufficient-balance")
        let redeemed = try #require(onlyEntry(mei.redeem("express-delivery", at: "2026-02-14T12:05:00+08:00")))
        #expect(redeemed.lots == [LotChange(lotID: "L1", delta: -500)])
        #expect(mei.balance.available == 101)

        let transfer = mei.transfer(100, to: "ghost", at: "2026-03-01T10:00:00+08:00")
        #expect(transfer.entries.first?.lots == [LotChange(lotID: "L1", delta: -100)])
        guard case .transferCredit(_, let leg, let time)? = transfer.commands.first else {
            Issue.record("no credit command")
            return
        }
        var ghost: PointsAccount?
        let atGhost = rules.apply(PointsEvent(id: "transfer-credit/t", time: time, member: "ghost", input: .transferCredit(leg)), to: &ghost)
        let giveBack = try #require(atGhost.commands.first)
        let returned = try #require(onlyEntry(mei.deliver(giveBack)))
        #expect(returned.kind == .returned)
        #expect(returned.lots == [LotChange(lotID: "L3", delta: 100, expiresAt: at("2027-04-01T00:00:00+08:00"))])
        #expect(mei.lot("L3")?.expiresAt == at("2027-04-01T00:00:00+08:00"))
        #expect(mei.balance.available == 101)

        let offset = try #require(onlyEntry(mei.cashOffset(80, order: "M-2", orderMinor: 30_000, at: "2026-03-05T19:00:00+08:00")))
        #expect(offset.lots == [LotChange(lotID: "L2", delta: -1), LotChange(lotID: "L3", delta: -79)])
        #expect(mei.balance.available == 21)

        #expect(onlyEntry(mei.deduct(at: "2026-04-12T20:00:00+08:00"))?.points == -2)
        #expect(onlyEntry(mei.deduct(at: "2026-07-11T20:00:00+08:00"))?.points == -1)
        #expect(onlyEntry(mei.deduct(at: "2026-10-09T20:00:00+08:00"))?.points == -1)
        #expect(onlyEntry(mei.deduct(at: "2027-01-07T20:00:00+08:00"))?.points == -1)
        #expect(mei.balance.available == 16)

        #expect(mei.warn(of: "2027-02-01T00:00:00+08:00", at: "2027-01-02T00:00:00+08:00").warnings.isEmpty)
        #expect(mei.warn(of: "2027-04-01T00:00:00+08:00", at: "2027-03-02T00:00:00+08:00").warnings.first?.points == 16)
        #expect(rules.warningTime(for: at("2027-04-01T00:00:00+08:00")) == at("2027-03-02T00:00:00+08:00"))
        #expect(mei.expire(at: "2027-02-01T00:00:00+08:00").entries.isEmpty)
        #expect(onlyEntry(mei.expire(at: "2027-04-01T00:00:00+08:00"))?.points == -16)
        #expect(mei.deduct(at: "2027-04-07T20:00:00+08:00").entries.isEmpty)
        #expect(mei.balance == Balance())
        #expect(mei.acct.lifetime.earned == 601)
        #expect(mei.acct.lifetime.spent == 680)
        #expect(mei.acct.lifetime.givenBack == 100)
        #expect(mei.acct.lifetime.deducted == 5)
        #expect(mei.acct.lifetime.expired == 16)
    }
}
