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
        let options = try CommandOptions(arguments, known: ["reason", "operator", "at"], usage: usage)
        let positional = options.positional
        guard positional.count == 2, let points = Int64(positional[1]), points != 0 else {
            throw CLIError("expected a member and a non-zero whole number of points\n\(usage)")
        }
        guard let reason = options["reason"], !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIError("--reason is required: say why\n\(usage)")
        }
        guard let operatorID = options["operator"], !operatorID.isEmpty else { throw CLIError("--operator is required: who makes it\n\(usage)") }
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
