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
        var reason: String
        var operatorID: String
        var time: EventTime
    }

    static let usage = "usage: loyalty release-held <member> <request id> --reason TEXT --operator ID [--at TIME]"

    static func parse(_ arguments: [String]) throws -> Release {
        let options = try CommandOptions(arguments, known: ["reason", "operator", "at"], usage: usage)
        let positional = options.positional
        guard positional.count == 2, !positional[1].isEmpty else {
            throw CLIError("expected a member and the id of the redemption whose points are set aside\n\(usage)")
        }
        guard let reason = options["reason"], !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIError("--reason is required: say why\n\(usage)")
        }
        guard let operatorID = options["operator"], !operatorID.isEmpty else { throw CLIError("--operator is required: who makes it\n\(usage)") }
        let time = try options["at"].map { try EventTime.parse($0) } ?? EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
        return Release(
            id: "release-held/\(UUID().uuidString.lowercased())", member: positional[0], requestID: positional[1], reason: reason,
            operatorID: operatorID, time: time)
    }

    static func event(_ release: Release) -> CloudEvent {
        CloudEvent(
            id: release.id, source: "loyalty/cli", type: EventType.releaseHeld, time: release.time, subject: release.member,
            data: .object([
                "requestId": .string(release.requestID), "reason": .string(release.reason), "operator": .string(release.operatorID),
            ]))
    }

    static func publish(_ release: Release, keys: CommandKeys, bootstrapServers: String) throws {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        try Publisher.publish([keys.sign(event(release))], producer: producer)
    }
}
