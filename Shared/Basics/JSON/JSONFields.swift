/// A field of a decoded JSON object that is missing or has the wrong type.
public struct JSONFieldError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dotted path of the field, e.g. `"payment.paidMinor"`.
    public var path: String
    /// What is wrong, e.g. `"missing"` or `"expected an integer"`.
    public var problem: String

    /// Creates an error.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// `"path: problem"`.
    public var description: String { "\(path): \(problem)" }
}

/// Typed reading of members, for decoding events and configuration with precise errors.
///
/// Each reader takes the member's `key` and the `path` of this object within the
/// document (empty at the root); errors report `path.key`. Required readers fail with
/// `"missing"` when the member is absent; optional readers return `nil` when it is
/// absent or `null`. A present value of the wrong type always fails.
extension JSONObject {
    /// A required string.
    public func string(_ key: String, at path: String = "") throws(JSONFieldError) -> String {
        try required(key, at: path, "expected a string", \.stringValue)
    }

    /// An optional string.
    public func optionalString(_ key: String, at path: String = "") throws(JSONFieldError) -> String? {
        try optional(key, at: path, "expected a string", \.stringValue)
    }

    /// A required integer that fits `Int64` (see ``JSONValue/int64Value``).
    public func int64(_ key: String, at path: String = "") throws(JSONFieldError) -> Int64 {
        try required(key, at: path, "expected an integer", \.int64Value)
    }

    /// An optional integer that fits `Int64` (see ``JSONValue/int64Value``).
    public func optionalInt64(_ key: String, at path: String = "") throws(JSONFieldError) -> Int64? {
        try optional(key, at: path, "expected an integer", \.int64Value)
    }

    /// A required integer that fits `Int`.
    public func int(_ key: String, at path: String = "") throws(JSONFieldError) -> Int {
        try required(key, at: path, "expected an integer", \.intValue)
    }

    /// An optional integer that fits `Int`.
    public func optionalInt(_ key: String, at path: String = "") throws(JSONFieldError) -> Int? {
        try optional(key, at: path, "expected an integer", \.intValue)
    }

    /// A required Boolean.
    public func bool(_ key: String, at path: String = "") throws(JSONFieldError) -> Bool {
        try required(key, at: path, "expected a boolean", \.boolValue)
    }

    /// An optional Boolean.
    public func optionalBool(_ key: String, at path: String = "") throws(JSONFieldError) -> Bool? {
        try optional(key, at: path, "expected a boolean", \.boolValue)
    }

    /// A required object.
    public func object(_ key: String, at path: String = "") throws(JSONFieldError) -> JSONObject {
        try required(key, at: path, "expected an object", \.objectValue)
    }

    /// An optional object.
    public func optionalObject(_ key: String, at path: String = "") throws(JSONFieldError) -> JSONObject? {
        try optional(key, at: path, "expected an object", \.objectValue)
    }

    /// A required array.
    public func array(_ key: String, at path: String = "") throws(JSONFieldError) -> [JSONValue] {
        try required(key, at: path, "expected an array", \.arrayValue)
    }

    /// An optional array.
    public func optionalArray(_ key: String, at path: String = "") throws(JSONFieldError) -> [JSONValue]? {
        try optional(key, at: path, "expected an array", \.arrayValue)
    }

    /// A required number with at most one decimal place, times ten (see ``JSONValue/tenthsValue``).
    public func tenths(_ key: String, at path: String = "") throws(JSONFieldError) -> Int64 {
        try required(key, at: path, Self.tenthsExpectation, \.tenthsValue)
    }

    /// An optional number with at most one decimal place, times ten (see ``JSONValue/tenthsValue``).
    public func optionalTenths(_ key: String, at path: String = "") throws(JSONFieldError) -> Int64? {
        try optional(key, at: path, Self.tenthsExpectation, \.tenthsValue)
    }

    /// The path of `key` within a document, as reported in errors.
    public static func path(of key: String, at path: String) -> String {
        path.isEmpty ? key : path + "." + key
    }

    private static let tenthsExpectation = "expected a number with at most one decimal place"

    private func required<Value>(
        _ key: String, at path: String, _ expectation: String, _ extract: (JSONValue) -> Value?
    ) throws(JSONFieldError) -> Value {
        guard let value = self[key] else {
            throw JSONFieldError(path: Self.path(of: key, at: path), problem: "missing")
        }
        guard let typed = extract(value) else {
            throw JSONFieldError(path: Self.path(of: key, at: path), problem: expectation)
        }
        return typed
    }

    private func optional<Value>(
        _ key: String, at path: String, _ expectation: String, _ extract: (JSONValue) -> Value?
    ) throws(JSONFieldError) -> Value? {
        guard let value = self[key], !value.isNull else { return nil }
        guard let typed = extract(value) else {
            throw JSONFieldError(path: Self.path(of: key, at: path), problem: expectation)
        }
        return typed
    }
}
