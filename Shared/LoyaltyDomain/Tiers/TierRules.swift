/// An amount at an instant: a paid order or an accepted refund, for the rolling window.
public struct TimedAmount: Sendable, Equatable {
    public var time: EventTime
    public var amountMinor: Int64
}

/// What the tiers service knows of an order.
public struct TierOrder: Sendable, Equatable {
    /// When it was paid (0 for an order an earlier build stored without its time).
    public var time: EventTime
    public var paidMinor: Int64
    public var refundedMinor: Int64 = 0
    /// The tier bonus granted for the order, and how much of it has been reversed.
    public var bonus: Int64
    public var bonusReversed: Int64 = 0

    public init(time: EventTime, paidMinor: Int64, refundedMinor: Int64 = 0, bonus: Int64, bonusReversed: Int64 = 0) {
        self.time = time
        self.paidMinor = paidMinor
        self.refundedMinor = refundedMinor
        self.bonus = bonus
        self.bonusReversed = bonusReversed
    }
}

/// Everything the tier rules know of one member.
public struct TierMember: Sendable, Equatable {
    public var member: String
    /// Index into the policy's levels.
    public var level: Int = 0
    public var levelSince: EventTime
    /// Accepted paid orders and refunds inside the qualifying window (older ones are dropped).
    public var payments: [TimedAmount] = []
    public var refunds: [TimedAmount] = []
    /// Accepted paid orders per local month (refunded or not).
    public var ordersByMonth = PeriodCounts(retention: PeriodCounts.monthlyRetention)
    /// By order id and refund id as bytes (``IDDictionary``), as the tables they overflow into.
    public var orders: IDDictionary<TierOrder> = [:]
    public var refundIDs: IDSet = []
    /// Inputs and month-ends applied to the member so far: the version of its status record.
    public var statusVersion: Int64 = 0

    public init(member: String, since: EventTime) {
        self.member = member
        self.levelSince = since
    }
}

/// A tier change, with the figures that decided it.
public struct TierChange: Sendable, Equatable {
    public enum Kind: String, Sendable { case upgraded, downgraded, atRisk = "at-risk" }
    public var kind: Kind
    public var from: String
    public var to: String
    public var time: EventTime
    /// `qualifying-spend`, `orders-in-a-month`, `no-orders-for-two-months`, `no-orders-last-month`.
    public var reason: String
    public var qualifyingSpendMinor: Int64
    public var ordersThisMonth: Int64
}

/// A tier bonus to grant, or part of one to reverse, through the points service.
public struct TierBonusCommand: Sendable, Equatable {
    public var orderID: String
    public var points: Int64
    /// For reversals: the refund that caused it.
    public var refundID: String?
}

/// What applying one input or timer decided.
public struct TierDecision: Sendable, Equatable {
    public var grants: [TierBonusCommand] = []
    public var reversals: [TierBonusCommand] = []
    public var changes: [TierChange] = []
    public init() {}
}

/// The tier rules (DOMAIN.md, "Tiers"), pure functions of (member, input, program).
public struct TierRules: Sendable {
    public let program: Program
    private let points: PointsRules

    public init(program: Program) {
        self.program = program
        points = PointsRules(program: program)
    }

    var policy: TierPolicy { program.tiers }

    /// Paid minus refunded amounts at their own times in (time − window, time].
    public func qualifyingSpend(of member: TierMember, at time: EventTime) -> Int64 {
        let from = time.adding(days: -policy.qualifyingWindowDays)
        func inWindow(_ amount: TimedAmount) -> Bool { amount.time > from && amount.time <= time }
        // Saturating: no run of huge orders may trap the service (refunds never pass payments).
        let paid = member.payments.filter(inWindow).reduce(Int64(0)) { $0.saturatingAdd($1.amountMinor) }
        let refunded = member.refunds.filter(inWindow).reduce(Int64(0)) { $0.saturatingAdd($1.amountMinor) }
        return paid.saturatingAdd(-refunded)
    }

    /// The highest level the member qualifies for at `time`, and why.
    public func qualifyingLevel(of member: TierMember, at time: EventTime) -> (level: Int, reason: String) {
        let spend = qualifyingSpend(of: member, at: time)
        let month = program.calendar.localDate(of: time).monthIndex
        let orders = member.ordersByMonth.count(in: month)
        for index in policy.levels.indices.reversed() {
            let level = policy.levels[index]
            if spend >= level.qualifyingSpendMinor && index > 0 { return (index, "qualifying-spend") }
            if let needed = level.ordersInAMonth, orders >= needed { return (index, "orders-in-a-month") }
        }
        return (0, "qualifying-spend")
    }

    /// A paid order: its tier bonus is decided on the tier held before it, then the member
    /// moves up to the highest tier it qualifies for. A known order id changes nothing.
    public func pay(_ order: OrderPaid, at time: EventTime, member: inout TierMember) -> TierDecision {
        var decision = TierDecision()
        guard member.orders[order.orderID] == nil else { return decision }
        let multiplier = policy.levels[member.level].multiplierTenths
        let base = points.basePoints(order)
        let bonus = base * (multiplier - 10) / 10
        member.orders[order.orderID] = TierOrder(time: time, paidMinor: order.paidMinor, bonus: bonus)
        if bonus > 0 { decision.grants.append(TierBonusCommand(orderID: order.orderID, points: bonus)) }
        member.payments.append(TimedAmount(time: time, amountMinor: order.paidMinor))
        member.ordersByMonth.add(in: program.calendar.localDate(of: time).monthIndex)
        prune(&member, at: time)
        let (level, reason) = qualifyingLevel(of: member, at: time)
        if level > member.level {
            decision.changes.append(change(.upgraded, from: member.level, to: level, at: time, reason: reason, member))
            member.level = level
            member.levelSince = time
        }
        return decision
    }

    /// A refund: the tier bonus is reversed in proportion, cumulatively
    /// (`floor(bonus × refundedSoFar / paid)`); the tier never goes down for it. Refunds the
    /// points service would refuse change nothing here either.
    public func refund(_ refund: OrderRefunded, at time: EventTime, member: inout TierMember) -> TierDecision {
        var decision = TierDecision()
        guard !member.refundIDs.contains(refund.refundID), var order = member.orders[refund.orderID],
              let amount = refund.refundMinor, amount > 0, amount <= order.paidMinor - order.refundedMinor else { return decision }
        member.refundIDs.insert(refund.refundID)
        order.refundedMinor += amount
        member.refunds.append(TimedAmount(time: time, amountMinor: amount))
        let target = PointsRules.reversedSoFar(component: order.bonus, refundedSoFar: order.refundedMinor, paidMinor: order.paidMinor)
        if target > order.bonusReversed {
            decision.reversals.append(TierBonusCommand(orderID: refund.orderID, points: target - order.bonusReversed, refundID: refund.refundID))
            order.bonusReversed = target
        }
        member.orders[refund.orderID] = order
        return decision
    }

    /// The month boundary at `boundary` (local 00:00 on the 1st): above the first level, no
    /// paid order in either of the two months just ended → down one level; none in the last
    /// one only → at risk.
    public func monthEnd(at boundary: EventTime, member: inout TierMember) -> TierDecision {
        var decision = TierDecision()
        guard member.level > 0 else { return decision }
        let month = program.calendar.localDate(of: boundary).monthIndex
        let last = member.ordersByMonth.count(in: month - 1)
        let before = member.ordersByMonth.count(in: month - 2)
        if last == 0 && before == 0 {
            decision.changes.append(change(.downgraded, from: member.level, to: member.level - 1, at: boundary, reason: "no-orders-for-two-months", member))
            member.level -= 1
            member.levelSince = boundary
        } else if last == 0 {
            decision.changes.append(change(.atRisk, from: member.level, to: member.level, at: boundary, reason: "no-orders-last-month", member))
        }
        return decision
    }

    /// Drops payments and refunds that can no longer fall in any future window.
    private func prune(_ member: inout TierMember, at time: EventTime) {
        let from = time.adding(days: -policy.qualifyingWindowDays)
        member.payments.removeAll { $0.time <= from }
        member.refunds.removeAll { $0.time <= from }
    }

    private func change(_ kind: TierChange.Kind, from: Int, to: Int, at time: EventTime, reason: String, _ member: TierMember) -> TierChange {
        TierChange(
            kind: kind, from: policy.levels[from].id, to: policy.levels[to].id, time: time, reason: reason,
            qualifyingSpendMinor: qualifyingSpend(of: member, at: time),
            ordersThisMonth: member.ordersByMonth.count(in: program.calendar.localDate(of: time).monthIndex))
    }
}
