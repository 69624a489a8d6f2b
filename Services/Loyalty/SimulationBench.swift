import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit

/// `loyalty simulate` in `loyalty bench`: a year of a shop's members through the four
/// services' rules in this process, on one core.
extension Bench {
    struct SimulationFigures {
        var events: Int
        var members: Int
        var seconds: Double
        var recordsApplied: Int
        /// The peak resident set of the whole command: reading, simulating, writing.
        var peakRSSMiB: Double
        /// Each service's time a record applied, in the order they ran (from the command's
        /// `simulated <service>: … µs a record` lines): where the run's time goes.
        var microsecondsPerRecord: [(service: String, micros: Double)] = []
        var eventsPerSecond: Double { Double(events) / seconds }
        var bytesPerEvent: Double { peakRSSMiB * 1_048_576 / Double(events) }
    }

    /// A year for `members` members: registrations with contact data through January, about
    /// two orders a month each (one in ten refunded in part), check-in spells and reviews.
    static func simulationHistory(members: Int, seed: UInt64 = 16) -> [PlatformSimulation.Record] {
        var random = SeededRandom(seed: seed)
        var events: [(time: Int64, rank: Int, id: String, event: CloudEvent)] = []
        let day: Int64 = 86_400_000
        func add(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject) {
            let id = "s\(events.count)"
            events.append((time, Rank.of(eventType: type), id, CloudEvent(
                id: id, source: "bench-shop", type: type, time: EventTime(millis: time), subject: member, data: .object(data))))
        }
        for index in 0..<members {
            let member = "m\(index)"
            let joined = epoch + Int64.random(in: 0...(30 * day), using: &random)
            add(EventType.memberRegistered, member, joined, [
                "birthday": .string(String(format: "19%02d-%02d-%02d", 60 + index % 40, 1 + index % 12, 1 + index % 28)),
                "channels": .object(index % 4 == 0 ? [:] : ["push": .string("push-\(member)"), "email": .string("\(member)@example.com")]),
                "locale": .string(index % 2 == 0 ? "zh-CN" : "en"), "marketingConsent": .bool(index % 3 != 0),
            ])
            var time = joined
            var order = 0
            while true {
                time += Int64.random(in: (3 * day)...(28 * day), using: &random)
                guard time < epoch + 364 * day else { break }
                order += 1
                let paid = Int64.random(in: 1_000...60_000, using: &random)
                add(EventType.orderPaid, member, time, ["orderId": .string("\(member)-o\(order)"), "paidMinor": .int(paid)])
                if Int.random(in: 0..<10, using: &random) == 0 {
                    add(EventType.orderRefunded, member, time + 2 * day, [
                        "orderId": .string("\(member)-o\(order)"), "refundId": .string("\(member)-o\(order)-r"), "refundMinor": .int(paid / 2),
                    ])
                }
                if Int.random(in: 0..<3, using: &random) == 0 {
                    // A spell of daily check-ins after the order.
                    for step in 1...Int64.random(in: 2...8, using: &random) {
                        add(EventType.checkedIn, member, time + step * day + 3_600_000, [:])
                    }
                }
                if Int.random(in: 0..<4, using: &random) == 0 {
                    add(EventType.reviewPosted, member, time + 5 * day, ["orderId": .string("\(member)-o\(order)")])
                }
            }
        }
        events.sort { ($0.time, $0.rank, $0.id) < ($1.time, $1.rank, $1.id) }
        return events.map { entry in
            PlatformSimulation.Record(
                topic: Topics.inputTopic(forEventType: entry.event.type)!.name, key: Array(entry.event.subject!.utf8), value: entry.event.encoded())
        }
    }

    /// Runs `loyalty simulate` over a year of `members`, as a user would: the history written to
    /// a file in `directory`, the command run as a child process with the reference rules.
    /// Its events/s are its own figure (the run, with the files written and the figures
    /// gathered as it goes; not the history's generation or reading), and its peak resident
    /// set covers all of it.
    static func simulation(members: Int, directory: URL) throws -> SimulationFigures {
        let history = simulationHistory(members: members)
        let file = directory.appendingPathComponent("simulation-history.jsonl")
        var bytes: [UInt8] = []
        for record in history { bytes += record.value + [UInt8(ascii: "\n")] }
        try Data(bytes).write(to: file)
        let process = Process()
        process.executableURL = ServiceExecutables.directory.appendingPathComponent("loyalty")
        process.arguments = ["simulate", "--history", file.path, "--out", directory.appendingPathComponent("simulation").path]
        // The reference rules and keys of this run, whatever the caller's environment holds.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LOYALTY_") }
        environment["LOYALTY_DATA_DIR"] = directory.path
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("loyalty simulate failed (exit \(process.terminationStatus)):\n\(printed)") }
        // "67577 events in 30.1 s: 2242 events/s (364752 records applied by the four services)"
        func number(after marker: String, in line: Substring) -> Double? {
            line.components(separatedBy: marker).dropFirst().first?.split(separator: " ").first.flatMap { Double($0) }
        }
        let lines = printed.split(separator: "\n")
        guard let timing = lines.first(where: { $0.contains(" events in ") && $0.contains("records applied") }),
              let seconds = number(after: " events in ", in: timing), let applied = number(after: "events/s (", in: timing),
              let peak = lines.first(where: { $0.hasPrefix("peak resident memory ") }).flatMap({ number(after: "memory ", in: $0) })
        else { throw CLIError("loyalty simulate printed no figures:\n\(printed)") }
        // "simulated points: 90911 records applied, 46733 timers fired, 142208 published, in 8.0 s (88 µs a record)"
        let perService = lines.compactMap { line -> (service: String, micros: Double)? in
            guard line.hasPrefix("simulated "), line.hasSuffix(" µs a record)"), let colon = line.firstIndex(of: ":"),
                  let micros = number(after: " (", in: line)
            else { return nil }
            return (String(line[line.index(line.startIndex, offsetBy: "simulated ".count)..<colon]), micros)
        }
        return SimulationFigures(
            events: history.count, members: members, seconds: seconds, recordsApplied: Int(applied), peakRSSMiB: peak, microsecondsPerRecord: perService)
    }
}

extension Bench.SimulationFigures {
    /// "tiers 23 µs, campaigns 33 µs, …", or "n/a" when the command printed none.
    var perServiceText: String {
        microsecondsPerRecord.isEmpty ? "n/a" : microsecondsPerRecord.map { "\($0.service) \(Int($0.micros.rounded())) µs" }.joined(separator: ", ")
    }
}
