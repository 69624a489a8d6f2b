import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit

/// `loyalty campaigns …`: publish, list, retire campaign definitions and show their results.
enum CampaignCommands {
    static let usage = """
        usage: loyalty campaigns publish <file> [--from <time>]
               loyalty campaigns retire <campaign id> [--from <time>]
               loyalty campaigns list
               loyalty campaigns show <campaign id>
        <file> holds {"campaigns": [ … ]} or one campaign object (docs/campaigns.md); <time> is
        RFC 3339, by default now. A definition applies to events from its time on.
        """

    static func run(_ arguments: [String], bootstrapServers: () throws -> String) throws {
        var rest = Array(arguments.dropFirst())
        var from: EventTime?
        if let index = rest.firstIndex(of: "--from") {
            guard index + 1 < rest.count else { throw CLIError("--from needs a time") }
            do { from = try EventTime.parse(rest[index + 1]) } catch { throw CLIError("--from: \(error)") }
            rest.removeSubrange(index...(index + 1))
        }
        let time = from ?? EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
        switch (arguments.first, rest.count) {
        case ("publish", 1):
            let published = try publish(file: rest[0], at: time, bootstrapServers: try bootstrapServers())
            print("published \(published.map { "\($0.id) v\($0.version)" }.joined(separator: ", ")), in effect from \(time.rfc3339)")
        case ("retire", 1):
            let version = try retire(rest[0], at: time, bootstrapServers: try bootstrapServers())
            print("retired \(rest[0]) as version \(version), from \(time.rfc3339)")
        case ("list", 0):
            try list(bootstrapServers: try bootstrapServers())
        case ("show", 1):
            try show(rest[0], bootstrapServers: try bootstrapServers())
        default:
            throw CLIError(usage)
        }
    }

    /// The program's tier ids (LOYALTY_PROGRAM_FILE or the reference program), to check audiences.
    static func tierIDs() throws -> [String] {
        let bytes = try ConfiguredFile.bytes(variable: "LOYALTY_PROGRAM_FILE", fallback: ReferenceProgram.bytes)
        return try Program.load(json: bytes).tiers.levels.map(\.id)
    }

    /// The default campaigns the service runs with (LOYALTY_CAMPAIGNS_FILE or the reference set).
    static func defaults() throws -> [CampaignDefinition] {
        let bytes = try ConfiguredFile.bytes(variable: "LOYALTY_CAMPAIGNS_FILE", fallback: ReferenceProgram.campaignsBytes)
        return try CampaignDefinition.loadFile(json: bytes, tiers: try tierIDs())
    }

    /// Checks every definition in the file, then publishes them all (or none).
    static func publish(file: String, at time: EventTime, bootstrapServers: String) throws -> [CampaignDefinition] {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
        let tiers = try tierIDs()
        let root = try JSONValue.parse(Array(data))
        let raws = root.objectValue?["campaigns"]?.arrayValue ?? [root]
        var definitions: [(CampaignDefinition, JSONValue)] = []
        for raw in raws {
            do { definitions.append((try CampaignDefinition.load(raw, tiers: tiers), raw)) } catch { throw CLIError("\(file): \(error)") }
        }
        let events = definitions.map { definition, raw in
            CloudEvent(
                id: "campaign-definition/\(definition.id)/\(definition.version)", source: "loyalty/cli", type: "campaign.defined",
                time: time, subject: definition.id, data: raw)
        }
        try sendDefinitions(events, bootstrapServers: bootstrapServers)
        return definitions.map(\.0)
    }

    /// Publishes a retirement as the campaign's next version.
    static func retire(_ campaign: String, at time: EventTime, bootstrapServers: String) throws -> Int64 {
        let latest = try latestVersions(bootstrapServers: bootstrapServers)
        let defaultVersion = try defaults().first { $0.id == campaign }?.version
        guard let current = latest[campaign]?.version ?? defaultVersion else { throw CLIError("no campaign \(campaign)") }
        let version = current + 1
        try sendDefinitions([CloudEvent(
            id: "campaign-retired/\(campaign)/\(version)", source: "loyalty/cli", type: "campaign.retired", time: time, subject: campaign,
            data: .object(["campaignId": .string(campaign), "version": .int(version)]))], bootstrapServers: bootstrapServers)
        return version
    }

    static func sendDefinitions(_ events: [CloudEvent], bootstrapServers: String) throws {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        // Definitions spend points: the campaigns service takes only signed ones.
        let keys = try commandKeys()
        for event in events.map(keys.sign) {
            try producer.send(topic: Topics.campaignDefinitions.name, key: Array(event.subject!.utf8), value: event.encoded())
        }
        guard producer.flush(timeoutMilliseconds: 30_000) else { throw CLIError("the broker did not acknowledge the definitions") }
        if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil }) { throw CLIError("not delivered: \(failed.error!)") }
    }

    /// The latest published record per campaign: version, effective time, and the definition
    /// (nil when retired).
    static func latestVersions(bootstrapServers: String) throws -> [String: (version: Int64, effective: EventTime, definition: JSONObject?)] {
        var latest: [String: (version: Int64, effective: EventTime, definition: JSONObject?)] = [:]
        for event in try readToEnd(Topics.campaignDefinitions, bootstrapServers: bootstrapServers) {
            guard let campaign = event.subject, let data = event.data.objectValue else { continue }
            let version = data["version"]?.int64Value ?? 0
            if version > latest[campaign]?.version ?? 0 {
                latest[campaign] = (version, event.time, event.type == "campaign.retired" ? nil : data)
            }
        }
        return latest
    }

    static func list(bootstrapServers: String) throws {
        let latest = try latestVersions(bootstrapServers: bootstrapServers)
        let defaults = try defaults()
        let ids = Set(latest.keys).union(defaults.map(\.id)).sorted()
        print("campaign          version  status    in effect from              name")
        for id in ids {
            let line: (Int64, String, String, String)
            if let published = latest[id] {
                line = (published.version, published.definition == nil ? "retired" : "active", published.effective.rfc3339,
                        published.definition?["name"]?.stringValue ?? "")
            } else {
                let definition = defaults.first { $0.id == id }!
                line = (definition.version, "default", "always", definition.name)
            }
            print("\(id.padding(toLength: 17, withPad: " ", startingAt: 0)) \(String(line.0).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                + "\(line.1.padding(toLength: 9, withPad: " ", startingAt: 0)) \(line.2.padding(toLength: 27, withPad: " ", startingAt: 0)) \(line.3)")
        }
    }

    static func show(_ campaign: String, bootstrapServers: String) throws {
        guard let results = try latestResults(bootstrapServers: bootstrapServers)[campaign] else {
            print("\(campaign): no results yet (no member has triggered it)")
            return
        }
        print(describe(campaign, results))
    }

    /// Every campaign's newest results, its tasks' added up.
    static func latestResults(bootstrapServers: String) throws -> [String: JSONObject] {
        var board = CampaignResultsBoard()
        for event in try readToEnd(Topics.campaignResults, bootstrapServers: bootstrapServers) {
            guard let campaign = event.subject, let data = event.data.objectValue else { continue }
            board.add(campaign: campaign, type: event.type, data: data)
        }
        return board.combined
    }

    /// Results as a few lines for people.
    static func describe(_ campaign: String, _ r: JSONObject) -> String {
        func int(_ object: JSONObject?, _ key: String) -> Int64 { object?[key]?.int64Value ?? 0 }
        var lines = ["\(campaign): \(int(r, "membersReached")) members reached, \(int(r, "rewards")) rewards, "
            + "\(int(r, "pointsGranted")) points granted (\(int(r, "pointsReversed")) reversed by refunds)"]
        if let budget = r["budgetPoints"]?.int64Value { lines.append("  budget \(budget), left \(int(r, "budgetLeft"))") }
        if int(r, "couponsIssued") > 0 || int(r, "badgesAwarded") > 0 {
            lines.append("  coupons issued \(int(r, "couponsIssued")), badges awarded \(int(r, "badgesAwarded"))")
        }
        let treated = r["treated"]?.objectValue, control = r["control"]?.objectValue
        if int(control, "members") > 0 || int(treated, "members") > 0 {
            for (name, group) in [("treated", treated), ("control", control)] {
                lines.append("  \(name): \(int(group, "members")) members, \(int(group, "triggers")) triggers, "
                    + "\(int(group, "orders")) orders and \(int(group, "revenueMinor") / 100) CNY in the 14 days after")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Every record of a topic up to its current end; `whole`: what is read is summed from its
    /// beginning (see `readRecordsToEnd`).
    static func readToEnd(_ topic: TopicSpec, bootstrapServers: String, whole: Bool = false) throws -> [CloudEvent] {
        // Progress marks are for the services that wait on them, not for people.
        try readRecordsToEnd([topic], bootstrapServers: bootstrapServers, whole: whole ? [topic.name] : []).records.compactMap { record in
            guard let value = record.value, let event = try? CloudEvent.decode(value), event.type != ProgressMark.eventType else { return nil }
            return event
        }
    }

    /// Every record of a topic up to its current end, as it is on the broker, with the topic's
    /// partition count there.
    static func readRecordsToEnd(_ topic: TopicSpec, bootstrapServers: String) throws -> (records: [ConsumedRecord], partitions: Int32) {
        let read = try readRecordsToEnd([topic], bootstrapServers: bootstrapServers)
        return (read.records, read.partitions[topic.name] ?? topic.partitions)
    }

    /// The same for several topics at once, with one consumer (one group join). Records
    /// deleted while they are being read (retention) stop the read. A partition of the `whole`
    /// topics (those a caller sums from the beginning, such as the ledger) whose first records
    /// the broker has deleted is named on standard error: what is read of it is not all of it.
    static func readRecordsToEnd(
        _ topics: [TopicSpec], bootstrapServers: String, whole: Set<String> = []
    ) throws -> (records: [ConsumedRecord], partitions: [String: Int32]) {
        var settings = ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "loyalty-cli-\(UUID().uuidString)")
        settings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(settings, listener: StartingOffsets())
        defer { consumer.close() }
        try consumer.subscribe(topics.map(\.name))
        // The broker's partition counts: an operator may have created a topic with another.
        let partitions = try consumer.partitionCounts(of: topics.map(\.name))
        let expected = topics.reduce(0) { $0 + Int(partitions[$1.name] ?? $1.partitions) }
        let summed = topics.filter { whole.contains($0.name) }.flatMap { topic in
            (0..<(partitions[topic.name] ?? topic.partitions)).map { TopicPartition(topic: topic.name, partition: $0) }
        }
        // A warning only: a broker that cannot say now does not stop the read.
        let bounds = summed.isEmpty ? [:] : (try? consumer.logBounds(of: summed)) ?? [:]
        for (partition, bounds) in bounds.sorted(by: { $0.key.description < $1.key.description }) where bounds.low > 0 {
            FileHandle.standardError.write(Data(
                "loyalty: \(partition) starts at offset \(bounds.low): the broker has deleted its first records (retention), so what follows leaves them out\n".utf8))
        }
        var ended = Set<TopicPartition>()
        var records: [ConsumedRecord] = []
        var deadline = Date().addingTimeInterval(20)
        while ended.count < expected {
            guard Date() < deadline else {
                throw CLIError("could not read \(topics.map(\.name).joined(separator: ", ")) to their ends: nothing came for 20 s")
            }
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record):
                deadline = Date().addingTimeInterval(20)
                records.append(record)
            case .endOfPartition(let partition, _):
                ended.insert(partition)
            case .error(let error, let partition?, let offset) where error.code == KafkaError.offsetOutOfRange:
                throw CLIError("\(partition): the broker deleted records from offset \(offset) on while they were being read (retention); read again, or keep the topic longer")
            case .error, nil:
                break
            }
        }
        return (records, partitions)
    }
}
