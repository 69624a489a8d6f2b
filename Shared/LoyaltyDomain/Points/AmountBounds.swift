/// Bounds that keep every points and money figure far from 64-bit overflow, so that no input,
/// however large or repeated, can trap a service.
///
/// Each input is bounded where it is decoded (`PointsInput.maximumAmountMinor`) and each
/// program figure where the program is loaded, so one event moves a member's figures by at most
/// about 2 × 10^18. A member whose figures would pass `PointsAccount.safeMagnitude` (10^18)
/// has the event refused with `amount-out-of-range` instead, so no figure ever gets near
/// `Int64.max` (about 9.2 × 10^18).
extension Int64 {
    /// The sum, or `Int64.max` / `Int64.min` where it would overflow: for running totals
    /// (revenue, qualifying spend) that only report.
    public func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }
}

extension PointsAccount {
    /// The largest magnitude any figure of an account may reach.
    public static let safeMagnitude: Int64 = 1_000_000_000_000_000_000

    /// Whether a balance, a lifetime total, a lot or an order figure is past `safeMagnitude`.
    public var exceedsSafeMagnitude: Bool {
        let figures = [
            balance.available, balance.pending, balance.debt, lifetime.earned, lifetime.reversed, lifetime.redeemed,
            lifetime.cashOffset, lifetime.transferredOut, lifetime.transferredIn, lifetime.givenBack, lifetime.expired,
            lifetime.deducted, lifetime.adjustedUp, lifetime.adjustedDown,
        ]
        return figures.contains { $0 > Self.safeMagnitude || $0 < -Self.safeMagnitude }
            || lots.contains { $0.points > Self.safeMagnitude || $0.remaining > Self.safeMagnitude }
    }
}
