import ReferenceProgram
import Testing
@testable import Basics
@testable import LoyaltyDomain

/// The reference program file as a JSON tree, to edit.
private func referenceTree() throws -> JSONValue {
    try JSONValue.parse(ReferenceProgram.bytes())
}

/// `root` with the member at `path` replaced by `value` (removed when nil). The path must exist
/// up to its last step, so an edit cannot silently miss.
private func editing(_ root: JSONValue, _ path: [String], _ value: JSONValue?) -> JSONValue {
    guard case .object(var object) = root, let key = path.first else {
        Issue.record("cannot edit \(path) in \(root)")
        return root
    }
    if path.count == 1 {
        object[key] = value
    } else {
        guard let child = object[key] else {
            Issue.record("no member \(key)")
            return root
        }
        object[key] = editing(child, Array(path.dropFirst()), value)
    }
    return .object(object)
}

/// The error loading `bytes` gives.
private func loadError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> ProgramError? {
    do {
        _ = try Program.load(json: bytes)
        Issue.record("expected the program to be refused: \(String(decoding: bytes, as: UTF8.self))", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// The error of the reference program with one edit.
private func loadError(
    setting path: String, to value: JSONValue?, sourceLocation: SourceLocation = #_sourceLocation
) throws -> ProgramError? {
    let tree = editing(try referenceTree(), path.split(separator: ".").map(String.init), value)
    return loadError(tree.serialized(), sourceLocation: sourceLocation)
}

/// The reference program with one edit, which must load.
private func loaded(setting path: String, to value: JSONValue?) throws -> Program {
    let tree = editing(try referenceTree(), path.split(separator: ".").map(String.init), value)
    return try Program.load(json: tree.serialized())
}

@Suite struct ProgramTests {
    @Test func aStartDateRefusesTheShopsActivityBeforeItButNotItsMembers() throws {
        #expect(try referenceProgram().startsAt == nil, "the reference program has none: nothing is refused for its date")
        let program = try loaded(setting: "startsAt", to: "2026-03-01T00:00:00+08:00")
        let before = try EventTime.parse("2026-02-28T23:59:59+08:00"), after = try EventTime.parse("2026-03-01T00:00:00+08:00")
        #expect(program.isBeforeStart(before, type: EventType.orderPaid))
        #expect(program.isBeforeStart(before, type: EventType.checkedIn))
        #expect(program.isBeforeStart(before, type: EventType.redeem))
        #expect(!program.isBeforeStart(after, type: EventType.orderPaid), "from the start on")
        #expect(!program.isBeforeStart(before, type: EventType.memberRegistered), "members may have joined long before")
        #expect(!program.isBeforeStart(before, type: EventType.pointsGrant), "commands follow from checked activity")
        #expect(try loadError(setting: "startsAt", to: "March")?.path == "startsAt")
    }

    @Test func referenceProgramHasDomainNumbers() throws {
        let program = try referenceProgram()
        #expect(program.timeZoneName == "Asia/Shanghai")
        #expect(program.calendar == ProgramCalendar(offset: UTCOffset(seconds: 8 * 3_600)))
        // Base: floor(sum(line.paidMinor × multiplier) / 100); high-margin 2.0, others 1.0.
        #expect(program.earning.minorUnitsPerPoint == 100)
        #expect(program.earning.categoryMultiplierTenths == ["high-margin": 20])
        #expect(program.earning.defaultCategoryMultiplierTenths == 10)
        #expect(program.earning.pendingHours == 168)  // 7 days
        #expect(program.checkIn == Program.CheckIn(points: 1, streakBonusFromDay: 7, streakPoints: 2))
        #expect(program.reviews == Program.CappedAction(points: 3, dailyCap: 5))
        #expect(program.shares == Program.CappedAction(points: 5, dailyCap: 3))
        #expect(program.tasks == [
            "newcomer": Program.Task(points: 50, limit: .oncePerMember),
            "member-day": Program.Task(points: 100, limit: .oncePerMonth),
            "browse-5": Program.Task(points: 10, limit: .oncePerDay),
        ])
        #expect(program.referral == Program.Referral(referrerPoints: 10, monthlyCap: 50))
        // Expires at the end of the month 12 months after availability.
        #expect(program.lots.expiryMonthsAfterAvailable == 12)
        #expect(program.members.unknownMemberWaitHours == 168)  // default 7 days
        #expect(!program.version.isEmpty)
    }

    @Test func editedValuesAreRead() throws {
        let program = try loaded(setting: "earning.categoryMultipliers", to: ["high-margin": .number("1.5"), "luxury": 3, "grocery": .number("0.5")])
        #expect(program.earning.categoryMultiplierTenths == ["high-margin": 15, "luxury": 30, "grocery": 5])
        // "1.50" is still exactly 1.5.
        #expect(try loaded(setting: "earning.defaultCategoryMultiplier", to: .number("1.50")).earning.defaultCategoryMultiplierTenths == 15)
        #expect(try loaded(setting: "timeZone.utcOffset", to: "-05:30").calendar.offset == UTCOffset(seconds: -(5 * 3_600 + 30 * 60)))
        #expect(try loaded(setting: "earning.pendingHours", to: 0).earning.pendingHours == 0)
    }

    @Test func missingFieldsAreNamed() throws {
        let cases: [String] = [
            "version", "timeZone", "timeZone.utcOffset", "timeZone.name", "earning", "earning.minorUnitsPerPoint",
            "earning.categoryMultipliers", "earning.defaultCategoryMultiplier", "earning.pendingHours", "checkIn",
            "checkIn.points", "checkIn.streakBonusFromDay", "checkIn.streakPoints", "reviews", "reviews.dailyCap",
            "shares.points", "tasks", "tasks.newcomer.limit", "tasks.browse-5.points", "referral", "referral.referrerPoints",
            "referral.monthlyCap", "lots.expiryMonthsAfterAvailable", "members.unknownMemberWaitHours",
        ]
        for path in cases {
            let error = try loadError(setting: path, to: nil)
            #expect(error?.path == path, "removing \(path)")
            #expect(error?.problem == "missing", "removing \(path)")
        }
    }

    @Test func figuresThatCouldOverflowAreRefusedAtLoadNamingTheField() throws {
        for path in ["checkIn.points", "earning.pendingHours", "reviews.points", "inactivity.afterDays", "referral.referrerPoints"] {
            let error = try loadError(setting: path, to: .number("5000000000000000000"))
            #expect(error?.path == path, "\(path) = 5e18")
            #expect(error?.problem == "must be at most 1000000000", "\(path) = 5e18")
        }
        #expect(try loaded(setting: "checkIn.points", to: .number("1000000000")).checkIn.points == 1_000_000_000)
    }

    @Test func multipliersMustBeExactTenths() throws {
        let multiplier = try loadError(setting: "earning.categoryMultipliers.high-margin", to: .number("1.25"))
        #expect(multiplier?.path == "earning.categoryMultipliers.high-margin")
        #expect(multiplier?.problem.contains("one decimal") == true)
        let defaultMultiplier = try loadError(setting: "earning.defaultCategoryMultiplier", to: .number("1.25"))
        #expect(defaultMultiplier?.path == "earning.defaultCategoryMultiplier")
        #expect(try loadError(setting: "earning.categoryMultipliers.high-margin", to: .number("2e0"))?.path
            == "earning.categoryMultipliers.high-margin")
        #expect(try loadError(setting: "earning.categoryMultipliers.high-margin", to: "2.0")?.path
            == "earning.categoryMultipliers.high-margin")
    }

    @Test func negativeNumbersAreRefused() throws {
        let paths = [
            "earning.minorUnitsPerPoint", "earning.pendingHours", "checkIn.points", "checkIn.streakBonusFromDay",
            "checkIn.streakPoints", "reviews.points", "reviews.dailyCap", "shares.points", "shares.dailyCap",
            "tasks.newcomer.points", "tasks.member-day.points", "referral.referrerPoints", "referral.monthlyCap",
            "lots.expiryMonthsAfterAvailable", "members.unknownMemberWaitHours",
        ]
        for path in paths {
            #expect(try loadError(setting: path, to: -1)?.path == path, "\(path) = -1")
        }
        #expect(try loadError(setting: "earning.categoryMultipliers.high-margin", to: .number("-2.0"))?.path
            == "earning.categoryMultipliers.high-margin")
        #expect(try loadError(setting: "earning.defaultCategoryMultiplier", to: .number("-1.0"))?.path
            == "earning.defaultCategoryMultiplier")
        // A multiplier of 0 and zero points per CNY make no sense either.
        #expect(try loadError(setting: "earning.defaultCategoryMultiplier", to: 0)?.path == "earning.defaultCategoryMultiplier")
        #expect(try loadError(setting: "earning.minorUnitsPerPoint", to: 0)?.path == "earning.minorUnitsPerPoint")
    }

    @Test func wrongTypesAreNamed() throws {
        #expect(try loadError(setting: "earning.minorUnitsPerPoint", to: "100")?.path == "earning.minorUnitsPerPoint")
        #expect(try loadError(setting: "earning.pendingHours", to: .number("168.5"))?.path == "earning.pendingHours")
        #expect(try loadError(setting: "reviews", to: [3, 5])?.path == "reviews")
        #expect(try loadError(setting: "tasks.newcomer", to: 50)?.path == "tasks.newcomer")
        #expect(try loadError(setting: "version", to: 1)?.path == "version")
    }

    @Test func unknownTaskLimitIsRefused() throws {
        let error = try loadError(setting: "tasks.browse-5.limit", to: "weekly")
        #expect(error?.path == "tasks.browse-5.limit")
        #expect(error?.problem.contains("weekly") == true)
        #expect(try loadError(setting: "tasks.newcomer.limit", to: "Once")?.path == "tasks.newcomer.limit")
    }

    @Test func badUTCOffsetIsRefused() throws {
        for offset: JSONValue in ["+8:00", "UTC+8", "+0800", "+24:00", "", "Asia/Shanghai", 8] {
            #expect(try loadError(setting: "timeZone.utcOffset", to: offset)?.path == "timeZone.utcOffset", "\(offset)")
        }
    }

    @Test func invalidJSONIsRefused() {
        for text in ["", "{", "{\"version\": \"x\",}", "not json", "{\"a\": 1, \"a\": 2}"] {
            let error = loadError(Array(text.utf8))
            #expect(error?.path == "", "\(text)")
            #expect(error?.problem.hasPrefix("not valid JSON") == true, "\(text)")
        }
        for text in ["[]", "42", "\"program\"", "null"] {
            #expect(loadError(Array(text.utf8)) != nil, "\(text)")
        }
    }
}
