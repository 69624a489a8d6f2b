import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// `loyalty adjust`: an operator's correction of a member's points, signed with the command
/// key (the points service refuses unsigned adjustments, and ones over its limit).
enum Adjust {
    struct Adjustment {
        var id: String
        var member: String
        var points: Int64
        var reason: String
        var operatorID: String
        var time: EventTime
    }

    static let usage = "usage: loyalty adjust <member> <points> --reason TEXT --operator ID [--at TIME]"

    static func parse(_ arguments: [String]) throws -> Adjustment {
        var positional: [String] = []
        var options: [String: String] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--help" || argument == "-h" { throw CLIError(usage) }
            if argument.hasPrefix("--") {
                guard index + 1 < arguments.count else { throw CLIError("\(argument) needs a value\n\(usage)") }
                options[String(argument.dropFirst(2))] = arguments[index + 1]
                index += 2
            } else {
                positional.append(argument)
                index += 1
            }
        }
        guard positional.count == 2, let points = Int64(positional[1]), points != 0 else {
            throw CLIError("expected a member and a non-zero whole number of points\n\(usage)")
        }
        guard let reason = options["reason"], !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIError("--reason is required: say why\n\(usage)")
        }
        guard let operatorID = options["operator"], !operatorID.isEmpty else { throw CLIError("--operator is required: who makes it\n\(usage)") }
        let unknown = Set(options.keys).subtracting(["reason", "operator", "at"])
        guard unknown.isEmpty else { throw CLIError("unknown option --\(unknown.sorted()[0])\n\(usage)") }
        let time = try options["at"].map { try EventTime.parse($0) } ?? EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
        return Adjustment(
            id: "adjustment/\(UUID().uuidString.lowercased())", member: positional[0], points: points, reason: reason,
            operatorID: operatorID, time: time)
    }

    static func event(_ adjustment: Adjustment) -> CloudEvent {
        CloudEvent(
            id: adjustment.id, source: "loyalty/cli", type: EventType.adjust, time: adjustment.time, subject: adjustment.member,
            data: .object([
                "points": .int(adjustment.points), "reason": .string(adjustment.reason), "operator": .string(adjustment.operatorID),
            ]))
    }

    static func publish(_ adjustment: Adjustment, keys: CommandKeys, bootstrapServers: String) throws {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        try Publisher.publish([keys.sign(event(adjustment))], producer: producer)
    }
}
