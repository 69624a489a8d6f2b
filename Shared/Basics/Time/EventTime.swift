/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
///
/// Business rules are decided on the time an event happened, never on the wall
/// clock of the machine processing it, so this type is plain integer arithmetic.
public struct EventTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z; negative before it.
    public var millis: Int64

    /// Creates the instant `millis` milliseconds after the Unix epoch.
    public init(millis: Int64) {
        self.millis = millis
    }

    /// Milliseconds in a minute.
    public static let minuteMillis: Int64 = 60_000
    /// Milliseconds in an hour.
    public static let hourMillis: Int64 = 3_600_000
    /// Milliseconds in a day of exactly 24 hours.
    public static let dayMillis: Int64 = 86_400_000

    /// Parses an RFC 3339 timestamp such as `2026-03-15T10:00:00+08:00`,
    /// `2026-03-15T02:00:00Z` or `2026-03-15T02:00:00.123456z`.
    ///
    /// The `T` and `Z` may be lowercase. Fractional seconds may have any number of
    /// digits; those beyond milliseconds are truncated. The offset is required.
    /// Years must be 0001...9999, and dates must exist. Leap seconds (`:60`) are
    /// rejected, since an instant count has no place for them.
    public static func parse(_ text: String) throws(TimeParseError) -> EventTime {
        var utf8 = text
        if let time = utf8.withUTF8(parseWrittenForm) { return time }
        return try TimeTextReader.read(text) { (reader: inout TimeTextReader) throws(TimeParseError) in
            let date = try reader.readDate()
            try reader.readDateTimeSeparator()
            let millisOfDay = try reader.readTimeOfDay()
            let offset = try reader.readOffset()
            try reader.expectEnd()
            return EventTime(millis: date.dayNumber * dayMillis + millisOfDay - Int64(offset.seconds) * 1_000)
        }
    }

    /// ``parse(_:)`` of UTF-8 text, nil where it throws: the written form read where it stands
    /// (a reader's string, in its document), any other text as a string.
    static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) -> EventTime? {
        parseWrittenForm(bytes) ?? (try? parse(String(decoding: bytes, as: UTF8.self)))
    }

    /// The form ``rfc3339`` writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`), which nearly every event
    /// carries, read at fixed places; nil for any other text, even one the general reader would
    /// accept or refuse with its reason (a date that does not exist, say).
    private static func parseWrittenForm(_ bytes: UnsafeBufferPointer<UInt8>) -> EventTime? {
        guard bytes.count == rfc3339Width, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
              bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"), bytes[19] == UInt8(ascii: "."), bytes[23] == UInt8(ascii: "Z")
        else { return nil }
        func number(at start: Int, width: Int) -> Int? {
            var value = 0
            for index in start..<(start + width) {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                value = value * 10 + Int(digit)
            }
            return value
        }
        guard let year = number(at: 0, width: 4), let month = number(at: 5, width: 2), let day = number(at: 8, width: 2),
              let hour = number(at: 11, width: 2), let minute = number(at: 14, width: 2), let second = number(at: 17, width: 2),
              let millis = number(at: 20, width: 3),
              year >= 1, (1...12).contains(month), day >= 1, day <= LocalDate.daysInMonth(year: year, month: month),
              hour < 24, minute < 60, second < 60
        else { return nil }
        let dayNumber = CivilCalendar.dayNumber(year: Int64(year), month: Int64(month), day: Int64(day))
        return EventTime(millis: dayNumber * dayMillis + Int64(((hour * 60 + minute) * 60 + second) * 1_000 + millis))
    }

    /// 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range RFC 3339 can write.
    public static let earliestWritable: Int64 = -62_135_596_800_000
    public static let latestWritable: Int64 = 253_402_300_799_999

    /// The instant in UTC with milliseconds, e.g. `2026-03-15T02:00:00.000Z`. Instants outside
    /// years 0001–9999 are written as the nearest end of that range.
    public var rfc3339: String {
        String(unsafeUninitializedCapacity: Self.rfc3339Width) { text in
            writeRFC3339(into: text.baseAddress!)
            return Self.rfc3339Width
        }
    }

    /// The length of ``rfc3339``: clamped to years 0001–9999, the form has a fixed width.
    public static let rfc3339Width = 24

    /// Writes ``rfc3339``'s ``rfc3339Width`` bytes at `form` (writers of JSON call it for
    /// every time they write, into their own buffer).
    public func writeRFC3339(into form: UnsafeMutablePointer<UInt8>) {
        let millis = min(max(self.millis, Self.earliestWritable), Self.latestWritable)
        let dayNumber = CivilCalendar.floorDivide(millis, Self.dayMillis)
        let millisOfDay = Int(millis - dayNumber * Self.dayMillis)
        let civil = CivilCalendar.civil(fromDayNumber: dayNumber)
        func digits(_ value: Int, width: Int, at start: Int) {
            var remaining = value
            for index in stride(from: start + width - 1, through: start, by: -1) {
                form[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            }
        }
        digits(Int(civil.year), width: 4, at: 0)
        form[4] = UInt8(ascii: "-")
        digits(Int(civil.month), width: 2, at: 5)
        form[7] = UInt8(ascii: "-")
        digits(Int(civil.day), width: 2, at: 8)
        form[10] = UInt8(ascii: "T")
        digits(millisOfDay / 3_600_000, width: 2, at: 11)
        form[13] = UInt8(ascii: ":")
        digits(millisOfDay / 60_000 % 60, width: 2, at: 14)
        form[16] = UInt8(ascii: ":")
        digits(millisOfDay / 1_000 % 60, width: 2, at: 17)
        form[19] = UInt8(ascii: ".")
        digits(millisOfDay % 1_000, width: 3, at: 20)
        form[23] = UInt8(ascii: "Z")
    }

    /// ``rfc3339``.
    public var description: String { rfc3339 }

    /// The instant `milliseconds` later (earlier when negative).
    public func adding(milliseconds: Int64) -> EventTime {
        EventTime(millis: millis + milliseconds)
    }

    /// The instant `hours` hours later (earlier when negative).
    public func adding(hours: Int64) -> EventTime {
        adding(milliseconds: hours * Self.hourMillis)
    }

    /// The instant `days` × 24 hours later (earlier when negative).
    public func adding(days: Int64) -> EventTime {
        adding(milliseconds: days * Self.dayMillis)
    }

    /// Earlier instants order first.
    public static func < (lhs: EventTime, rhs: EventTime) -> Bool {
        lhs.millis < rhs.millis
    }
}

/// Why a date, time or offset text was rejected.
public struct TimeParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The text that was being parsed.
    public var text: String
    /// What is wrong with it, e.g. `"day 29 does not exist in 2026-02"`.
    public var problem: String

    /// Creates an error.
    public init(text: String, problem: String) {
        self.text = text
        self.problem = problem
    }

    /// `cannot parse "text": problem`.
    public var description: String { "cannot parse \"\(text)\": \(problem)" }
}

/// A fixed offset from UTC, such as `+08:00`.
public struct UTCOffset: Sendable, Hashable, CustomStringConvertible {
    /// Seconds east of UTC (negative west of it).
    public let seconds: Int

    /// UTC itself.
    public static let utc = UTCOffset(seconds: 0)

    /// Creates an offset.
    ///
    /// - Precondition: `seconds` is less than 24 hours in magnitude.
    public init(seconds: Int) {
        precondition(abs(seconds) < 86_400, "UTC offset of \(seconds) s is not within ±24 h")
        self.seconds = seconds
    }

    /// Parses `Z` (or `z`) or `±HH:MM`, e.g. `+08:00`, `-05:30`.
    public static func parse(_ text: String) throws(TimeParseError) -> UTCOffset {
        try TimeTextReader.read(text) { (reader: inout TimeTextReader) throws(TimeParseError) in
            let offset = try reader.readOffset()
            try reader.expectEnd()
            return offset
        }
    }

    /// `±HH:MM` (with `:SS` only when the offset has seconds); UTC is `+00:00`.
    public var description: String {
        var text: [UInt8] = [seconds < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+")]
        let magnitude = UInt64(seconds.magnitude)
        CivilCalendar.appendPadded(magnitude / 3_600, width: 2, to: &text)
        text.append(UInt8(ascii: ":"))
        CivilCalendar.appendPadded(magnitude / 60 % 60, width: 2, to: &text)
        if magnitude % 60 != 0 {
            text.append(UInt8(ascii: ":"))
            CivilCalendar.appendPadded(magnitude % 60, width: 2, to: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// A cursor over the UTF-8 of a date/time text, shared by the `parse` functions.
struct TimeTextReader {
    private let text: String
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    /// Runs `body` with a reader over `text`'s UTF-8, without copying native strings.
    static func read<Value>(
        _ text: String, _ body: (inout TimeTextReader) throws(TimeParseError) -> Value
    ) throws(TimeParseError) -> Value {
        var utf8 = text
        let result = utf8.withUTF8 { bytes in
            var reader = TimeTextReader(text: text, bytes: bytes)
            return Result { () throws(TimeParseError) in try body(&reader) }
        }
        return try result.get()
    }

    private init(text: String, bytes: UnsafeBufferPointer<UInt8>) {
        self.text = text
        self.bytes = bytes
    }

    /// `YYYY-MM-DD`, a date that exists, with a year from 0001 to 9999.
    mutating func readDate() throws(TimeParseError) -> LocalDate {
        let shape = "expected a date in the form YYYY-MM-DD"
        let year = try readDigits(4, else: shape)
        try expect(UInt8(ascii: "-"), else: shape)
        let month = try readDigits(2, else: shape)
        try expect(UInt8(ascii: "-"), else: shape)
        let day = try readDigits(2, else: shape)

        guard year >= 1 else { throw failure("year 0000 is not between 0001 and 9999") }
        guard (1...12).contains(month) else { throw failure("month \(month) is not between 1 and 12") }
        guard let date = LocalDate(year: year, month: month, day: day) else {
            var yearMonth: [UInt8] = []
            CivilCalendar.appendPadded(UInt64(year), width: 4, to: &yearMonth)
            yearMonth.append(UInt8(ascii: "-"))
            CivilCalendar.appendPadded(UInt64(month), width: 2, to: &yearMonth)
            throw failure("day \(day) does not exist in \(String(decoding: yearMonth, as: UTF8.self))")
        }
        return date
    }

    /// The `T` (or `t`) between date and time.
    mutating func readDateTimeSeparator() throws(TimeParseError) {
        guard let byte = current, byte == UInt8(ascii: "T") || byte == UInt8(ascii: "t") else {
            throw failure("expected 'T' between the date and the time")
        }
        position += 1
    }

    /// `HH:MM:SS` with optional fractional seconds; returns milliseconds since midnight.
    mutating func readTimeOfDay() throws(TimeParseError) -> Int64 {
        let shape = "expected a time in the form HH:MM:SS"
        let hour = try readDigits(2, else: shape)
        try expect(UInt8(ascii: ":"), else: shape)
        let minute = try readDigits(2, else: shape)
        try expect(UInt8(ascii: ":"), else: shape)
        let second = try readDigits(2, else: shape)

        guard hour < 24 else { throw failure("hour \(hour) is not between 00 and 23") }
        guard minute < 60 else { throw failure("minute \(minute) is not between 00 and 59") }
        guard second < 60 else {
            throw failure(second == 60 ? "leap second 60 is not supported" : "second \(second) is not between 00 and 59")
        }

        var millis = 0
        if current == UInt8(ascii: ".") {
            position += 1
            var digitCount = 0
            while let digit = currentDigit {
                if digitCount < 3 { millis = millis * 10 + digit }
                digitCount += 1
                position += 1
            }
            guard digitCount > 0 else { throw failure("expected digits after '.'") }
            for _ in min(digitCount, 3)..<3 { millis *= 10 }
        }
        return Int64(((hour * 60 + minute) * 60 + second) * 1_000 + millis)
    }

    /// `Z`, `z` or `±HH:MM`.
    mutating func readOffset() throws(TimeParseError) -> UTCOffset {
        let shape = "expected 'Z' or an offset such as +08:00"
        let sign: Int
        switch current {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            position += 1
            return .utc
        case UInt8(ascii: "+"): sign = 1
        case UInt8(ascii: "-"): sign = -1
        default: throw failure(shape)
        }
        position += 1
        let hours = try readDigits(2, else: shape)
        try expect(UInt8(ascii: ":"), else: shape)
        let minutes = try readDigits(2, else: shape)
        guard hours < 24 else { throw failure("offset hour \(hours) is not between 00 and 23") }
        guard minutes < 60 else { throw failure("offset minute \(minutes) is not between 00 and 59") }
        return UTCOffset(seconds: sign * (hours * 3_600 + minutes * 60))
    }

    mutating func expectEnd() throws(TimeParseError) {
        guard position == bytes.count else { throw failure("unexpected characters at the end") }
    }

    private var current: UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private var currentDigit: Int? {
        guard let byte = current, byte &- UInt8(ascii: "0") < 10 else { return nil }
        return Int(byte - UInt8(ascii: "0"))
    }

    /// Exactly `count` ASCII digits as a number.
    private mutating func readDigits(_ count: Int, else problem: String) throws(TimeParseError) -> Int {
        var value = 0
        for _ in 0..<count {
            guard let digit = currentDigit else { throw failure(problem) }
            value = value * 10 + digit
            position += 1
        }
        return value
    }

    private mutating func expect(_ byte: UInt8, else problem: String) throws(TimeParseError) {
        guard current == byte else { throw failure(problem) }
        position += 1
    }

    private func failure(_ problem: String) -> TimeParseError {
        TimeParseError(text: text, problem: problem)
    }
}
