/// A calendar date in the proleptic Gregorian calendar, without a time zone.
///
/// All arithmetic goes through the day number (days since 1970-01-01), using pure
/// integer algorithms so every machine reaches the same date for the same instant.
public struct LocalDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The year; 1 is 1 CE, 0 is 1 BCE (astronomical numbering).
    public let year: Int
    /// The month, 1...12.
    public let month: Int
    /// The day of the month, 1...``daysInMonth(year:month:)``.
    public let day: Int

    /// Creates a date, or `nil` when the month or day does not exist (e.g. 2026-02-29).
    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), (1...Self.daysInMonth(year: year, month: month)).contains(day) else {
            return nil
        }
        self.init(validYear: year, month: month, day: day)
    }

    /// The date `dayNumber` days after 1970-01-01 (before it when negative).
    public init(dayNumber: Int64) {
        let civil = CivilCalendar.civil(fromDayNumber: dayNumber)
        self.init(validYear: Int(civil.year), month: Int(civil.month), day: Int(civil.day))
    }

    private init(validYear year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// Days since 1970-01-01; negative before it.
    public var dayNumber: Int64 {
        CivilCalendar.dayNumber(year: Int64(year), month: Int64(month), day: Int64(day))
    }

    /// `year * 12 + (month - 1)`: consecutive months are consecutive integers,
    /// so "n months later" is `monthIndex + n`.
    public var monthIndex: Int64 {
        Int64(year) * 12 + Int64(month - 1)
    }

    /// The ISO weekday: 1 is Monday, 7 is Sunday.
    public var weekday: Int {
        // 1970-01-01 was a Thursday (4).
        Int(CivilCalendar.floorModulo(dayNumber + 3, 7)) + 1
    }

    /// The date `days` days later (earlier when negative).
    public func adding(days: Int64) -> LocalDate {
        LocalDate(dayNumber: dayNumber + days)
    }

    /// The first day of the month with the given ``monthIndex``.
    public static func firstDay(ofMonthIndex monthIndex: Int64) -> LocalDate {
        LocalDate(
            validYear: Int(CivilCalendar.floorDivide(monthIndex, 12)),
            month: Int(CivilCalendar.floorModulo(monthIndex, 12)) + 1,
            day: 1)
    }

    /// Whether `year` has a February 29.
    public static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    /// The number of days in `month` (1...12) of `year`.
    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Parses `YYYY-MM-DD` with a year from 0001 to 9999.
    public static func parse(_ text: String) throws(TimeParseError) -> LocalDate {
        try TimeTextReader.read(text) { (reader: inout TimeTextReader) throws(TimeParseError) in
            let date = try reader.readDate()
            try reader.expectEnd()
            return date
        }
    }

    /// `YYYY-MM-DD`; years beyond four digits are written in full, negative years with a leading `-`.
    public var description: String {
        var text: [UInt8] = []
        text.reserveCapacity(10)
        CivilCalendar.appendDate(year: Int64(year), month: month, day: day, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Earlier dates order first.
    public static func < (lhs: LocalDate, rhs: LocalDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }
}

/// Integer algorithms of the proleptic Gregorian calendar, after Howard Hinnant's
/// `days_from_civil` / `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html).
///
/// The trick is to start the year on March 1: the leap day then falls at the end of
/// the year, and month lengths from March on follow a simple linear pattern. Years
/// are grouped into 400-year eras of exactly 146 097 days, so no loops are needed.
public enum CivilCalendar {
    private static let daysPerEra: Int64 = 146_097
    /// Days from 0000-03-01 (the start of era 0) to 1970-01-01.
    private static let epochShift: Int64 = 719_468

    public static func dayNumber(year: Int64, month: Int64, day: Int64) -> Int64 {
        let marchYear = month <= 2 ? year - 1 : year
        let era = floorDivide(marchYear, 400)
        let yearOfEra = marchYear - era * 400                          // 0...399
        let marchMonth = month > 2 ? month - 3 : month + 9             // March = 0 ... February = 11
        let dayOfYear = (153 * marchMonth + 2) / 5 + day - 1           // 0...365
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear  // 0...146096
        return era * daysPerEra + dayOfEra - epochShift
    }

    public static func civil(fromDayNumber dayNumber: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = dayNumber + epochShift
        let era = floorDivide(shifted, daysPerEra)
        let dayOfEra = shifted - era * daysPerEra                      // 0...146096
        // Undo the leap-day corrections (every 4 years, not every 100, but every 400).
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let marchMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * marchMonth + 2) / 5 + 1
        let month = marchMonth < 10 ? marchMonth + 3 : marchMonth - 9
        let year = era * 400 + yearOfEra + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// Division rounding toward negative infinity, so instants before 1970 land on the right day.
    public static func floorDivide(_ dividend: Int64, _ divisor: Int64) -> Int64 {
        let quotient = dividend / divisor
        return (dividend % divisor != 0 && (dividend < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    /// The remainder matching ``floorDivide(_:_:)``; has the sign of the divisor.
    public static func floorModulo(_ dividend: Int64, _ divisor: Int64) -> Int64 {
        dividend - floorDivide(dividend, divisor) * divisor
    }

    /// Appends `YYYY-MM-DD`.
    public static func appendDate(year: Int64, month: Int, day: Int, to text: inout [UInt8]) {
        if year < 0 { text.append(UInt8(ascii: "-")) }
        appendPadded(year.magnitude, width: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        appendPadded(UInt64(month), width: 2, to: &text)
        text.append(UInt8(ascii: "-"))
        appendPadded(UInt64(day), width: 2, to: &text)
    }

    /// Appends `value` in decimal, left-padded with zeros to at least `width` digits.
    public static func appendPadded(_ value: UInt64, width: Int, to text: inout [UInt8]) {
        var digits = 1
        var rest = value / 10
        while rest != 0 {
            digits += 1
            rest /= 10
        }
        // Zeros first, then the digits from the last one back: reversing a slice of the array
        // went through a generic copy (3,000 instructions a date, callgrind).
        var index = text.count + max(digits, width)
        text.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(digits, width)))
        var remaining = value
        while remaining != 0 {
            index -= 1
            text[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
        }
    }
}
