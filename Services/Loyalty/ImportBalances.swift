import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// `loyalty import-balances`: brings members' balances over from the loyalty system a shop used
/// before, as signed `points.opening-balance` commands, one per member. Each command's id is
/// `opening-balance/<system>/<member>`, so running the same import again changes nothing.
enum ImportBalances {
    static let usage = """
        usage: loyalty import-balances <file> --system NAME --operator ID --at TIME
          one JSON object per line: {"memberId":"…","lots":[{"points":300,"expiresAt":"2027-06-30T23:59:59+08:00"},…]};
          each member's lots become points available at TIME (the cut-over), each expiring at its own
          time; a member gets one opening balance. Every line is checked first: one bad line sends nothing
        """

    /// The commands for a file's lines, checked by the points service's own decoder.
    static func commands(file text: String, system: String, operatorID: String, at time: EventTime) throws -> [CloudEvent] {
        var events: [CloudEvent] = []
        // Two lookalike ids are two members to the services, so here too.
        var members: IDSet = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            func fail(_ problem: String) -> CLIError { CLIError("line \(number + 1): \(problem)") }
            guard let object = (try? JSONValue.parse(Array(trimmed.utf8)))?.objectValue else { throw fail("not a JSON object") }
            guard let member = object["memberId"]?.stringValue, !member.isEmpty else { throw fail("memberId: a non-empty string is required") }
            guard members.insert(member) else { throw fail("member \(member) appears twice; a member gets one opening balance") }
            let data: JSONObject = ["system": .string(system), "operator": .string(operatorID), "lots": object["lots"] ?? .null]
            do {
                _ = try PointsInput.decode(type: EventType.openingBalance, data: .object(data))
            } catch {
                throw fail(error.description)
            }
            if let expired = object["lots"]?.arrayValue?.firstIndex(where: { lot in
                lot["expiresAt"]?.stringValue.flatMap { try? EventTime.parse($0) }.map { $0 <= time } ?? false
            }) {
                throw fail("lots[\(expired)] expires at or before the cut-over \(time)")
            }
            events.append(CloudEvent(
                id: "opening-balance/\(system)/\(member)", source: "loyalty/cli", type: EventType.openingBalance, time: time,
                subject: member, data: .object(data)))
        }
        guard !events.isEmpty else { throw CLIError("the file has no members") }
        return events
    }

    static func run(_ arguments: [String], keys: () throws -> CommandKeys, bootstrapServers: () throws -> String) throws {
        let options = try CommandOptions(arguments, known: ["system", "operator", "at"], usage: usage)
        guard options.positional.count == 1 else { throw CLIError(usage) }
        guard let system = options["system"], !system.isEmpty, !system.contains("/") else {
            throw CLIError("--system is required: the name of the system the balances come from (no slash)\n\(usage)")
        }
        guard let operatorID = options["operator"], !operatorID.isEmpty else { throw CLIError("--operator is required: who imports\n\(usage)") }
        guard let atText = options["at"], let time = try? EventTime.parse(atText) else {
            throw CLIError("--at is required: the cut-over time, e.g. 2026-12-01T00:00:00+08:00 (the same for every run of the import)\n\(usage)")
        }
        let path = options.positional[0]
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        let events = try commands(file: String(decoding: data, as: UTF8.self), system: system, operatorID: operatorID, at: time)
        let signing = try keys()
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: try bootstrapServers()))
        try Publisher.publish(events.map { signing.sign($0) }, producer: producer)
        print("published \(events.count) opening balances from \(system)")
    }
}
