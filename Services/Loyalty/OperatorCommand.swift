import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// What the CLI's signed operator commands (`adjust`, `release-held`) share: every one names
/// who makes it and why, happens now unless `--at` says when, and is published signed with
/// the command key to the points service's command topic.
struct OperatorCommand {
    var reason: String
    var operatorID: String
    var time: EventTime

    /// Reads `--reason`, `--operator` and `--at` (the machine clock if absent) from `options`.
    init(_ options: CommandOptions, usage: String) throws {
        guard let reason = options["reason"], !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CLIError("--reason is required: say why\n\(usage)")
        }
        guard let operatorID = options["operator"], !operatorID.isEmpty else { throw CLIError("--operator is required: who makes it\n\(usage)") }
        self.reason = reason
        self.operatorID = operatorID
        time = try options["at"].map { try EventTime.parse($0) } ?? EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
    }

    /// The options every operator command reads.
    static let options: Set<String> = ["reason", "operator", "at"]

    /// The command's event from the CLI, for `member`: `data` and the reason and operator.
    func event(id: String, type: String, member: String, data: JSONObject) -> CloudEvent {
        var data = data
        data["reason"] = .string(reason)
        data["operator"] = .string(operatorID)
        return CloudEvent(id: id, source: "loyalty/cli", type: type, time: time, subject: member, data: .object(data))
    }

    /// A new command id under `prefix`.
    static func newID(_ prefix: String) -> String { "\(prefix)/\(UUID().uuidString.lowercased())" }

    /// Signs `event` and publishes it to the topic of its type.
    static func publish(_ event: CloudEvent, keys: CommandKeys, bootstrapServers: String) throws {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        try Publisher.publish([keys.sign(event)], producer: producer)
    }
}
