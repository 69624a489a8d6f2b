import Basics

/// A timer to set: `kind` and `ref` name it among the member's (a cancel takes every timer of
/// that name, whatever its due time; set again at another due time, it is a second timer),
/// `rank` orders timers due at the same instant (DOMAIN.md, "Order").
public struct TimerRequest: Sendable, Equatable {
    public var due: EventTime
    public var rank: Int
    public var member: String
    public var kind: String
    public var ref: String
    public var payload: [UInt8]

    public init(due: EventTime, rank: Int, member: String, kind: String, ref: String, payload: [UInt8] = []) {
        self.due = due
        self.rank = rank
        self.member = member
        self.kind = kind
        self.ref = ref
        self.payload = payload
    }
}

/// A timer that has come due, handed to the service to act on.
public struct DueTimer: Sendable, Equatable {
    public var task: Int32
    public var due: EventTime
    public var rank: Int
    public var member: String
    public var kind: String
    public var ref: String
    public var payload: [UInt8]

    /// A timer as the runtime hands it over; a service builds one to act on a timer it kept
    /// aside itself.
    public init(task: Int32, due: EventTime, rank: Int, member: String, kind: String, ref: String, payload: [UInt8]) {
        self.task = task
        self.due = due
        self.rank = rank
        self.member = member
        self.kind = kind
        self.ref = ref
        self.payload = payload
    }
}
