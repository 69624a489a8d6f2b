/// A member's points balance: available to spend, pending (order components in their
/// waiting period), and debt (clawed back beyond what was there). Available and debt are
/// never both above zero.
public struct Balance: Sendable, Equatable {
    public var available: Int64 = 0
    public var pending: Int64 = 0
    public var debt: Int64 = 0

    public init(available: Int64 = 0, pending: Int64 = 0, debt: Int64 = 0) {
        self.available = available
        self.pending = pending
        self.debt = debt
    }

    /// available + pending − debt: the sum of every ledger entry.
    public var net: Int64 { available + pending - debt }
}

/// Totals over the member's life, kept apart by kind (DOMAIN.md, "Lifetime figures").
public struct LifetimeTotals: Sendable, Equatable {
    /// Every earning credit as granted, pending included, not reduced by refunds.
    public var earned: Int64 = 0
    /// Points taken back by refunds (including what went into debt).
    public var reversed: Int64 = 0
    public var redeemed: Int64 = 0
    /// Points paid at checkout.
    public var cashOffset: Int64 = 0
    public var transferredOut: Int64 = 0
    public var transferredIn: Int64 = 0
    /// Transfers that came back because the recipient did not exist.
    public var givenBack: Int64 = 0
    public var expired: Int64 = 0
    /// Inactivity deductions.
    public var deducted: Int64 = 0
    public var adjustedUp: Int64 = 0
    public var adjustedDown: Int64 = 0

    public init(earned: Int64 = 0, reversed: Int64 = 0) {
        self.earned = earned
        self.reversed = reversed
    }

    /// Points brought over as an opening balance from the shop's earlier system.
    public var imported: Int64 = 0

    /// Points spent: redeemed, paid at checkout, and sent to other members.
    public var spent: Int64 { redeemed + cashOffset + transferredOut }
}

/// Points from one earning, spent and expired as a unit of account.
public struct Lot: Sendable, Equatable {
    /// Unique within the member: `L1`, `L2`, …
    public var id: String
    /// What earned it: `base`, `tier-bonus`, `check-in`, …
    public var source: String
    public var orderID: String?
    /// Creation order within the member, the tie-break after expiry.
    public var number: Int64
    public var earnedAt: EventTime
    public var availableAt: EventTime
    public var expiresAt: EventTime
    /// Points at creation.
    public var points: Int64
    /// Points still in the lot.
    public var remaining: Int64
    /// Still in the waiting period.
    public var pending: Bool

    public init(id: String, source: String, orderID: String?, number: Int64, earnedAt: EventTime, availableAt: EventTime,
                expiresAt: EventTime, points: Int64, remaining: Int64, pending: Bool) {
        self.id = id
        self.source = source
        self.orderID = orderID
        self.number = number
        self.earnedAt = earnedAt
        self.availableAt = availableAt
        self.expiresAt = expiresAt
        self.points = points
        self.remaining = remaining
        self.pending = pending
    }
}

/// One component of an order's points (base, tier bonus, campaign bonus).
public struct OrderComponent: Sendable, Equatable {
    public var points: Int64
    public var reversed: Int64
    /// The component's own lot (none for 0 points).
    public var lotID: String?

    public init(points: Int64, reversed: Int64 = 0, lotID: String?) {
        self.points = points
        self.reversed = reversed
        self.lotID = lotID
    }
}

/// What the points service remembers of an order.
public struct OrderRecord: Sendable, Equatable {
    public var id: String
    /// False while only a bonus grant for the order has been seen (it arrived before the order).
    public var accepted: Bool
    public var time: EventTime
    public var paidMinor: Int64
    public var refundedMinor: Int64
    /// Components by name: `base`, `tier-bonus`, `campaign-bonus`.
    public var components: [String: OrderComponent]

    public init(id: String, accepted: Bool, time: EventTime, paidMinor: Int64, refundedMinor: Int64 = 0,
                components: [String: OrderComponent] = [:]) {
        self.id = id
        self.accepted = accepted
        self.time = time
        self.paidMinor = paidMinor
        self.refundedMinor = refundedMinor
        self.components = components
    }
}

/// Counts of rewarded actions per calendar period (a local day number or a month index), so a
/// late event is counted against its own day or month. Periods more than `retention` behind
/// the latest one are forgotten, which bounds the state; an event later than that counts as
/// a fresh period.
public struct PeriodCounts: Sendable, Equatable {
    public private(set) var counts: [Int64: Int64] = [:]
    public let retention: Int64

    /// Days kept for daily caps, months kept for monthly caps.
    public static let dailyRetention: Int64 = 62
    public static let monthlyRetention: Int64 = 13

    public init(retention: Int64, counts: [Int64: Int64] = [:]) {
        self.retention = retention
        self.counts = counts
    }

    /// Rewarded actions in `period`.
    public func count(in period: Int64) -> Int64 { counts[period] ?? 0 }

    /// Counts `amount` more (one action by default) in `period`.
    public mutating func add(in period: Int64, amount: Int64 = 1) {
        counts[period, default: 0] += amount
        if let latest = counts.keys.max() {
            counts = counts.filter { $0.key >= latest - retention }
        }
    }
}

/// Points a member set aside for a redemption of a stocked reward while the reward's task
/// decides on its stock: still in the balance, no longer spendable.
public struct HeldRedemption: Sendable, Equatable {
    /// The id and time of the member's `points.redeem` event.
    public var requestID: String
    public var time: EventTime
    public var rewardID: String
    /// The reward's kind when asked, the ledger entry's source.
    public var source: String
    public var quantity: Int64
    public var points: Int64

    public init(requestID: String, time: EventTime, rewardID: String, source: String, quantity: Int64, points: Int64) {
        self.requestID = requestID
        self.time = time
        self.rewardID = rewardID
        self.source = source
        self.quantity = quantity
        self.points = points
    }
}

extension HeldRedemption {
    /// The member's request as the rules saw it: the redemption's entry or refusal is its.
    func request(of member: String) -> PointsEvent {
        PointsEvent(id: requestID, time: time, member: member, input: .redeem(Redemption(rewardID: rewardID, quantity: quantity)))
    }
}

/// Everything the points rules know of one member.
public struct PointsAccount: Sendable, Equatable {
    public var member: String
    public var registeredAt: EventTime
    public var closed: Bool = false
    /// The system an opening balance was imported from; a member gets one at most.
    public var importedFrom: String?
    public var balance = Balance()
    public var lifetime = LifetimeTotals()
    /// Lots with points left, in creation order.
    public var lots: [Lot] = []
    public var lotsCreated: Int64 = 0
    /// Ledger entries made so far (the next entry's sequence is this + 1).
    public var entries: Int64 = 0
    /// By order id and refund id as bytes: two lookalike ids are two orders, as they are two
    /// rows where older ones are kept apart (``IDDictionary``).
    public var orders: IDDictionary<OrderRecord> = [:]
    public var acceptedRefundIDs: IDSet = []
    public var lastPaidOrderAt: EventTime?
    /// Local day number of the latest rewarded check-in, and the streak length then.
    public var lastCheckInDay: Int64?
    public var streakLength: Int64 = 0
    /// Local days with a rewarded check-in.
    public var checkInDays = PeriodCounts(retention: PeriodCounts.dailyRetention)
    public var reviewsByDay = PeriodCounts(retention: PeriodCounts.dailyRetention)
    public var sharesByDay = PeriodCounts(retention: PeriodCounts.dailyRetention)
    /// Per task, the periods (day number, month index, or 0 for once) it was rewarded in.
    public var taskPeriods: [String: PeriodCounts] = [:]
    /// Rewarded referrals per calendar month (by the registration's month).
    public var referralsByMonth = PeriodCounts(retention: PeriodCounts.monthlyRetention)
    public var referralsRewarded: Int64 = 0
    /// Points sent in accepted transfers per local day (returned ones included).
    public var transfersByDay = PeriodCounts(retention: PeriodCounts.dailyRetention)
    /// When the next inactivity deduction is due (the clock restarts at each paid order).
    public var inactivityDue: EventTime?
    /// Redemptions of stocked rewards waiting for their reward's task, in the order asked.
    public var heldRedemptions: [HeldRedemption] = []

    public init(member: String, registeredAt: EventTime) {
        self.member = member
        self.registeredAt = registeredAt
    }
}

extension PointsAccount {
    /// Available points not set aside for a redemption waiting for its stock: what a request
    /// may spend.
    public var spendable: Int64 {
        max(0, balance.available - heldRedemptions.reduce(0) { $0 + $1.points })
    }

    /// The soonest expiry among lots with points left, and how many points expire then.
    public var nextExpiry: (at: EventTime, points: Int64)? {
        guard let soonest = lots.filter({ $0.remaining > 0 }).map(\.expiresAt).min() else { return nil }
        return (soonest, lots.filter { $0.expiresAt == soonest }.reduce(0) { $0 + $1.remaining })
    }
}
