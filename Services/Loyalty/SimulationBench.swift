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
        var eventsPerSecond: Double { Double(events) / seconds }
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

    /// Times `loyalty simulate`'s run (not the history's generation) over a year of `members`.
    static func simulation(members: Int) throws -> SimulationFigures {
        let history = simulationHistory(members: members)
        let program = try Program.load(json: ReferenceProgram.bytes())
        let rules = PlatformSimulation.Rules(
            program: program, programBytes: try ReferenceProgram.bytes(),
            campaigns: try CampaignDefinition.loadFile(json: ReferenceProgram.campaignsBytes(), tiers: program.tiers.levels.map(\.id)),
            templates: try MessageTemplates.load(json: ReferenceProgram.templatesBytes()))
        let settings = PlatformSimulation.Settings(commandKeys: try CommandKeys.parse("bench=\(UUID().uuidString)"))
        let started = Date()
        let result = try PlatformSimulation.run(history, rules: rules, settings: settings)
        return SimulationFigures(
            events: history.count, members: members, seconds: Date().timeIntervalSince(started), recordsApplied: result.recordsApplied)
    }
}
