/// The local calendar of a loyalty program, in a time zone with a fixed UTC offset.
///
/// Day and month boundaries (daily caps, monthly tiers) are drawn in the program's
/// local time. A fixed offset is enough for zones without daylight saving time, such as
/// Asia/Shanghai (UTC+08:00), and keeps the result identical on every machine.
public struct ProgramCalendar: Sendable, Hashable {
    /// The program's offset from UTC.
    public var offset: UTCOffset

    /// Creates a calendar for the given offset.
    public init(offset: UTCOffset) {
        self.offset = offset
    }

    /// The local date on which `time` falls.
    public func localDate(of time: EventTime) -> LocalDate {
        LocalDate(dayNumber: CivilCalendar.floorDivide(localMillis(of: time), EventTime.dayMillis))
    }

    /// The local minute of the day on which `time` falls, 0...1439.
    public func localMinuteOfDay(of time: EventTime) -> Int {
        let millisOfDay = CivilCalendar.floorModulo(localMillis(of: time), EventTime.dayMillis)
        return Int(millisOfDay / EventTime.minuteMillis)
    }

    /// The instant at which `date` begins (local 00:00).
    public func startOfDay(_ date: LocalDate) -> EventTime {
        EventTime(millis: date.dayNumber * EventTime.dayMillis - offsetMillis)
    }

    /// The instant at which the month with the given ``LocalDate/monthIndex`` begins (local 00:00 on the 1st).
    public func startOfMonth(monthIndex: Int64) -> EventTime {
        startOfDay(LocalDate.firstDay(ofMonthIndex: monthIndex))
    }

    /// Milliseconds since 1970-01-01T00:00 local time.
    private func localMillis(of time: EventTime) -> Int64 {
        time.millis + offsetMillis
    }

    private var offsetMillis: Int64 {
        Int64(offset.seconds) * 1_000
    }
}
