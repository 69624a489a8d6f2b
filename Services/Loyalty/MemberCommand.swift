import Foundation
import LoyaltyDomain
import ServiceKit

/// `loyalty member <id> [--as-of TIME] [--json]`: one member as the services see them, from
/// their HTTP APIs (addresses in `<data dir>/<service>.http`, or `LOYALTY_<SERVICE>_HTTP`).
enum MemberCommand {
    static let usage = "usage: loyalty member <id> [--as-of TIME] [--json]"
    static let services = ["points", "tiers", "campaigns", "notifications"]

    static func run(_ arguments: [String], dataDirectory: String) throws {
        var member: String?
        var asOf: String?
        var asJSON = false
        var index = 0
        while index < arguments.count {
            switch arguments[index] {
            case "--help", "-h": print(usage); return
            case "--json": asJSON = true
            case "--as-of":
                guard index + 1 < arguments.count, (try? EventTime.parse(arguments[index + 1])) != nil else {
                    throw CLIError("--as-of needs an RFC 3339 time, e.g. 2026-03-31T23:59:59+08:00\n\(usage)")
                }
                asOf = arguments[index + 1]
                index += 1
            case let argument where argument.hasPrefix("-"): throw CLIError("unknown option \(argument)\n\(usage)")
            case let argument:
                guard member == nil else { throw CLIError("one member at a time\n\(usage)") }
                member = argument
            }
            index += 1
        }
        guard let member else { throw CLIError(usage) }
        let token = ProcessInfo.processInfo.environment["LOYALTY_HTTP_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let encoded = member.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? member
        let path = "/members/\(encoded)" + (asOf.map { "?asOf=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" } ?? "")
        var views = JSONObject()
        var problems: [String] = []
        for service in services {
            guard let address = address(of: service, dataDirectory: dataDirectory) else {
                problems.append("\(service): no HTTP address (set LOYALTY_HTTP_ADDRESS on the service)")
                continue
            }
            do {
                let (status, body) = try HTTPClient.getFollowingOwner(address, path, token: token)
                switch status {
                case 200: views[service] = try JSONValue.parse(body)
                case 404: views[service] = .null
                default: problems.append("\(service): HTTP \(status) \(String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
                }
            } catch {
                problems.append("\(service): \(error)")
            }
        }
        if asJSON {
            var out = views
            out["member"] = .string(member)
            if !problems.isEmpty { out["problems"] = .array(problems.map { .string($0) }) }
            print(JSONValue.object(out).jsonString)
        } else {
            print(page(member, views, asOf: asOf))
            for problem in problems { FileHandle.standardError.write(Data("loyalty: \(problem)\n".utf8)) }
        }
        if views.members.allSatisfy({ $0.value.isNull }) && !problems.isEmpty { throw CLIError("no service answered for \(member)") }
    }

    static func address(of service: String, dataDirectory: String) -> String? {
        if let text = ProcessInfo.processInfo.environment["LOYALTY_\(service.uppercased())_HTTP"], !text.isEmpty { return text }
        return (try? String(contentsOfFile: "\(dataDirectory)/\(service).http", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The terminal page: balance and lots, the latest entries with their causes, refusals, and
    /// whatever the other services say.
    static func page(_ member: String, _ views: JSONObject, asOf: String?) -> String {
        var lines = ["member \(member)" + (asOf.map { " as of \($0)" } ?? "")]
        if let points = views["points"], let balance = points["balance"]?.objectValue {
            func figure(_ name: String) -> Int64 { balance[name]?.int64Value ?? 0 }
            lines.append("")
            lines.append("points: \(figure("net")) (available \(figure("available")), pending \(figure("pending")), debt \(figure("debt")))")
            let lots = points["lots"]?.arrayValue ?? []
            if !lots.isEmpty {
                lines.append("  lots:")
                for lot in lots {
                    let left = lot["remaining"]?.int64Value ?? 0
                    guard left != 0 else { continue }
                    lines.append("    \(pad(lot["lotId"]?.stringValue ?? "", 6)) \(pad(String(left), 8)) of \(pad(String(lot["points"]?.int64Value ?? 0), 8))"
                        + " \(pad(lot["source"]?.stringValue ?? "", 12)) expires \(lot["expiresAt"]?.stringValue ?? "")"
                        + ((lot["pending"]?.boolValue ?? false) ? "  (pending until \(lot["availableAt"]?.stringValue ?? ""))" : ""))
                }
            }
            let entries = points["entries"]?.arrayValue ?? []
            lines.append("  last entries (\(entries.count) in all), each with why:")
            for entry in entries.suffix(15) {
                let points = entry["points"]?.int64Value ?? 0
                lines.append("    \(entry["time"]?.stringValue ?? "")  \(pad((points > 0 ? "+" : "") + String(points), 8)) \(pad(entry["kind"]?.stringValue ?? "", 15))"
                    + " \(pad(entry["source"]?.stringValue ?? "", 10)) because \(entry["causeId"]?.stringValue ?? "")")
            }
            for held in points["heldRedemptions"]?.arrayValue ?? [] {
                lines.append("  set aside \(held["points"]?.int64Value ?? 0) for \(held["quantity"]?.int64Value ?? 0) × \(held["rewardId"]?.stringValue ?? "")"
                    + " (request \(held["requestId"]?.stringValue ?? ""), \(held["time"]?.stringValue ?? "")), waiting for the reward's stock")
            }
            for refusal in (points["refusals"]?.arrayValue ?? []).suffix(5) {
                lines.append("  refused \(refusal["time"]?.stringValue ?? ""): \(refusal["reason"]?.stringValue ?? "") (\(refusal["refusalId"]?.stringValue ?? ""))")
            }
        } else {
            lines.append("points: not known")
        }
        for service in services.dropFirst() {
            lines.append("")
            guard let view = views[service], !view.isNull else {
                lines.append("\(service): not known")
                continue
            }
            lines.append("\(service): \(view.jsonString)")
        }
        return lines.joined(separator: "\n")
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}
