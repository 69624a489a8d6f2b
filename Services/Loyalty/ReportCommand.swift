import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import Reporting
import ServiceKit

/// `loyalty report`: the points-health report of a running system, as one HTML file, from what
/// the services published (ledger, tier changes, campaign definitions and results, dead letters).
enum ReportCommand {
    static let usage = """
        usage: loyalty report [--as-of TIME] [--locale en|zh-CN] [--out FILE] [--simulation DIR]
          write the points-health report (one self-contained HTML file, default loyalty-report.html)
          of the running system, or of a simulation (the directory `loyalty simulate` wrote):
          points issued, redeemed, expired and deducted per month, outstanding liability and the
          expiry forecast, members per tier and moves between tiers, campaigns' reach, cost and uplift,
          dead letters and refusals by reason; --as-of a past instant (default: the newest ledger entry)
        """

    static func run(_ arguments: [String], bootstrapServers: () throws -> String) throws {
        let options = try CommandOptions(arguments, known: ["as-of", "locale", "out", "simulation"], usage: usage)
        guard options.positional.isEmpty else { throw CLIError(usage) }
        let locale = options["locale"] ?? "en"
        guard ["en", "zh-CN"].contains(locale) else { throw CLIError("--locale: en or zh-CN\n\(usage)") }
        var asOf: EventTime?
        if let text = options["as-of"] {
            guard let time = try? EventTime.parse(text) else { throw CLIError("--as-of needs an RFC 3339 time, e.g. 2026-12-31T23:59:59+08:00\n\(usage)") }
            asOf = time
        }
        let out = options["out"] ?? "loyalty-report.html"
        let simulation = options["simulation"]
        // A simulation's own program: its calendar and tiers are the ones its figures follow.
        let program = try simulation.map { try SimulateCommand.program(in: $0) }
            ?? Program.load(json: ConfiguredFile.bytes(variable: "LOYALTY_PROGRAM_FILE", fallback: ReferenceProgram.bytes))
        func read(_ topic: TopicSpec) throws -> [CloudEvent] {
            guard let simulation else {
                // The ledger's and the tier changes' sums (liability, flows) need them from the start.
                let whole = topic.name == Topics.pointsLedger.name || topic.name == Topics.tierChanges.name
                return try CampaignCommands.readToEnd(topic, bootstrapServers: try bootstrapServers(), whole: whole)
            }
            return try SimulateCommand.published(topic.name, in: simulation)
        }
        let ledger = try read(Topics.pointsLedger)
        let health = PointsHealth(
            asOf: asOf ?? ledger.map(\.time).max() ?? EventTime(millis: 0), program: program, ledger: ledger,
            tierChanges: try read(Topics.tierChanges), campaignDefinitions: try read(Topics.campaignDefinitions),
            campaignResults: try read(Topics.campaignResults), deadLetters: try read(Topics.deadLetters))
        try ReportPage.render(health, locale: locale).write(toFile: out, atomically: true, encoding: .utf8)
        print("wrote \(out): \(health.months.count) months, liability \(health.liability) points, as of \(health.asOf)")
    }
}
