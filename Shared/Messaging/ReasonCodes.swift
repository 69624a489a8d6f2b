import Basics

/// Why a record is not a readable CloudEvent.
extension ReasonCode {
    public static let badData = ReasonCode(rawValue: "bad-data")
    public static let badSpecversion = ReasonCode(rawValue: "bad-specversion")
    public static let badTime = ReasonCode(rawValue: "bad-time")
    public static let missingAttribute = ReasonCode(rawValue: "missing-attribute")
    public static let notAnObject = ReasonCode(rawValue: "not-an-object")
    public static let notJson = ReasonCode(rawValue: "not-json")
}
