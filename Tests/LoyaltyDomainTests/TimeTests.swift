import Testing
@testable import Basics
@testable import LoyaltyDomain

private func timeError(_ text: String) -> TimeParseError? {
    do {
        let time = try EventTime.parse(text)
        Issue.record("expected \(text) to be rejected, got \(time)")
        return nil
    } catch {
        return error
    }
}

private func date(_ year: Int, _ month: Int, _ day: Int) throws -> LocalDate {
    try #require(LocalDate(year: year, month: month, day: day))
}

private let shanghai = ProgramCalendar(offset: UTCOffset(seconds: 8 * 3_600))

@Suite struct TimeTests {
    // MARK: EventTime parsing

    @Test func theWrittenFormReadsAsTheSameInstantWrittenWithAnOffset() throws {
        // The form the platform writes is read at fixed places; spelled with "+00:00" instead
        // of "Z", the same instant goes through the general reader. Both must agree, and
        // written-form texts that are not instants must still be refused with their reason.
        var generator = SystemRandomNumberGenerator()
        let edges: [Int64] = [EventTime.earliestWritable, EventTime.latestWritable, 0, -1, 951_782_400_000, 4_107_542_399_999]
        for millis in edges + (0..<2_000).map({ _ in Int64.random(in: EventTime.earliestWritable...EventTime.latestWritable, using: &generator) }) {
            let written = EventTime(millis: millis).rfc3339
            let withOffset = String(written.dropLast()) + "+00:00"
            #expect(try EventTime.parse(written) == EventTime(millis: millis), "\(written)")
            #expect(try EventTime.parse(withOffset) == EventTime(millis: millis), "\(withOffset)")
        }
        #expect(timeError("2026-02-29T00:00:00.000Z")?.description.contains("day 29 does not exist in 2026-02") == true)
        #expect(try EventTime.parse("2024-02-29T00:00:00.000Z") == EventTime.parse("2024-02-29T00:00:00+00:00"))
        #expect(timeError("2026-13-01T00:00:00.000Z")?.description.contains("month 13") == true)
        #expect(timeError("0000-01-01T00:00:00.000Z")?.description.contains("year 0000") == true)
        #expect(timeError("2026-01-01T24:00:00.000Z")?.description.contains("hour 24") == true)
        #expect(timeError("2026-01-01T00:60:00.000Z")?.description.contains("minute 60") == true)
        #expect(timeError("2026-01-01T00:00:60.000Z")?.description.contains("leap second") == true)
        #expect(timeError("2026-01-01T00:00:0x.000Z") != nil)
    }

    @Test func parsesOffsetsAndZulu() throws {
        let expected = EventTime(millis: 1_773_540_000_000)  // 2026-03-15T02:00:00Z
        #expect(try EventTime.parse("2026-03-15T02:00:00Z") == expected)
        #expect(try EventTime.parse("2026-03-15t02:00:00z") == expected)
        #expect(try EventTime.parse("2026-03-15T10:00:00+08:00") == expected)
        #expect(try EventTime.parse("2026-03-14T20:30:00-05:30") == expected)
        #expect(try EventTime.parse("2026-03-15T02:00:00+00:00") == expected)
        #expect(try EventTime.parse("2026-03-15T02:00:00-00:00") == expected)
        // An offset can move the instant into another UTC day, month and year.
        #expect(try EventTime.parse("2027-01-01T07:59:59+08:00").rfc3339 == "2026-12-31T23:59:59.000Z")
    }

    @Test func parsesFractionalSeconds() throws {
        let base: Int64 = 1_773_540_000_000
        #expect(try EventTime.parse("2026-03-15T02:00:00.1Z").millis == base + 100)
        #expect(try EventTime.parse("2026-03-15T02:00:00.12Z").millis == base + 120)
        #expect(try EventTime.parse("2026-03-15T02:00:00.123Z").millis == base + 123)
        #expect(try EventTime.parse("2026-03-15T02:00:00.123999999Z").millis == base + 123)  // truncated, not rounded
        #expect(try EventTime.parse("2026-03-15T10:00:00.000001+08:00").millis == base)
    }

    @Test func rejectsInvalidTimestamps() throws {
        let cases: [(text: String, problem: String)] = [
            ("2026-02-29T00:00:00Z", "day 29 does not exist in 2026-02"),
            ("2100-02-29T00:00:00Z", "day 29 does not exist in 2100-02"),
            ("2026-04-31T00:00:00Z", "day 31 does not exist in 2026-04"),
            ("2026-01-00T00:00:00Z", "day 0 does not exist in 2026-01"),
            ("2026-13-01T00:00:00Z", "month 13 is not between 1 and 12"),
            ("2026-00-01T00:00:00Z", "month 0 is not between 1 and 12"),
            ("0000-01-01T00:00:00Z", "year 0000 is not between 0001 and 9999"),
            ("2026-03-15T24:00:00Z", "hour 24 is not between 00 and 23"),
            ("2026-03-15T10:60:00Z", "minute 60 is not between 00 and 59"),
            ("2026-03-15T10:00:60Z", "leap second 60 is not supported"),
            ("2026-03-15T10:00:61Z", "second 61 is not between 00 and 59"),
            ("2026-03-15T10:00:00", "expected 'Z' or an offset such as +08:00"),
            ("2026-03-15T10:00:00+0800", "expected 'Z' or an offset such as +08:00"),
            ("2026-03-15T10:00:00+8:00", "expected 'Z' or an offset such as +08:00"),
            ("2026-03-15T10:00:00+24:00", "offset hour 24 is not between 00 and 23"),
            ("2026-03-15T10:00:00+08:60", "offset minute 60 is not between 00 and 59"),
            ("2026-03-15T10:00:00.Z", "expected digits after '.'"),
            ("2026-03-15T10:00:00Z ", "unexpected characters at the end"),
            ("2026-03-15T10:00:00ZZ", "unexpected characters at the end"),
            ("2026-03-15 10:00:00Z", "expected 'T' between the date and the time"),
            ("2026-03-15", "expected 'T' between the date and the time"),
            ("2026-3-15T10:00:00Z", "expected a date in the form YYYY-MM-DD"),
            ("12026-03-15T10:00:00Z", "expected a date in the form YYYY-MM-DD"),
            ("2026-03-15T10:00Z", "expected a time in the form HH:MM:SS"),
            ("2026-03-15T1:00:00Z", "expected a time in the form HH:MM:SS"),
            ("", "expected a date in the form YYYY-MM-DD"),
            ("２０２６-03-15T10:00:00Z", "expected a date in the form YYYY-MM-DD"),
        ]
        for (text, problem) in cases {
            #expect(timeError(text) == TimeParseError(text: text, problem: problem))
        }
        #expect(timeError("2026-02-29T00:00:00Z")?.description
            == #"cannot parse "2026-02-29T00:00:00Z": day 29 does not exist in 2026-02"#)
    }

    @Test func acceptsLeapDays() throws {
        #expect(try EventTime.parse("2028-02-29T12:00:00Z").rfc3339 == "2028-02-29T12:00:00.000Z")
        #expect(try EventTime.parse("2000-02-29T00:00:00Z").rfc3339 == "2000-02-29T00:00:00.000Z")
    }

    // MARK: EventTime output and arithmetic

    @Test func formatsRFC3339InUTC() throws {
        #expect(EventTime(millis: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(EventTime(millis: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
        #expect(EventTime(millis: 1_773_540_000_123).description == "2026-03-15T02:00:00.123Z")
        #expect(EventTime(millis: -62_135_596_800_000).rfc3339 == "0001-01-01T00:00:00.000Z")
        #expect(EventTime(millis: 253_402_300_799_999).rfc3339 == "9999-12-31T23:59:59.999Z")
        #expect(try EventTime.parse("2026-03-15T10:00:00+08:00").rfc3339 == "2026-03-15T02:00:00.000Z")
    }

    @Test func roundTripsThroughRFC3339() throws {
        // A stride that is not a divisor of any calendar unit, so it lands on varied fields.
        var millis: Int64 = -62_135_596_800_000
        while millis < 253_402_300_799_999 {
            let time = EventTime(millis: millis)
            #expect(try EventTime.parse(time.rfc3339) == time)
            millis += 7_919_876_543_211
        }
    }

    @Test func addsDurations() throws {
        let time = try EventTime.parse("2026-03-15T23:30:00Z")
        #expect(time.adding(milliseconds: 1_800_000).rfc3339 == "2026-03-16T00:00:00.000Z")
        #expect(time.adding(hours: -24).rfc3339 == "2026-03-14T23:30:00.000Z")
        #expect(time.adding(days: 17).rfc3339 == "2026-04-01T23:30:00.000Z")
        #expect(EventTime.hourMillis == 3_600_000)
        #expect(EventTime.dayMillis == 86_400_000)
        #expect(time < time.adding(milliseconds: 1))
    }

    // MARK: UTCOffset

    @Test func parsesAndDescribesOffsets() throws {
        #expect(try UTCOffset.parse("+08:00").seconds == 28_800)
        #expect(try UTCOffset.parse("-05:30").seconds == -19_800)
        #expect(try UTCOffset.parse("Z") == .utc)
        #expect(try UTCOffset.parse("z") == .utc)
        #expect(UTCOffset(seconds: 28_800).description == "+08:00")
        #expect(UTCOffset(seconds: -19_800).description == "-05:30")
        #expect(UTCOffset.utc.description == "+00:00")
        #expect(UTCOffset(seconds: 3_723).description == "+01:02:03")
        #expect(throws: TimeParseError.self) { try UTCOffset.parse("+08:00 ") }
        #expect(throws: TimeParseError.self) { try UTCOffset.parse("08:00") }
        #expect(throws: TimeParseError.self) { try UTCOffset.parse("") }
    }

    // MARK: LocalDate

    @Test func validatesDates() throws {
        #expect(LocalDate(year: 2026, month: 2, day: 29) == nil)
        #expect(LocalDate(year: 2028, month: 2, day: 29) != nil)
        #expect(LocalDate(year: 1900, month: 2, day: 29) == nil)
        #expect(LocalDate(year: 2000, month: 2, day: 29) != nil)
        #expect(LocalDate(year: 2026, month: 4, day: 31) == nil)
        #expect(LocalDate(year: 2026, month: 0, day: 1) == nil)
        #expect(LocalDate(year: 2026, month: 13, day: 1) == nil)
        #expect(LocalDate(year: 2026, month: 1, day: 0) == nil)
        #expect(LocalDate.isLeapYear(2024) && LocalDate.isLeapYear(2000) && LocalDate.isLeapYear(0))
        #expect(!LocalDate.isLeapYear(2026) && !LocalDate.isLeapYear(2100))
        #expect((1...12).map { LocalDate.daysInMonth(year: 2026, month: $0) }
            == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        #expect(LocalDate.daysInMonth(year: 2028, month: 2) == 29)
    }

    @Test func numbersArePaddedToTheirWidthAndNeverCut() {
        func padded(_ value: UInt64, _ width: Int) -> String {
            var text = Array("<".utf8)
            CivilCalendar.appendPadded(value, width: width, to: &text)
            return String(decoding: text, as: UTF8.self)
        }
        #expect(padded(0, 2) == "<00")
        #expect(padded(0, 0) == "<0")
        #expect(padded(7, 4) == "<0007")
        #expect(padded(10, 2) == "<10")
        #expect(padded(123_456, 4) == "<123456")
        #expect(padded(UInt64.max, 2) == "<18446744073709551615")
    }

    @Test func parsesAndDescribesDates() throws {
        #expect(try LocalDate.parse("2026-03-15") == date(2026, 3, 15))
        #expect(try LocalDate.parse("0001-01-01").description == "0001-01-01")
        #expect(try date(987, 6, 5).description == "0987-06-05")
        #expect(LocalDate(dayNumber: -719_529).description == "-0001-12-31")
        let invalid = ["2026-02-29", "2026-03-15T00:00:00Z", "2026-3-15", "26-03-15", "2026/03/15", " 2026-03-15", ""]
        for text in invalid {
            #expect(throws: TimeParseError.self, "\(text)") { try LocalDate.parse(text) }
        }
    }

    @Test func knownDayNumbers() throws {
        #expect(try date(1970, 1, 1).dayNumber == 0)
        #expect(try date(1969, 12, 31).dayNumber == -1)
        #expect(try date(2026, 3, 15).dayNumber == 20_527)
        #expect(try date(1900, 1, 1).dayNumber == -25_567)
        #expect(try date(1, 1, 1).dayNumber == -719_162)
        #expect(try date(9999, 12, 31).dayNumber == 2_932_896)
        #expect(LocalDate(dayNumber: 20_527) == (try date(2026, 3, 15)))
    }

    /// Walks every day from 1900 to 2200 with naive day-by-day counting and checks
    /// both conversions against it.
    @Test func dayNumbersRoundTripOverAWideRange() throws {
        var (year, month, day) = (1900, 1, 1)
        var expected: Int64 = -25_567
        var previous: LocalDate?
        while year <= 2200 {
            let current = try date(year, month, day)
            #expect(current.dayNumber == expected)
            #expect(LocalDate(dayNumber: expected) == current)
            if let previous {
                #expect(previous < current)
                #expect(previous.adding(days: 1) == current)
                #expect(current.weekday == previous.weekday % 7 + 1)
            }
            previous = current
            expected += 1
            day += 1
            if day > LocalDate.daysInMonth(year: year, month: month) {
                (month, day) = (month + 1, 1)
                if month > 12 { (year, month) = (year + 1, 1) }
            }
        }
        #expect(expected == (try date(2201, 1, 1)).dayNumber)
    }

    @Test func dayNumbersRoundTripAcrossEras() {
        // Sparse but far-reaching, including negative years and 400-year era edges.
        for dayNumber in stride(from: Int64(-1_000_000_000), through: 1_000_000_000, by: 9_999_991) {
            #expect(LocalDate(dayNumber: dayNumber).dayNumber == dayNumber)
        }
        for dayNumber: Int64 in [-719_469, -719_468, -719_467, -865_566, -865_565, 10_956, 10_957, 11_016, 11_017] {
            #expect(LocalDate(dayNumber: dayNumber).dayNumber == dayNumber)
        }
    }

    @Test func weekdaysOfKnownDates() throws {
        #expect(try date(2026, 11, 23).weekday == 1)  // Monday
        #expect(try date(2026, 11, 29).weekday == 7)  // Sunday
        #expect(try date(1970, 1, 1).weekday == 4)    // Thursday
        #expect(try date(1969, 12, 31).weekday == 3)  // Wednesday
        #expect(try date(2000, 1, 1).weekday == 6)    // Saturday
        #expect(try date(1, 1, 1).weekday == 1)       // Monday
    }

    @Test func monthIndexArithmetic() throws {
        let march = try date(2026, 3, 15)
        #expect(march.monthIndex == 2026 * 12 + 2)
        #expect(try date(2027, 1, 1).monthIndex - (try date(2026, 12, 31)).monthIndex == 1)
        #expect(LocalDate.firstDay(ofMonthIndex: march.monthIndex) == (try date(2026, 3, 1)))
        #expect(LocalDate.firstDay(ofMonthIndex: march.monthIndex + 10) == (try date(2027, 1, 1)))
        #expect(LocalDate.firstDay(ofMonthIndex: march.monthIndex - 3) == (try date(2025, 12, 1)))
        #expect(LocalDate.firstDay(ofMonthIndex: 0) == (try date(0, 1, 1)))
        #expect(LocalDate.firstDay(ofMonthIndex: -1).description == "-0001-12-01")
        for index in Int64(23_000)...24_400 {
            #expect(LocalDate.firstDay(ofMonthIndex: index).monthIndex == index)
        }
    }

    // MARK: ProgramCalendar

    @Test func localDateAcrossTheUTCDayBoundary() throws {
        #expect(shanghai.localDate(of: try EventTime.parse("2026-03-14T16:00:00Z")) == (try date(2026, 3, 15)))
        #expect(shanghai.localDate(of: try EventTime.parse("2026-03-14T15:59:59.999Z")) == (try date(2026, 3, 14)))
        #expect(shanghai.localMinuteOfDay(of: try EventTime.parse("2026-03-14T16:00:00Z")) == 0)
        #expect(shanghai.localMinuteOfDay(of: try EventTime.parse("2026-03-14T15:59:59.999Z")) == 1_439)
        #expect(shanghai.localMinuteOfDay(of: try EventTime.parse("2026-03-15T10:30:59+08:00")) == 630)

        let newYork = ProgramCalendar(offset: try UTCOffset.parse("-05:00"))
        #expect(newYork.localDate(of: try EventTime.parse("2026-03-15T04:59:59Z")) == (try date(2026, 3, 14)))
        #expect(newYork.localDate(of: try EventTime.parse("2026-03-15T05:00:00Z")) == (try date(2026, 3, 15)))
    }

    @Test func negativeMillisFloorToTheEarlierDay() throws {
        let utc = ProgramCalendar(offset: .utc)
        #expect(utc.localDate(of: EventTime(millis: -1)) == (try date(1969, 12, 31)))
        #expect(utc.localMinuteOfDay(of: EventTime(millis: -1)) == 1_439)
        #expect(utc.localDate(of: EventTime(millis: -EventTime.dayMillis)) == (try date(1969, 12, 31)))
        #expect(utc.localDate(of: EventTime(millis: -EventTime.dayMillis - 1)) == (try date(1969, 12, 30)))
        // 1969-12-31T15:59:59.999Z is still the 31st in Shanghai; a millisecond later it is 1970.
        #expect(shanghai.localDate(of: EventTime(millis: -8 * EventTime.hourMillis - 1)) == (try date(1969, 12, 31)))
        #expect(shanghai.localDate(of: EventTime(millis: -8 * EventTime.hourMillis)) == (try date(1970, 1, 1)))
    }

    @Test func startOfDayIsLocalMidnight() throws {
        let day = try date(2026, 3, 15)
        #expect(shanghai.startOfDay(day).rfc3339 == "2026-03-14T16:00:00.000Z")
        #expect(shanghai.localDate(of: shanghai.startOfDay(day)) == day)
        #expect(shanghai.localDate(of: shanghai.startOfDay(day).adding(milliseconds: -1)) == day.adding(days: -1))
        #expect(ProgramCalendar(offset: .utc).startOfDay(day).rfc3339 == "2026-03-15T00:00:00.000Z")
    }

    @Test func startOfMonthAcrossYearBoundaries() throws {
        let december = try date(2026, 12, 5).monthIndex
        #expect(shanghai.startOfMonth(monthIndex: december).rfc3339 == "2026-11-30T16:00:00.000Z")
        #expect(shanghai.startOfMonth(monthIndex: december + 1).rfc3339 == "2026-12-31T16:00:00.000Z")
        #expect(shanghai.startOfMonth(monthIndex: december + 2).rfc3339 == "2027-01-31T16:00:00.000Z")
        #expect(shanghai.startOfMonth(monthIndex: december - 12).rfc3339 == "2025-11-30T16:00:00.000Z")
        #expect(ProgramCalendar(offset: .utc).startOfMonth(monthIndex: 1970 * 12).millis == 0)

        // A local month is [startOfMonth(i), startOfMonth(i + 1)).
        let newYearsEve = try EventTime.parse("2026-12-31T23:59:59.999+08:00")
        let index = shanghai.localDate(of: newYearsEve).monthIndex
        #expect(index == december)
        #expect(shanghai.startOfMonth(monthIndex: index) <= newYearsEve)
        #expect(newYearsEve < shanghai.startOfMonth(monthIndex: index + 1))
        #expect(shanghai.localDate(of: newYearsEve.adding(milliseconds: 1)).monthIndex == december + 1)
    }
}
