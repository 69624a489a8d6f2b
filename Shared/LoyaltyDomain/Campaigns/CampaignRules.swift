/// Points for the points service from a campaign.
public struct CampaignGrant: Sendable, Equatable {
    public var campaign: String
    public var points: Int64
    /// Set for an order's campaign bonus (pending with the order); nil for a reward available at once.
    public var orderID: String?
}

/// Part of an order's campaign bonus to take back after a refund.
public struct CampaignReversal: Sendable, Equatable {
    public var campaign: String
    public var points: Int64
    public var orderID: String
    public var refundID: String
}

/// A reward given to a member, published as a `campaign.rewarded` event.
public struct CampaignAward: Sendable, Equatable {
    public var campaign: String
    public var version: Int64
    public var name: String
    public var trigger: String
    public var points: Int64
    public var multiplierTenths: Int64?
    public var coupon: String?
    public var badge: String?
    public var orderID: String?
}

/// A timer the campaigns service keeps per member.
public struct CampaignTimer: Sendable, Equatable {
    public enum Kind: String, Sendable { case birthday, dormant }
    public var kind: Kind
    /// The campaign for dormant timers; `birthday` for the birthday timer.
    public var ref: String
    public var due: EventTime
}

/// What applying one input or timer decided.
public struct CampaignDecision: Sendable, Equatable {
    public var grants: [CampaignGrant] = []
    public var reversals: [CampaignReversal] = []
    public var awards: [CampaignAward] = []
    public var timers: [CampaignTimer] = []
    /// Dormant timers to drop before `timers` are set (a paid order restarts the clock).
    public var cancelsDormantTimers = false
    /// Campaigns whose results changed.
    public var touched: Set<String> = []
    public init() {}
}

/// The campaign rules (DOMAIN.md, "Campaigns"), pure functions of (member, input, campaigns in
/// effect, running results, program). `totals` carries the running results of the members at
/// hand and what each budget has granted in all, so budgets are enforced against it.
public struct CampaignRules: Sendable {
    public let program: Program
    public let tierRules: TierRules
    private let points: PointsRules
    /// Orders and revenue count for a trigger of a campaign with a control group this long after it.
    public static let upliftWindowDays: Int64 = 14

    public init(program: Program) {
        self.program = program
        tierRules = TierRules(program: program)
        points = PointsRules(program: program)
    }

    private var calendar: ProgramCalendar { program.calendar }

    // MARK: Members

    /// `member.registered`: the profile, the dormancy clock, the birthday timer and dormant timers.
    public func register(_ data: JSONObject, at time: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition]) throws(JSONFieldError) -> CampaignDecision {
        var decision = CampaignDecision()
        // A closure read before the registration: the member stays closed, the profile unkept.
        guard member.registeredAt == nil, !member.closed else { return decision }
        try member.profile.update(from: data)
        member.registeredAt = time
        member.dormantSince = time
        if let birthday = member.profile.birthday {
            decision.timers.append(CampaignTimer(kind: .birthday, ref: "birthday", due: birthday.next(after: time, calendar: calendar)))
        }
        armDormantTimers(from: time, campaigns: campaigns, &decision)
        return decision
    }

    /// `member.updated`: the profile; a changed birthday moves the birthday timer.
    public func update(_ data: JSONObject, at time: EventTime, member: inout CampaignMember) throws(JSONFieldError) -> CampaignDecision {
        var decision = CampaignDecision()
        // A closed member's profile is erased and stays so.
        guard !member.closed else { return decision }
        let before = member.profile.birthday
        try member.profile.update(from: data)
        if member.registeredAt != nil, let birthday = member.profile.birthday, birthday != before {
            decision.timers.append(CampaignTimer(kind: .birthday, ref: "birthday", due: birthday.next(after: time, calendar: calendar)))
        }
        return decision
    }

    /// `member.closed`: never rewarded again; the birthday, kept only for birthday campaigns, is erased.
    public func close(member: inout CampaignMember) {
        member.closed = true
        member.profile.birthday = nil
    }

    // MARK: Orders

    /// A paid order: uplift of earlier triggers, the largest matching multiplier, other order
    /// rewards; then the tier moves and the dormancy clock restarts. A known order id changes nothing.
    public func pay(_ order: OrderPaid, at time: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition],
                    totals: inout CampaignTotals) -> CampaignDecision {
        var decision = CampaignDecision()
        guard member.tier.orders[order.orderID] == nil else { return decision }
        catchUpTier(to: time, &member)
        countUplift(orderMinor: order.paidMinor, at: time, &member, &totals, &decision)

        let base = points.basePoints(order)
        var values: ConditionValues?
        func holds(_ definition: CampaignDefinition) -> Bool {
            guard let condition = definition.trigger.condition else { return true }
            if values == nil {
                var fields = memberValues(member, at: time)
                fields["order.paidMinor"] = .int(order.paidMinor)
                fields["order.basePoints"] = .int(base)
                fields["order.categories"] = .stringList(Array(Set(order.lines.map(\.category))).sorted())
                fields["order.lineCount"] = .int(Int64(order.lines.count))
                values = fields
            }
            return condition.holds(values!)
        }
        let matching = campaigns.filter {
            if case .orderPaid = $0.trigger { return applies($0, to: member, at: time) && holds($0) }
            return false
        }
        // Only the largest multiplier applies: the best offer the member can still get.
        let multipliers = matching.filter(\.isMultiplier).sorted {
            ($0.reward.multiplierTenths!, $1.id) > ($1.reward.multiplierTenths!, $0.id)
        }
        if base > 0 {
            for definition in multipliers {
                let bonus = base * (definition.reward.multiplierTenths! - 10) / 10
                if award(definition, trigger: "order.paid", points: bonus, orderID: order.orderID, at: time, &member, &totals, &decision) {
                    break
                }
            }
        }
        for definition in matching where !definition.isMultiplier {
            _ = award(definition, trigger: "order.paid", points: definition.reward.points ?? 0, orderID: order.orderID, at: time, &member, &totals, &decision)
        }
        if let grant = decision.grants.first(where: { $0.orderID == order.orderID }) {
            member.bonusOrders[order.orderID] = BonusOrder(campaign: grant.campaign, paidMinor: order.paidMinor, bonus: grant.points)
        }

        _ = tierRules.pay(order, at: time, member: &member.tier)
        member.paidOrders += 1
        if member.registeredAt != nil {
            member.dormantSince = time
            decision.cancelsDormantTimers = true
            armDormantTimers(from: time, campaigns: campaigns, &decision)
        }
        return decision
    }

    /// A refund: the order's campaign bonus is reversed in proportion, cumulatively, as the
    /// points service reverses every component; refunds the tier rules refuse change nothing.
    public func refund(_ refund: OrderRefunded, at time: EventTime, member: inout CampaignMember,
                       totals: inout CampaignTotals) -> CampaignDecision {
        var decision = CampaignDecision()
        catchUpTier(to: time, &member)
        let before = member.tier.orders[refund.orderID]?.refundedMinor ?? 0
        _ = tierRules.refund(refund, at: time, member: &member.tier)
        guard let after = member.tier.orders[refund.orderID]?.refundedMinor, after > before,
              var order = member.bonusOrders[refund.orderID] else { return decision }
        let target = PointsRules.reversedSoFar(component: order.bonus, refundedSoFar: after, paidMinor: order.paidMinor)
        if target > order.reversed {
            decision.reversals.append(CampaignReversal(campaign: order.campaign, points: target - order.reversed, orderID: refund.orderID, refundID: refund.refundID))
            var results = totals.results[order.campaign] ?? CampaignResults()
            results.pointsReversed += target - order.reversed
            results.revision += 1
            totals.results[order.campaign] = results
            decision.touched.insert(order.campaign)
            order.reversed = target
            member.bonusOrders[refund.orderID] = order
        }
        return decision
    }

    // MARK: Achievements

    /// A check-in on `streakDay` of a streak (`EngagementRules.checkIn`).
    public func checkIn(streakDay: Int64, at time: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition],
                        totals: inout CampaignTotals) -> CampaignDecision {
        catchUpTier(to: time, &member)
        var values = memberValues(member, at: time)
        values["checkIn.streakDays"] = .int(streakDay)
        return achievement("check-in", values: values, at: time, member: &member, campaigns: campaigns, totals: &totals)
    }

    /// A referral of the member (the referrer) admitted under the monthly cap.
    public func referral(referee: String, at time: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition],
                         totals: inout CampaignTotals) -> CampaignDecision {
        catchUpTier(to: time, &member)
        member.rewardedReferrals += 1
        var values = memberValues(member, at: time)
        values["referral.referee"] = .string(referee)
        return achievement("referral", values: values, at: time, member: &member, campaigns: campaigns, totals: &totals)
    }

    private func achievement(_ event: String, values: ConditionValues, at time: EventTime, member: inout CampaignMember,
                             campaigns: [CampaignDefinition], totals: inout CampaignTotals) -> CampaignDecision {
        var decision = CampaignDecision()
        for definition in campaigns where definition.trigger.event == event && applies(definition, to: member, at: time) {
            guard definition.trigger.condition?.holds(values) ?? true else { continue }
            _ = award(definition, trigger: event, points: definition.reward.points ?? 0, orderID: nil, at: time, &member, &totals, &decision)
        }
        return decision
    }

    // MARK: Timers

    /// 00:00 of the member's birthday: birthday campaigns for members registered strictly
    /// before it; the timer is set again for the next birthday.
    public func birthday(at due: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition],
                         totals: inout CampaignTotals) -> CampaignDecision {
        var decision = CampaignDecision()
        guard let birthday = member.profile.birthday, !member.closed else { return decision }
        // A birthday changed since the timer was set: the timer set by the change counts.
        guard calendar.startOfDay(birthday.date(in: calendar.localDate(of: due).year)) == due else { return decision }
        catchUpTier(to: due, &member)
        if let registeredAt = member.registeredAt, registeredAt < due {
            for definition in campaigns where definition.trigger == .birthday && applies(definition, to: member, at: due) {
                _ = award(definition, trigger: "birthday", points: definition.reward.points ?? 0, orderID: nil, at: due, &member, &totals, &decision)
            }
        }
        decision.timers.append(CampaignTimer(kind: .birthday, ref: "birthday", due: birthday.next(after: due, calendar: calendar)))
        return decision
    }

    /// A dormant timer of `campaign`: rewards once per spell when the member has had no paid
    /// order for the campaign's days; a clock restarted since (or a changed definition) moves it.
    public func dormant(campaign: String, at due: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition],
                        totals: inout CampaignTotals) -> CampaignDecision {
        var decision = CampaignDecision()
        guard let definition = campaigns.first(where: { $0.id == campaign }), case .dormant(let days) = definition.trigger,
              let since = member.dormantSince, !member.closed else { return decision }
        let dueNow = since.adding(days: days)
        if dueNow > due {
            decision.timers.append(CampaignTimer(kind: .dormant, ref: campaign, due: dueNow))
            return decision
        }
        catchUpTier(to: due, &member)
        if applies(definition, to: member, at: due) {
            _ = award(definition, trigger: "dormant", points: definition.reward.points ?? 0, orderID: nil, at: due, &member, &totals, &decision)
        }
        return decision
    }

    // MARK: Matching

    /// Whether the member is in the campaign's audience and its schedule holds at `time`.
    public func applies(_ definition: CampaignDefinition, to member: CampaignMember, at time: EventTime) -> Bool {
        guard member.isMember(at: time) else { return false }
        return scheduleHolds(definition.schedule, at: time, birthday: member.profile.birthday)
            && audienceHolds(definition.audience, member: member, at: time)
    }

    /// Whether a schedule holds at `time` for a member with this birthday.
    public func scheduleHolds(_ schedule: CampaignDefinition.Schedule, at time: EventTime, birthday: Birthday?) -> Bool {
        if let from = schedule.from, time < from { return false }
        if let until = schedule.until, time >= until { return false }
        let date = calendar.localDate(of: time)
        if !schedule.dates.isEmpty, !schedule.dates.contains(where: {
            switch $0 {
            case .annual(let month, let day): month == date.month && day == date.day
            case .once(let once): once == date
            }
        }) { return false }
        if !schedule.daysOfMonth.isEmpty, !schedule.daysOfMonth.contains(where: {
            $0 == date.day || ($0 == -1 && date.day == LocalDate.daysInMonth(year: date.year, month: date.month))
        }) { return false }
        if !schedule.weekdays.isEmpty, !schedule.weekdays.contains(date.weekday) { return false }
        if let hours = schedule.hours, !hours.contains(calendar.localMinuteOfDay(of: time) / 60) { return false }
        switch schedule.birthday {
        case nil: return true
        case .day?: return birthday.map { $0.date(in: date.year) == date } ?? false
        case .month?: return birthday?.month == date.month
        }
    }

    /// Whether the member is in the audience at `time` (the tier held just before it).
    public func audienceHolds(_ audience: CampaignDefinition.Audience, member: CampaignMember, at time: EventTime) -> Bool {
        let levels = program.tiers.levels
        let tier = levels[member.tier.level].id
        if !audience.tiers.isEmpty, !audience.tiers.contains(tier) { return false }
        if let minimum = audience.minimumTier, let index = program.tiers.index(of: minimum), member.tier.level < index { return false }
        if let days = audience.registeredWithinDays {
            guard let registeredAt = member.registeredAt, time >= registeredAt, time <= registeredAt.adding(days: days) else { return false }
        }
        if audience.requiresMarketingConsent, !member.profile.marketingConsent { return false }
        return true
    }

    /// The member fields every condition may read.
    func memberValues(_ member: CampaignMember, at time: EventTime) -> ConditionValues {
        let date = calendar.localDate(of: time)
        var values: ConditionValues = [
            "member.tier": .string(program.tiers.levels[member.tier.level].id),
            "member.paidOrders": .int(member.paidOrders),
            "member.rewardedReferrals": .int(member.rewardedReferrals),
            "member.marketingConsent": .bool(member.profile.marketingConsent),
            "member.locale": .string(member.profile.locale),
            "time.day": .int(Int64(date.day)), "time.month": .int(Int64(date.month)),
            "time.weekday": .int(Int64(date.weekday)), "time.hour": .int(Int64(calendar.localMinuteOfDay(of: time) / 60)),
        ]
        if let registeredAt = member.registeredAt {
            values["member.daysSinceRegistered"] = .int((time.millis - registeredAt.millis) / EventTime.dayMillis)
        }
        return values
    }

    // MARK: Rewarding

    /// Gives the campaign's reward unless the member is in its control group, has reached the
    /// per-member cap, or the budget is spent; points are cut to what cap and budget leave.
    /// Returns whether the member was rewarded.
    private func award(_ definition: CampaignDefinition, trigger: String, points wanted: Int64, orderID: String?, at time: EventTime,
                       _ member: inout CampaignMember, _ totals: inout CampaignTotals, _ decision: inout CampaignDecision) -> Bool {
        var stats = member.stats[definition.id] ?? MemberCampaignStats()
        var results = totals.results[definition.id] ?? CampaignResults()
        defer {
            member.stats[definition.id] = stats
            totals.results[definition.id] = results
        }
        let measured = definition.controlSharePercent > 0
        if ControlGroup.isControl(campaign: definition.id, member: member.member, sharePercent: definition.controlSharePercent) {
            results.control.triggers += 1
            if !stats.control { stats.control = true; results.control.members += 1 }
            member.exposures.append(Exposure(campaign: definition.id, time: time, control: true))
            results.revision += 1
            decision.touched.insert(definition.id)
            return false
        }
        if let cap = definition.memberCap.rewards, stats.rewards >= cap { return false }
        var points = wanted
        if let cap = definition.memberCap.points { points = min(points, max(0, cap - stats.points)) }
        let givesPoints = definition.isMultiplier || definition.reward.points != nil
        // A budget bounds the points only: a coupon or badge alone is never refused by it.
        if let budget = definition.budgetPoints, givesPoints {
            switch totals.budgetView {
            case .counted:
                points = min(points, max(0, budget - totals.budgetGranted[definition.id, default: 0]))
            case .probing:
                if points > 0 {
                    totals.claim.asks.append(BudgetClaim.Ask(
                        campaign: definition.id, budgetPoints: budget, points: points, inMultiplierWalk: definition.isMultiplier))
                }
                return false
            case .answered(let granted):
                points = min(points, granted[definition.id] ?? 0)
            }
        }
        if givesPoints && points <= 0 { return false }

        if points > 0 { decision.grants.append(CampaignGrant(campaign: definition.id, points: points, orderID: definition.isMultiplier ? orderID : nil)) }
        decision.awards.append(CampaignAward(
            campaign: definition.id, version: definition.version, name: definition.name, trigger: trigger, points: points,
            multiplierTenths: definition.reward.multiplierTenths, coupon: definition.reward.coupon, badge: definition.reward.badge,
            orderID: orderID))
        stats.rewards += 1
        stats.points = stats.points.saturatingAdd(points)
        if stats.rewards == 1 { results.membersReached += 1 }
        results.rewards += 1
        results.pointsGranted = results.pointsGranted.saturatingAdd(points)
        totals.budgetGranted[definition.id, default: 0] = totals.budgetGranted[definition.id, default: 0].saturatingAdd(points)
        if definition.reward.coupon != nil { results.couponsIssued += 1 }
        if definition.reward.badge != nil { results.badgesAwarded += 1 }
        if measured {
            results.treated.triggers += 1
            if !stats.treated { stats.treated = true; results.treated.members += 1 }
            member.exposures.append(Exposure(campaign: definition.id, time: time, control: false))
        }
        results.revision += 1
        decision.touched.insert(definition.id)
        return true
    }

    /// Counts an order for every trigger in the window before it, then forgets triggers that
    /// no later order can fall after.
    private func countUplift(orderMinor: Int64, at time: EventTime, _ member: inout CampaignMember,
                             _ totals: inout CampaignTotals, _ decision: inout CampaignDecision) {
        member.exposures.removeAll { $0.time.adding(days: Self.upliftWindowDays) < time }
        for exposure in member.exposures where exposure.time < time {
            var results = totals.results[exposure.campaign] ?? CampaignResults()
            if exposure.control {
                results.control.orders += 1
                results.control.revenueMinor = results.control.revenueMinor.saturatingAdd(orderMinor)
            } else {
                results.treated.orders += 1
                results.treated.revenueMinor = results.treated.revenueMinor.saturatingAdd(orderMinor)
            }
            results.revision += 1
            totals.results[exposure.campaign] = results
            decision.touched.insert(exposure.campaign)
        }
    }

    /// Applies the month boundaries passed since the member was last seen, so that the tier
    /// is the one held at `time` (month-end downgrades are a pure function of the orders).
    private func catchUpTier(to time: EventTime, _ member: inout CampaignMember) {
        let month = calendar.localDate(of: time).monthIndex
        guard let last = member.tierMonth else {
            member.tierMonth = month
            return
        }
        guard month > last else { return }
        for boundary in (last + 1)...month {
            _ = tierRules.monthEnd(at: calendar.startOfMonth(monthIndex: boundary), member: &member.tier)
        }
        member.tierMonth = month
    }

    private func armDormantTimers(from time: EventTime, campaigns: [CampaignDefinition], _ decision: inout CampaignDecision) {
        for definition in campaigns {
            if case .dormant(let days) = definition.trigger {
                decision.timers.append(CampaignTimer(kind: .dormant, ref: definition.id, due: time.adding(days: days)))
            }
        }
    }
}
