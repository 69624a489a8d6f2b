/// The loyalty program: every number the rules use, read from the program file
/// (docs/program-file.md). Nothing numeric about the program is written in Swift.
public struct Program: Sendable, Equatable {
    /// An identifier of this version of the program, carried into outputs for audit.
    public var version: String
    /// The calendar days, months and birthdays are counted in.
    public var calendar: ProgramCalendar
    /// When the programme starts, if it says: a shop's activity dated before it counts for
    /// nothing (``isBeforeStart(_:type:)``). Members may have registered long before.
    public var startsAt: EventTime?
    /// Name of the time zone, for people (the offset is what counts).
    public var timeZoneName: String
    public var earning: Earning
    public var checkIn: CheckIn
    public var reviews: CappedAction
    public var shares: CappedAction
    /// Tasks by name.
    public var tasks: [String: Task]
    public var referral: Referral
    public var lots: Lots
    public var members: Members
    public var spending: Spending
    /// Catalogue rewards by id.
    public var catalogue: [String: Reward]
    public var inactivity: Inactivity
    public var tiers: TierPolicy
    public var notifications: NotificationPolicy

    /// Limits on spending points.
    public struct Spending: Sendable, Equatable {
        /// The least a redemption may cost.
        public var minimumRedemptionPoints: Int64
        /// Points worth one CNY at checkout (100: one point is one fen).
        public var cashOffsetPointsPerCNY: Int64
        /// The largest share of an order's amount points may pay, in percent.
        public var cashOffsetMaxPercentOfOrder: Int64
        /// The least a transfer may carry.
        public var transferMinimumPoints: Int64
        /// The most a member may send in transfers in a calendar day.
        public var transferDailyLimitPoints: Int64
    }

    /// What a catalogue reward is.
    public enum RewardKind: String, Sendable, Equatable {
        case goods, coupon, service, charity
    }

    /// A reward members redeem points for.
    public struct Reward: Sendable, Equatable {
        public var id: String
        public var kind: RewardKind
        public var name: String
        public var points: Int64
        /// Units available over the program's life; nil for unlimited.
        public var stock: Int64?
    }

    /// Deductions from members who stop buying.
    public struct Inactivity: Sendable, Equatable {
        /// Days without a paid order (or since registering) before a deduction, and between deductions.
        public var afterDays: Int64
        /// The share of the available balance deducted, in percent (floored).
        public var deductionPercent: Int64
    }

    /// How paid orders earn their base component.
    public struct Earning: Sendable, Equatable {
        /// Minor units (fen) that earn one point before multipliers.
        public var minorUnitsPerPoint: Int64
        /// Category multipliers in tenths (2.0 → 20).
        public var categoryMultiplierTenths: [String: Int64]
        /// Multiplier of categories not listed, in tenths.
        public var defaultCategoryMultiplierTenths: Int64
        /// Order components stay pending this many hours after the order.
        public var pendingHours: Int64
    }

    /// Daily check-in points and the streak bonus.
    public struct CheckIn: Sendable, Equatable {
        public var points: Int64
        /// From this day of a streak on (counting from 1), `streakPoints` are earned instead.
        public var streakBonusFromDay: Int64
        public var streakPoints: Int64
    }

    /// An action that earns points up to a number of times a calendar day.
    public struct CappedAction: Sendable, Equatable {
        public var points: Int64
        public var dailyCap: Int64
    }

    /// How often a task may be rewarded.
    public enum TaskLimit: String, Sendable, Equatable {
        case oncePerMember = "once"
        case oncePerDay = "daily"
        case oncePerMonth = "monthly"
    }

    /// A task's reward and limit.
    public struct Task: Sendable, Equatable {
        public var points: Int64
        public var limit: TaskLimit
    }

    /// The referrer's reward.
    public struct Referral: Sendable, Equatable {
        public var referrerPoints: Int64
        /// Rewarded referrals per referrer per calendar month.
        public var monthlyCap: Int64
    }

    /// Lot expiry.
    public struct Lots: Sendable, Equatable {
        /// A lot expires at the end of the month this many months after the month it became
        /// available (12: available 2026-03-15 → expires 2027-04-01 00:00).
        public var expiryMonthsAfterAvailable: Int64
        /// Members are warned this many days before points expire.
        public var expiryWarningDays: Int64
    }

    /// When and how messages go out (DOMAIN.md, "Notifications").
    public struct NotificationPolicy: Sendable, Equatable {
        /// Quiet hours in local minutes of the day, [from, to), spanning midnight when from > to.
        public var quietFromMinute: Int
        public var quietToMinute: Int
        /// Marketing messages a member may get a local day.
        public var marketingDailyCap: Int64
        /// Local minute of the day the digest of the day before goes out.
        public var digestMinute: Int
        /// Channels tried, in order, when the member's preferred one has no address.
        public var channelFallback: [Channel]

        /// Whether a local minute of the day falls in quiet hours.
        public func isQuiet(minute: Int) -> Bool {
            quietFromMinute > quietToMinute
                ? minute >= quietFromMinute || minute < quietToMinute
                : minute >= quietFromMinute && minute < quietToMinute
        }
    }

    /// Members not yet registered.
    public struct Members: Sendable, Equatable {
        /// Events for an unknown member are kept this long (event time) before they are
        /// dead-lettered.
        public var unknownMemberWaitHours: Int64
    }
}

extension Program {
    /// The shop's activity that earns, spends or counts towards a tier: none of it before the
    /// programme's start. Member events may predate it, and the platform's own commands follow
    /// from activity already checked (or, from an operator, carry the operator's date).
    public static let activityTypes: Set<String> = [
        EventType.orderPaid, EventType.orderRefunded, EventType.checkedIn, EventType.reviewPosted, EventType.contentShared,
        EventType.taskCompleted, EventType.redeem, EventType.cashOffset, EventType.transfer,
    ]

    /// Whether an event of `type` at `time` lies before the programme's start, and so is refused
    /// (`before-program-start`) by every service that reads it.
    public func isBeforeStart(_ time: EventTime, type: String) -> Bool {
        guard let startsAt, Self.activityTypes.contains(type) else { return false }
        return time < startsAt
    }

    /// The dead letter's explanation.
    public func beforeStartDetail(_ time: EventTime) -> String {
        "event time \(time) is before the programme's start \(startsAt.map(\.description) ?? "")"
    }
}
