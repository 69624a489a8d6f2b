import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit

/// `loyalty demo`: the main job on the embedded broker, start to finish.
enum Demo {

    /// Ctrl-C or SIGTERM: the demo stops its services before it exits.
    static let stop: StopSignal = {
        let signal = StopSignal()
        signal.install()
        return signal
    }()

    static func checkStop() throws {
        if stop.isRequested { throw CLIError("stopped; the services were stopped too") }
    }

    static func run() throws {
        _ = stop
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loyalty-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker(topics: Topics.all)
        print("embedded broker on \(broker.bootstrapServers); state in \(directory.path)")

        let children = ChildProcesses()
        defer { children.stopAll() }
        for name in ServiceExecutables.names {
            try children.start(
                name,
                environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path],
                log: directory.appendingPathComponent("\(name).log"))
        }
        print("started \(ServiceExecutables.names.joined(separator: ", "))")
        try waitUntilAssigned(ServiceExecutables.names, logs: directory, children: children)

        // The operator's adjustment among them is signed with the installation's command key.
        let keys = try CommandKeys.ofDataDirectory(directory.path)
        let events = try SampleStream.events().map { $0.type == EventType.adjust ? keys.sign($0) : $0 }
        try Publisher.publish(events, producer: try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers)))
        print("published \(events.count) events for \(SampleStream.members.count) members\n")

        let outputs = try collectOutputs(bootstrapServers: broker.bootstrapServers, members: Set(SampleStream.members), children: children)
        let failed = children.stopAll()
        // Local times in the program's time zone, the one the demo's services run with.
        let program = try Program.load(json: ConfiguredFile.bytes(variable: "LOYALTY_PROGRAM_FILE", fallback: ReferenceProgram.bytes))
        printSummary(outputs, calendar: program.calendar)
        print("\nservice logs: \(directory.path)/*.log")
        if !failed.isEmpty { throw CLIError("services that did not stop cleanly: \(failed.joined(separator: ", "))") }
    }

    /// Waits until every service has its partitions, so that the summary is read after all of
    /// them have worked through the sample, not while one is still joining its group.
    static func waitUntilAssigned(_ names: [String], logs: URL, children: ChildProcesses) throws {
        let deadline = Date().addingTimeInterval(60)
        var waiting = Set(names)
        while !waiting.isEmpty {
            try checkStop()
            if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
            guard Date() < deadline else { throw CLIError("\(waiting.sorted().joined(separator: ", ")) did not get partitions within 60 s") }
            for name in waiting {
                let log = FileManager.default.contents(atPath: logs.appendingPathComponent("\(name).log").path) ?? Data()
                if String(decoding: log, as: UTF8.self).contains("partitions assigned") { waiting.remove(name) }
            }
            usleep(100_000)
        }
    }

    struct Outputs {
        var ledger: [String: [JSONObject]] = [:]
        var refusals: [String: [JSONObject]] = [:]
        var balances: [String: JSONObject] = [:]
        var tiers: [String: JSONObject] = [:]
        var campaignRewards: [String: [JSONObject]] = [:]
        var campaignResults = CampaignResultsBoard()
        var notifications: [String: [JSONObject]] = [:]
        var deadLetters: [JSONObject] = []
    }

    /// Reads the service outputs until every member has a balance and nothing new arrived for two seconds.
    static func collectOutputs(bootstrapServers: String, members: Set<String>, children: ChildProcesses) throws -> Outputs {
        let listener = StartingOffsets()
        let consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "loyalty-demo-\(UUID().uuidString)"), listener: listener)
        try consumer.subscribe([
            Topics.pointsLedger.name, Topics.pointsBalances.name, Topics.tierStatus.name, Topics.campaignRewards.name,
            Topics.campaignResults.name, Topics.notifications.name, Topics.deadLetters.name,
        ])
        var outputs = Outputs()
        var seen = Set<String>()
        var lastArrival = Date()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            try checkStop()
            if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
            guard case .record(let record) = consumer.poll(timeoutMilliseconds: 100) else {
                let quiet = Date().timeIntervalSince(lastArrival) > 2
                if quiet && members.isSubset(of: outputs.balances.keys) { break }
                continue
            }
            lastArrival = Date()
            guard let value = record.value, let event = try? CloudEvent.decode(value), seen.insert(event.id).inserted,
                  let data = event.data.objectValue, event.type != "points.expiry-warning", event.type != ProgressMark.eventType else { continue }
            let member = event.subject ?? "-"
            switch record.topic {
            case Topics.pointsBalances.name: outputs.balances[member] = data
            case Topics.tierStatus.name: outputs.tiers[member] = data
            case Topics.campaignRewards.name: outputs.campaignRewards[member, default: []].append(data)
            case Topics.notifications.name: outputs.notifications[member, default: []].append(data)
            case Topics.campaignResults.name: outputs.campaignResults.add(campaign: member, type: event.type, data: data)
            case Topics.deadLetters.name: outputs.deadLetters.append(data)
            default:
                if event.type == "points.refused" { outputs.refusals[member, default: []].append(data) } else { outputs.ledger[member, default: []].append(data) }
            }
        }
        consumer.close()
        return outputs
    }

    static func printSummary(_ outputs: Outputs, calendar: ProgramCalendar) {
        func int(_ object: JSONObject?, _ key: String) -> Int64 { object?[key]?.int64Value ?? 0 }
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
        func lpad(_ text: String, _ width: Int) -> String { text.count >= width ? text : String(repeating: " ", count: width - text.count) + text }

        print("balances")
        print("  \(pad("member", 8)) \(lpad("available", 9)) \(lpad("pending", 8)) \(lpad("debt", 6)) \(lpad("earned", 8)) \(lpad("reversed", 9)) \(lpad("spent", 6)) \(lpad("entries", 8))")
        for member in SampleStream.members {
            let balance = outputs.balances[member]
            print("  \(pad(member, 8)) \(lpad(String(int(balance, "available")), 9)) \(lpad(String(int(balance, "pending")), 8)) \(lpad(String(int(balance, "debt")), 6)) \(lpad(String(int(balance, "lifetimeEarned")), 8)) \(lpad(String(int(balance, "lifetimeReversed")), 9)) \(lpad(String(int(balance, "lifetimeSpent")), 6)) \(lpad(String(int(balance, "entries")), 8))")
        }
        print("\ntiers")
        for member in SampleStream.members {
            guard let tier = outputs.tiers[member] else {
                print("  \(pad(member, 8)) Newcomer (no paid order yet)")
                continue
            }
            var line = "  \(pad(member, 8)) \(tier["tierName"]?.stringValue ?? "?"), qualifying spend \(int(tier, "qualifyingSpendMinor") / 100) CNY"
            if let next = tier["nextTier"]?.stringValue { line += ", \(int(tier, "amountToNextTierMinor") / 100) CNY to \(next)" }
            print(line)
        }
        print("\ncampaigns (results, then each member's rewards)")
        for campaign in outputs.campaignResults.campaigns {
            print(CampaignCommands.describe(campaign, outputs.campaignResults.combined(campaign)!).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        for member in SampleStream.members {
            let rewards = (outputs.campaignRewards[member] ?? []).map { reward in
                var parts = [reward["campaignId"]?.stringValue ?? "?"]
                if int(reward, "points") > 0 { parts.append("+\(int(reward, "points"))") }
                if let coupon = reward["coupon"]?.stringValue { parts.append("coupon \(coupon)") }
                if let badge = reward["badge"]?.stringValue { parts.append("badge \(badge)") }
                if let order = reward["orderId"]?.stringValue { parts.append("on \(order)") }
                return parts.joined(separator: " ")
            }
            if !rewards.isEmpty { print("  \(pad(member, 8)) \(rewards.joined(separator: "; "))") }
        }
        print("\nmessages that would be sent (channel, local send time, text)")
        for member in SampleStream.members {
            let messages = (outputs.notifications[member] ?? []).sorted { ($0["sendAt"]?.stringValue ?? "") < ($1["sendAt"]?.stringValue ?? "") }
            for message in messages {
                let sendAt = (try? EventTime.parse(message["sendAt"]?.stringValue ?? "")).map { time -> String in
                    let minute = calendar.localMinuteOfDay(of: time)
                    return "\(calendar.localDate(of: time)) \(minute / 60 < 10 ? "0" : "")\(minute / 60):\(minute % 60 < 10 ? "0" : "")\(minute % 60)"
                } ?? "?"
                print("  \(pad(member, 8)) \(pad(message["channel"]?.stringValue ?? "?", 6)) \(sendAt)  \(message["text"]?.stringValue ?? "")")
            }
        }
        print("\nledger summary (points by kind and source; refusals with their reason)")
        for member in SampleStream.members {
            let entries = (outputs.ledger[member] ?? []).sorted { int($0, "sequence") < int($1, "sequence") }
            var totals: [String: Int64] = [:]
            var order: [String] = []
            for entry in entries {
                let label = "\(entry["kind"]?.stringValue ?? "?") \(entry["source"]?.stringValue ?? "?")"
                if totals[label] == nil { order.append(label) }
                totals[label, default: 0] += entry["kind"]?.stringValue == "released"
                    ? int(entry["delta"]?.objectValue, "available") : int(entry, "points")
            }
            let parts = order.map { "\($0) \(totals[$0]!)" }
            print("  \(pad(member, 6)) \(parts.joined(separator: ", "))")
            for refusal in outputs.refusals[member] ?? [] {
                print("         refused \(refusal["subject"]?.stringValue ?? "?"): \(refusal["reason"]?.stringValue ?? "?")")
            }
        }
        if !outputs.deadLetters.isEmpty {
            print("\ndead letters")
            for letter in outputs.deadLetters {
                print("  \(letter["reason"]?.stringValue ?? "?"): \(letter["detail"]?.stringValue ?? "")")
            }
        }
    }
}
