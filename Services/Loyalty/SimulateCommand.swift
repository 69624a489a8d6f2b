import CampaignsService
import Foundation
import LoyaltyDomain
import LoyaltyService
import Messaging
import ReferenceProgram
import Reporting
import ServiceKit

/// `loyalty simulate`: a history through the rules of all four services in this process, with
/// the program and campaigns in force or proposed ones, and optionally a baseline beside it.
enum SimulateCommand {
    static let usage = """
        usage: loyalty simulate --history FILE|kafka [--program FILE] [--campaigns FILE] [--templates FILE]
                                [--baseline in-force] [--baseline-program FILE] [--baseline-campaigns FILE] [--out DIR]
                                [--partitions N]
          run a history through the rules of all four services, in event-time order, without Kafka:
          FILE holds one CloudEvent per line (as `loyalty publish` takes them), on topics of N partitions
          (default the catalogue's 6, as the services' topics have); `kafka` reads the shop's topics, the
          campaign definitions and the operators' commands of the running system, as its broker keeps them. The program, campaigns and templates
          default to the ones in force (LOYALTY_PROGRAM_FILE, LOYALTY_CAMPAIGNS_FILE, LOYALTY_TEMPLATES_FILE,
          else the reference ones). Writes to --out (default loyalty-simulation) what the services would
          publish (<topic>.jsonl), each member's end state (members.jsonl) and the figures (summary.txt),
          and prints the figures. With a baseline (--baseline in-force: the program and campaigns in force;
          --baseline-program, --baseline-campaigns: others), it runs the history under both and prints them
          side by side with the difference; the baseline's files go to <out>/baseline
        """

    static func run(_ arguments: [String], dataDirectory: String, bootstrapServers: () throws -> String) throws {
        let options = try CommandOptions(
            arguments, known: ["history", "program", "campaigns", "templates", "baseline", "baseline-program", "baseline-campaigns", "out", "partitions"],
            usage: usage)
        guard options.positional.isEmpty, let source = options["history"] else { throw CLIError(usage) }
        if let baseline = options["baseline"], baseline != "in-force" { throw CLIError("--baseline: in-force is the only value\n\(usage)") }
        let out = options["out"] ?? "loyalty-simulation"
        let environment = ProcessInfo.processInfo.environment

        func bytes(_ path: String?, variable: String, fallback: () throws -> [UInt8]) throws -> [UInt8] {
            guard let path else { return try ConfiguredFile.bytes(variable: variable, fallback: fallback) }
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
            return Array(data)
        }
        func rules(program: String?, campaigns: String?) throws -> PlatformSimulation.Rules {
            let programBytes = try bytes(program, variable: "LOYALTY_PROGRAM_FILE", fallback: ReferenceProgram.bytes)
            let loaded: Program
            do { loaded = try Program.load(json: programBytes) } catch { throw CLIError("program \(program ?? "in force") refused: \(error)") }
            let campaignBytes = try bytes(campaigns, variable: "LOYALTY_CAMPAIGNS_FILE", fallback: ReferenceProgram.campaignsBytes)
            let definitions: [CampaignDefinition]
            do { definitions = try CampaignDefinition.loadFile(json: campaignBytes, tiers: loaded.tiers.levels.map(\.id)) } catch {
                throw CLIError("campaigns \(campaigns ?? "in force") refused: \(error)")
            }
            let templateBytes = try bytes(options["templates"], variable: "LOYALTY_TEMPLATES_FILE", fallback: ReferenceProgram.templatesBytes)
            let templates: MessageTemplates
            do { templates = try MessageTemplates.load(json: templateBytes) } catch { throw CLIError("templates refused: \(error)") }
            return PlatformSimulation.Rules(program: loaded, programBytes: programBytes, campaigns: definitions, templates: templates)
        }

        let proposal = try rules(program: options["program"], campaigns: options["campaigns"])
        let wantsBaseline = options["baseline"] != nil || options["baseline-program"] != nil || options["baseline-campaigns"] != nil
        let baseline = wantsBaseline ? try rules(program: options["baseline-program"], campaigns: options["baseline-campaigns"]) : nil

        var settings = try Self.settings(environment: environment, dataDirectory: dataDirectory)
        let history: PlatformSimulation.History
        if source == "kafka" {
            let read = try historyFromTopics(bootstrapServers: try bootstrapServers())
            history = try PlatformSimulation.History(read.records)
            settings.partitionCount = read.partitions
        } else {
            history = try PlatformSimulation.History.read(file: source)
            if let text = options["partitions"] {
                guard let count = Int32(text), (1...1_000).contains(count) else { throw CLIError("--partitions: a count from 1 to 1000\n\(usage)") }
                settings.partitionCount = count
            }
        }
        say("simulating \(history.entries.count) events\(baseline == nil ? "" : " under the proposal and the baseline")")

        // What the services publish goes to its files and the figures as it comes, and each
        // run's result is let go once written: only its summary is kept for the comparison.
        func simulate(under rules: PlatformSimulation.Rules, to directory: String) throws -> SimulationSummary {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // Marked first: files written before a failure are a simulation's, replaced by the next.
            try "written by loyalty simulate: the records the services would publish (<topic>.jsonl), members.jsonl, summary.txt, program.json\n"
                .write(toFile: "\(directory)/\(marker)", atomically: true, encoding: .utf8)
            let files = LineFiles(directory: directory)
            var gathering = SimulationSummary.Gathering()
            let started = Date()
            // The views' scratch files sit in the output directory, so that a run stopped half-way
            // leaves them where the next run into it replaces them.
            let scratch = URL(fileURLWithPath: directory).appendingPathComponent(".member-views")
            let result = try PlatformSimulation.run(history, rules: rules, settings: settings, scratch: scratch, progress: say) { _, row in
                gathering.add(row)
                if let value = row.value { try files.append(value, to: "\(row.topic).jsonl") }
            }
            let seconds = Date().timeIntervalSince(started)
            say(String(format: "%d events in %.1f s: %.0f events/s (%d records applied by the four services)",
                       history.entries.count, seconds, Double(history.entries.count) / max(seconds, 0.001), result.recordsApplied))
            let summary = gathering.summary(program: rules.program, campaignDefinitions: result.definitions)
            try write(result, rules: rules, summary: summary, files: files, to: directory)
            return summary
        }

        try prepare(out)
        let summary = try simulate(under: proposal, to: out)

        guard let baseline else {
            say(figures(summary))
            say("wrote \(out): what the services would publish, members.jsonl, summary.txt")
            say(String(format: "peak resident memory %.1f MiB", PeakMemory.mebibytes()))
            return
        }
        let baselineSummary = try simulate(under: baseline, to: "\(out)/baseline")
        say(comparison(baseline: baselineSummary, proposal: summary))
        say("wrote \(out) (the proposal) and \(out)/baseline")
        say(String(format: "peak resident memory %.1f MiB", PeakMemory.mebibytes()))
    }

    /// The settings the services would run with, from the same variables.
    static func settings(environment: [String: String], dataDirectory: String) throws -> PlatformSimulation.Settings {
        // The platform's keys when there are any (so that signed operator commands in the
        // history verify); else keys of this run only, for the commands the services sign.
        let keys: CommandKeys
        if environment["LOYALTY_COMMAND_KEYS"]?.isEmpty == false || FileManager.default.fileExists(atPath: "\(dataDirectory)/command-keys") {
            keys = try CommandKeys.fromEnvironment(environment, dataDirectory: dataDirectory, platform: .loyalty)
        } else {
            keys = try CommandKeys.parse("simulation=\(UUID().uuidString)")
        }
        var settings = PlatformSimulation.Settings(commandKeys: keys)
        settings.inboxHorizonDays = try ServiceConfiguration.integer("LOYALTY_INBOX_HORIZON_DAYS", default: 90, range: 0...36_500, environment: environment)
        settings.futureMarginMilliseconds = Int64(try ServiceConfiguration.integer(
            "LOYALTY_STREAM_TIME_MARGIN_DAYS", default: 366, range: 1...36_500, environment: environment)) * 86_400_000
        settings.adjustmentLimit = Int64(try ServiceConfiguration.integer(
            "LOYALTY_ADJUSTMENT_LIMIT", default: 100_000, range: 1...1_000_000_000, environment: environment))
        return settings
    }

    /// The shop's topics, the campaign definitions and the operators' commands of a running
    /// system, read to their ends as the broker has them (keys and bytes as written), and the
    /// partition count of its topics. What the services wrote to the command topic is left out:
    /// the simulation sends its own.
    static func historyFromTopics(bootstrapServers: String) throws -> (records: [PlatformSimulation.Record], partitions: Int32) {
        var records: [PlatformSimulation.Record] = []
        let services: Set<String> = ["loyalty/points", "loyalty/tiers", "loyalty/campaigns"]
        let topics = [Topics.members, Topics.orders, Topics.engagement, Topics.pointsRequests, Topics.pointsCommands, Topics.campaignDefinitions]
        // A history that has lost its beginning to retention is named (compacted topics keep theirs).
        let read = try CampaignCommands.readRecordsToEnd(
            topics, bootstrapServers: bootstrapServers,
            whole: [Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name])
        let partitions = read.partitions[Topics.members.name] ?? Topics.partitionCount
        // In their order on each partition; the partitions one after another, as the merge takes them.
        for record in read.records.sorted(by: { ($0.topic, $0.partition, $0.offset) < ($1.topic, $1.partition, $1.offset) }) {
            // A tombstone (an erased member on a compacted topic) is read past by every service.
            guard let value = record.value else { continue }
            if record.topic == Topics.pointsCommands.name, let event = try? CloudEvent.decode(value),
               services.contains(event.source) || event.type == ProgressMark.eventType {
                continue
            }
            records.append(PlatformSimulation.Record(topic: record.topic, key: record.key, value: value))
        }
        return (records, partitions)
    }

    /// The file that marks a directory as a simulation's: only such a directory is replaced.
    static let marker = "simulation.txt"

    /// Makes `directory` ready for a simulation's files: created, or emptied when an earlier
    /// simulation wrote it (so no file of another run is left to mix with this one's). Any
    /// other directory with something in it is refused, never emptied.
    static func prepare(_ directory: String) throws {
        let files = FileManager.default
        if let contents = try? files.contentsOfDirectory(atPath: directory), !contents.isEmpty {
            guard contents.contains(marker) else {
                throw CLIError("--out \(directory) holds files that are not a simulation's: name a new or empty directory")
            }
            try files.removeItem(atPath: directory)
        }
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Writes, beside the published records `files` holds by topic, the members' end states,
    /// the figures, and the program it ran with (which `loyalty report --simulation` reads).
    static func write(
        _ result: PlatformSimulation.Result, rules: PlatformSimulation.Rules, summary: SimulationSummary, files: LineFiles, to directory: String
    ) throws {
        try Data(rules.programBytes).write(to: URL(fileURLWithPath: "\(directory)/program.json"))
        // The definitions the history carried, for a report of the simulation (`loyalty report --simulation`).
        for event in result.definitions { try files.append(event.encoded(), to: "\(Topics.campaignDefinitions.name).jsonl") }
        try files.create("members.jsonl")
        try result.views.forEach { member, views in
            try files.append(PlatformSimulation.Result.stateLine(member: member, views: views), to: "members.jsonl")
        }
        try files.close()
        try (figures(summary) + "\n").write(toFile: "\(directory)/summary.txt", atomically: true, encoding: .utf8)
    }

    /// The program a simulation ran with, from the directory it wrote.
    static func program(in directory: String) throws -> Program {
        guard FileManager.default.fileExists(atPath: "\(directory)/\(marker)"),
              let data = FileManager.default.contents(atPath: "\(directory)/program.json")
        else { throw CLIError("no simulation at \(directory): `loyalty simulate --out \(directory)` writes one") }
        do { return try Program.load(json: Array(data)) } catch { throw CLIError("\(directory)/program.json: \(error)") }
    }

    /// The events of `topic` a simulation wrote to `directory` (none when it published none).
    static func published(_ topic: String, in directory: String) throws -> [CloudEvent] {
        guard FileManager.default.fileExists(atPath: "\(directory)/\(marker)") else { throw CLIError("no simulation at \(directory)") }
        guard let data = FileManager.default.contents(atPath: "\(directory)/\(topic).jsonl") else { return [] }
        return try Array(data).split(separator: UInt8(ascii: "\n")).enumerated().map { number, line in
            do { return try CloudEvent.decode(Array(line)) } catch { throw CLIError("\(directory)/\(topic).jsonl:\(number + 1): \(error)") }
        }
    }

    /// One simulation's figures as a table.
    static func figures(_ summary: SimulationSummary) -> String {
        table(summary.rows.map { [$0.label, ReportPage.grouped($0.value)] }, header: ["", "simulated"])
    }

    /// The two summaries side by side, with the difference (proposal − baseline).
    static func comparison(baseline: SimulationSummary, proposal: SimulationSummary) -> String {
        let before = Dictionary(baseline.rows.map { ($0.label, $0.value) }, uniquingKeysWith: { $1 })
        let after = Dictionary(proposal.rows.map { ($0.label, $0.value) }, uniquingKeysWith: { $1 })
        var labels = baseline.rows.map(\.label)
        for row in proposal.rows where before[row.label] == nil { labels.append(row.label) }
        let rows = labels.map { label -> [String] in
            let a = before[label] ?? 0
            let b = after[label] ?? 0
            return [label, ReportPage.grouped(a), ReportPage.grouped(b), b == a ? "0" : (b > a ? "+" : "") + ReportPage.grouped(b - a)]
        }
        return table(rows, header: ["", "baseline", "proposal", "difference"])
    }

    /// Rows as a text table: the first column left-aligned, the others right-aligned.
    static func table(_ rows: [[String]], header: [String]) -> String {
        let all = [header] + rows
        let widths = (0..<header.count).map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
