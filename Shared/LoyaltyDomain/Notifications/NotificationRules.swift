/// A message ready for a sender.
public struct OutboundMessage: Sendable, Equatable {
    public var type: MessageType
    public var channel: Channel
    public var address: String
    public var locale: String
    public var text: String
    /// The event ids the message comes from (one, or the day's entries for a digest).
    public var causes: [String]
    /// When it goes out: the trigger's time, 08:00 after quiet hours, or the digest time.
    public var sendAt: EventTime
    public var templateVersion: String
    /// `sha256(causes | channel | address | text | template version)`: a sender that sees a
    /// key twice sends once.
    public var idempotencyKey: String
}

/// A message policy held back, and why: `no-consent`, `daily-cap`, `member-closed`.
public struct SuppressedMessage: Sendable, Equatable {
    public var type: MessageType
    public var reason: String
    public var causes: [String]
    public var time: EventTime
}

/// A message waiting for the end of quiet hours.
public struct HeldMessage: Sendable, Equatable {
    public var type: MessageType
    public var fields: [String: String]
    public var causes: [String]
    public var time: EventTime
}

/// Points earned on one local day, for its digest.
public struct PendingDigest: Sendable, Equatable {
    public var points: Int64 = 0
    public var causes: [String] = []
}

/// What the notification rules know of one member.
public struct NotificationMember: Sendable, Equatable {
    public var member: String
    public var registered = false
    public var closed = false
    public var profile = MemberProfile()
    /// Digests not sent yet, by local day number.
    public var digests: [Int64: PendingDigest] = [:]
    /// The last local day whose digest went out; later entries of it join the next digest.
    public var lastDigestDay: Int64?
    /// Marketing messages sent per local day (recent days only).
    public var marketingSent: [Int64: Int64] = [:]
    public var held: [HeldMessage] = []

    public init(member: String) { self.member = member }
}

/// A timer the notifications service keeps per member.
public struct NotificationTimer: Sendable, Hashable {
    public enum Kind: String, Sendable { case digest, held }
    public var kind: Kind
    public var ref: String
    public var due: EventTime
}

/// What one input or timer decided.
public struct NotificationDecision: Sendable, Equatable {
    public var messages: [OutboundMessage] = []
    public var suppressed: [SuppressedMessage] = []
    /// Messages for a member with no address on any channel (dead-lettered `no-channel`).
    public var undeliverable: [SuppressedMessage] = []
    public var timers: [NotificationTimer] = []
    public init() {}
}

/// The notification policy (DOMAIN.md, "Notifications") as pure functions: channel choice with
/// fallback, consent, the daily cap and quiet hours for marketing, the daily digest, erasure.
public struct NotificationRules: Sendable {
    public let program: Program
    public let templates: MessageTemplates

    public init(program: Program, templates: MessageTemplates) {
        self.program = program
        self.templates = templates
    }

    private var policy: Program.NotificationPolicy { program.notifications }
    private var calendar: ProgramCalendar { program.calendar }

    // MARK: Members

    public func register(_ data: JSONObject, member: inout NotificationMember) throws(JSONFieldError) {
        guard !member.closed else { return }
        try member.profile.update(from: data)
        member.registered = true
    }

    public func update(_ data: JSONObject, member: inout NotificationMember) throws(JSONFieldError) {
        guard !member.closed else { return }
        try member.profile.update(from: data)
    }

    /// `member.closed`: the member's contact data is erased and nothing more is sent.
    public func close(member: inout NotificationMember) {
        member.closed = true
        member.profile = MemberProfile()
        member.held = []
        member.digests = [:]
    }

    // MARK: Inputs

    /// A message an event calls for: transactional ones go at once; marketing ones wait for
    /// the end of quiet hours.
    public func notify(_ type: MessageType, fields: [String: String], cause: String, at time: EventTime,
                       member: inout NotificationMember) -> NotificationDecision {
        var decision = NotificationDecision()
        if type.category == .marketing && isQuiet(time) && !member.closed {
            member.held.append(HeldMessage(type: type, fields: fields, causes: [cause], time: time))
            decision.timers.append(NotificationTimer(kind: .held, ref: "held", due: endOfQuietHours(after: time)))
            return decision
        }
        send(type, fields: fields, causes: [cause], at: time, &member, &decision)
        return decision
    }

    /// Points earned: they join the digest of their local day, sent at the digest time the
    /// day after. Entries arriving after their day's digest went out join the next one. The
    /// digest's timer is asked for with the day's first entry only.
    public func earned(points: Int64, cause: String, at time: EventTime, member: inout NotificationMember) -> NotificationDecision {
        var decision = NotificationDecision()
        guard points > 0, !member.closed else { return decision }
        var day = calendar.localDate(of: time).dayNumber
        if let last = member.lastDigestDay, day <= last { day = last + 1 }
        // The day's first entry sets its digest's timer; the timer stays until it fires and
        // takes the pending digest with it, so later entries of the day need none (a service
        // would write the same timer row again for each).
        if member.digests[day] == nil {
            decision.timers.append(NotificationTimer(kind: .digest, ref: String(day), due: digestTime(of: day)))
        }
        member.digests[day, default: PendingDigest()].points += points
        member.digests[day]!.causes.append(cause)
        return decision
    }

    // MARK: Timers

    /// The digest of local day `day`.
    public func digest(day: Int64, at due: EventTime, member: inout NotificationMember) -> NotificationDecision {
        var decision = NotificationDecision()
        guard let pending = member.digests.removeValue(forKey: day) else { return decision }
        member.lastDigestDay = max(member.lastDigestDay ?? day, day)
        let fields = ["points": String(pending.points), "entries": String(pending.causes.count), "date": LocalDate(dayNumber: day).description]
        send(.pointsDigest, fields: fields, causes: pending.causes, at: due, &member, &decision)
        return decision
    }

    /// The end of quiet hours: held messages go in the order they were triggered, within the cap.
    public func releaseHeld(at due: EventTime, member: inout NotificationMember) -> NotificationDecision {
        var decision = NotificationDecision()
        let ready = member.held.filter { endOfQuietHours(after: $0.time) <= due }
        member.held.removeAll { endOfQuietHours(after: $0.time) <= due }
        for message in ready.sorted(by: { ($0.time, $0.causes.joined(separator: ",")) < ($1.time, $1.causes.joined(separator: ",")) }) {
            send(message.type, fields: message.fields, causes: message.causes, at: due, &member, &decision)
        }
        return decision
    }

    // MARK: Policy

    /// Whether `time` falls in quiet hours (local).
    public func isQuiet(_ time: EventTime) -> Bool {
        policy.isQuiet(minute: calendar.localMinuteOfDay(of: time))
    }

    /// The first instant after `time` at which quiet hours end.
    public func endOfQuietHours(after time: EventTime) -> EventTime {
        let date = calendar.localDate(of: time)
        let today = calendar.startOfDay(date).adding(milliseconds: Int64(policy.quietToMinute) * EventTime.minuteMillis)
        return today > time ? today : today.adding(days: 1)
    }

    /// When the digest of local day `day` goes out.
    public func digestTime(of day: Int64) -> EventTime {
        calendar.startOfDay(LocalDate(dayNumber: day + 1)).adding(milliseconds: Int64(policy.digestMinute) * EventTime.minuteMillis)
    }

    /// The member's preferred channel when it has an address, else the first in the fallback order that has one.
    public func channel(for profile: MemberProfile) -> (Channel, String)? {
        if let preferred = profile.preferredChannel, let address = profile.channels[preferred] { return (preferred, address) }
        for channel in policy.channelFallback { if let address = profile.channels[channel] { return (channel, address) } }
        return nil
    }

    private func send(_ type: MessageType, fields: [String: String], causes: [String], at time: EventTime,
                      _ member: inout NotificationMember, _ decision: inout NotificationDecision) {
        func suppress(_ reason: String) {
            decision.suppressed.append(SuppressedMessage(type: type, reason: reason, causes: causes, time: time))
        }
        guard !member.closed else { return suppress("member-closed") }
        let day = calendar.localDate(of: time).dayNumber
        if type.category == .marketing {
            guard member.profile.marketingConsent else { return suppress("no-consent") }
            guard member.marketingSent[day, default: 0] < policy.marketingDailyCap else { return suppress("daily-cap") }
        }
        guard let (channel, address) = channel(for: member.profile) else {
            decision.undeliverable.append(SuppressedMessage(type: type, reason: "no-channel", causes: causes, time: time))
            return
        }
        if type.category == .marketing {
            member.marketingSent[day, default: 0] += 1
            member.marketingSent = member.marketingSent.filter { $0.key >= day - 7 }
        }
        let locale = member.profile.locale
        let text = templates.render(type, locale: locale, fields: fields)
        // Not the address: senders look it up when they send, and a hash of a phone number is
        // easily reversed.
        let key = SHA256.hex(Array([member.member, causes.joined(separator: ","), channel.rawValue, text, templates.version].joined(separator: "|").utf8))
        decision.messages.append(OutboundMessage(
            type: type, channel: channel, address: address, locale: locale, text: text, causes: causes, sendAt: time,
            templateVersion: templates.version, idempotencyKey: key))
    }
}

/// Masks contact data for logs: `138****5678`, `a***@example.com`, `wx-****`.
public enum ContactMask {
    public static func mask(_ address: String, channel: Channel) -> String {
        let characters = Array(address)
        switch channel {
        case .email:
            guard let at = characters.firstIndex(of: "@"), at > 0 else { return String(repeating: "*", count: characters.count) }
            return String(characters[0]) + "***" + String(characters[at...])
        case .sms:
            guard characters.count > 7 else { return String(repeating: "*", count: characters.count) }
            return String(characters.prefix(3)) + String(repeating: "*", count: characters.count - 7) + String(characters.suffix(4))
        case .push, .wechat:
            return String(characters.prefix(3)) + "****"
        }
    }
}
