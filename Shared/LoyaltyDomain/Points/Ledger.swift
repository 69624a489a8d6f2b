/// The kind of a ledger entry.
public enum EntryKind: String, Sendable, Equatable {
    /// Points credited (pending or available).
    case earned
    /// Pending points became available.
    case released
    /// Points taken back by a refund.
    case reversed
    /// Points spent on a catalogue reward.
    case redeemed
    /// Points paid at checkout.
    case cashOffset = "cash-offset"
    /// Points sent to another member.
    case transferredOut = "transferred-out"
    /// Points received from another member.
    case transferredIn = "transferred-in"
    /// A transfer given back because its recipient does not exist.
    case returned
    /// Points that reached their expiry.
    case expired
    /// An inactivity deduction.
    case deducted
    /// An operator's correction.
    case adjusted
    /// An opening balance brought over from the shop's earlier system.
    case imported
}

/// A warning that points will expire, sent `lots.expiryWarningDays` before.
public struct ExpiryWarning: Sendable, Equatable {
    public var member: String
    public var expiresAt: EventTime
    /// Points of that expiry still left when warned.
    public var points: Int64
    /// When the warning was given.
    public var time: EventTime

    /// Deterministic: one warning per member and expiry instant.
    public var id: String { "expiry-warning/\(member)/\(expiresAt.millis)" }
}

/// A change of one lot within an entry.
public struct LotChange: Sendable, Equatable {
    public var lotID: String
    public var delta: Int64
    /// When the lot expires, on the change that creates it: so the ledger alone tells what
    /// will expire when (the points-health report's forecast).
    public var expiresAt: EventTime?

    public init(lotID: String, delta: Int64, expiresAt: EventTime? = nil) {
        self.lotID = lotID
        self.delta = delta
        self.expiresAt = expiresAt
    }
}

/// One append-only ledger entry, with the balance after it. Every balance is explained
/// by its entries: `balanceAfter.net` is the sum of `points` of entries 1…sequence.
public struct LedgerEntry: Sendable, Equatable {
    /// Deterministic: derived from the cause and the rule, so a re-emission is recognisable.
    public var id: String
    public var member: String
    /// 1, 2, 3, … per member.
    public var sequence: Int64
    public var time: EventTime
    public var kind: EntryKind
    /// What earned or lost the points: `base`, `tier-bonus`, `campaign-bonus`, `campaign-reward`,
    /// `check-in`, `review`, `share`, `task`, `referral`.
    public var source: String
    /// The event (or timer) that caused the entry.
    public var causeID: String
    public var orderID: String?
    public var refundID: String?
    /// Net change: available + pending − debt.
    public var points: Int64
    public var availableDelta: Int64
    public var pendingDelta: Int64
    public var debtDelta: Int64
    public var balanceAfter: Balance
    public var lots: [LotChange]
    /// Further facts, e.g. the streak day, the task, the referee, the campaign.
    public var details: [(key: String, value: String)]

    public static func == (lhs: LedgerEntry, rhs: LedgerEntry) -> Bool {
        lhs.id == rhs.id && lhs.member == rhs.member && lhs.sequence == rhs.sequence && lhs.time == rhs.time
            && lhs.kind == rhs.kind && lhs.source == rhs.source && lhs.causeID == rhs.causeID
            && lhs.orderID == rhs.orderID && lhs.refundID == rhs.refundID && lhs.points == rhs.points
            && lhs.availableDelta == rhs.availableDelta && lhs.pendingDelta == rhs.pendingDelta
            && lhs.debtDelta == rhs.debtDelta && lhs.balanceAfter == rhs.balanceAfter && lhs.lots == rhs.lots
            && lhs.details.map(\.key) == rhs.details.map(\.key) && lhs.details.map(\.value) == rhs.details.map(\.value)
    }
}

/// Something asked of the points service that it did not do, with the reason code
/// (DOMAIN.md, "Refusal codes"). Refusals change no balance and are not ledger entries.
public struct Refusal: Sendable, Equatable {
    public var id: String
    /// The member the refused event is listed against.
    public var member: String
    public var time: EventTime
    public var causeID: String
    /// What was refused: `order`, `refund`, `check-in`, `review`, `share`, `task`, `referral`, `registration`, a grant component.
    public var subject: String
    public var reason: ReasonCode
    public var orderID: String?
    public var refundID: String?
    public var detail: String?

    public init(id: String, member: String, time: EventTime, causeID: String, subject: String, reason: ReasonCode,
                orderID: String? = nil, refundID: String? = nil, detail: String? = nil) {
        self.id = id
        self.member = member
        self.time = time
        self.causeID = causeID
        self.subject = subject
        self.reason = reason
        self.orderID = orderID
        self.refundID = refundID
        self.detail = detail
    }
}
