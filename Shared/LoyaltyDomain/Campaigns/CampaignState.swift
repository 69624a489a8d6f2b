/// Everything the campaign rules know of one member.
public struct CampaignMember: Sendable, Equatable {
    public var member: String
    public var registeredAt: EventTime?
    /// A `member.registered` of the member has been read (even one refused, or read after a
    /// closure): points counts a referral for the first one only.
    public var registrationRead = false
    public var closed = false
    public var profile = MemberProfile()
    /// The member's tier, kept with the shared tier rules so that "the tier before the order"
    /// is exact without waiting on the tiers service.
    public var tier: TierMember
    /// The local month whose start was the last month boundary applied to `tier`.
    public var tierMonth: Int64?
    /// Accepted paid orders so far.
    public var paidOrders: Int64 = 0
    /// Start of the dormancy clock: registration, then each accepted paid order.
    public var dormantSince: EventTime?
    /// Rewarded referrals so far: admitted under the monthly cap by the rule points rewards by.
    public var rewardedReferrals: Int64 = 0
    /// Referrals admitted per local month (`EngagementRules.admitReferral`).
    public var referralsByMonth = PeriodCounts(retention: PeriodCounts.monthlyRetention)
    /// Days checked in, the latest day and the streak then (`EngagementRules.checkIn`).
    public var checkInDays = PeriodCounts(retention: PeriodCounts.dailyRetention)
    public var lastCheckInDay: Int64?
    public var streakLength: Int64 = 0
    /// Orders that earned a campaign bonus, for reversing it on refunds.
    public var bonusOrders: IDDictionary<BonusOrder> = [:]
    /// What the member has had from each campaign.
    public var stats: [String: MemberCampaignStats] = [:]
    /// Triggers of campaigns with a control group in the last `upliftWindowDays`.
    public var exposures: [Exposure] = []

    public init(member: String, since: EventTime) {
        self.member = member
        tier = TierMember(member: member, since: since)
    }

    /// Whether the member was registered (and not closed) at `time`.
    public func isMember(at time: EventTime) -> Bool {
        guard let registeredAt, !closed else { return false }
        return registeredAt <= time
    }
}

/// An order's campaign bonus and how much of it refunds have taken back.
public struct BonusOrder: Sendable, Equatable {
    public var campaign: String
    public var paidMinor: Int64
    public var bonus: Int64
    public var reversed: Int64 = 0

    public init(campaign: String, paidMinor: Int64, bonus: Int64, reversed: Int64 = 0) {
        self.campaign = campaign
        self.paidMinor = paidMinor
        self.bonus = bonus
        self.reversed = reversed
    }
}

/// A member's tally with one campaign, for the per-member cap and distinct counts.
public struct MemberCampaignStats: Sendable, Equatable {
    public var rewards: Int64 = 0
    public var points: Int64 = 0
    public var treated = false
    public var control = false
}

/// A trigger of a campaign with a control group: the member's orders in the window after it
/// count for the treated or the control group.
public struct Exposure: Sendable, Equatable {
    public var campaign: String
    public var time: EventTime
    public var control: Bool
}

/// What the campaign rules add to as they decide: the running results of the members at hand
/// (one task's, kept and published per task), and the points each campaign has granted in
/// all, which its budget is checked against.
public struct CampaignTotals: Sendable, Equatable {
    /// By campaign: the results of the members at hand.
    public var results: [String: CampaignResults] = [:]
    /// By campaign: points granted to every member, those at hand included.
    public var budgetGranted: [String: Int64] = [:]
    /// How a budget's points left are learnt: counted from `budgetGranted` (the default), or
    /// claimed of the keeper of budgets and answered by it.
    public var budgetView: BudgetView = .counted
    /// While ``BudgetView/probing``: what the decisions asked of budgets.
    public var claim = BudgetClaim()

    public init(results: [String: CampaignResults] = [:], budgetGranted: [String: Int64] = [:]) {
        self.results = results
        self.budgetGranted = budgetGranted
    }
}

/// The running results of one campaign (kept and published by the campaigns service).
public struct CampaignResults: Sendable, Equatable {
    /// Distinct members rewarded.
    public var membersReached: Int64 = 0
    public var rewards: Int64 = 0
    public var pointsGranted: Int64 = 0
    /// Campaign bonus taken back by refunds (the budget is not refilled by it).
    public var pointsReversed: Int64 = 0
    public var couponsIssued: Int64 = 0
    public var badgesAwarded: Int64 = 0
    /// For campaigns with a control group: treated and held-out members, and their orders
    /// and revenue in the window after each trigger.
    public var treated = GroupFigures()
    public var control = GroupFigures()
    /// Increases with every change, so a reader can keep the newest of two records.
    public var revision: Int64 = 0

    public init() {}

    /// Figures of one group.
    public struct GroupFigures: Sendable, Equatable {
        public var members: Int64 = 0
        public var triggers: Int64 = 0
        public var orders: Int64 = 0
        public var revenueMinor: Int64 = 0
    }
}

extension CampaignMember {
    static let compactFormTag: UInt8 = 0xB7

    /// The member as the campaigns service stores it (the tier separately, see `TierMember`), in
    /// the compact form (``CompactWriter``): the fields of the JSON form, in its order.
    public func encoded() -> [UInt8] {
        var w = CompactWriter(tag: Self.compactFormTag, capacity: 128 + bonusOrders.count * 32 + stats.count * 24 + exposures.count * 24)
        w.string(member)
        w.optional(registeredAt) { $0.int($1.millis) }
        w.bool(registrationRead)
        w.bool(closed)
        w.optional(profile.birthday) { $0.string($1.description) }
        w.string(profile.locale)
        w.bool(profile.marketingConsent)
        w.optional(tierMonth) { $0.int($1) }
        w.int(paidOrders)
        w.optional(dormantSince) { $0.int($1.millis) }
        w.int(rewardedReferrals)
        referralsByMonth.write(to: &w)
        checkInDays.write(to: &w)
        w.optional(lastCheckInDay) { $0.int($1) }
        w.int(streakLength)
        w.int(bonusOrders.count)
        for (id, order) in bonusOrders.sortedByID() {
            w.string(id); w.string(order.campaign); w.int(order.paidMinor); w.int(order.bonus); w.int(order.reversed)
        }
        w.int(stats.count)
        for (id, stats) in self.stats.sorted(by: { $0.key < $1.key }) {
            w.string(id); w.int(stats.rewards); w.int(stats.points); w.bool(stats.treated); w.bool(stats.control)
        }
        w.int(exposures.count)
        for exposure in exposures { w.string(exposure.campaign); w.int(exposure.time.millis); w.bool(exposure.control) }
        return w.bytes
    }

    /// The JSON stored form of earlier builds (version 1), which ``decode(_:tier:)`` still reads.
    public func encodedAsJSON() -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("v"); w.int(1)
        w.key("member"); w.string(member)
        if let registeredAt { w.key("registeredAt"); w.int(registeredAt.millis) }
        w.key("registrationRead"); w.bool(registrationRead)
        w.key("closed"); w.bool(closed)
        if let birthday = profile.birthday { w.key("birthday"); w.string(birthday.description) }
        w.key("locale"); w.string(profile.locale)
        w.key("consent"); w.bool(profile.marketingConsent)
        if let tierMonth { w.key("tierMonth"); w.int(tierMonth) }
        w.key("paidOrders"); w.int(paidOrders)
        if let dormantSince { w.key("dormantSince"); w.int(dormantSince.millis) }
        w.key("referrals"); w.int(rewardedReferrals)
        w.key("referralsByMonth"); referralsByMonth.write(to: &w)
        w.key("checkInDays"); checkInDays.write(to: &w)
        if let lastCheckInDay { w.key("lastCheckInDay"); w.int(lastCheckInDay) }
        w.key("streak"); w.int(streakLength)
        w.key("bonusOrders"); w.beginArray()
        for (id, order) in bonusOrders.sortedByID() {
            w.beginArray(); w.string(id); w.string(order.campaign); w.int(order.paidMinor); w.int(order.bonus); w.int(order.reversed); w.endArray()
        }
        w.endArray()
        w.key("stats"); w.beginArray()
        for (id, stats) in self.stats.sorted(by: { $0.key < $1.key }) {
            w.beginArray(); w.string(id); w.int(stats.rewards); w.int(stats.points); w.bool(stats.treated); w.bool(stats.control); w.endArray()
        }
        w.endArray()
        w.key("exposures"); w.beginArray()
        for exposure in exposures {
            w.beginArray(); w.string(exposure.campaign); w.int(exposure.time.millis); w.bool(exposure.control); w.endArray()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    /// Reads a member stored by `encoded()`, with its tier.
    public static func decode(_ bytes: [UInt8], tier: TierMember) throws -> CampaignMember {
        if bytes.first == compactFormTag { return try decodeCompact(bytes, tier: tier) }
        guard let root = try JSONValue.parse(bytes).objectValue, root["v"]?.int64Value == 1 else {
            throw JSONFieldError(path: "campaign member", problem: "not a stored campaign member of version 1")
        }
        var member = CampaignMember(member: try root.string("member"), since: tier.levelSince)
        member.tier = tier
        member.registeredAt = try root.optionalInt64("registeredAt").map { EventTime(millis: $0) }
        member.registrationRead = root["registrationRead"]?.boolValue ?? (member.registeredAt != nil)
        member.closed = try root.bool("closed")
        member.profile.birthday = try root.optionalString("birthday").flatMap(Birthday.parse)
        member.profile.locale = try root.string("locale")
        member.profile.marketingConsent = try root.bool("consent")
        member.tierMonth = try root.optionalInt64("tierMonth")
        member.paidOrders = try root.int64("paidOrders")
        member.dormantSince = try root.optionalInt64("dormantSince").map { EventTime(millis: $0) }
        member.rewardedReferrals = try root.int64("referrals")
        // Stores from before campaigns counted streaks and referrals themselves start empty.
        if root["referralsByMonth"] != nil { member.referralsByMonth = try PeriodCounts.read(root["referralsByMonth"]) }
        if root["checkInDays"] != nil { member.checkInDays = try PeriodCounts.read(root["checkInDays"]) }
        member.lastCheckInDay = try root.optionalInt64("lastCheckInDay")
        member.streakLength = try root.optionalInt64("streak") ?? 0
        for raw in try root.array("bonusOrders") {
            guard let f = raw.arrayValue, f.count == 5, let id = f[0].stringValue, let campaign = f[1].stringValue,
                  let paid = f[2].int64Value, let bonus = f[3].int64Value, let reversed = f[4].int64Value else {
                throw JSONFieldError(path: "campaign member.bonusOrders", problem: "expected [order, campaign, paid, bonus, reversed]")
            }
            member.bonusOrders[id] = BonusOrder(campaign: campaign, paidMinor: paid, bonus: bonus, reversed: reversed)
        }
        for raw in try root.array("stats") {
            guard let f = raw.arrayValue, f.count == 5, let id = f[0].stringValue, let rewards = f[1].int64Value,
                  let points = f[2].int64Value, let treated = f[3].boolValue, let control = f[4].boolValue else {
                throw JSONFieldError(path: "campaign member.stats", problem: "expected [campaign, rewards, points, treated, control]")
            }
            member.stats[id] = MemberCampaignStats(rewards: rewards, points: points, treated: treated, control: control)
        }
        for raw in try root.array("exposures") {
            guard let f = raw.arrayValue, f.count == 3, let id = f[0].stringValue, let time = f[1].int64Value, let control = f[2].boolValue else {
                throw JSONFieldError(path: "campaign member.exposures", problem: "expected [campaign, time, control]")
            }
            member.exposures.append(Exposure(campaign: id, time: EventTime(millis: time), control: control))
        }
        return member
    }

    private static func decodeCompact(_ bytes: [UInt8], tier: TierMember) throws(CompactFormError) -> CampaignMember {
        var r = try CompactReader(bytes, tag: compactFormTag, what: "campaign member")
        func problem(_ text: String) -> CompactFormError { CompactFormError(what: "campaign member", problem: text) }
        var member = CampaignMember(member: try r.string(), since: tier.levelSince)
        member.tier = tier
        member.registeredAt = try r.optional { reader throws(CompactFormError) in EventTime(millis: try reader.int()) }
        member.registrationRead = try r.bool()
        member.closed = try r.bool()
        if let birthday = try r.optional({ reader throws(CompactFormError) in try reader.string() }) {
            guard let parsed = Birthday.parse(birthday) else { throw problem("no birthday \(birthday)") }
            member.profile.birthday = parsed
        }
        member.profile.locale = try r.string()
        member.profile.marketingConsent = try r.bool()
        member.tierMonth = try r.optional { reader throws(CompactFormError) in try reader.int() }
        member.paidOrders = try r.int()
        member.dormantSince = try r.optional { reader throws(CompactFormError) in EventTime(millis: try reader.int()) }
        member.rewardedReferrals = try r.int()
        member.referralsByMonth = try PeriodCounts.read(&r)
        member.checkInDays = try PeriodCounts.read(&r)
        member.lastCheckInDay = try r.optional { reader throws(CompactFormError) in try reader.int() }
        member.streakLength = try r.int()
        for _ in 0..<(try r.count()) {
            let (id, campaign) = (try r.string(), try r.string())
            let (paid, bonus, reversed) = (try r.int(), try r.int(), try r.int())
            member.bonusOrders[id] = BonusOrder(campaign: campaign, paidMinor: paid, bonus: bonus, reversed: reversed)
        }
        for _ in 0..<(try r.count()) {
            let id = try r.string()
            let (rewards, points) = (try r.int(), try r.int())
            member.stats[id] = MemberCampaignStats(rewards: rewards, points: points, treated: try r.bool(), control: try r.bool())
        }
        for _ in 0..<(try r.count()) {
            let (id, time) = (try r.string(), try r.int())
            member.exposures.append(Exposure(campaign: id, time: EventTime(millis: time), control: try r.bool()))
        }
        guard r.isAtEnd else { throw problem("bytes left after the member") }
        return member
    }
}

extension CampaignResults {
    /// The `data` of a results record of one task (and its stored form): the task's members'
    /// results, and the budget as `budgetGranted` leaves it (nil: `budgetLeft` is null, the
    /// keeper of budgets publishes it).
    public func write(campaign: String, task: Int32, tasks: Int32, budgetPoints: Int64?, budgetGranted: Int64?, to w: inout JSONWriter) {
        w.beginObject()
        w.key("campaignId"); w.string(campaign)
        w.key("task"); w.int(Int64(task))
        w.key("tasks"); w.int(Int64(tasks))
        w.key("revision"); w.int(revision)
        w.key("membersReached"); w.int(membersReached)
        w.key("rewards"); w.int(rewards)
        w.key("pointsGranted"); w.int(pointsGranted)
        w.key("pointsReversed"); w.int(pointsReversed)
        if let budgetPoints {
            w.key("budgetPoints"); w.int(budgetPoints)
            w.key("budgetLeft")
            if let budgetGranted { w.int(max(0, budgetPoints - budgetGranted)) } else { w.null() }
        } else {
            w.key("budgetPoints"); w.null()
            w.key("budgetLeft"); w.null()
        }
        w.key("couponsIssued"); w.int(couponsIssued)
        w.key("badgesAwarded"); w.int(badgesAwarded)
        for (name, group) in [("treated", treated), ("control", control)] as [(StaticString, GroupFigures)] {
            w.key(name); w.beginObject()
            w.key("members"); w.int(group.members)
            w.key("triggers"); w.int(group.triggers)
            w.key("orders"); w.int(group.orders)
            w.key("revenueMinor"); w.int(group.revenueMinor)
            w.endObject()
        }
        w.endObject()
    }

    /// Reads results written by `write(campaign:task:tasks:budgetPoints:budgetGranted:to:)`.
    public static func read(_ object: JSONObject) throws -> CampaignResults {
        var results = CampaignResults()
        results.revision = try object.int64("revision")
        results.membersReached = try object.int64("membersReached")
        results.rewards = try object.int64("rewards")
        results.pointsGranted = try object.int64("pointsGranted")
        results.pointsReversed = try object.int64("pointsReversed")
        results.couponsIssued = try object.int64("couponsIssued")
        results.badgesAwarded = try object.int64("badgesAwarded")
        for (name, path) in [("treated", \CampaignResults.treated), ("control", \CampaignResults.control)] {
            let group = try object.object(name)
            results[keyPath: path] = GroupFigures(
                members: try group.int64("members", at: name), triggers: try group.int64("triggers", at: name),
                orders: try group.int64("orders", at: name), revenueMinor: try group.int64("revenueMinor", at: name))
        }
        return results
    }
}
