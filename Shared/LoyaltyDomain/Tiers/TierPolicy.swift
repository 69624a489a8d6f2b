/// The tier ladder and its rules, from the program file's `tiers` section (DOMAIN.md, "Tiers").
public struct TierPolicy: Sendable, Equatable {
    /// One rung of the ladder.
    public struct Level: Sendable, Equatable {
        public var id: String
        public var name: String
        /// Order-points multiplier in tenths (1.5 → 15).
        public var multiplierTenths: Int64
        /// Qualifying spend (fen, rolling window) that reaches this level.
        public var qualifyingSpendMinor: Int64
        /// Paid orders in one calendar month that also reach this level (nil: spend only).
        public var ordersInAMonth: Int64?
        /// Benefits of the level, for status and notifications.
        public var benefits: [String]
    }

    /// Levels from the lowest (the one every member starts at) to the highest.
    public var levels: [Level]
    /// Days of the rolling window of qualifying spend.
    public var qualifyingWindowDays: Int64

    /// The index of the level with this id.
    public func index(of id: String) -> Int? { levels.firstIndex { $0.id == id } }
}

extension Program {
    static func tierPolicy(_ root: JSONObject) throws -> TierPolicy {
        let tiers = try root.object("tiers")
        var levels: [TierPolicy.Level] = []
        for (index, raw) in try tiers.array("levels", at: "tiers").enumerated() {
            let path = "tiers.levels[\(index)]"
            guard let level = raw.objectValue else { throw ProgramError(path: path, problem: "expected an object") }
            let multiplier = try level.tenths("multiplier", at: path)
            guard multiplier >= 10, multiplier <= 1000 else {
                throw ProgramError(path: "\(path).multiplier", problem: "must be at least 1 and at most 100")
            }
            let spend = try level.int64("qualifyingSpendMinor", at: path)
            guard spend >= 0 else { throw ProgramError(path: "\(path).qualifyingSpendMinor", problem: "must not be negative") }
            let orders = try level.optionalInt64("ordersInAMonth", at: path)
            if let orders, orders <= 0 { throw ProgramError(path: "\(path).ordersInAMonth", problem: "must be greater than 0") }
            let benefits = try level.array("benefits", at: path).enumerated().map { offset, value in
                guard let text = value.stringValue else {
                    throw ProgramError(path: "\(path).benefits[\(offset)]", problem: "expected a string")
                }
                return text
            }
            levels.append(TierPolicy.Level(
                id: try level.string("id", at: path), name: try level.string("name", at: path), multiplierTenths: multiplier,
                qualifyingSpendMinor: spend, ordersInAMonth: orders, benefits: benefits))
        }
        guard let first = levels.first else { throw ProgramError(path: "tiers.levels", problem: "needs at least one level") }
        guard first.qualifyingSpendMinor == 0, first.ordersInAMonth == nil else {
            throw ProgramError(path: "tiers.levels[0]", problem: "the first level is where every member starts: qualifyingSpendMinor 0, no ordersInAMonth")
        }
        for index in levels.indices.dropFirst() where levels[index].qualifyingSpendMinor <= levels[index - 1].qualifyingSpendMinor {
            throw ProgramError(path: "tiers.levels[\(index)].qualifyingSpendMinor", problem: "must be above the level below")
        }
        guard Set(levels.map(\.id)).count == levels.count else { throw ProgramError(path: "tiers.levels", problem: "ids must be unique") }
        let window = try tiers.int64("qualifyingWindowDays", at: "tiers")
        guard window > 0 else { throw ProgramError(path: "tiers.qualifyingWindowDays", problem: "must be greater than 0") }
        return TierPolicy(levels: levels, qualifyingWindowDays: window)
    }
}
