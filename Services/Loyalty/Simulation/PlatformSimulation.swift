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

    /// What the simulation produced.
    struct Result {
        /// Everything the four services published, by service in the order they ran, each in
        /// its outbox's order (progress marks left out).
        var published: [(service: String, rows: [OutboxRow])] = []
        /// Each registered member's end state: every service's member view, serialized (as
        /// trees, the views of a year took several times the memory of everything published).
        var members: [(member: String, views: [(service: String, view: [UInt8])])] = []
        /// Records handed to the four services, their own commands included.
        var recordsApplied = 0
        /// The campaign definitions the history carried.
        var definitions: [CloudEvent] = []

        /// The published events of `topic`, in publication order.
        func events(of topic: String) -> [CloudEvent] {
            var events: [CloudEvent] = []
            forEachEvent(of: topic) { events.append($0) }
            return events
        }

        /// Calls `body` with each published event of `topic` in publication order, decoding
        /// one at a time.
        func forEachEvent(of topic: String, _ body: (CloudEvent) -> Void) {
            for (_, rows) in published {
                for row in rows where row.topic == topic {
                    if let value = row.value, let event = try? CloudEvent.decode(value) { body(event) }
                }
            }
        }

        /// A member's end state as one JSON object: each service's view under the service's
        /// name, in the order the services ran, then `member`.
        static func stateLine(member: String, views: [(service: String, view: [UInt8])]) -> [UInt8] {
            var writer = JSONWriter(capacity: views.reduce(64) { $0 + $1.view.count + 16 })
            writer.beginObject()
            for (service, view) in views {
                writer.key(service)
                writer.embed(serializedValue: view)
            }
            writer.key("member")
            writer.string(member)
            writer.endObject()
            return writer.bytes
        }
    }

    /// The history's records: one CloudEvent per line, each routed to the input topic of its
    /// type (campaign definitions to theirs), keyed by its subject. A line that is not one is
    /// an error naming the line; nothing is run on a history with such a line.
    static func readHistory(_ bytes: [UInt8], name: String) throws -> [Record] {
        var records: [Record] = []
        var number = 0
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            let trimmed = Array(line.drop { $0 == 32 || $0 == 9 || $0 == 13 }.reversed().drop { $0 == 32 || $0 == 9 || $0 == 13 }.reversed())
            if trimmed.isEmpty { continue }
            let event: CloudEvent
            do { event = try CloudEvent.decode(trimmed) } catch { throw CLIError("\(name):\(number): not a CloudEvent: \(error)") }
            guard let topic = topic(forEventType: event.type) else {
                throw CLIError("\(name):\(number): no input topic takes events of type \(event.type)")
            }
            guard let subject = event.subject else { throw CLIError("\(name):\(number): subject (the key) is required") }
            records.append(Record(topic: topic, key: Array(subject.utf8), value: trimmed))
        }
        return records
    }

    /// The topic a history event belongs to.
    static func topic(forEventType type: String) -> String? {
        if type == "campaign.defined" || type == "campaign.retired" { return Topics.campaignDefinitions.name }
        return Topics.inputTopic(forEventType: type)?.name
    }

    /// Runs the history through the four services; `progress` gets a line now and then.
    static func run(_ history: [Record], rules: Rules, settings: Settings, progress: (String) -> Void = { _ in }) throws -> Result {
        let keys = settings.commandKeys
        var result = Result()
        var views: [String: [(service: String, view: [UInt8])]] = [:]
        let members = orderedMembers(history)

        func simulate<Processor: StreamProcessor>(_ processor: Processor) throws {
            let database = try Database(DatabaseConfiguration(path: ":memory:"))
            defer { database.close() }
            let simulation = try ServiceSimulation(
                processor: processor, database: database, inboxHorizonDays: settings.inboxHorizonDays,
                futureMargin: settings.futureMarginMilliseconds, commandKeys: keys, partitionCount: settings.partitionCount)
            for record in history { simulation.add(topic: record.topic, key: record.key, value: record.value) }
            for (_, rows) in result.published {
                for row in rows { simulation.add(topic: row.topic, key: row.key, value: row.value, partition: row.partition) }
            }
            var lastLine = Date()
            try simulation.run { simulation in
                guard Date().timeIntervalSince(lastLine) >= 2 else { return }
                lastLine = Date()
                progress("simulating \(processor.name): \(simulation.taken * 100 / max(simulation.total, 1))% of \(simulation.total) records")
            }
            progress("simulated \(processor.name): \(simulation.taken) records applied, \(simulation.published.count) published")
            result.published.append((processor.name, simulation.published))
            result.recordsApplied += simulation.taken
            for member in members {
                guard let view = try processor.memberView(member, in: database, asOf: nil), view.objectValue != nil else { continue }
                views[member, default: []].append((processor.name, view.serialized()))
            }
        }

        // Tiers and campaigns read only the shop; points their commands; notifications all three.
        try simulate(TiersProcessor(program: rules.program))
        try simulate(CampaignsProcessor(program: rules.program, defaults: rules.campaigns, commandKeys: keys))
        try simulate(PointsProcessor(program: rules.program, commandKeys: keys, adjustmentLimit: settings.adjustmentLimit))
        try simulate(NotificationsProcessor(program: rules.program, templates: rules.templates))
        result.definitions = history.filter { $0.topic == Topics.campaignDefinitions.name }.compactMap { try? CloudEvent.decode($0.value) }
        result.members = members.compactMap { member in views[member].map { (member, $0) } }
        return result
    }

    /// Members in the order the history first names them.
    private static func orderedMembers(_ history: [Record]) -> [String] {
        var seen = Set<String>()
        var members: [String] = []
        for record in history where record.topic == Topics.members.name {
            guard let key = record.key, case let member = String(decoding: key, as: UTF8.self), seen.insert(member).inserted else { continue }
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

    init(_ result: PlatformSimulation.Result, program: Program) {
        // The ledger and the messages are most of what was published: each event is decoded,
        // kept as what the figures need of it, and let go.
        var ledger: [PointsHealth.LedgerEntry] = []
        result.forEachEvent(of: Topics.pointsLedger.name) { ledger.append(PointsHealth.LedgerEntry($0)) }
        let deadLetterEvents = result.events(of: Topics.deadLetters.name)
        health = PointsHealth(
            asOf: ledger.lazy.map(\.time).max() ?? EventTime(millis: 0), program: program, ledger: ledger,
            tierChanges: result.events(of: Topics.tierChanges.name), campaignDefinitions: result.definitions,
            campaignResults: result.events(of: Topics.campaignResults.name), deadLetters: deadLetterEvents)
        var messages: [String: Int] = [:]
        result.forEachEvent(of: Topics.notifications.name) { messages[$0.data["type"]?.stringValue ?? "?", default: 0] += 1 }
        self.messages = messages
        deadLetters = deadLetterEvents.count
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
