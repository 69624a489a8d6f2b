import Testing

@testable import Basics
@testable import LoyaltyDomain
import ReferenceProgram

/// The notification policy against DOMAIN.md, "Notifications".
@Suite struct NotificationRulesTests {
    let rules: NotificationRules

    init() throws {
        rules = NotificationRules(program: try referenceProgram(), templates: try MessageTemplates.load(json: ReferenceProgram.templatesBytes()))
    }

    func member(locale: String = "en", consent: Bool = true, channels: JSONObject = ["sms": "13800138000"], preferred: String? = nil) -> NotificationMember {
        var m = NotificationMember(member: "m")
        var data: JSONObject = ["locale": .string(locale), "marketingConsent": .bool(consent), "channels": .object(channels)]
        if let preferred { data["preferredChannel"] = .string(preferred) }
        try! rules.register(data, member: &m)
        return m
    }

    static let samples: [(MessageType, [String: String], en: String, zh: String)] = [
        (.pointsExpiring, ["points": "120", "lastDay": "2027-03-31"], "120 of your points expire after 2027-03-31. Use them before then.", "您有120积分将于2027-03-31后过期，请尽快使用。"),
        (.tierUp, ["tier": "Gold", "previousTier": "Growth"], "Congratulations! You moved up from Growth to Gold.", "恭喜！您已从Growth升级为Gold会员。"),
        (.tierDown, ["tier": "Growth", "previousTier": "Gold"], "Your tier changed from Gold to Growth.", "您的会员等级已从Gold调整为Growth。"),
        (.tierAtRisk, ["tier": "Gold"], "You placed no order last month: order this month to keep Gold.", "上个月您没有下单，下单即可保持Gold会员等级。"),
        (.birthday, ["points": "100"], "Happy birthday! Here are 100 points from us.", "生日快乐！我们为您送上100积分。"),
        (.campaignReward, ["campaign": "Check-in streak of 30 days", "points": "50"], "Check-in streak of 30 days: you received 50 points.", "您参加的活动“Check-in streak of 30 days”为您带来了50积分。"),
        (.winBack, ["coupon": "WINBACK10"], "We miss you! Here is a coupon, WINBACK10, for your next order.", "好久不见！送您一张优惠券WINBACK10，期待您回来。"),
        (.redemptionDone, ["reward": "Plant a tree", "points": "100"], "Redeemed: Plant a tree for 100 points.", "兑换成功：Plant a tree，使用100积分。"),
        (.redemptionRefused, ["reward": "Porcelain tea set", "reason": "insufficient-balance"], "Your redemption of Porcelain tea set did not go through (insufficient-balance).", "兑换Porcelain tea set未成功（insufficient-balance）。"),
        (.transferReceived, ["points": "300", "from": "alice"], "alice sent you 300 points.", "alice赠送给您300积分。"),
    ]

    @Test func everyMessageTypeRendersInBothLocales() {
        let noon = at("2026-05-10T12:00:00+08:00")
        for (type, fields, en, zh) in Self.samples {
            for (locale, expected) in [("en", en), ("zh-CN", zh)] {
                var m = member(locale: locale)
                let decision = rules.notify(type, fields: fields, cause: "e1", at: noon, member: &m)
                #expect(decision.messages.map(\.text) == [expected], "\(type) \(locale)")
                #expect(decision.messages.first?.locale == locale)
            }
        }
        var m = member(locale: "zh-CN")
        _ = rules.earned(points: 5, cause: "a", at: noon, member: &m)
        _ = rules.earned(points: 7, cause: "b", at: noon.adding(hours: 1), member: &m)
        let digest = rules.digest(day: rules.program.calendar.localDate(of: noon).dayNumber, at: at("2026-05-11T08:00:00+08:00"), member: &m)
        #expect(digest.messages.map(\.text) == ["您在2026-05-10获得了12积分（共2笔）。"])
        #expect(digest.messages.first?.causes == ["a", "b"])
    }

    @Test func channelsFollowThePreferenceThenPushWechatSmsEmail() {
        let all: JSONObject = ["push": "tok-1", "wechat": "wx-1", "sms": "13800138000", "email": "a@example.com"]
        #expect(rules.channel(for: member(channels: all).profile)?.0 == .push)
        #expect(rules.channel(for: member(channels: all, preferred: "email").profile)?.0 == .email)
        #expect(rules.channel(for: member(channels: ["sms": "1", "email": "e@x"], preferred: "push").profile)?.0 == .sms, "preferred without an address")
        #expect(rules.channel(for: member(channels: ["email": "e@x", "wechat": "wx"]).profile)?.0 == .wechat)
        var none = member(channels: [:])
        let decision = rules.notify(.tierUp, fields: ["tier": "Gold", "previousTier": "Growth"], cause: "e1", at: at("2026-05-10T12:00:00+08:00"), member: &none)
        #expect(decision.messages.isEmpty && decision.undeliverable.map(\.reason) == ["no-channel"])
    }

    @Test func marketingNeedsConsentTransactionalDoesNot() {
        var m = member(consent: false)
        let noon = at("2026-05-10T12:00:00+08:00")
        #expect(rules.notify(.birthday, fields: ["points": "100"], cause: "b", at: noon, member: &m).suppressed.map(\.reason) == ["no-consent"])
        #expect(rules.notify(.redemptionDone, fields: ["reward": "x", "points": "100"], cause: "r", at: noon, member: &m).messages.count == 1)
    }

    @Test func atMostTwoMarketingMessagesALocalDay() {
        var m = member()
        var sent: [String] = []
        var suppressed: [String] = []
        for (index, time) in ["2026-05-10T09:00:00+08:00", "2026-05-10T10:00:00+08:00", "2026-05-10T21:59:59+08:00",
                              "2026-05-11T08:00:00+08:00"].enumerated() {
            let decision = rules.notify(.campaignReward, fields: ["campaign": "c", "points": "1"], cause: "c\(index)", at: at(time), member: &m)
            sent += decision.messages.flatMap(\.causes)
            suppressed += decision.suppressed.map { "\($0.causes[0]):\($0.reason)" }
        }
        #expect(sent == ["c0", "c1", "c3"])
        #expect(suppressed == ["c2:daily-cap"])
        // Transactional messages do not count against the cap.
        #expect(rules.notify(.tierUp, fields: ["tier": "a", "previousTier": "b"], cause: "t", at: at("2026-05-10T11:00:00+08:00"), member: &m).messages.count == 1)
    }

    @Test func quietHoursHoldMarketingUntilEightAcrossDayAndMonthBoundaries() {
        for (trigger, release) in [("2026-05-31T22:00:00+08:00", "2026-06-01T08:00:00+08:00"),
                                   ("2026-05-31T23:59:59+08:00", "2026-06-01T08:00:00+08:00"),
                                   ("2026-06-01T00:00:00+08:00", "2026-06-01T08:00:00+08:00"),
                                   ("2026-12-31T23:30:00+08:00", "2027-01-01T08:00:00+08:00"),
                                   ("2026-02-28T07:59:59+08:00", "2026-02-28T08:00:00+08:00"),
                                   ("2026-02-28T16:30:00Z", "2026-03-01T08:00:00+08:00")] {
            var m = member()
            let held = rules.notify(.winBack, fields: ["coupon": "WINBACK10"], cause: "w", at: at(trigger), member: &m)
            #expect(held.messages.isEmpty && held.timers == [NotificationTimer(kind: .held, ref: "held", due: at(release))], "\(trigger)")
            let released = rules.releaseHeld(at: at(release), member: &m)
            #expect(released.messages.map(\.sendAt) == [at(release)], "\(trigger)")
            #expect(m.held.isEmpty)
        }
        // 08:00 itself is not quiet; 22:00 is. Transactional messages go at once, even at night.
        #expect(!rules.isQuiet(at("2026-05-10T08:00:00+08:00")) && rules.isQuiet(at("2026-05-10T22:00:00+08:00")))
        var m = member()
        #expect(rules.notify(.tierDown, fields: ["tier": "a", "previousTier": "b"], cause: "t", at: at("2026-05-10T23:00:00+08:00"), member: &m).messages.count == 1)
    }

    @Test func heldMessagesCountAgainstTheCapOfTheDayTheyGoOut() {
        var m = member()
        for index in 0..<3 { _ = rules.notify(.campaignReward, fields: ["campaign": "c", "points": "1"], cause: "n\(index)", at: at("2026-05-10T23:0\(index):00+08:00"), member: &m) }
        let released = rules.releaseHeld(at: at("2026-05-11T08:00:00+08:00"), member: &m)
        #expect(released.messages.flatMap(\.causes) == ["n0", "n1"])
        #expect(released.suppressed.map(\.reason) == ["daily-cap"])
        #expect(rules.notify(.birthday, fields: ["points": "100"], cause: "b", at: at("2026-05-11T09:00:00+08:00"), member: &m).suppressed.map(\.reason) == ["daily-cap"])
    }

    @Test func pointsEarnedMakeOneDigestADayLateEntriesJoinTheNext() {
        var m = member()
        let calendar = rules.program.calendar
        var timers: [NotificationTimer] = []
        for (cause, time) in [("a", "2026-05-10T00:00:00+08:00"), ("b", "2026-05-10T23:59:59+08:00"), ("c", "2026-05-11T00:00:00+08:00")] {
            timers += rules.earned(points: 10, cause: cause, at: at(time), member: &m).timers
        }
        let tenth = calendar.localDate(of: at("2026-05-10T12:00:00+08:00")).dayNumber
        // One timer a day, asked for by the day's first entry: "b" joins the 10th's pending digest.
        #expect(timers == [NotificationTimer(kind: .digest, ref: String(tenth), due: at("2026-05-11T08:00:00+08:00")),
                           NotificationTimer(kind: .digest, ref: String(tenth + 1), due: at("2026-05-12T08:00:00+08:00"))])
        #expect(rules.digest(day: tenth, at: at("2026-05-11T08:00:00+08:00"), member: &m).messages.map(\.causes) == [["a", "b"]])
        #expect(rules.digest(day: tenth, at: at("2026-05-11T08:00:00+08:00"), member: &m).messages.isEmpty, "once")
        // A late entry of the 10th, after its digest went out, joins the 11th's.
        // The 11th's digest is pending, with its timer: the late entry asks for none.
        #expect(rules.earned(points: 5, cause: "late", at: at("2026-05-10T20:00:00+08:00"), member: &m).timers.isEmpty)
        let next = rules.digest(day: tenth + 1, at: at("2026-05-12T08:00:00+08:00"), member: &m)
        #expect(next.messages.map(\.causes) == [["c", "late"]])
        #expect(next.messages.first?.text == "You earned 15 points on 2026-05-11 (2 entries).")
    }

    @Test func theIdempotencyKeyCoversMemberCausesChannelTextAndVersionButNotTheAddress() {
        var a = member()
        var moved = member(channels: ["sms": "13900139000"])
        var other = NotificationMember(member: "n")
        try! rules.register(["locale": "en", "channels": ["sms": "13800138000"]], member: &other)
        let fields = ["tier": "Gold", "previousTier": "Growth"]
        let noon = at("2026-05-10T12:00:00+08:00")
        let first = rules.notify(.tierUp, fields: fields, cause: "e1", at: noon, member: &a).messages[0]
        #expect(first.idempotencyKey == rules.notify(.tierUp, fields: fields, cause: "e1", at: noon, member: &a).messages[0].idempotencyKey)
        #expect(first.idempotencyKey != rules.notify(.tierUp, fields: fields, cause: "e2", at: noon, member: &a).messages[0].idempotencyKey)
        #expect(first.idempotencyKey != rules.notify(.tierUp, fields: fields, cause: "e1", at: noon, member: &other).messages[0].idempotencyKey)
        #expect(first.idempotencyKey == rules.notify(.tierUp, fields: fields, cause: "e1", at: noon, member: &moved).messages[0].idempotencyKey,
                "one message, wherever the member now receives it")
        #expect(first.idempotencyKey == SHA256.hex(Array("m|e1|sms|Congratulations! You moved up from Growth to Gold.|2026-11-1".utf8)))
    }

    @Test func closingAMemberErasesContactDataAndStopsEverything() {
        var m = member(channels: ["sms": "13800138000", "email": "a@example.com"])
        _ = rules.notify(.birthday, fields: ["points": "100"], cause: "b", at: at("2026-05-10T23:00:00+08:00"), member: &m)
        _ = rules.earned(points: 10, cause: "e", at: at("2026-05-10T12:00:00+08:00"), member: &m)
        rules.close(member: &m)
        let stored = String(decoding: m.encoded(), as: UTF8.self)
        #expect(!stored.contains("13800138000") && !stored.contains("example.com"))
        #expect(m.held.isEmpty && m.digests.isEmpty)
        #expect(rules.releaseHeld(at: at("2026-05-11T08:00:00+08:00"), member: &m).messages.isEmpty)
        #expect(rules.notify(.tierUp, fields: [:], cause: "t", at: at("2026-05-11T12:00:00+08:00"), member: &m).suppressed.map(\.reason) == ["member-closed"])
        try! rules.update(["channels": ["sms": "13800138000"]], member: &m)
        #expect(m.profile.channels.isEmpty, "a closed member's profile is not filled again")
    }

    @Test func aMembersStateReadsBackFromEitherStoredForm() throws {
        var m = member(channels: ["sms": "13800138000", "email": "a@example.com"], preferred: "email")
        m.registered = true
        _ = rules.earned(points: 10, cause: "e1", at: at("2026-05-10T12:00:00+08:00"), member: &m)
        _ = rules.earned(points: 5, cause: "e2", at: at("2026-05-11T12:00:00+08:00"), member: &m)
        _ = rules.notify(.birthday, fields: ["points": "100", "name": "阿丽"], cause: "b", at: at("2026-05-10T23:00:00+08:00"), member: &m)
        m.lastDigestDay = 20_580
        m.marketingSent = [20_579: 2, 20_580: 1]
        #expect(!m.held.isEmpty && m.digests.count == 2, "the member holds each part of the state")

        let compact = m.encoded()
        #expect(try NotificationMember.decode(compact) == m)
        #expect(compact.count * 2 < m.encodedAsJSON().count, "the compact form is well under half the JSON form")
        // Stores written by earlier builds hold the JSON form.
        #expect(try NotificationMember.decode(m.encodedAsJSON()) == m)
        #expect(try NotificationMember.decode(NotificationMember(member: "new").encoded()) == NotificationMember(member: "new"))
        // A damaged state is an error, never a trap.
        for length in [1, compact.count / 2, compact.count - 1] {
            #expect(throws: (any Error).self) { try NotificationMember.decode(Array(compact.prefix(length))) }
        }
        #expect(throws: (any Error).self) { try NotificationMember.decode(compact + [0]) }
    }

    @Test func contactDataIsMaskedForLogs() {
        #expect(ContactMask.mask("13800138000", channel: .sms) == "138****8000")
        #expect(ContactMask.mask("alice@example.com", channel: .email) == "a***@example.com")
        #expect(ContactMask.mask("wx-open-id-42", channel: .wechat) == "wx-****")
        #expect(ContactMask.mask("123", channel: .sms) == "***")
    }

    @Test(arguments: [
        (#"{"version":"1","templates":{"tier-up":{"en":"Now {tierName}","zh-CN":"x"}}}"#, "templates.tier-up.en: unknown field {tierName}; tier-up provides {previousTier}, {tier}"),
        (#"{"version":"1","templates":{"tier-up":{"en":"Now {tier","zh-CN":"x"}}}"#, "templates.tier-up.en: a { without a closing }"),
        (#"{"version":"1","templates":{"tier-up":{"en":"Now } x","zh-CN":"x"}}}"#, "templates.tier-up.en: a } without an opening {"),
        (#"{"version":"1","templates":{"tier-upp":{"en":"x","zh-CN":"x"}}}"#, "templates.tier-upp: unknown message type"),
        (#"{"version":"1","templates":{"tier-up":{"fr":"x"}}}"#, "templates.tier-up.fr: unknown locale"),
        (#"{"version":"1","templates":{"tier-up":{"en":"","zh-CN":"x"}}}"#, "templates.tier-up.en: expected a non-empty string"),
        (#"{"templates":{}}"#, "version: expected a non-empty string"),
        (#"{"version":"1","templates":{}}"#, "templates.points-digest.en: missing"),
        (#"not json"#, "not valid JSON"),
    ])
    func templateErrorsAreRefusedWithTheField(json: String, expected: String) {
        do {
            _ = try MessageTemplates.load(json: Array(json.utf8))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }

    @Test func bracesCanBeWrittenLiterally() throws {
        let pieces = try MessageTemplates.parse("{{gift}} {points}", type: .birthday, path: "p")
        #expect(pieces == [.text("{gift} "), .field("points")])
    }
}
