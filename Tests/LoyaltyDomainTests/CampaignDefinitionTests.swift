import Testing

@testable import Basics
@testable import LoyaltyDomain
import ReferenceProgram

/// Campaign definitions: the reference set, the condition language, and every refusal.
@Suite struct CampaignDefinitionTests {
    let tiers = ["newcomer", "growth", "gold", "platinum", "black-diamond"]

    func definition(_ json: String) throws(CampaignDefinitionError) -> CampaignDefinition {
        try CampaignDefinition.load(try! JSONValue.parse(Array(json.utf8)), tiers: tiers)
    }

    @Test func referenceCampaignsLoadWithDomainFigures() throws {
        let campaigns = try CampaignDefinition.loadFile(json: try ReferenceProgram.campaignsBytes(), tiers: tiers)
        let byID = Dictionary(uniqueKeysWithValues: campaigns.map { ($0.id, $0) })
        #expect(Set(byID.keys) == ["member-day", "double-11", "first-order", "birthday-month", "birthday", "streak-30", "referral-5", "win-back"])
        #expect(byID["member-day"]?.reward.multiplierTenths == 20)
        #expect(byID["member-day"]?.schedule.daysOfMonth == [18])
        #expect(byID["double-11"]?.schedule.dates == [.annual(month: 11, day: 11)])
        #expect(byID["first-order"]?.reward.multiplierTenths == 50)
        #expect(byID["first-order"]?.audience.registeredWithinDays == 30)
        #expect(byID["birthday-month"]?.audience.minimumTier == "gold")
        #expect(byID["birthday-month"]?.schedule.birthday == .month)
        #expect(byID["birthday"]?.reward.points == 100)
        #expect(byID["streak-30"]?.reward.badge == "streak-30" && byID["streak-30"]?.reward.points == 50)
        #expect(byID["referral-5"]?.reward.points == 200 && byID["referral-5"]?.memberCap.rewards == 1)
        #expect(byID["win-back"]?.trigger == .dormant(days: 30))
        #expect(byID["win-back"]?.reward.coupon == "WINBACK10" && byID["win-back"]?.controlSharePercent == 10)
    }

    @Test func deeplyNestedOrOverlongConditionsAreRefusedNamingTheColumn() throws {
        let fields = CampaignDefinition.conditionFields(for: "order.paid")
        func error(_ text: String) -> ConditionError? {
            do { _ = try Condition(text, fields: fields); return nil } catch { return error }
        }
        // 100,000 brackets once overflowed the parser's stack.
        let brackets = String(repeating: "(", count: 100_000) + "true" + String(repeating: ")", count: 100_000)
        #expect(error(brackets)?.column == Condition.maximumLength + 1)
        let deep = String(repeating: "(", count: 40) + "true" + String(repeating: ")", count: 40)
        #expect(error(deep)?.column == Condition.maximumNesting + 1)
        #expect(error(deep)?.message.contains("nested more than 32") == true)
        let negations = String(repeating: "!", count: 33) + "true"
        #expect(error(negations)?.column == 33)
        let fine = String(repeating: "(", count: 32) + "true" + String(repeating: ")", count: 32)
        #expect(error(fine) == nil)
    }

    @Test func conditionsCompareFieldsAndLiterals() throws {
        let fields = CampaignDefinition.conditionFields(for: "order.paid")
        let values: ConditionValues = [
            "order.paidMinor": .int(12_000), "order.categories": .stringList(["apparel", "high-margin"]),
            "member.tier": .string("gold"), "time.weekday": .int(6),
        ]
        func holds(_ text: String) throws -> Bool { try Condition(text, fields: fields).holds(values) }
        #expect(try holds("order.paidMinor >= 10000 && \"high-margin\" in order.categories"))
        #expect(try !holds("order.paidMinor > 12000"))
        #expect(try holds("member.tier in [\"gold\", \"platinum\"] || order.paidMinor < 0"))
        #expect(try holds("!(time.weekday in [1, 2, 3, 4, 5])"))
        #expect(try holds("member.tier != \"newcomer\" && !false && true"))
        #expect(try holds("order.paidMinor == 12000 && (member.paidOrders == 0)"), "a field the trigger did not fill reads as 0")
        #expect(try holds("-5 < order.paidMinor"))
    }

    @Test(arguments: [
        ("order.paidMinor >", "column 18: expected a field"),
        ("order.total > 1", "column 1: unknown field order.total"),
        ("order.paidMinor > \"a\"", "column 17: > compares numbers; found a number and a string"),
        ("member.tier == 3", "column 13: == compares two values of one type"),
        ("order.paidMinor", "a condition must be true or false, not a number"),
        ("order.paidMinor > 1 && 2", "column 21: && joins conditions that are true or false"),
        ("\"x\" in order.paidMinor", "column 5: in needs a number and a list of numbers"),
        ("(order.paidMinor > 1", "column 21: expected ) to close the ( at column 1"),
        ("member.tier == \"gold", "column 16: unterminated string"),
        ("order.paidMinor > 1 order.lineCount", "column 21: unexpected order.lineCount after the end"),
        ("member.tier in [\"a\", 1]", "column 22: a list holds numbers or strings of one kind"),
        ("order.paidMinor > 1 # 2", "column 21: unexpected character \"#\""),
        ("!order.paidMinor", "column 1: ! needs true or false"),
        ("order.paidMinor > 99999999999999999999", "column 19: number 99999999999999999999 is out of range"),
    ])
    func badConditionsAreRefusedWithTheirColumn(text: String, expected: String) {
        #expect(throws: ConditionError.self) { try Condition(text, fields: CampaignDefinition.conditionFields(for: "order.paid")) }
        do {
            _ = try Condition(text, fields: CampaignDefinition.conditionFields(for: "order.paid"))
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }

    static let valid = #"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":2}}"#

    @Test func aMinimalDefinitionLoads() throws {
        let c = try definition(Self.valid)
        #expect(c.id == "c" && c.version == 1 && c.isMultiplier && c.controlSharePercent == 0 && c.budgetPoints == nil)
    }

    /// Every refusal names the field and says what is wrong.
    @Test(arguments: [
        (#"{"version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1}}"#, "id: missing"),
        (#"{"id":"Bad Id","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1}}"#, "id: use 1 to 64 characters"),
        (#"{"id":"c","version":0,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1}}"#, "version: must be at least 1"),
        (#"{"id":"c","version":1,"name":"","trigger":{"event":"order.paid"},"reward":{"points":1}}"#, "name: must not be empty"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"colour":"red"}"#, "colour: unknown field"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"signup"},"reward":{"points":1}}"#, "trigger.event: unknown event signup"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid","when":"order.x > 1"},"reward":{"points":1}}"#, "trigger.when: column 1: unknown field order.x"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"birthday","when":"time.day == 1"},"reward":{"points":1}}"#, "trigger.when: a birthday trigger takes no condition"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"dormant"},"reward":{"points":1}}"#, "trigger.days: a dormant trigger needs days"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"dormant","days":0},"reward":{"points":1}}"#, "trigger.days: must be from 1 to 3650"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid","days":3},"reward":{"points":1}}"#, "trigger.days: only a dormant trigger takes days"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{}}"#, "reward: give at least one of"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":1.0}}"#, "reward.orderPointsMultiplier: must be above 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"orderPointsMultiplier":1.25}}"#, "reward.orderPointsMultiplier: expected a number with at most one decimal place"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"check-in"},"reward":{"orderPointsMultiplier":2}}"#, "reward.orderPointsMultiplier: needs an order.paid trigger"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":0}}"#, "reward.points: must be from 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"coupon":""}}"#, "reward.coupon: must not be empty"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"budgetPoints":0}"#, "budgetPoints: must be from 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"memberCap":{"points":0}}"#, "memberCap.points: must be from 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"memberCap":{"rewards":0}}"#, "memberCap.rewards: must be at least 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"controlSharePercent":100}"#, "controlSharePercent: must be from 0 to 99"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"dates":["02-30"]}}"#, "schedule.dates[0]: expected MM-DD or YYYY-MM-DD, a real date"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"daysOfMonth":[32]}}"#, "schedule.daysOfMonth[0]: expected 1 to 31"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"weekdays":["monday"]}}"#, "schedule.weekdays[0]: expected mon"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"hours":[22,8]}}"#, "schedule.hours: expected [from, to]"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"birthday":"week"}}"#, "schedule.birthday: expected day or month"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"from":"2026-12-01T00:00:00+08:00","until":"2026-11-01T00:00:00+08:00"}}"#, "schedule.until: must be after from"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"schedule":{"from":"yesterday"}}"#, "schedule.from: cannot parse"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"audience":{"tiers":["silver"]}}"#, "audience.tiers[0]: unknown tier"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"audience":{"minTier":"silver"}}"#, "audience.minTier: unknown tier silver"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"audience":{"registeredWithinDays":0}}"#, "audience.registeredWithinDays: must be from 1"),
        (#"{"id":"c","version":1,"name":"C","trigger":{"event":"order.paid"},"reward":{"points":1},"audience":{"consent":true}}"#, "audience.consent: unknown field"),
        (#"["not","an","object"]"#, "a campaign must be a JSON object"),
    ])
    func everyDefinitionErrorNamesItsField(json: String, expected: String) {
        do {
            _ = try definition(json)
            Issue.record("accepted: \(json)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }

    @Test func aFileWithADuplicateIdIsRefused() {
        let file = "{\"campaigns\":[\(Self.valid),\(Self.valid)]}"
        #expect(throws: CampaignDefinitionError(campaign: "c", path: "campaigns[1].id", problem: "appears twice in the file")) {
            try CampaignDefinition.loadFile(json: Array(file.utf8), tiers: tiers)
        }
    }

    @Test func theRegistryServesTheVersionInEffectAtEachInstant() throws {
        var registry = CampaignRegistry(defaults: [try definition(Self.valid)])
        var v2 = try definition(Self.valid.replacingOccurrences(of: "\"version\":1", with: "\"version\":2")
            .replacingOccurrences(of: "\"orderPointsMultiplier\":2", with: "\"orderPointsMultiplier\":3"))
        let change = at("2026-06-01T00:00:00+08:00")
        #expect(try registry.add(.init(campaign: "c", version: 2, effective: change, definition: v2)) == .added)
        #expect(try registry.add(.init(campaign: "c", version: 2, effective: change, definition: v2)) == .alreadyKnown)
        #expect(registry.inEffect(at: change.adding(milliseconds: -1)).first?.reward.multiplierTenths == 20)
        #expect(registry.inEffect(at: change).first?.reward.multiplierTenths == 30)
        v2.name = "changed"
        #expect(throws: CampaignDefinitionError.self) { try registry.add(.init(campaign: "c", version: 2, effective: change, definition: v2)) }
        #expect(throws: CampaignDefinitionError.self) { try registry.add(.init(campaign: "c", version: 1, effective: change, definition: v2)) }
        #expect(try registry.add(.init(campaign: "c", version: 3, effective: at("2026-07-01T00:00:00+08:00"), definition: nil)) == .added)
        #expect(registry.inEffect(at: at("2026-07-01T00:00:00+08:00")).isEmpty, "retired")
        #expect(registry.inEffect(at: at("2026-06-30T00:00:00+08:00")).count == 1)
    }

    @Test func aSpanInEffectHoldsTheSameCampaignsThroughoutAndEndsAtTheNextChange() throws {
        var registry = CampaignRegistry(defaults: [try definition(Self.valid)])
        let v2 = try definition(Self.valid.replacingOccurrences(of: "\"version\":1", with: "\"version\":2")
            .replacingOccurrences(of: "\"orderPointsMultiplier\":2", with: "\"orderPointsMultiplier\":3"))
        let change = at("2026-06-01T00:00:00+08:00")
        let retired = at("2026-07-01T00:00:00+08:00")
        _ = try registry.add(.init(campaign: "c", version: 2, effective: change, definition: v2))
        _ = try registry.add(.init(campaign: "c", version: 3, effective: retired, definition: nil))

        let before = registry.inEffectSpan(at: at("2026-03-01T00:00:00+08:00"))
        #expect(before.until == change)
        let middle = registry.inEffectSpan(at: at("2026-06-15T00:00:00+08:00"))
        #expect(middle.from == change && middle.until == retired)
        let after = registry.inEffectSpan(at: retired)
        #expect(after.from == retired && after.until == EventTime(millis: .max))
        // Every instant of a span is served what the span holds.
        for span in [before, middle, after] {
            for instant in [span.from, span.until.adding(milliseconds: -1)] where instant.millis > .min && instant.millis < .max - 1 {
                #expect(registry.inEffect(at: instant) == span.campaigns)
            }
        }
        #expect(middle.campaigns.first?.reward.multiplierTenths == 30)
        #expect(after.campaigns.isEmpty)
    }

    @Test func sha256MatchesTheStandardVectors() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    /// Messages whose padding fits in their last block, needs a block of its own, or follows
    /// whole blocks read in place (digests from coreutils' `sha256sum`).
    @Test func sha256PadsEveryLengthAroundABlock() {
        let expected: [Int: String] = [
            1: "8e35c2cd3bf6641bdb0e2050b76932cbb2e6034a0ddacc1d9bea82a6ba57f7cf",
            55: "85528b5baff5639cb8e7daca79d085ac29ac0978e873ed7527158616b2b6c379",
            56: "f8ce2f8d6990c639668fe404262f35ed72d8bb145ad6bae786af7284447386df",
            63: "9b49777003a4143d8c3f4d3002eb631c6bda8b030a3ccc87f8a21d5f61c89e87",
            64: "ee8e658590c9a5e119400a774415a01db104de1ee6e2c29ec69aa73ef46544d2",
            65: "2b6c3f7f12b1b12fc5409626dc4e5302d8d37082cbeddea7755eac43aba039c8",
            119: "c8bc8a6e9626586bb888ad131d44ed2bd37fc608e902904ade3c566c4208e6ca",
            120: "77a2d49d72a11e41678c51f8f0cb67f5cb570f30370c3aeffe266a0d1ee43209",
            127: "bf378e224a9509327bde4009499f2fe0a210b26b0aa21d4c164b16f23363c817",
            128: "652713bcb795a6978fa84aa8d071d13e9ee581a8e716e8ab18daa49d1e920360",
            129: "f0886d9cc70695b46d863ebbe7eb7675ca0c53bc4aec96fadfb85c5318d971b2",
        ]
        for (length, digest) in expected {
            #expect(SHA256.hex([UInt8](repeating: UInt8(ascii: "q"), count: length)) == digest, "\(length) bytes")
        }
    }

    /// RFC 4231's test cases 1, 2 and 6 (a key longer than a block is hashed first).
    @Test func hmacSHA256MatchesTheStandardVectors() {
        func hex(_ text: String, _ key: [UInt8]) -> String { SHA256.lowercaseHex(HMACSHA256.authenticationCode(for: Array(text.utf8), key: key)) }
        #expect(hex("Hi There", [UInt8](repeating: 0x0b, count: 20)) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(hex("what do ya want for nothing?", Array("Jefe".utf8)) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(hex("Test Using Larger Than Block-Size Key - Hash Key First", [UInt8](repeating: 0xaa, count: 131))
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    /// A key made ready once (as every service's command keys are) gives each message the code
    /// of the standard, message after message: RFC 4231's cases 6 and 7, whose key is longer
    /// than a block, and case 7's message too; keys of one block and one byte more. A state
    /// after one or two blocks goes on to the digest of the whole, whatever the rest's length.
    @Test func aKeyMadeReadyOnceGivesTheStandardCodes() {
        let key = HMACSHA256.Key([UInt8](repeating: 0xaa, count: 131))
        let case6 = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        let case7 = Array(("This is a test using a larger than block-size key and a larger than block-size data. "
            + "The key needs to be hashed before being used by the HMAC algorithm.").utf8)
        for _ in 0..<2 {
            #expect(SHA256.lowercaseHex(HMACSHA256.authenticationCode(for: case6, key: key))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
            #expect(SHA256.lowercaseHex(HMACSHA256.authenticationCode(for: case7, key: key))
                == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")
        }
        // A key of exactly one block is used as it is, not hashed first: the data directory's
        // generated key is 64 characters (codes from Python's hmac).
        let message = Array("a command signed with a key of one block".utf8)
        #expect(SHA256.lowercaseHex(HMACSHA256.authenticationCode(for: message, key: HMACSHA256.Key((0..<64).map { UInt8($0) })))
            == "dfedb8219cf6ee9922585c3bda4b994059e3e503a1957d59b7fe2d58ed4e22c0")
        #expect(SHA256.lowercaseHex(HMACSHA256.authenticationCode(for: message, key: HMACSHA256.Key((0..<65).map { UInt8($0) })))
            == "0314bd679a5b659b5465c7e4e78ed628d5626dd9411fb137c89bf18e7546920e")
        let block = [UInt8](repeating: UInt8(ascii: "q"), count: 64)
        let afterBlock = SHA256.State.initial.folding(block: block)
        let afterTwo = afterBlock.folding(block: block)
        for rest in [0, 1, 55, 56, 63, 64, 65] {
            let tail = [UInt8](repeating: UInt8(ascii: "q"), count: rest)
            #expect(SHA256.digest(tail, after: afterBlock) == SHA256.digest(block + tail), "64 + \(rest) bytes")
            #expect(SHA256.digest(tail, after: afterTwo) == SHA256.digest(block + block + tail), "128 + \(rest) bytes")
        }
    }

    @Test func controlGroupsAreStableAndHoldTheirShare() {
        // Buckets computed independently (Python's hashlib): every implementation must agree.
        #expect(ControlGroup.bucket(campaign: "win-back", member: "m-1") == 86)
        #expect(ControlGroup.bucket(campaign: "win-back", member: "alice") == 88)
        #expect(ControlGroup.bucket(campaign: "win-back", member: "m-42") == 10)
        #expect(!ControlGroup.isControl(campaign: "win-back", member: "m-42", sharePercent: 10), "bucket 10 is not below 10")
        #expect(ControlGroup.isControl(campaign: "win-back", member: "m-42", sharePercent: 11))
        let held = (0..<10_000).filter { ControlGroup.isControl(campaign: "win-back", member: "m-\($0)", sharePercent: 10) }.count
        #expect((900...1_100).contains(held), "\(held) of 10,000 held out at 10%")
        #expect((0..<1_000).allSatisfy { !ControlGroup.isControl(campaign: "c", member: "m-\($0)", sharePercent: 0) })
        let other = (0..<1_000).filter { ControlGroup.isControl(campaign: "member-day", member: "m-\($0)", sharePercent: 10) }
        let winBack = (0..<1_000).filter { ControlGroup.isControl(campaign: "win-back", member: "m-\($0)", sharePercent: 10) }
        #expect(other != winBack, "the campaign id is part of the hash")
    }
}
