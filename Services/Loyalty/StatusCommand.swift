import Foundation
import ServiceKit

/// `loyalty status`: every service's partitions (stored offset, end, lag) and tasks' stream
/// times, from their `/metrics`.
enum StatusCommand {
    static func run(_ arguments: [String], dataDirectory: String) throws {
        if arguments.contains("--help") || arguments.contains("-h") {
            print("usage: loyalty status\n  reads each service's /metrics (addresses in <data dir>/<service>.http or LOYALTY_<SERVICE>_HTTP)")
            return
        }
        guard arguments.isEmpty else { throw CLIError("usage: loyalty status") }
        var answered = 0
        for service in MemberCommand.services {
            guard let address = MemberCommand.address(of: service, dataDirectory: dataDirectory) else {
                print("\(service): no HTTP address")
                continue
            }
            let text: String
            do {
                let (status, body) = try HTTPClient.get(address, "/metrics")
                guard status == 200 else { print("\(service): HTTP \(status)"); continue }
                text = String(decoding: body, as: UTF8.self)
            } catch {
                print("\(service): not answering at \(address) (\(error))")
                continue
            }
            answered += 1
            var rows: [String: (offset: String, lag: String)] = [:]
            var times: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                guard parts.count == 2 else { continue }
                let labels = label(String(parts[0]))
                if parts[0].hasPrefix("loyalty_partition_offset{"), let key = labels["topic"].map({ "\($0)[\(labels["partition"] ?? "")]" }) {
                    rows[key, default: ("-", "-")].offset = String(parts[1])
                } else if parts[0].hasPrefix("loyalty_partition_lag_records{"), let key = labels["topic"].map({ "\($0)[\(labels["partition"] ?? "")]" }) {
                    rows[key, default: ("-", "-")].lag = String(parts[1])
                } else if parts[0].hasPrefix("loyalty_task_stream_time_seconds{"), let task = labels["task"], let value = Double(parts[1]) {
                    times[task] = value
                }
            }
            print("\(service) (\(address)):")
            for (partition, row) in rows.sorted(by: { $0.key < $1.key }) {
                let task = partition.split(separator: "[").last.map { String($0.dropLast()) } ?? ""
                let time = times[task].map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)) } ?? "-"
                print("  \(partition)\toffset \(row.offset)\tlag \(row.lag)\tstream time \(time)")
            }
        }
        if answered == 0 { throw CLIError("no service answered; start them with LOYALTY_HTTP_ADDRESS (loyalty dev does)") }
    }

    /// The labels of a sample name `metric{a="x",b="y"}`.
    static func label(_ name: String) -> [String: String] {
        guard let open = name.firstIndex(of: "{") else { return [:] }
        var labels: [String: String] = [:]
        for pair in name[name.index(after: open)...].dropLast().split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { labels[String(parts[0])] = String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return labels
    }
}
