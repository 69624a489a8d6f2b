import CampaignsService
import Foundation
import LoyaltyDomain
import Messaging
import NotificationsService
import PointsService
import Reporting
import ServiceKit
import Storage
import TiersService

/// The four services' rules run over a history in this process, each by its own processor and
/// batch applier, in the order their topics connect them: tiers and campaigns read only the
/// shop's topics, points reads their commands, notifications reads everything the other three
/// publish. What each publishes is what the running services publish for the same history,
/// record for record; each member's end state is what the services' member views show.
struct PlatformSimulation {
    /// A record of the history: its topic and key as the shop wrote it, and its bytes.
    struct Record {
        var topic: String
        var key: [UInt8]?
        var value: [UInt8]
    }

    /// A record whose bytes wait in a spool: its topic, its key, the partition it was
    /// published to (nil for one the shop wrote, partitioned by its key), and where its bytes
    /// are (nil for a record with none).
    struct SpooledRecord {
        var topic: String
        var key: [UInt8]?
        var partition: Int32? = nil
        var place: RecordSpool.Place?
    }

    /// A history to run: each record's topic and key, in the order read, and its bytes in a
    /// spool (a year of a large shop is more than memory should hold).
    struct History {
        var entries: [SpooledRecord] = []
        let spool: RecordSpool

        /// The records, their bytes moved to a new spool.
        init(_ records: [Record]) throws {
            spool = try RecordSpool()
            entries.reserveCapacity(records.count)
            for record in records { try add(record) }
        }

        private init(spool: RecordSpool) { self.spool = spool }

        mutating func add(_ record: Record) throws {
            entries.append(SpooledRecord(topic: record.topic, key: record.key, place: try spool.append(record.value)))
        }

        /// The bytes of `entry` (nil if the spool cannot give them; its failure says why).
        func value(_ entry: SpooledRecord) -> [UInt8]? { entry.place.flatMap(spool.read) }

        /// The history in a file, read a megabyte at a time: one CloudEvent per line, each
        /// routed to the input topic of its type (campaign definitions to theirs), keyed by its
        /// subject. A line that is not one is an error naming the line; nothing is run on a
        /// history with such a line.
        static func read(file path: String) throws -> History {
            let lines = try LineReader(path: path, lastLineWithoutNewline: .line)
            var history = History(spool: try RecordSpool())
            var number = 0
            while let line = try lines.nextLine() {
                number += 1
                if let record = try PlatformSimulation.record(fromLine: line[...], name: path, number: number) { try history.add(record) }
            }
            return history
        }
    }

    /// The rules to run: the program, the default campaigns and the message templates.
    struct Rules {
        var program: Program
        var programBytes: [UInt8]
        var campaigns: [CampaignDefinition]
        var templates: MessageTemplates
    }

    /// The settings the services would run with (their defaults, or the environment's).
    struct Settings {
        var commandKeys: CommandKeys
        var inboxHorizonDays = 90
        var futureMarginMilliseconds: Int64 = 366 * 86_400_000
        var adjustmentLimit: Int64 = 100_000
        var partitionCount = Topics.partitionCount
    }

    /// What the simulation leaves once it has run (what the services published went to the
    /// `publish` of ``run(_:rules:settings:progress:publish:)`` as it came).
    struct Result {
        /// Each registered member's end state: every service's member view, kept in scratch
        /// files until read (held as trees, the views of a year took several times the memory
        /// of everything published).
        var views: MemberViews
        /// Records handed to the four services, their own commands included.
        var recordsApplied = 0
        /// The campaign definitions the history carried.
        var definitions: [CloudEvent] = []

        /// A member's end state as one JSON object: each service's view under the service's
        /// name, in the order the services ran, then `member`.
        static func stateLine(member: String, views: [(service: String, view: [UInt8])]) -> [UInt8] {
            var writer = JSONWriter(capacity: views.reduce(64) { $0 + $1.view.count + 16 })
            writer.beginObject()
            for (service, view) in views {
                writer.key(escaping: service)
                writer.embed(serializedValue: view)
            }
            writer.key("member")
            writer.string(member)
            writer.endObject()
            return writer.bytes
        }
    }

    /// The record a history line holds; nil for a blank line.
    static func record(fromLine line: ArraySlice<UInt8>, name: String, number: Int) throws -> Record? {
        func isBlank(_ byte: UInt8) -> Bool { byte == 32 || byte == 9 || byte == 13 }
        // Found by index, not by reversing the line twice: that copied each byte one by one.
        guard let first = line.firstIndex(where: { !isBlank($0) }), let last = line.lastIndex(where: { !isBlank($0) }) else { return nil }
        let trimmed = Array(line[first...last])
        let event: CloudEvent
        do { event = try CloudEvent.decode(trimmed) } catch { throw CLIError("\(name):\(number): not a CloudEvent: \(error)") }
        guard let topic = topic(forEventType: event.type) else {
            throw CLIError("\(name):\(number): no input topic takes events of type \(event.type)")
        }
        guard let subject = event.subject else { throw CLIError("\(name):\(number): subject (the key) is required") }
        return Record(topic: topic, key: Array(subject.utf8), value: trimmed)
    }

    /// The topic a history event belongs to.
    static func topic(forEventType type: String) -> String? {
        if type == "campaign.defined" || type == "campaign.retired" { return Topics.campaignDefinitions.name }
        return Topics.inputTopic(forEventType: type)?.name
    }

    /// Runs the history through the four services; `publish` gets everything each publishes
    /// (progress marks left out), service by service in the order they run, each in its
    /// outbox's order, as its batches commit; `progress` gets a line now and then; `scratch`
    /// is a directory for the members' views, removed with the result. Of what is
    /// published, only what a service still to run reads is kept until it has run.
    static func run(
        _ history: History, rules: Rules, settings: Settings, scratch: URL, progress: (String) -> Void = { _ in },
        publish: (_ service: String, _ row: OutboxRow) throws -> Void
    ) throws -> Result {
        let keys = settings.commandKeys
        var result = Result(views: try MemberViews(members: orderedMembers(history.entries), directory: scratch))
        // What a service still to run reads of what the others published: the bytes in the spool.
        let spool = history.spool
        var upstream: [SpooledRecord] = []

        /// `timersInEventTime`: every task's timers fire before a record later than them
        /// (``ServiceSimulation/firesEveryTasksTimersInEventTime()``), for a service whose tasks
        /// share a figure.
        func simulate<Processor: StreamProcessor>(_ processor: Processor, readLater: Set<String>, timersInEventTime: Bool = false) throws {
            let database = try Database(DatabaseConfiguration(path: "", synchronous: .off))
            defer { database.close() }
            let simulation = try ServiceSimulation(
                processor: processor, database: database, inboxHorizonDays: settings.inboxHorizonDays,
                futureMargin: settings.futureMarginMilliseconds, commandKeys: keys, partitionCount: settings.partitionCount, spool: spool)
            if timersInEventTime { simulation.firesEveryTasksTimersInEventTime() }
            for record in [history.entries, upstream].joined() {
                simulation.add(topic: record.topic, key: record.key, spooled: record.place, partition: record.partition)
            }
            upstream.removeAll { !readLater.contains($0.topic) }
            let started = Date()
            var lastLine = started
            try simulation.run(publish: { row in
                if readLater.contains(row.topic) {
                    upstream.append(SpooledRecord(topic: row.topic, key: row.key, partition: row.partition, place: try row.value.map { try spool.append($0) }))
                }
                try publish(processor.name, row)
            }, progress: { simulation in
                guard Date().timeIntervalSince(lastLine) >= 2 else { return }
                lastLine = Date()
                progress("simulating \(processor.name): \(simulation.taken * 100 / max(simulation.total, 1))% of \(simulation.total) records")
            })
            // Each service's own time, for where a run's time goes (docs/performance.md).
            let seconds = Date().timeIntervalSince(started)
            progress("simulated \(processor.name): \(simulation.taken) records applied, \(simulation.timersFired) timers fired, \(simulation.publishedCount) published, in "
                + "\(String(format: "%.1f", seconds)) s (\(Int((seconds * 1_000_000 / Double(max(simulation.taken, 1))).rounded())) µs a record)")
            result.recordsApplied += simulation.taken
            try result.views.record(service: processor.name) { member in
                // A member's state holds each service's view that is an object.
                guard let view = try processor.serializedMemberView(member, in: database, asOf: nil), view.first == UInt8(ascii: "{") else { return nil }
                return view
            }
        }

        // Tiers and campaigns read only the shop; points their commands; notifications all three.
        let tiers = TiersProcessor(program: rules.program)
        let campaigns = CampaignsProcessor(program: rules.program, defaults: rules.campaigns, commandKeys: keys)
        let points = PointsProcessor(program: rules.program, commandKeys: keys, adjustmentLimit: settings.adjustmentLimit)
        let notifications = NotificationsProcessor(program: rules.program, templates: rules.templates)
        func reads(_ processor: some StreamProcessor) -> Set<String> { Set(processor.inputTopics + processor.broadcastTopics) }
        try simulate(tiers, readLater: reads(campaigns).union(reads(points)).union(reads(notifications)))
        // Budgets are counted here in one store, where the services' keeper decides them in the
        // order of their triggers' times, a birthday's or a win-back's at its due time although
        // its task fires it only at its next record: here it fires before any later record
        // (if its task has one).
        try simulate(campaigns, readLater: reads(points).union(reads(notifications)), timersInEventTime: true)
        try simulate(points, readLater: reads(notifications))
        try simulate(notifications, readLater: [])
        result.definitions = history.entries.filter { $0.topic == Topics.campaignDefinitions.name }.compactMap { entry in
            history.value(entry).flatMap { try? CloudEvent.decode($0) }
        }
        if let failure = spool.failure { throw failure }
        return result
    }

    /// Members in the order the history first names them (two lookalike ids are two members,
    /// as they are to the services).
    private static func orderedMembers(_ history: [SpooledRecord]) -> [String] {
        var seen = Set<ExactText>()
        var members: [String] = []
        for record in history where record.topic == Topics.members.name {
            guard let key = record.key, case let member = String(decoding: key, as: UTF8.self), seen.insert(ExactText(member)).inserted else { continue }
            members.append(member)
        }
        return members
    }
}

/// The figures a simulation is judged by, from what it published: the points-health figures,
/// members per tier, each campaign's reach and cost, and the messages sent by type.
struct SimulationSummary {
    var health: PointsHealth
    var messages: [String: Int]
    var deadLetters: Int

    /// Gathers from each published record what the figures need, as the records come: the
    /// ledger and the messages are most of what is published, and are not held.
    struct Gathering {
        private var ledger: [PointsHealth.LedgerEntry] = []
        private var tierChanges: [CloudEvent] = []
        private var campaignResults: [CloudEvent] = []
        private var deadLetters: [CloudEvent] = []
        private var messages: [String: Int] = [:]

        /// What each gathered topic's records are to the figures.
        private enum Role { case ledger, tierChange, campaignResult, deadLetter, message }
        private static let roles: [String: Role] = [
            Topics.pointsLedger.name: .ledger, Topics.tierChanges.name: .tierChange, Topics.campaignResults.name: .campaignResult,
            Topics.deadLetters.name: .deadLetter, Topics.notifications.name: .message,
        ]

        /// What of a message its count needs: its type.
        private static let messageType: JSONProjection = ["data": JSONProjection(keeping: ["type"])]

        mutating func add(_ row: OutboxRow) {
            guard let role = Self.roles[row.topic], let value = row.value else { return }
            // The ledger and the messages, most of what is published, are read only as far as
            // the figures need.
            switch role {
            case .ledger:
                if let entry = PointsHealth.LedgerEntry(publishedRecord: value) { ledger.append(entry) }
            case .message:
                if let message = try? JSONValue.parse(value, keeping: Self.messageType) {
                    messages[message["data"]?["type"]?.stringValue ?? "?", default: 0] += 1
                }
            case .tierChange: if let event = try? CloudEvent.decode(value) { tierChanges.append(event) }
            case .campaignResult: if let event = try? CloudEvent.decode(value) { campaignResults.append(event) }
            case .deadLetter: if let event = try? CloudEvent.decode(value) { deadLetters.append(event) }
            }
        }

        /// The figures as of the last ledger entry.
        func summary(program: Program, campaignDefinitions: [CloudEvent]) -> SimulationSummary {
            let health = PointsHealth(
                asOf: ledger.lazy.map(\.time).max() ?? EventTime(millis: 0), program: program, ledger: ledger,
                tierChanges: tierChanges, campaignDefinitions: campaignDefinitions, campaignResults: campaignResults, deadLetters: deadLetters)
            return SimulationSummary(health: health, messages: messages, deadLetters: deadLetters.count)
        }
    }

    /// The figures as labelled rows, in a fixed order: the lines a comparison sets side by side.
    var rows: [(label: String, value: Int64)] {
        var rows: [(String, Int64)] = [
            ("points issued", health.totalIssued), ("points redeemed", health.totalRedeemed), ("points expired", health.totalExpired),
            ("points deducted", health.totalDeducted), ("points reversed", health.months.reduce(0) { $0 + $1.reversed }),
            ("points adjusted", health.months.reduce(0) { $0 + $1.adjusted }), ("outstanding liability", health.liability),
        ]
        for tier in health.tiers { rows.append(("members in \(tier.tier)", Int64(tier.members))) }
        for campaign in health.campaigns {
            rows.append(("\(campaign.id): members reached", campaign.membersReached))
            rows.append(("\(campaign.id): rewards", campaign.rewards))
            rows.append(("\(campaign.id): points", campaign.pointsCost))
            rows.append(("\(campaign.id): coupons", campaign.couponsIssued))
        }
        for (type, count) in messages.sorted(by: { $0.key < $1.key }) { rows.append(("messages: \(type)", Int64(count))) }
        rows.append(("dead letters", Int64(deadLetters)))
        return rows
    }
}
