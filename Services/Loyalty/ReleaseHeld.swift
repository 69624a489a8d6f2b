import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// `loyalty release-held`: an operator gives back the points set aside for a member's
/// redemption of a stocked reward whose reservation or answer was dead-lettered (points-lifecycle.md,
/// "Reward stock"). Signed with the command key; the request id is in `loyalty member <id>`'s
/// `heldRedemptions`.
enum ReleaseHeld {
    struct Release {
        var id: String
        var member: String
        var requestID: String
        /// Who makes it, why, and when.
        var command: OperatorCommand
    }

    static let usage = "usage: loyalty release-held <member> <request id> --reason TEXT --operator ID [--at TIME]"

    static func parse(_ arguments: [String]) throws -> Release {
        let options = try CommandOptions(arguments, known: OperatorCommand.options, usage: usage)
        guard options.positional.count == 2, !options.positional[1].isEmpty else {
            throw CLIError("expected a member and the id of the redemption whose points are set aside\n\(usage)")
        }
        return Release(
            id: OperatorCommand.newID("release-held"), member: options.positional[0], requestID: options.positional[1],
            command: try OperatorCommand(options, usage: usage))
    }

    static func event(_ release: Release) -> CloudEvent {
        release.command.event(id: release.id, type: EventType.releaseHeld, member: release.member, data: ["requestId": .string(release.requestID)])
    }
}
