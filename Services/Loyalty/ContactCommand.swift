import Foundation
import LoyaltyDomain
import ServiceKit

/// `loyalty contact <member> <channel>`: the address a sender delivers a message to, from the
/// notifications service (messages carry none). Exits non-zero when the member has no address
/// on the channel, or was closed and their contact data erased.
enum ContactCommand {
    static let usage = """
        usage: loyalty contact <member> <channel>
          the member's current address on a channel (push, wechat, sms, email), from the notifications
          service's API (<data dir>/notifications.http or LOYALTY_NOTIFICATIONS_HTTP, LOYALTY_HTTP_TOKEN);
          exits 1 when there is none, and says so when the member was closed and the data erased
        """

    static func run(_ arguments: [String], dataDirectory: String) throws {
        guard arguments.count == 2, !arguments.contains(where: { $0.hasPrefix("-") }) else { throw CLIError(usage) }
        let (member, channel) = (arguments[0], arguments[1])
        guard Channel(rawValue: channel) != nil else { throw CLIError("no channel \(channel): push, wechat, sms or email\n\(usage)") }
        guard let address = MemberCommand.address(of: "notifications", dataDirectory: dataDirectory) else {
            throw CLIError("no HTTP address for the notifications service (set LOYALTY_HTTP_ADDRESS on it, or LOYALTY_NOTIFICATIONS_HTTP here)")
        }
        let token = ProcessInfo.processInfo.environment["LOYALTY_HTTP_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let encoded = member.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? member
        let path = "/members/\(encoded)/contacts/\(channel)"
        let (status, body) = try HTTPClient.getFollowingOwner(address, path, token: token)
        let answer = try? JSONValue.parse(body)
        guard status == 200, let contact = answer?["address"]?.stringValue else {
            throw CLIError(answer?["error"]?.stringValue ?? "HTTP \(status) \(String(decoding: body, as: UTF8.self))")
        }
        print(contact)
    }
}
