import Foundation
import Basics

/// The event schemas of docs/schemas, checked in Swift for the platform's publish command: the subset of
/// JSON Schema 2020-12 they use (`type`, `const`, `enum`, `properties`, `required`,
/// `additionalProperties`, `items`, `minItems`/`maxItems`, `minLength`, `minimum`/`maximum`,
/// `pattern`, `allOf`, `not`, `$ref` to a sibling file). `format` is an annotation, as the
/// specification's default says. CI checks the same files with Python's jsonschema.
public struct EventSchemas {
    private var byTopicAndType: [String: JSONValue] = [:]
    private var byFileName: [String: JSONValue] = [:]

    /// Reads the schema files (path under the folder → bytes).
    public init(files: [String: [UInt8]]) throws {
        for (path, bytes) in files {
            let schema = try JSONValue.parse(bytes)
            byFileName[String(path.split(separator: "/").last ?? "")] = schema
            if let topic = schema["x-topic"]?.stringValue, let type = schema["properties"]?["type"]?["const"]?.stringValue {
                byTopicAndType["\(topic) \(type)"] = schema
            }
        }
    }

    /// The problems of `event` (the record's JSON) as the schema of its type on `topic` sees
    /// them; one problem when there is no such schema.
    public func problems(of event: JSONValue, on topic: String) -> [String] {
        guard let type = event["type"]?.stringValue, let schema = byTopicAndType["\(topic) \(type)"] else {
            return ["no schema for type \(event["type"]?.stringValue ?? "(none)") on \(topic)"]
        }
        var problems: [String] = []
        check(event, schema, path: "", &problems)
        return problems
    }

    private func check(_ value: JSONValue, _ schema: JSONValue, path: String, _ problems: inout [String]) {
        guard let rules = schema.objectValue else { return }
        let at = path.isEmpty ? "(event)" : path
        if let reference = rules["$ref"]?.stringValue, let target = byFileName[String(reference.split(separator: "/").last ?? "")] {
            check(value, target, path: path, &problems)
        }
        for part in rules["allOf"]?.arrayValue ?? [] { check(value, part, path: path, &problems) }
        if let negated = rules["not"] {
            var inner: [String] = []
            check(value, negated, path: path, &inner)
            if inner.isEmpty { problems.append("\(at): must not match \(negated.jsonString)") }
        }
        if let types = rules["type"] {
            let allowed = types.arrayValue?.compactMap(\.stringValue) ?? [types.stringValue].compactMap { $0 }
            if !allowed.contains(where: { Self.matches(value, type: $0) }) {
                problems.append("\(at): expected \(allowed.joined(separator: " or "))")
                return
            }
        }
        if let constant = rules["const"], !Self.equal(value, constant) { problems.append("\(at): must be \(constant.jsonString)") }
        if let options = rules["enum"]?.arrayValue, !options.contains(where: { Self.equal(value, $0) }) {
            problems.append("\(at): must be one of \(options.map(\.jsonString).joined(separator: ", "))")
        }
        if let text = value.stringValue {
            if let minimum = rules["minLength"]?.int64Value, text.unicodeScalars.count < minimum { problems.append("\(at): shorter than \(minimum)") }
            if let pattern = rules["pattern"]?.stringValue, text.range(of: pattern, options: .regularExpression) == nil {
                problems.append("\(at): does not match \(pattern)")
            }
        }
        if let number = Self.number(value) {
            if let minimum = rules["minimum"].flatMap(Self.number), number < minimum { problems.append("\(at): \(value.jsonString) is less than \(rules["minimum"]!.jsonString)") }
            if let maximum = rules["maximum"].flatMap(Self.number), number > maximum { problems.append("\(at): \(value.jsonString) is more than \(rules["maximum"]!.jsonString)") }
        }
        if let object = value.objectValue {
            let properties = rules["properties"]?.objectValue ?? JSONObject()
            for name in rules["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where object[name] == nil {
                problems.append("\(path.isEmpty ? "" : path + "/")\(name): required")
            }
            for member in object.members {
                let child = path.isEmpty ? member.key : "\(path)/\(member.key)"
                if let rule = properties[member.key] {
                    check(member.value, rule, path: child, &problems)
                } else if let extra = rules["additionalProperties"] {
                    if extra.boolValue == false { problems.append("\(child): not allowed here") } else { check(member.value, extra, path: child, &problems) }
                }
            }
        }
        if let array = value.arrayValue {
            if let minimum = rules["minItems"]?.int64Value, array.count < minimum { problems.append("\(at): fewer than \(minimum) items") }
            if let maximum = rules["maxItems"]?.int64Value, array.count > maximum { problems.append("\(at): more than \(maximum) items") }
            if let items = rules["items"] {
                for (index, element) in array.enumerated() { check(element, items, path: "\(path)/\(index)", &problems) }
            }
        }
    }

    private static func number(_ value: JSONValue) -> Double? {
        guard case .number(let literal) = value else { return nil }
        return Double(literal)
    }

    private static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null), ("number", .number): return true
        case ("integer", .number(let literal)): return Int64(literal) != nil || (Double(literal).map { $0 == $0.rounded() && $0.isFinite } ?? false)
        default: return false
        }
    }

    private static func equal(_ left: JSONValue, _ right: JSONValue) -> Bool {
        if let a = number(left), let b = number(right) { return a == b }
        return left == right
    }
}
