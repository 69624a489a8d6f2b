/// The event types of the platform and their order at equal event times
/// (DOMAIN.md, "Order": member events, orders, refunds, engagement, points commands, grants).
public enum EventType {
    public static let memberRegistered = "member.registered"
    public static let memberUpdated = "member.updated"
    public static let memberClosed = "member.closed"
    public static let orderPaid = "order.paid"
    public static let orderRefunded = "order.refunded"
    public static let checkedIn = "engagement.checked-in"
    public static let reviewPosted = "engagement.review-posted"
    public static let contentShared = "engagement.content-shared"
    public static let taskCompleted = "engagement.task-completed"
    public static let pointsGrant = "points.grant"
    public static let pointsReverse = "points.reverse"
    public static let referralReward = "points.referral-reward"
    public static let redeem = "points.redeem"
    public static let cashOffset = "points.cash-offset"
    public static let transfer = "points.transfer"
    public static let adjust = "points.adjust"
    public static let transferCredit = "points.transfer-credit"
    public static let transferReturned = "points.transfer-returned"
    /// A redemption's request for units of a stocked reward, sent to the reward's task.
    public static let stockReservation = "points.stock-reservation"
    /// The reward's task's answer to a reservation, sent back to the member's task.
    public static let stockAnswer = "points.stock-answer"
    /// A member's balance brought over from another system, as lots with their own expiry.
    public static let openingBalance = "points.opening-balance"
    /// An operator giving back the points set aside for a redemption whose stock answer was lost.
    public static let releaseHeld = "points.release-held"
    /// A registration naming a referrer, sent by the campaigns service to the referrer's task.
    public static let campaignsReferral = "campaigns.referral"
    /// What a member's trigger asks of campaign budgets, sent by its campaigns task to the keeper of budgets.
    public static let campaignsBudgetClaim = "campaigns.budget-claim"
    /// The keeper of budgets' answer to a claim, sent back to the member's task.
    public static let campaignsBudgetAnswer = "campaigns.budget-answer"

    /// Commands only the points service itself may send (they move points between members).
    public static let internalCommands: Set<String> = [referralReward, transferCredit, transferReturned, stockReservation, stockAnswer]
}

/// One line of a paid order.
public struct OrderLine: Sendable, Equatable {
    public var category: String
    public var paidMinor: Int64

    public init(category: String, paidMinor: Int64) {
        self.category = category
        self.paidMinor = paidMinor
    }
}

/// A paid order.
public struct OrderPaid: Sendable, Equatable {
    public var orderID: String
    public var paidMinor: Int64
    public var lines: [OrderLine]

    public init(orderID: String, paidMinor: Int64, lines: [OrderLine] = []) {
        self.orderID = orderID
        self.paidMinor = paidMinor
        self.lines = lines
    }
}

/// A refund of (part of) an order. The amount is kept as sent: a refund with an invalid
/// amount is refused (`invalid-amount`), not dropped as undecodable.
public struct OrderRefunded: Sendable, Equatable {
    public var orderID: String
    public var refundID: String
    /// nil when the amount was not an integer.
    public var refundMinor: Int64?

    public init(orderID: String, refundID: String, refundMinor: Int64?) {
        self.orderID = orderID
        self.refundID = refundID
        self.refundMinor = refundMinor
    }
}

/// The kind of bonus another service grants.
public enum GrantComponent: String, Sendable, Equatable, CaseIterable {
    /// The tier bonus of an order (tiers service); pending with the order.
    case tierBonus = "tier-bonus"
    /// The campaign bonus of an order (campaigns service); pending with the order.
    case campaignBonus = "campaign-bonus"
    /// Points a campaign awards outright (birthday, streak, referral champion); available at once.
    case campaignReward = "campaign-reward"

    /// Whether the component belongs to an order (and so needs its id and is pending with it).
    public var belongsToOrder: Bool { self != .campaignReward }
}

/// A grant of points by another service.
public struct PointsGrant: Sendable, Equatable {
    public var component: GrantComponent
    public var points: Int64
    public var orderID: String?
    public var campaignID: String?

    public init(component: GrantComponent, points: Int64, orderID: String? = nil, campaignID: String? = nil) {
        self.component = component
        self.points = points
        self.orderID = orderID
        self.campaignID = campaignID
    }
}

/// The reversal of (part of) a granted order component, sent by its owner on a refund.
public struct PointsReversal: Sendable, Equatable {
    public var component: GrantComponent
    public var points: Int64
    public var orderID: String
    public var refundID: String

    public init(component: GrantComponent, points: Int64, orderID: String, refundID: String) {
        self.component = component
        self.points = points
        self.orderID = orderID
        self.refundID = refundID
    }
}

/// The referrer's reward for a registration naming it, sent to the referrer's partition.
public struct ReferralReward: Sendable, Equatable {
    public var refereeID: String
    public var registrationID: String

    public init(refereeID: String, registrationID: String) {
        self.refereeID = refereeID
        self.registrationID = registrationID
    }
}

/// A redemption of a catalogue reward.
public struct Redemption: Sendable, Equatable {
    public var rewardID: String
    public var quantity: Int64

    public init(rewardID: String, quantity: Int64 = 1) {
        self.rewardID = rewardID
        self.quantity = quantity
    }
}

/// Points paying part of an order at checkout.
public struct CashOffset: Sendable, Equatable {
    public var orderID: String
    public var orderMinor: Int64
    public var points: Int64

    public init(orderID: String, orderMinor: Int64, points: Int64) {
        self.orderID = orderID
        self.orderMinor = orderMinor
        self.points = points
    }
}

/// Points a member gives another.
public struct Transfer: Sendable, Equatable {
    public var recipient: String
    public var points: Int64

    public init(recipient: String, points: Int64) {
        self.recipient = recipient
        self.points = points
    }
}

/// An operator's correction, up or down, with its reason.
public struct Adjustment: Sendable, Equatable {
    public var points: Int64
    public var reason: String?

    public init(points: Int64, reason: String?) {
        self.points = points
        self.reason = reason
    }
}

/// A balance brought over from the loyalty system a shop used before: lots, each with its
/// own expiry, imported once per member.
public struct OpeningBalance: Sendable, Equatable {
    public struct ImportedLot: Sendable, Equatable {
        public var points: Int64
        public var expiresAt: EventTime

        public init(points: Int64, expiresAt: EventTime) {
            self.points = points
            self.expiresAt = expiresAt
        }
    }

    /// At most this many lots in one opening balance.
    public static let maximumLots = 100
    /// At most this many points in one lot (a program figure's bound).
    public static let maximumLotPoints: Int64 = 1_000_000_000

    /// The system the balance comes from, for the ledger entries' details.
    public var system: String
    public var lots: [ImportedLot]

    public init(system: String, lots: [ImportedLot]) {
        self.system = system
        self.lots = lots
    }
}

/// A transfer's points arriving at the recipient (or, returned, back at the sender).
public struct TransferLeg: Sendable, Equatable {
    /// The other member: the sender for a credit, the recipient for a return.
    public var counterpart: String
    /// The id of the sender's `points.transfer` event.
    public var transferID: String
    public var points: Int64

    public init(counterpart: String, transferID: String, points: Int64) {
        self.counterpart = counterpart
        self.transferID = transferID
        self.points = points
    }
}

/// A redemption's request to the task that owns a stocked reward (the partition of
/// ``StockReservation/key(of:)``): take `quantity` units for `member`'s request `requestID`.
public struct StockReservation: Sendable, Equatable {
    public var rewardID: String
    public var quantity: Int64
    /// The member who asked, whose task the answer goes to.
    public var member: String
    /// The id of the member's `points.redeem` event.
    public var requestID: String

    public init(rewardID: String, quantity: Int64, member: String, requestID: String) {
        self.rewardID = rewardID
        self.quantity = quantity
        self.member = member
        self.requestID = requestID
    }

    /// The record key (and subject) of a reward's reservations: its task is the partition of
    /// this key, and the prefix keeps reward ids apart from member ids.
    public static func key(of rewardID: String) -> String { "reward/\(rewardID)" }
}

/// The owner's answer to a ``StockReservation``: the units were taken, or why not.
public struct StockAnswer: Sendable, Equatable {
    public var rewardID: String
    public var quantity: Int64
    public var requestID: String
    /// Nil when the units were taken; otherwise why not, one of ``refusals``.
    public var refusal: ReasonCode?

    /// Why a reward's task refuses a reservation: the units are gone, or the program no longer
    /// lists the reward.
    public static let refusals: Set<ReasonCode> = [.outOfStock, .unknownReward]

    public init(rewardID: String, quantity: Int64, requestID: String, refusal: ReasonCode?) {
        self.rewardID = rewardID
        self.quantity = quantity
        self.requestID = requestID
        self.refusal = refusal
    }
}

/// What an input asks of the points service.
public enum PointsInput: Sendable, Equatable {
    /// Whether it is the member's registration.
    public var isRegistration: Bool {
        if case .registered = self { true } else { false }
    }

    /// Whether an operator sent it (an adjustment, an opening balance, a release of held
    /// points), not the shop: it names the operator.
    public var isOperatorCommand: Bool {
        switch self {
        case .adjust, .openingBalance, .releaseHeld: true
        default: false
        }
    }

    /// The order whose record the rules read and change for this input, with the refund id they
    /// check: a store that keeps orders apart from the account loads just these before applying.
    public var orderReference: (orderID: String, refundID: String?)? {
        switch self {
        case .orderPaid(let order): (order.orderID, nil)
        case .orderRefunded(let refund): (refund.orderID, refund.refundID)
        case .grant(let grant): grant.component.belongsToOrder ? grant.orderID.map { ($0, nil) } : nil
        case .reversal(let reversal): (reversal.orderID, nil)
        // Listed one by one: an input whose rule comes to read an order must be named above.
        case .registered, .memberUpdated, .memberClosed, .checkedIn, .reviewPosted, .contentShared, .taskCompleted,
             .referralReward, .redeem, .cashOffset, .transfer, .adjust, .openingBalance, .transferCredit, .transferReturned,
             .stockReservation, .stockAnswer, .releaseHeld: nil
        }
    }

    case registered(referrerID: String?)
    /// Profile changes and closing matter to other services; the points service notes them.
    case memberUpdated
    case memberClosed
    case orderPaid(OrderPaid)
    case orderRefunded(OrderRefunded)
    case checkedIn
    case reviewPosted
    case contentShared
    case taskCompleted(task: String)
    case grant(PointsGrant)
    case reversal(PointsReversal)
    case referralReward(ReferralReward)
    case redeem(Redemption)
    case cashOffset(CashOffset)
    case transfer(Transfer)
    case adjust(Adjustment)
    case openingBalance(OpeningBalance)
    case transferCredit(TransferLeg)
    case transferReturned(TransferLeg)
    /// Applied by the reward's task, keyed by ``StockReservation/key(of:)``, not by a member.
    case stockReservation(StockReservation)
    case stockAnswer(StockAnswer)
    case releaseHeld(HeldRelease)
}

/// An operator's release of the points set aside for a redemption of a stocked reward
/// (`points.release-held`): for a request whose reservation or answer was dead-lettered, which
/// would otherwise hold them for good.
public struct HeldRelease: Sendable, Equatable {
    /// The id of the member's `points.redeem` event.
    public var requestID: String
    public var reason: String?

    public init(requestID: String, reason: String?) {
        self.requestID = requestID
        self.reason = reason
    }
}

/// An input with its envelope.
public struct PointsEvent: Sendable, Equatable {
    public var id: String
    public var time: EventTime
    public var member: String
    public var input: PointsInput

    public init(id: String, time: EventTime, member: String, input: PointsInput) {
        self.id = id
        self.time = time
        self.member = member
        self.input = input
    }
}
