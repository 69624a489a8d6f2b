/// Rules of engagement that more than one service follows: the points service rewards by
/// them and the campaigns service counts by them, each on its own copy of the member's figures,
/// so that both reach the same verdict without reading each other's output.
public enum EngagementRules {
    /// A check-in on local day `day`: nil when the member has checked in that day already
    /// (`already-checked-in-today`), else the day of the streak it makes. A late check-in for
    /// a day before the latest one counts as a streak's first day and leaves the streak alone.
    public static func checkIn(
        on day: Int64, days: inout PeriodCounts, lastDay: inout Int64?, streakLength: inout Int64
    ) -> Int64? {
        guard days.count(in: day) == 0 else { return nil }
        days.add(in: day)
        if let last = lastDay, day < last { return 1 }
        let streakDay = lastDay == day - 1 ? streakLength + 1 : 1
        lastDay = day
        streakLength = streakDay
        return streakDay
    }

    /// A referral by a registration at `time`: whether the referrer may be rewarded for it
    /// under the monthly cap (counted in the registration's local month), counting it if so.
    public static func admitReferral(at time: EventTime, counts: inout PeriodCounts, program: Program) -> Bool {
        let month = program.calendar.localDate(of: time).monthIndex
        guard counts.count(in: month) < program.referral.monthlyCap else { return false }
        counts.add(in: month)
        return true
    }
}
