/// A member's birthday: month and day, the year optional (DOMAIN.md, "Members").
public struct Birthday: Sendable, Hashable, CustomStringConvertible {
    public var month: Int
    public var day: Int

    public init?(month: Int, day: Int) {
        // 29 February is a real birthday; any year is checked as a leap year.
        guard (1...12).contains(month), day >= 1, day <= LocalDate.daysInMonth(year: 2000, month: month) else { return nil }
        self.month = month
        self.day = day
    }

    /// Reads `MM-DD` or `YYYY-MM-DD` (the year is ignored).
    public static func parse(_ text: String) -> Birthday? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        let monthDay = parts.count == 3 && parts[0].count == 4 ? Array(parts[1...]) : parts
        guard monthDay.count == 2, monthDay.allSatisfy({ $0.count == 2 }),
              let month = Int(monthDay[0]), let day = Int(monthDay[1]) else { return nil }
        return Birthday(month: month, day: day)
    }

    /// The date of this birthday in `year`: 29 February falls on 28 February in other years.
    public func date(in year: Int) -> LocalDate {
        let day = min(self.day, LocalDate.daysInMonth(year: year, month: month))
        return LocalDate(year: year, month: month, day: day)!
    }

    /// The first birthday instant (local 00:00) strictly after `time`.
    public func next(after time: EventTime, calendar: ProgramCalendar) -> EventTime {
        var year = calendar.localDate(of: time).year
        while true {
            let start = calendar.startOfDay(date(in: year))
            if start > time { return start }
            year += 1
        }
    }

    public var description: String {
        (month < 10 ? "0" : "") + String(month) + "-" + (day < 10 ? "0" : "") + String(day)
    }
}

/// The channels a message can go out on, in fallback order (DOMAIN.md, "Notifications").
public enum Channel: String, Sendable, CaseIterable, Hashable {
    case push, wechat, sms, email
}

/// What the shop tells the platform about a member (`member.registered`, `member.updated`).
public struct MemberProfile: Sendable, Equatable {
    public var birthday: Birthday?
    /// `zh-CN` (the default) or `en`.
    public var locale: String = MemberProfile.defaultLocale
    /// Addresses by channel: a push token, a WeChat open id, a phone number, an e-mail address.
    public var channels: [Channel: String] = [:]
    /// The channel the member prefers, when it has an address.
    public var preferredChannel: Channel?
    /// Whether the member agreed to marketing messages.
    public var marketingConsent: Bool = false

    public static let defaultLocale = "zh-CN"
    public static let locales: Set<String> = ["zh-CN", "en"]

    public init() {}

    /// Applies the profile fields present in an event's `data`: a field that is absent leaves
    /// the profile alone, `null` clears it. Throws on a field of the wrong shape.
    public mutating func update(from data: JSONObject) throws(JSONFieldError) {
        if let value = data["birthday"] {
            if value.isNull {
                birthday = nil
            } else {
                guard let text = value.stringValue, let parsed = Birthday.parse(text) else {
                    throw JSONFieldError(path: "birthday", problem: "expected MM-DD or YYYY-MM-DD")
                }
                birthday = parsed
            }
        }
        if let value = data["locale"] {
            if value.isNull {
                locale = Self.defaultLocale
            } else {
                guard let text = value.stringValue, Self.locales.contains(text) else {
                    throw JSONFieldError(path: "locale", problem: "expected one of \(Self.locales.sorted().joined(separator: ", "))")
                }
                locale = text
            }
        }
        if let value = data["channels"] {
            if value.isNull {
                channels = [:]
            } else {
                guard let object = value.objectValue else { throw JSONFieldError(path: "channels", problem: "expected an object") }
                for member in object.members {
                    guard let channel = Channel(rawValue: member.key) else {
                        throw JSONFieldError(path: "channels.\(member.key)", problem: "unknown channel (push, wechat, sms, email)")
                    }
                    if member.value.isNull {
                        channels[channel] = nil
                    } else {
                        guard let address = member.value.stringValue, !address.isEmpty else {
                            throw JSONFieldError(path: "channels.\(member.key)", problem: "expected a non-empty string")
                        }
                        channels[channel] = address
                    }
                }
            }
        }
        if let value = data["preferredChannel"] {
            if value.isNull {
                preferredChannel = nil
            } else {
                guard let text = value.stringValue, let channel = Channel(rawValue: text) else {
                    throw JSONFieldError(path: "preferredChannel", problem: "expected push, wechat, sms or email")
                }
                preferredChannel = channel
            }
        }
        if let value = data["marketingConsent"] {
            guard let consent = value.isNull ? false : value.boolValue else {
                throw JSONFieldError(path: "marketingConsent", problem: "expected true or false")
            }
            marketingConsent = consent
        }
    }
}

/// When a member's events count (DOMAIN.md, "Members"): an event of a member not yet registered
/// waits for the registration at most `unknownMemberWaitHours` of event time, else it is
/// dead-lettered. An event that arrives after the registration is held to the same bound, so
/// its fate does not depend on which of the two was read first.
public enum MemberLifetime {
    /// Whether an event at `time` lies further before the registration than an unknown
    /// member's events may wait for it.
    public static func isTooEarly(_ time: EventTime, registeredAt: EventTime, waitHours: Int64) -> Bool {
        time < registeredAt.adding(hours: -waitHours)
    }

    /// The dead letter's explanation.
    public static func tooEarlyDetail(_ time: EventTime, registeredAt: EventTime, waitHours: Int64) -> String {
        "event time \(time) is more than \(waitHours) hours before the member's registration at \(registeredAt)"
    }
}
