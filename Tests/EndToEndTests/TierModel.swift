import LoyaltyDomain

/// DOMAIN.md's tier rules for the reference ladder, written out plainly and independently of
/// the services' code, for the scenarios' expectations: rolling spend, three orders in a
/// month, month-end downgrades and at-risk. Times are milliseconds; months count from
/// January 2026 (local).
struct TierModel {
    static let thresholds: [Int64] = [0, 100_000, 500_000, 2_000_000, 5_000_000]
    static let day: Int64 = 86_400_000
    static let offset: Int64 = 8 * 3_600_000

    var level = 0
    private var payments: [(time: Int64, amount: Int64)] = []
    private var refunds: [(time: Int64, amount: Int64)] = []
    private var ordersByMonth: [Int64: Int64] = [:]
    /// The month number (1 = February 2026) of the next boundary to apply.
    private var nextBoundary = 1

    /// Months since January 2026 of a local time.
    static func month(_ time: Int64) -> Int64 {
        let date = LocalDate(dayNumber: Int64((Double(time + offset) / Double(day)).rounded(.down)))
        return Int64((date.year - 2026) * 12 + date.month - 1)
    }

    /// Local 00:00 on the 1st of a month number.
    static func boundary(_ month: Int) -> Int64 {
        LocalDate(year: 2026 + month / 12, month: month % 12 + 1, day: 1)!.dayNumber * day - offset
    }

    /// Applies the month boundaries at or before `time` (above Newcomer only): the boundaries
    /// that changed something, with `downgraded` or `at-risk`.
    mutating func monthEnds(upTo time: Int64) -> [(boundary: Int64, change: String)] {
        var changes: [(Int64, String)] = []
        while Self.boundary(nextBoundary) <= time {
            let boundary = Self.boundary(nextBoundary)
            let current = Self.month(boundary)
            if level > 0 {
                let last = ordersByMonth[current - 1, default: 0]
                let before = ordersByMonth[current - 2, default: 0]
                if last == 0 && before == 0 {
                    level -= 1
                    changes.append((boundary, "downgraded"))
                } else if last == 0 {
                    changes.append((boundary, "at-risk"))
                }
            }
            nextBoundary += 1
        }
        return changes
    }

    /// A paid order, after its bonuses were decided on `level`: whether the member moved up.
    mutating func pay(_ amount: Int64, at time: Int64) -> Bool {
        payments.append((time, amount))
        ordersByMonth[Self.month(time), default: 0] += 1
        let from = time - 365 * Self.day
        let spend = payments.filter { $0.time > from && $0.time <= time }.reduce(0) { $0 + $1.amount }
            - refunds.filter { $0.time > from && $0.time <= time }.reduce(0) { $0 + $1.amount }
        var reached = 0
        for index in Self.thresholds.indices.reversed() where index > 0 && spend >= Self.thresholds[index] { reached = index; break }
        if reached < 1 && ordersByMonth[Self.month(time), default: 0] >= 3 { reached = 1 }
        guard reached > level else { return false }
        level = reached
        return true
    }

    /// An accepted refund (it lowers the spend of later orders; it never downgrades).
    mutating func refund(_ amount: Int64, at time: Int64) {
        refunds.append((time, amount))
    }
}
