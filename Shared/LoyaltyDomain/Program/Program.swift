/// The loyalty program: every number the rules use, read from the program file
/// (docs/program-file.md). Nothing numeric about the program is written in Swift.
public struct Program: Sendable, Equatable {
    /// An identifier of this version of the program, carried into outputs for audit.
    public var version: String
    /// The calendar days, months and birthdays are counted in.
    public var calendar: ProgramCalendar
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
    }

    /// Members not yet registered.
    public struct Members: Sendable, Equatable {
        /// Events for an unknown member are kept this long (event time) before they are
        /// dead-lettered.
        public var unknownMemberWaitHours: Int64
    }
}
