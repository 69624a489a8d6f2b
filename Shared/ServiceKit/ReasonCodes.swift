import Basics

/// What the runtime refuses, whatever the service.
extension ReasonCode {
    public static let conflictingDuplicate = ReasonCode(rawValue: "conflicting-duplicate")
    public static let emptyPayload = ReasonCode(rawValue: "empty-payload")
    public static let invalidProgressMark = ReasonCode(rawValue: "invalid-progress-mark")
    public static let olderThanInboxHorizon = ReasonCode(rawValue: "older-than-inbox-horizon")
    public static let poisonRecord = ReasonCode(rawValue: "poison-record")
    public static let timeOutOfRange = ReasonCode(rawValue: "time-out-of-range")
    public static let unauthenticatedCommand = ReasonCode(rawValue: "unauthenticated-command")
    public static let wrongPartition = ReasonCode(rawValue: "wrong-partition")
}
