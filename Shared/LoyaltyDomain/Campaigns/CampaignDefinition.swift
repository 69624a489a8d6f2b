/// One version of a campaign, as marketing defines it (docs/campaigns.md): when it runs, for
/// whom, what triggers it, what it gives, and its limits. Definitions are data; nothing about
/// a campaign is written in Swift.
public struct CampaignDefinition: Sendable, Equatable {
    /// Stable id, e.g. `member-day`; results and control groups are keyed by it.
    public var id: String
    /// Increases with every published change of the campaign.
    public var version: Int64
    public var name: String
    public var schedule: Schedule
    public var audience: Audience
    public var trigger: Trigger
    public var reward: Reward
    /// Total points the campaign may grant over its life (nil: no limit).
    public var budgetPoints: Int64?
    /// Limits per member over the campaign's life.
    public var memberCap: MemberCap
    /// Share of members (percent, 0…99) held out as a control group.
    public var controlSharePercent: Int

    /// When a campaign applies, on the trigger's local date and time. Every constraint given
    /// must hold; within a list, any entry matches.
    public struct Schedule: Sendable, Equatable {
        /// The first instant it applies (inclusive).
        public var from: EventTime?
        /// The instant it stops applying (exclusive).
        public var until: EventTime?
        /// Dates: `MM-DD` every year, or `YYYY-MM-DD` once.
        public var dates: [ScheduleDate] = []
        /// Days of the month, 1…31; -1 is the last day of the month.
        public var daysOfMonth: [Int] = []
        /// ISO weekdays, 1 (Monday) … 7 (Sunday).
        public var weekdays: [Int] = []
        /// Local hours [from, to), 0…24.
        public var hours: ClosedRange<Int>?
        /// On the member's birthday, or in its month.
        public var birthday: BirthdayRule?
    }

    /// A date in a schedule.
    public enum ScheduleDate: Sendable, Equatable {
        case annual(month: Int, day: Int)
        case once(LocalDate)
    }

    /// `day`: the birthday itself (29 February → 28 February in other years); `month`: its month.
    public enum BirthdayRule: String, Sendable, Equatable { case day, month }

    /// Who may be rewarded.
    public struct Audience: Sendable, Equatable {
        /// Tier ids (held just before the trigger) that qualify; empty: any.
        public var tiers: Set<String> = []
        /// The lowest tier id that qualifies, and every tier above it.
        public var minimumTier: String?
        /// Only members whose registration is at most this many days (× 24 h) before the trigger.
        public var registeredWithinDays: Int64?
        /// Only members who agreed to marketing messages.
        public var requiresMarketingConsent = false
    }

    /// What sets a campaign off.
    public enum Trigger: Sendable, Equatable {
        /// A paid order (the points service's base component is the multiplier's base).
        case orderPaid(Condition?)
        /// A check-in that counts (the first of its local day), with its streak day
        /// (`EngagementRules.checkIn`, the rule points rewards by).
        case checkIn(Condition?)
        /// A referral of the member admitted under the monthly cap, as points rewards it.
        case referral(Condition?)
        /// 00:00 of the member's birthday.
        case birthday
        /// This many days (× 24 h) without an accepted paid order, counted from registration
        /// or the last order; once per dormant spell.
        case dormant(days: Int64)

        /// The name used in definitions and reward events.
        public var event: String {
            switch self {
            case .orderPaid: "order.paid"
            case .checkIn: "check-in"
            case .referral: "referral"
            case .birthday: "birthday"
            case .dormant: "dormant"
            }
        }

        /// The condition, for triggers that take one.
        public var condition: Condition? {
            switch self {
            case .orderPaid(let condition), .checkIn(let condition), .referral(let condition): condition
            case .birthday, .dormant: nil
            }
        }
    }

    /// What a rewarded member gets. At least one part is present.
    public struct Reward: Sendable, Equatable {
        /// Order-points multiplier in tenths (2.0 → 20): grants `floor(base × (m − 1))`.
        public var multiplierTenths: Int64?
        /// Fixed points, available at once.
        public var points: Int64?
        public var coupon: String?
        public var badge: String?
    }

    /// Limits per member.
    public struct MemberCap: Sendable, Equatable {
        /// Most points one member may get from the campaign.
        public var points: Int64?
        /// Most rewards one member may get from the campaign.
        public var rewards: Int64?
    }

    /// Whether the campaign is a multiplier on order points (only the largest applies).
    public var isMultiplier: Bool { reward.multiplierTenths != nil }
}

/// Why a campaign definition was refused: the campaign (when known), the field and the problem.
public struct CampaignDefinitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var campaign: String?
    public var path: String
    public var problem: String

    public init(campaign: String?, path: String, problem: String) {
        self.campaign = campaign
        self.path = path
        self.problem = problem
    }

    public var description: String {
        (campaign.map { "campaign \($0): " } ?? "") + (path.isEmpty ? problem : "\(path): \(problem)")
    }
}

extension CampaignDefinition {
    /// The fields a trigger's condition may read, with their types (docs/campaigns.md).
    public static func conditionFields(for event: String) -> [String: Condition.ValueType] {
        var fields: [String: Condition.ValueType] = [
            "member.tier": .string, "member.paidOrders": .int, "member.rewardedReferrals": .int,
            "member.daysSinceRegistered": .int, "member.marketingConsent": .bool, "member.locale": .string,
            "time.day": .int, "time.month": .int, "time.weekday": .int, "time.hour": .int,
        ]
        switch event {
        case "order.paid":
            fields["order.paidMinor"] = .int
            fields["order.basePoints"] = .int
            fields["order.categories"] = .stringList
            fields["order.lineCount"] = .int
        case "check-in":
            fields["checkIn.streakDays"] = .int
        case "referral":
            fields["referral.referee"] = .string
        default:
            break
        }
        return fields
    }

    static let triggerEvents = ["order.paid", "check-in", "referral", "birthday", "dormant"]
    static let weekdayNames = ["mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7]
    /// Caps that keep every sum of points within 64-bit integers.
    static let maximumPoints: Int64 = 1_000_000_000_000

    /// Reads one definition. `tiers` are the tier ids of the program, in ladder order.
    public static func load(_ value: JSONValue, tiers: [String]) throws(CampaignDefinitionError) -> CampaignDefinition {
        guard let object = value.objectValue else { throw CampaignDefinitionError(campaign: nil, path: "", problem: "a campaign must be a JSON object") }
        let id = object["id"]?.stringValue
        do {
            return try read(object, tiers: tiers)
        } catch let error as CampaignDefinitionError {
            throw error
        } catch let error as JSONFieldError {
            throw CampaignDefinitionError(campaign: id, path: error.path, problem: error.problem)
        } catch {
            throw CampaignDefinitionError(campaign: id, path: "", problem: "\(error)")
        }
    }

    /// Reads a file of definitions: `{"campaigns": [ … ]}`, ids unique.
    public static func loadFile(json bytes: [UInt8], tiers: [String]) throws(CampaignDefinitionError) -> [CampaignDefinition] {
        let root: JSONObject
        do {
            guard let object = try JSONValue.parse(bytes).objectValue else {
                throw CampaignDefinitionError(campaign: nil, path: "", problem: "expected {\"campaigns\": [ … ]}")
            }
            root = object
        } catch let error as CampaignDefinitionError {
            throw error
        } catch {
            throw CampaignDefinitionError(campaign: nil, path: "", problem: "not valid JSON: \(error)")
        }
        guard let list = root["campaigns"]?.arrayValue else {
            throw CampaignDefinitionError(campaign: nil, path: "campaigns", problem: "expected an array of campaigns")
        }
        var seen: Set<String> = []
        var result: [CampaignDefinition] = []
        for (index, raw) in list.enumerated() {
            var definition: CampaignDefinition
            do {
                definition = try load(raw, tiers: tiers)
            } catch {
                throw CampaignDefinitionError(campaign: error.campaign, path: "campaigns[\(index)]" + (error.path.isEmpty ? "" : "." + error.path), problem: error.problem)
            }
            guard seen.insert(definition.id).inserted else {
                throw CampaignDefinitionError(campaign: definition.id, path: "campaigns[\(index)].id", problem: "appears twice in the file")
            }
            result.append(definition)
        }
        return result
    }

    private static func read(_ object: JSONObject, tiers: [String]) throws -> CampaignDefinition {
        try checkKeys(object, ["id", "version", "name", "schedule", "audience", "trigger", "reward", "budgetPoints", "memberCap", "controlSharePercent"], at: "")
        let id = try object.string("id")
        func fail(_ path: String, _ problem: String) -> CampaignDefinitionError { CampaignDefinitionError(campaign: id, path: path, problem: problem) }
        guard !id.isEmpty, id.count <= 64, id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }) else {
            throw fail("id", "use 1 to 64 characters of a-z, 0-9, - and _")
        }
        let version = try object.int64("version")
        guard version >= 1 else { throw fail("version", "must be at least 1") }
        let name = try object.string("name")
        guard !name.isEmpty else { throw fail("name", "must not be empty") }

        let trigger = try readTrigger(try object.object("trigger"), fail)
        let reward = try readReward(try object.object("reward"), trigger: trigger, fail)
        let schedule = try readSchedule(try object.optionalObject("schedule") ?? JSONObject(), fail)
        let audience = try readAudience(try object.optionalObject("audience") ?? JSONObject(), tiers: tiers, fail)

        let budget = try object.optionalInt64("budgetPoints")
        if let budget, !(1...maximumPoints).contains(budget) { throw fail("budgetPoints", "must be from 1 to \(maximumPoints)") }
        var cap = MemberCap()
        if let capObject = try object.optionalObject("memberCap") {
            try checkKeys(capObject, ["points", "rewards"], at: "memberCap")
            cap.points = try capObject.optionalInt64("points", at: "memberCap")
            cap.rewards = try capObject.optionalInt64("rewards", at: "memberCap")
            if let points = cap.points, !(1...maximumPoints).contains(points) { throw fail("memberCap.points", "must be from 1 to \(maximumPoints)") }
            if let rewards = cap.rewards, rewards < 1 { throw fail("memberCap.rewards", "must be at least 1") }
        }
        let share = try object.optionalInt("controlSharePercent") ?? 0
        guard (0...99).contains(share) else { throw fail("controlSharePercent", "must be from 0 to 99") }
        return CampaignDefinition(
            id: id, version: version, name: name, schedule: schedule, audience: audience, trigger: trigger, reward: reward,
            budgetPoints: budget, memberCap: cap, controlSharePercent: share)
    }

    private static func readTrigger(_ object: JSONObject, _ fail: (String, String) -> CampaignDefinitionError) throws -> Trigger {
        try checkKeys(object, ["event", "when", "days"], at: "trigger")
        let event = try object.string("event", at: "trigger")
        guard triggerEvents.contains(event) else {
            throw fail("trigger.event", "unknown event \(event); use one of \(triggerEvents.joined(separator: ", "))")
        }
        var condition: Condition?
        if let text = try object.optionalString("when", at: "trigger") {
            guard !["birthday", "dormant"].contains(event) else { throw fail("trigger.when", "a \(event) trigger takes no condition") }
            do {
                condition = try Condition(text, fields: conditionFields(for: event))
            } catch {
                throw fail("trigger.when", "\(error.description) in \"\(text)\"")
            }
        }
        let days = try object.optionalInt64("days", at: "trigger")
        if event != "dormant", days != nil { throw fail("trigger.days", "only a dormant trigger takes days") }
        switch event {
        case "order.paid": return .orderPaid(condition)
        case "check-in": return .checkIn(condition)
        case "referral": return .referral(condition)
        case "birthday": return .birthday
        default:
            guard let days else { throw fail("trigger.days", "a dormant trigger needs days") }
            guard (1...3_650).contains(days) else { throw fail("trigger.days", "must be from 1 to 3650") }
            return .dormant(days: days)
        }
    }

    private static func readReward(_ object: JSONObject, trigger: Trigger, _ fail: (String, String) -> CampaignDefinitionError) throws -> Reward {
        try checkKeys(object, ["orderPointsMultiplier", "points", "coupon", "badge"], at: "reward")
        var reward = Reward()
        reward.multiplierTenths = try object.optionalTenths("orderPointsMultiplier", at: "reward")
        if let tenths = reward.multiplierTenths {
            guard tenths > 10, tenths <= 1000 else { throw fail("reward.orderPointsMultiplier", "must be above 1 and at most 100") }
            guard case .orderPaid = trigger else { throw fail("reward.orderPointsMultiplier", "needs an order.paid trigger") }
        }
        reward.points = try object.optionalInt64("points", at: "reward")
        if let points = reward.points, !(1...maximumPoints).contains(points) { throw fail("reward.points", "must be from 1 to \(maximumPoints)") }
        reward.coupon = try object.optionalString("coupon", at: "reward")
        reward.badge = try object.optionalString("badge", at: "reward")
        if reward.coupon?.isEmpty == true { throw fail("reward.coupon", "must not be empty") }
        if reward.badge?.isEmpty == true { throw fail("reward.badge", "must not be empty") }
        guard reward.multiplierTenths != nil || reward.points != nil || reward.coupon != nil || reward.badge != nil else {
            throw fail("reward", "give at least one of orderPointsMultiplier, points, coupon, badge")
        }
        return reward
    }

    private static func readSchedule(_ object: JSONObject, _ fail: (String, String) -> CampaignDefinitionError) throws -> Schedule {
        try checkKeys(object, ["from", "until", "dates", "daysOfMonth", "weekdays", "hours", "birthday"], at: "schedule")
        var schedule = Schedule()
        func instant(_ key: String) throws -> EventTime? {
            guard let text = try object.optionalString(key, at: "schedule") else { return nil }
            do { return try EventTime.parse(text) } catch { throw fail("schedule.\(key)", error.description) }
        }
        schedule.from = try instant("from")
        schedule.until = try instant("until")
        if let from = schedule.from, let until = schedule.until, from >= until { throw fail("schedule.until", "must be after from") }
        for (index, raw) in (try object.optionalArray("dates", at: "schedule") ?? []).enumerated() {
            let path = "schedule.dates[\(index)]"
            guard let text = raw.stringValue else { throw fail(path, "expected MM-DD or YYYY-MM-DD") }
            if text.count == 10, let date = try? LocalDate.parse(text) {
                schedule.dates.append(.once(date))
            } else if let birthday = Birthday.parse(text), text.count == 5 {
                schedule.dates.append(.annual(month: birthday.month, day: birthday.day))
            } else {
                throw fail(path, "expected MM-DD or YYYY-MM-DD, a real date; found \(text)")
            }
        }
        for (index, raw) in (try object.optionalArray("daysOfMonth", at: "schedule") ?? []).enumerated() {
            guard let day = raw.intValue, (1...31).contains(day) || day == -1 else {
                throw fail("schedule.daysOfMonth[\(index)]", "expected 1 to 31, or -1 for the last day of the month")
            }
            schedule.daysOfMonth.append(day)
        }
        for (index, raw) in (try object.optionalArray("weekdays", at: "schedule") ?? []).enumerated() {
            guard let name = raw.stringValue, let day = weekdayNames[name] else {
                throw fail("schedule.weekdays[\(index)]", "expected mon, tue, wed, thu, fri, sat or sun")
            }
            schedule.weekdays.append(day)
        }
        if let hours = try object.optionalArray("hours", at: "schedule") {
            guard hours.count == 2, let from = hours[0].intValue, let to = hours[1].intValue, from >= 0, from < to, to <= 24 else {
                throw fail("schedule.hours", "expected [from, to] with 0 <= from < to <= 24 (local hours, to exclusive)")
            }
            schedule.hours = from...(to - 1)
        }
        if let text = try object.optionalString("birthday", at: "schedule") {
            guard let rule = BirthdayRule(rawValue: text) else { throw fail("schedule.birthday", "expected day or month") }
            schedule.birthday = rule
        }
        return schedule
    }

    private static func readAudience(_ object: JSONObject, tiers: [String], _ fail: (String, String) -> CampaignDefinitionError) throws -> Audience {
        try checkKeys(object, ["tiers", "minTier", "registeredWithinDays", "marketingConsent"], at: "audience")
        var audience = Audience()
        for (index, raw) in (try object.optionalArray("tiers", at: "audience") ?? []).enumerated() {
            guard let id = raw.stringValue, tiers.contains(id) else {
                throw fail("audience.tiers[\(index)]", "unknown tier; the program has \(tiers.joined(separator: ", "))")
            }
            audience.tiers.insert(id)
        }
        if let minimum = try object.optionalString("minTier", at: "audience") {
            guard tiers.contains(minimum) else { throw fail("audience.minTier", "unknown tier \(minimum); the program has \(tiers.joined(separator: ", "))") }
            audience.minimumTier = minimum
        }
        audience.registeredWithinDays = try object.optionalInt64("registeredWithinDays", at: "audience")
        if let days = audience.registeredWithinDays, !(1...3_650).contains(days) {
            throw fail("audience.registeredWithinDays", "must be from 1 to 3650")
        }
        audience.requiresMarketingConsent = try object.optionalBool("marketingConsent", at: "audience") ?? false
        return audience
    }

    private static func checkKeys(_ object: JSONObject, _ allowed: Set<String>, at path: String) throws {
        for member in object.members where !allowed.contains(member.key) {
            throw JSONFieldError(path: JSONObject.path(of: member.key, at: path), problem: "unknown field; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
    }
}
