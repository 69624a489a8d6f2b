import Foundation

/// Tells a bench wait that can no longer end from one that is only slow: the count it waits
/// on has not moved for `seconds` of wall time (a wait, not a business decision).
struct StallGuard {
    let seconds: TimeInterval
    private var last: (count: Int64, at: Date)?

    init(seconds: TimeInterval) {
        self.seconds = seconds
    }

    /// Notes `count`; throws `stuck(count)` once it has stayed the same for longer than `seconds`.
    mutating func check(_ count: Int64, stuck: (Int64) -> String) throws {
        let now = Date()
        guard let last, last.count == count else {
            self.last = (count, now)
            return
        }
        if now.timeIntervalSince(last.at) > seconds { throw CLIError(stuck(count)) }
    }

    /// `check` for an `Int` count.
    mutating func check(_ count: Int, stuck: (Int) -> String) throws {
        try check(Int64(count)) { stuck(Int($0)) }
    }
}
