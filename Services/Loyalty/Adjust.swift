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
        /// Who makes it, why, and when.
        var command: OperatorCommand
    }

    static let usage = "usage: loyalty adjust <member> <points> --reason TEXT --operator ID [--at TIME]"

    static func parse(_ arguments: [String]) throws -> Adjustment {
        let options = try CommandOptions(arguments, known: OperatorCommand.options, usage: usage)
        guard options.positional.count == 2, let points = Int64(options.positional[1]), points != 0 else {
            throw CLIError("expected a member and a non-zero whole number of points\n\(usage)")
        }
        return Adjustment(
            id: OperatorCommand.newID("adjustment"), member: options.positional[0], points: points, command: try OperatorCommand(options, usage: usage))
    }

    static func event(_ adjustment: Adjustment) -> CloudEvent {
        adjustment.command.event(id: adjustment.id, type: EventType.adjust, member: adjustment.member, data: ["points": .int(adjustment.points)])
    }
}
