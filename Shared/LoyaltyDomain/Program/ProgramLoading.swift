/// Why a program file was refused; names the field.
public struct ProgramError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}

extension Program {
    /// Reads a program file.
    public static func load(json bytes: [UInt8]) throws(ProgramError) -> Program {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw ProgramError(path: "", problem: "not valid JSON: \(error.description)")
        }
        guard let root = value.objectValue else {
            throw ProgramError(path: "", problem: "the program must be a JSON object")
        }
        do {
            return try Program(root)
        } catch let error as JSONFieldError {
            throw ProgramError(path: error.path, problem: error.problem)
        } catch let error as ProgramError {
            throw error
        } catch {
            throw ProgramError(path: "", problem: "\(error)")
        }
    }

    /// Multipliers above ×100 are refused: no programme needs them, and the bound keeps the
    /// points formulas within 64-bit integers.
    static let maximumMultiplierTenths: Int64 = 1000

    init(_ root: JSONObject) throws {
        version = try root.string("version")
        let zone = try root.object("timeZone")
        timeZoneName = try zone.string("name", at: "timeZone")
        do {
            calendar = ProgramCalendar(offset: try UTCOffset.parse(try zone.string("utcOffset", at: "timeZone")))
        } catch let error as TimeParseError {
            throw ProgramError(path: "timeZone.utcOffset", problem: error.description)
        }

        if let text = try root.optionalString("startsAt") {
            do { startsAt = try EventTime.parse(text) } catch {
                throw ProgramError(path: "startsAt", problem: "expected an RFC 3339 instant: \(error)")
            }
        }

        let earning = try root.object("earning")
        var multipliers: [String: Int64] = [:]
        let categories = try earning.object("categoryMultipliers", at: "earning")
        for member in categories.members {
            guard let tenths = member.value.tenthsValue else {
                throw ProgramError(path: "earning.categoryMultipliers.\(member.key)", problem: "expected a number with at most one decimal place")
            }
            guard tenths > 0, tenths <= Self.maximumMultiplierTenths else {
                throw ProgramError(path: "earning.categoryMultipliers.\(member.key)", problem: "must be above 0 and at most 100")
            }
            multipliers[member.key] = tenths
        }
        self.earning = Earning(
            minorUnitsPerPoint: try Self.positive(try earning.int64("minorUnitsPerPoint", at: "earning"), "earning.minorUnitsPerPoint"),
            categoryMultiplierTenths: multipliers,
            defaultCategoryMultiplierTenths: try Self.multiplier(try earning.tenths("defaultCategoryMultiplier", at: "earning"), "earning.defaultCategoryMultiplier"),
            pendingHours: try Self.nonNegative(try earning.int64("pendingHours", at: "earning"), "earning.pendingHours"))

        let checkIn = try root.object("checkIn")
        self.checkIn = CheckIn(
            points: try Self.nonNegative(try checkIn.int64("points", at: "checkIn"), "checkIn.points"),
            streakBonusFromDay: try Self.positive(try checkIn.int64("streakBonusFromDay", at: "checkIn"), "checkIn.streakBonusFromDay"),
            streakPoints: try Self.nonNegative(try checkIn.int64("streakPoints", at: "checkIn"), "checkIn.streakPoints"))
        reviews = try Self.cappedAction(try root.object("reviews"), "reviews")
        shares = try Self.cappedAction(try root.object("shares"), "shares")

        var tasks: [String: Task] = [:]
        for member in try root.object("tasks").members {
            let path = "tasks.\(member.key)"
            guard let task = member.value.objectValue else { throw ProgramError(path: path, problem: "expected an object") }
            let limitText = try task.string("limit", at: path)
            guard let limit = TaskLimit(rawValue: limitText) else {
                throw ProgramError(path: "\(path).limit", problem: "expected once, daily or monthly, got \(limitText)")
            }
            tasks[member.key] = Task(points: try Self.nonNegative(try task.int64("points", at: path), "\(path).points"), limit: limit)
        }
        self.tasks = tasks

        let referral = try root.object("referral")
        self.referral = Referral(
            referrerPoints: try Self.nonNegative(try referral.int64("referrerPoints", at: "referral"), "referral.referrerPoints"),
            monthlyCap: try Self.nonNegative(try referral.int64("monthlyCap", at: "referral"), "referral.monthlyCap"))
        let lots = try root.object("lots")
        self.lots = Lots(
            expiryMonthsAfterAvailable: try Self.positive(try lots.int64("expiryMonthsAfterAvailable", at: "lots"), "lots.expiryMonthsAfterAvailable"),
            expiryWarningDays: try Self.nonNegative(try lots.int64("expiryWarningDays", at: "lots"), "lots.expiryWarningDays"))
        let spending = try root.object("spending")
        self.spending = Spending(
            minimumRedemptionPoints: try Self.positive(try spending.int64("minimumRedemptionPoints", at: "spending"), "spending.minimumRedemptionPoints"),
            cashOffsetPointsPerCNY: try Self.positive(try spending.int64("cashOffsetPointsPerCNY", at: "spending"), "spending.cashOffsetPointsPerCNY"),
            cashOffsetMaxPercentOfOrder: try Self.percent(try spending.int64("cashOffsetMaxPercentOfOrder", at: "spending"), "spending.cashOffsetMaxPercentOfOrder"),
            transferMinimumPoints: try Self.positive(try spending.int64("transferMinimumPoints", at: "spending"), "spending.transferMinimumPoints"),
            transferDailyLimitPoints: try Self.positive(try spending.int64("transferDailyLimitPoints", at: "spending"), "spending.transferDailyLimitPoints"))
        guard 100 % self.spending.cashOffsetPointsPerCNY == 0 else {
            throw ProgramError(path: "spending.cashOffsetPointsPerCNY", problem: "must divide 100, so that points pay whole fen")
        }
        var catalogue: [String: Reward] = [:]
        for (index, raw) in try root.array("catalogue").enumerated() {
            let path = "catalogue[\(index)]"
            guard let reward = raw.objectValue else { throw ProgramError(path: path, problem: "expected an object") }
            let id = try reward.string("id", at: path)
            let kindText = try reward.string("kind", at: path)
            guard let kind = RewardKind(rawValue: kindText) else {
                throw ProgramError(path: "\(path).kind", problem: "expected goods, coupon, service or charity, got \(kindText)")
            }
            let points = try Self.positive(try reward.int64("points", at: path), "\(path).points")
            guard points >= self.spending.minimumRedemptionPoints else {
                throw ProgramError(path: "\(path).points", problem: "must be at least spending.minimumRedemptionPoints (\(self.spending.minimumRedemptionPoints))")
            }
            let stock = try reward.optionalInt64("stock", at: path)
            if let stock { _ = try Self.nonNegative(stock, "\(path).stock") }
            guard catalogue[id] == nil else { throw ProgramError(path: "\(path).id", problem: "\(id) appears twice") }
            catalogue[id] = Reward(id: id, kind: kind, name: try reward.string("name", at: path), points: points, stock: stock)
        }
        self.catalogue = catalogue
        let inactivity = try root.object("inactivity")
        self.inactivity = Inactivity(
            afterDays: try Self.positive(try inactivity.int64("afterDays", at: "inactivity"), "inactivity.afterDays"),
            deductionPercent: try Self.percent(try inactivity.int64("deductionPercent", at: "inactivity"), "inactivity.deductionPercent"))
        self.tiers = try Self.tierPolicy(root)
        let members = try root.object("members")
        self.members = Members(unknownMemberWaitHours: try Self.nonNegative(try members.int64("unknownMemberWaitHours", at: "members"), "members.unknownMemberWaitHours"))
        self.notifications = try Self.notificationPolicy(try root.object("notifications"))
    }

    private static func notificationPolicy(_ object: JSONObject) throws -> NotificationPolicy {
        let quiet = try object.object("quietHours", at: "notifications")
        let from = try minute(try quiet.string("from", at: "notifications.quietHours"), "notifications.quietHours.from")
        let to = try minute(try quiet.string("to", at: "notifications.quietHours"), "notifications.quietHours.to")
        guard from != to else { throw ProgramError(path: "notifications.quietHours", problem: "from and to must differ") }
        let cap = try object.int64("marketingDailyCap", at: "notifications")
        guard (0...100).contains(cap) else { throw ProgramError(path: "notifications.marketingDailyCap", problem: "must be from 0 to 100") }
        var fallback: [Channel] = []
        for (index, raw) in try object.array("channelFallback", at: "notifications").enumerated() {
            guard let text = raw.stringValue, let channel = Channel(rawValue: text), !fallback.contains(channel) else {
                throw ProgramError(path: "notifications.channelFallback[\(index)]", problem: "expected push, wechat, sms or email, each once")
            }
            fallback.append(channel)
        }
        guard !fallback.isEmpty else { throw ProgramError(path: "notifications.channelFallback", problem: "name at least one channel") }
        let policy = NotificationPolicy(
            quietFromMinute: from, quietToMinute: to, marketingDailyCap: cap,
            digestMinute: try minute(try object.string("digestAt", at: "notifications"), "notifications.digestAt"), channelFallback: fallback)
        guard !policy.isQuiet(minute: policy.digestMinute) else {
            throw ProgramError(path: "notifications.digestAt", problem: "must fall outside quiet hours")
        }
        return policy
    }

    /// `HH:MM` as minutes of the day.
    private static func minute(_ text: String, _ path: String) throws -> Int {
        let parts = text.split(separator: ":")
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
              (0...23).contains(hour), (0...59).contains(minute) else {
            throw ProgramError(path: path, problem: "expected HH:MM, 00:00 to 23:59")
        }
        return hour * 60 + minute
    }

    private static func cappedAction(_ object: JSONObject, _ path: String) throws -> CappedAction {
        CappedAction(
            points: try nonNegative(try object.int64("points", at: path), "\(path).points"),
            dailyCap: try nonNegative(try object.int64("dailyCap", at: path), "\(path).dailyCap"))
    }

    private static func multiplier(_ tenths: Int64, _ path: String) throws -> Int64 {
        guard tenths > 0, tenths <= maximumMultiplierTenths else { throw ProgramError(path: path, problem: "must be above 0 and at most 100") }
        return tenths
    }

    private static func percent(_ value: Int64, _ path: String) throws -> Int64 {
        guard (0...100).contains(value) else { throw ProgramError(path: path, problem: "must be a percentage from 0 to 100") }
        return value
    }

    /// The largest figure a program may hold (points, days, hours, caps): far above any real
    /// programme, far enough below 64-bit overflow that the rules' arithmetic cannot trap.
    static let maximumFigure: Int64 = 1_000_000_000

    private static func positive(_ value: Int64, _ path: String) throws -> Int64 {
        guard value > 0 else { throw ProgramError(path: path, problem: "must be greater than 0") }
        return try atMostMaximum(value, path)
    }

    private static func nonNegative(_ value: Int64, _ path: String) throws -> Int64 {
        guard value >= 0 else { throw ProgramError(path: path, problem: "must not be negative") }
        return try atMostMaximum(value, path)
    }

    private static func atMostMaximum(_ value: Int64, _ path: String) throws -> Int64 {
        guard value <= maximumFigure else { throw ProgramError(path: path, problem: "must be at most \(maximumFigure)") }
        return value
    }
}
