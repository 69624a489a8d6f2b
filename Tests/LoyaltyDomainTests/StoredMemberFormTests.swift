import Testing

@testable import LoyaltyDomain
import ReferenceProgram

/// The tiers and campaigns services store each member in the compact form and still read the
/// JSON form that earlier builds stored: either way the member reads back whole.
@Suite struct StoredMemberFormTests {
    let levels = try! Program.load(json: ReferenceProgram.bytes()).tiers.levels

    func tierMember() -> TierMember {
        var member = TierMember(member: "会员-1", since: EventTime(millis: 1_767_225_600_000))
        member.level = 2
        member.statusVersion = 41
        member.payments = [TimedAmount(time: EventTime(millis: 1_770_000_000_000), amountMinor: 129_900), TimedAmount(time: EventTime(millis: -5), amountMinor: 1)]
        member.refunds = [TimedAmount(time: EventTime(millis: 1_771_000_000_000), amountMinor: 30_000)]
        member.ordersByMonth.add(in: 673)
        member.ordersByMonth.add(in: 674, amount: 3)
        member.orders = [
            "O-1": TierOrder(time: EventTime(millis: 1_770_000_000_000), paidMinor: 129_900, refundedMinor: 30_000, bonus: 200, bonusReversed: 46),
            "O-0": TierOrder(time: EventTime(millis: 0), paidMinor: 1, bonus: 0),
        ]
        member.refundIDs = ["R-2", "R-1"]
        return member
    }

    func campaignMember() -> CampaignMember {
        var member = CampaignMember(member: "会员-1", since: EventTime(millis: 1_767_225_600_000))
        member.tier = tierMember()
        member.registeredAt = EventTime(millis: 1_767_225_600_000)
        member.registrationRead = true
        member.profile.birthday = Birthday.parse("1990-07-15")
        member.profile.locale = "en"
        member.profile.marketingConsent = true
        member.tierMonth = 673
        member.paidOrders = 12
        member.dormantSince = EventTime(millis: 1_770_000_000_000)
        member.rewardedReferrals = 2
        member.referralsByMonth.add(in: 673, amount: 2)
        member.checkInDays.add(in: 20_450)
        member.lastCheckInDay = 20_450
        member.streakLength = 5
        member.bonusOrders = ["O-1": BonusOrder(campaign: "double-11", paidMinor: 129_900, bonus: 650, reversed: 150)]
        member.stats = ["double-11": MemberCampaignStats(rewards: 1, points: 650, treated: true, control: false),
                        "win-back": MemberCampaignStats(rewards: 0, points: 0, treated: false, control: true)]
        member.exposures = [Exposure(campaign: "win-back", time: EventTime(millis: 1_769_000_000_000), control: true)]
        return member
    }

    /// A damaged state is an error, never a trap.
    func expectRefused(_ bytes: [UInt8], decode: ([UInt8]) throws -> Void) {
        for length in [1, bytes.count / 2, bytes.count - 1] {
            #expect(throws: (any Error).self) { try decode(Array(bytes.prefix(length))) }
        }
        #expect(throws: (any Error).self) { try decode(bytes + [0]) }
    }

    @Test func aTierMemberReadsBackFromEitherForm() throws {
        let member = tierMember()
        let compact = member.encoded(levels: levels)
        #expect(try TierMember.decode(compact, levels: levels) == member)
        #expect(try TierMember.decode(member.encodedAsJSON(levels: levels), levels: levels) == member)
        #expect(compact.count * 2 < member.encodedAsJSON(levels: levels).count)
        let fresh = TierMember(member: "m", since: EventTime(millis: 0))
        #expect(try TierMember.decode(fresh.encoded(levels: levels), levels: levels) == fresh)
        expectRefused(compact) { _ = try TierMember.decode($0, levels: levels) }
    }

    @Test func aTierMemberWhoseLevelLeftTheLadderReadsAsTheFirst() throws {
        var member = tierMember()
        member.level = levels.count - 1
        let shorter = Array(levels.dropLast())
        #expect(try TierMember.decode(member.encoded(levels: levels), levels: shorter).level == 0)
        #expect(try TierMember.decode(member.encodedAsJSON(levels: levels), levels: shorter).level == 0)
    }

    @Test func aCampaignMemberReadsBackFromEitherForm() throws {
        let member = campaignMember()
        let compact = member.encoded()
        #expect(try CampaignMember.decode(compact, tier: member.tier) == member)
        #expect(try CampaignMember.decode(member.encodedAsJSON(), tier: member.tier) == member)
        #expect(compact.count * 2 < member.encodedAsJSON().count)
        let fresh = CampaignMember(member: "m", since: EventTime(millis: 0))
        #expect(try CampaignMember.decode(fresh.encoded(), tier: fresh.tier) == fresh)
        expectRefused(compact) { _ = try CampaignMember.decode($0, tier: member.tier) }
    }
}
