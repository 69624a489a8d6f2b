/// The condition language of campaign triggers (docs/campaigns.md, "Conditions"): comparisons
/// of the trigger's fields with literals, joined by `&&`, `||` and `!`. A condition is parsed
/// and type-checked once, when its definition is loaded, so evaluating it cannot fail.
///
///     order.paidMinor >= 10000 && "high-margin" in order.categories
///     member.tier in ["gold", "platinum"] || !(time.weekday in [6, 7])
public struct Condition: Sendable, Equatable, CustomStringConvertible {
    /// The longest condition accepted, in characters.
    public static let maximumLength = 4096
    /// The deepest nesting of `(` and `!` accepted.
    public static let maximumNesting = 32

    /// The text it was parsed from.
    public let source: String
    let root: Node

    /// Parses and checks `source` against the fields a trigger offers.
    public init(_ source: String, fields: [String: ValueType]) throws(ConditionError) {
        // Bounded, so that no definition can exhaust the stack of the parser, the evaluator or
        // the tree's release: marketing conditions are a line, not a program.
        let length = source.unicodeScalars.count
        guard length <= Self.maximumLength else {
            throw ConditionError(column: Self.maximumLength + 1, message: "a condition may be at most \(Self.maximumLength) characters; this one has \(length)")
        }
        var parser = Parser(tokens: try Lexer.tokens(of: source), fields: fields)
        let (node, type) = try parser.expression()
        try parser.expectEnd()
        guard type == .bool else { throw ConditionError(column: 1, message: "a condition must be true or false, not \(type)") }
        self.source = source
        root = node
    }

    /// Whether the condition holds for these field values. A field the trigger did not
    /// provide reads as 0, "" or false.
    public func holds(_ values: ConditionValues) -> Bool {
        root.evaluate(values).bool
    }

    public var description: String { source }

    /// The types of values.
    public enum ValueType: String, Sendable, Equatable, CustomStringConvertible {
        case int = "a number", string = "a string", bool = "true or false"
        case intList = "a list of numbers", stringList = "a list of strings"
        public var description: String { rawValue }
    }

    /// A value of a field or a literal.
    public enum Value: Sendable, Equatable {
        case int(Int64), string(String), bool(Bool), intList([Int64]), stringList([String])

        var bool: Bool { if case .bool(let value) = self { value } else { false } }
        var int: Int64 { if case .int(let value) = self { value } else { 0 } }
        var string: String { if case .string(let value) = self { value } else { "" } }
    }

    indirect enum Node: Sendable, Equatable {
        case literal(Value)
        case field(String, ValueType)
        case not(Node)
        case and(Node, Node)
        case or(Node, Node)
        case compare(Comparison, Node, Node)
        case member(Node, Node)

        func evaluate(_ values: ConditionValues) -> Value {
            switch self {
            case .literal(let value): return value
            case .field(let name, let type): return values[name] ?? type.zero
            case .not(let node): return .bool(!node.evaluate(values).bool)
            case .and(let left, let right): return .bool(left.evaluate(values).bool && right.evaluate(values).bool)
            case .or(let left, let right): return .bool(left.evaluate(values).bool || right.evaluate(values).bool)
            case .compare(let comparison, let left, let right):
                return .bool(comparison.holds(left.evaluate(values), right.evaluate(values)))
            case .member(let element, let list):
                switch (element.evaluate(values), list.evaluate(values)) {
                case (.int(let value), .intList(let values)): return .bool(values.contains(value))
                case (.string(let value), .stringList(let values)): return .bool(values.contains(value))
                default: return .bool(false)
                }
            }
        }
    }

    enum Comparison: String, Sendable, Equatable {
        case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="

        func holds(_ left: Value, _ right: Value) -> Bool {
            switch self {
            case .equal: return left == right
            case .notEqual: return left != right
            case .less: return left.int < right.int
            case .lessOrEqual: return left.int <= right.int
            case .greater: return left.int > right.int
            case .greaterOrEqual: return left.int >= right.int
            }
        }
    }
}

extension Condition.ValueType {
    var zero: Condition.Value {
        switch self {
        case .int: .int(0)
        case .string: .string("")
        case .bool: .bool(false)
        case .intList: .intList([])
        case .stringList: .stringList([])
        }
    }
}

/// The field values a trigger offers a condition, by dotted name.
public typealias ConditionValues = [String: Condition.Value]

/// Why a condition cannot be used, with the 1-based column where the problem starts.
public struct ConditionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var column: Int
    public var message: String

    public init(column: Int, message: String) {
        self.column = column
        self.message = message
    }

    public var description: String { "column \(column): \(message)" }
}

private enum Token: Equatable {
    case int(Int64), string(String), identifier(String), symbol(String), end
}

private enum Lexer {
    static let symbols = ["&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ","]

    static func tokens(of text: String) throws(ConditionError) -> [(token: Token, column: Int)] {
        let characters = Array(text.unicodeScalars)
        var result: [(Token, Int)] = []
        var index = 0
        func isIdentifierStart(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic || c == "_" }
        func isIdentifierPart(_ c: Unicode.Scalar) -> Bool { isIdentifierStart(c) || ("0"..."9").contains(c) || c == "." }
        while index < characters.count {
            let c = characters[index]
            let column = index + 1
            if c == " " || c == "\t" || c == "\n" || c == "\r" { index += 1; continue }
            if ("0"..."9").contains(c) || (c == "-" && index + 1 < characters.count && ("0"..."9").contains(characters[index + 1])) {
                var end = index + 1
                while end < characters.count, ("0"..."9").contains(characters[end]) { end += 1 }
                let digits = String(String.UnicodeScalarView(characters[index..<end]))
                guard let value = Int64(digits) else { throw ConditionError(column: column, message: "number \(digits) is out of range") }
                result.append((.int(value), column))
                index = end
                continue
            }
            if c == "\"" {
                var end = index + 1
                var value = String.UnicodeScalarView()
                while end < characters.count, characters[end] != "\"" {
                    if characters[end] == "\\", end + 1 < characters.count { end += 1 }
                    value.append(characters[end])
                    end += 1
                }
                guard end < characters.count else { throw ConditionError(column: column, message: "unterminated string") }
                result.append((.string(String(value)), column))
                index = end + 1
                continue
            }
            if isIdentifierStart(c) {
                var end = index + 1
                while end < characters.count, isIdentifierPart(characters[end]) { end += 1 }
                result.append((.identifier(String(String.UnicodeScalarView(characters[index..<end]))), column))
                index = end
                continue
            }
            let rest = String(String.UnicodeScalarView(characters[index..<min(index + 2, characters.count)]))
            guard let symbol = symbols.first(where: { rest.hasPrefix($0) }) else {
                throw ConditionError(column: column, message: "unexpected character \"\(c)\"")
            }
            result.append((.symbol(symbol), column))
            index += symbol.count
        }
        result.append((.end, characters.count + 1))
        return result
    }
}

private struct Parser {
    typealias Node = Condition.Node
    typealias ValueType = Condition.ValueType
    let tokens: [(token: Token, column: Int)]
    let fields: [String: ValueType]
    var position = 0
    /// Open `(` and `!` around the current position.
    var nesting = 0

    init(tokens: [(token: Token, column: Int)], fields: [String: ValueType]) {
        self.tokens = tokens
        self.fields = fields
    }

    var current: Token { tokens[position].token }
    var column: Int { tokens[position].column }

    /// One level deeper, refused past `Condition.maximumNesting`.
    mutating func enter(_ at: Int) throws(ConditionError) {
        nesting += 1
        guard nesting <= Condition.maximumNesting else {
            throw ConditionError(column: at, message: "nested more than \(Condition.maximumNesting) deep")
        }
    }

    mutating func expectEnd() throws(ConditionError) {
        guard current == .end else { throw ConditionError(column: column, message: "unexpected \(describe(current)) after the end of the condition") }
    }

    mutating func expression() throws(ConditionError) -> (Node, ValueType) {
        var (left, type) = try conjunction()
        while current == .symbol("||") {
            let at = column
            position += 1
            let (right, rightType) = try conjunction()
            try requireBool(type, rightType, "||", at)
            (left, type) = (.or(left, right), .bool)
        }
        return (left, type)
    }

    mutating func conjunction() throws(ConditionError) -> (Node, ValueType) {
        var (left, type) = try negation()
        while current == .symbol("&&") {
            let at = column
            position += 1
            let (right, rightType) = try negation()
            try requireBool(type, rightType, "&&", at)
            (left, type) = (.and(left, right), .bool)
        }
        return (left, type)
    }

    mutating func negation() throws(ConditionError) -> (Node, ValueType) {
        guard current == .symbol("!") else { return try comparison() }
        let at = column
        position += 1
        try enter(at)
        defer { nesting -= 1 }
        let (operand, type) = try negation()
        guard type == .bool else { throw ConditionError(column: at, message: "! needs true or false, not \(type)") }
        return (.not(operand), .bool)
    }

    mutating func comparison() throws(ConditionError) -> (Node, ValueType) {
        let (left, leftType) = try operand()
        let at = column
        if case .identifier("in") = current {
            position += 1
            let (right, rightType) = try operand()
            switch (leftType, rightType) {
            case (.int, .intList), (.string, .stringList): return (.member(left, right), .bool)
            default: throw ConditionError(column: at, message: "in needs a number and a list of numbers, or a string and a list of strings; found \(leftType) in \(rightType)")
            }
        }
        guard case .symbol(let symbol) = current, let comparison = Condition.Comparison(rawValue: symbol) else { return (left, leftType) }
        position += 1
        let (right, rightType) = try operand()
        switch comparison {
        case .equal, .notEqual:
            guard leftType == rightType, leftType != .intList, leftType != .stringList else {
                throw ConditionError(column: at, message: "\(symbol) compares two values of one type; found \(leftType) and \(rightType)")
            }
        default:
            guard leftType == .int, rightType == .int else {
                throw ConditionError(column: at, message: "\(symbol) compares numbers; found \(leftType) and \(rightType)")
            }
        }
        return (.compare(comparison, left, right), .bool)
    }

    mutating func operand() throws(ConditionError) -> (Node, ValueType) {
        let at = column
        switch current {
        case .int(let value):
            position += 1
            return (.literal(.int(value)), .int)
        case .string(let value):
            position += 1
            return (.literal(.string(value)), .string)
        case .identifier("true"), .identifier("false"):
            let value = current == .identifier("true")
            position += 1
            return (.literal(.bool(value)), .bool)
        case .identifier(let name):
            guard let type = fields[name] else {
                let known = fields.keys.sorted().joined(separator: ", ")
                throw ConditionError(column: at, message: "unknown field \(name); this trigger offers \(known.isEmpty ? "no fields" : known)")
            }
            position += 1
            return (.field(name, type), type)
        case .symbol("("):
            position += 1
            try enter(at)
            defer { nesting -= 1 }
            let inner = try expression()
            guard current == .symbol(")") else { throw ConditionError(column: column, message: "expected ) to close the ( at column \(at)") }
            position += 1
            return inner
        case .symbol("["):
            position += 1
            var numbers: [Int64] = []
            var strings: [String] = []
            while true {
                switch current {
                case .int(let value) where strings.isEmpty: numbers.append(value)
                case .string(let value) where numbers.isEmpty: strings.append(value)
                default: throw ConditionError(column: column, message: "a list holds numbers or strings of one kind; found \(describe(current))")
                }
                position += 1
                if current == .symbol(",") { position += 1; continue }
                guard current == .symbol("]") else { throw ConditionError(column: column, message: "expected , or ] in the list opened at column \(at)") }
                position += 1
                return numbers.isEmpty ? (.literal(.stringList(strings)), .stringList) : (.literal(.intList(numbers)), .intList)
            }
        default:
            throw ConditionError(column: at, message: "expected a field, a number, a string, true, false, a list or (; found \(describe(current))")
        }
    }

    func requireBool(_ left: ValueType, _ right: ValueType, _ symbol: String, _ at: Int) throws(ConditionError) {
        guard left == .bool, right == .bool else {
            throw ConditionError(column: at, message: "\(symbol) joins conditions that are true or false; found \(left) and \(right)")
        }
    }

    func describe(_ token: Token) -> String {
        switch token {
        case .int(let value): "number \(value)"
        case .string(let value): "string \"\(value)\""
        case .identifier(let name): name
        case .symbol(let symbol): symbol
        case .end: "the end of the condition"
        }
    }
}
