import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import Testing

extension EndToEnd {
    /// Twelve months of events for 1,000 members, spending, transfers, expiry and inactivity
    /// included, replayed on stream time by the real `points` executable.
    @Suite struct YearReplayTests {
        @Test func aYearReplaysExactlyAndEveryBalanceIsItsEntries() throws {
            let scenario = YearScenario(members: 1_000, seed: 2026)
            #expect(scenario.events.count > 50_000)
            // Lots expire three months on, so that expiries and warnings happen within the year.
            let directory = try temporaryDirectory("year-program")
            defer { try? FileManager.default.removeItem(at: directory) }
            let reference = String(decoding: try ReferenceProgram.bytes(), as: UTF8.self)
            let program = reference.replacingOccurrences(of: #""expiryMonthsAfterAvailable": 12"#, with: #""expiryMonthsAfterAvailable": 3"#)
            #expect(program != reference)
            let programFile = directory.appendingPathComponent("program.json")
            try Data(program.utf8).write(to: programFile)

            let first = try PointsReplay.run(scenario.records, inputs: scenario.events.count, programFile: programFile)
            let second = try PointsReplay.run(scenario.records, inputs: scenario.events.count, programFile: programFile)
            #expect(PointsReplay.differences(first, second) == [], "two replays from empty state are byte-identical")

            // Every member's ledger explains its balance at every entry, and no lot goes below zero.
            let entries = first.events.filter { !["points.refused", "points.expiry-warning"].contains($0.type) }
            var problems: [String] = []
            var kinds: [String: Int] = [:]
            for (member, memberEntries) in Dictionary(grouping: entries, by: { $0.subject! }) {
                let ordered = memberEntries.map { $0.data.objectValue! }.sorted { $0["sequence"]!.int64Value! < $1["sequence"]!.int64Value! }
                var sum: Int64 = 0
                var lots: [String: Int64] = [:]
                for (index, entry) in ordered.enumerated() {
                    kinds[entry["kind"]!.stringValue!, default: 0] += 1
                    if entry["sequence"]!.int64Value! != Int64(index + 1) { problems.append("\(member): sequence gap at \(index + 1)"); break }
                    sum += entry["points"]!.int64Value!
                    let after = entry["balanceAfter"]!.objectValue!
                    let available = after["available"]!.int64Value!, pending = after["pending"]!.int64Value!, debt = after["debt"]!.int64Value!
                    if available + pending - debt != sum { problems.append("\(member) #\(index + 1): balance \(available)+\(pending)-\(debt) != entries \(sum)") }
                    if available < 0 || pending < 0 || debt < 0 || (available > 0 && debt > 0) { problems.append("\(member) #\(index + 1): bad balance") }
                    for change in entry["lots"]!.arrayValue! {
                        let lot = change["lotId"]!.stringValue!
                        lots[lot, default: 0] += change["delta"]!.int64Value!
                        if lots[lot]! < 0 { problems.append("\(member): lot \(lot) below zero at #\(index + 1)") }
                    }
                }
            }
            #expect(problems.isEmpty, "\(problems.prefix(5))")
            // The year exercised the whole lifecycle.
            for kind in ["earned", "released", "reversed", "redeemed", "cash-offset", "transferred-out", "transferred-in", "returned", "expired", "deducted", "adjusted"] {
                #expect(kinds[kind, default: 0] > 0, "no \(kind) entries")
            }
            #expect(first.events.contains { $0.type == "points.expiry-warning" })
            let reasons = Set(first.events.filter { $0.type == "points.refused" }.compactMap { $0.data["reason"]?.stringValue })
            #expect(reasons.isSuperset(of: ["insufficient-balance", "missing-reason"]))
            #expect(Dictionary(grouping: entries, by: { $0.subject! }).count >= 1_000)
        }
    }
}
