/// The order of the platform's inputs and timers at equal event times (DOMAIN.md, "Order"):
/// lower goes first. One table, so that every service orders alike what they share.
public enum Rank {
    /// An input event's rank: member events, orders, refunds, engagement, the shop's points
    /// requests and commands, then the platform's grants, reversals and commands.
    public static func of(eventType type: String) -> Int {
        switch type {
        case EventType.memberRegistered, EventType.memberUpdated, EventType.memberClosed: 0
        case EventType.orderPaid: 1
        case EventType.orderRefunded: 2
        case EventType.checkedIn, EventType.reviewPosted, EventType.contentShared, EventType.taskCompleted: 3
        case EventType.pointsGrant, EventType.pointsReverse, EventType.referralReward, EventType.transferCredit,
             EventType.campaignsReferral, EventType.stockReservation: platformCommand
        case EventType.transferReturned, EventType.stockAnswer: returnedCommand
        default: 4  // the shop's points requests and commands
        }
    }

    /// The platform's own commands (grants, reversals, transfer legs, referrals, reservations of stock).
    public static let platformCommand = 5
    /// A command sent because of another platform command (a transfer's credit refused and
    /// given back, a reservation of stock answered): above it, so that whatever a record causes sorts after the record, which
    /// tasks on their own stores rely on to wait for each other at equal times
    /// (architecture.md, step 9).
    public static let returnedCommand = 6
    /// Another service's output read by notifications (ledger entries, tier changes, rewards):
    /// after what the shop sent at the same instant.
    public static let serviceOutput = 5

    // Timers, by what they do.
    /// Pending points becoming available.
    public static let pendingRelease = 0
    /// A lot expiring.
    public static let expiry = 1
    /// The warning before a lot expires.
    public static let expiryWarning = 2
    /// The inactivity deduction.
    public static let inactivity = 3
    /// A member's month-end tier review.
    public static let monthEnd = 4
    /// A member's birthday reward.
    public static let birthday = 5
    /// A dormant member's win-back.
    public static let dormant = 6
    /// The daily points digest.
    public static let digest = 6
    /// A marketing message held for quiet hours or the daily cap.
    public static let heldMessage = 7
}
