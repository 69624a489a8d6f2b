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
        self.lots = Lots(expiryMonthsAfterAvailable: try Self.positive(try lots.int64("expiryMonthsAfterAvailable", at: "lots"), "lots.expiryMonthsAfterAvailable"))
        let members = try root.object("members")
        self.members = Members(unknownMemberWaitHours: try Self.nonNegative(try members.int64("unknownMemberWaitHours", at: "members"), "members.unknownMemberWaitHours"))
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

    private static func positive(_ value: Int64, _ path: String) throws -> Int64 {
        guard value > 0 else { throw ProgramError(path: path, problem: "must be greater than 0") }
        return value
    }

    private static func nonNegative(_ value: Int64, _ path: String) throws -> Int64 {
        guard value >= 0 else { throw ProgramError(path: path, problem: "must not be negative") }
        return value
    }
}
