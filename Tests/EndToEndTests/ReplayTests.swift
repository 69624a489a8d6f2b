import Foundation
import LoyaltyDomain
import Storage
import Testing

extension EndToEnd {
    /// `loyalty replay <service>`: each of the four services' stores and the keeper of budgets',
    /// built by the real executables over a year of 300 members (orders, refunds, redemptions,
    /// transfers, check-ins, referrals, campaigns with a budget spent through the keeper,
    /// messages), is rebuilt from the topics alone and found the same, table by table; a store
    /// changed behind the service's back is found different, at the change.
    @Suite struct ReplayTests {
        /// Runs `loyalty replay` with `arguments`; returns its exit status and standard output.
        static func replay(_ arguments: [String], directory: URL, broker: String) throws -> (status: Int32, output: String) {
            let log = directory.appendingPathComponent("replay-\(UUID().uuidString.prefix(6)).out")
            let cli = ServiceProcess(
                name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path, "LOYALTY_BOOTSTRAP_SERVERS": broker], log: log)
            try cli.startWith(arguments: ["replay"] + arguments)
            cli.process!.waitUntilExit()
            return (cli.process!.terminationStatus, try String(contentsOf: log, encoding: .utf8))
        }

        @Test func everyServiceStoreIsRebuiltFromTheTopicsAndATamperedOneIsCaught() throws {
            let scenario = CampaignScenario(members: 300, seed: 16, spending: true)
            _ = try PlatformFaultTests.run(scenario, whenStopped: { directory, broker in
                let servers = broker.bootstrapServers
                for service in ["points", "tiers", "campaigns", "campaign-budgets", "notifications"] {
                    let (status, output) = try Self.replay([service], directory: directory, broker: servers)
                    #expect(status == 0 && output.contains("the same"), "\(service) rebuilt: \(output.suffix(1_500))")
                    #expect(output.contains("replaying \(service): read 100%"), "progress is shown: \(output.suffix(600))")
                }
                // Rebuilt where the operator says, and compared against a store named explicitly.
                let kept = directory.appendingPathComponent("tiers-rebuilt")
                let explicit = try Self.replay(
                    ["tiers", "--store", directory.appendingPathComponent("tiers.sqlite").path, "--into", kept.path],
                    directory: directory, broker: servers)
                #expect(explicit.status == 0, "\(explicit.output.suffix(800))")
                #expect(!FileManager.default.fileExists(atPath: kept.appendingPathComponent("tiers.sqlite-wal").path)
                        || ((try? FileManager.default.attributesOfItem(atPath: kept.appendingPathComponent("tiers.sqlite-wal").path)[.size] as? Int) ?? 0) == 0,
                        "the kept store is all in its file, with no write-ahead log to move along")
                // Kept with the offsets of the store it reproduces: it can take that store's place.
                func offsets(_ path: URL) throws -> [String] {
                    let database = try Database(DatabaseConfiguration(path: path.path))
                    defer { database.close() }
                    return try database.prepare("SELECT topic, partition, next_offset FROM offsets ORDER BY 1, 2").query { "\($0.string(0))[\($0.int64(1))]@\($0.int64(2))" }
                }
                let rebuiltOffsets = try offsets(kept.appendingPathComponent("tiers.sqlite"))
                let storeOffsets = try offsets(directory.appendingPathComponent("tiers.sqlite"))
                #expect(!rebuiltOffsets.isEmpty && rebuiltOffsets == storeOffsets)

                // Tampering: a member's available balance raised by hand in the points store.
                let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path))
                let member = try #require(try store.prepare("SELECT member FROM accounts ORDER BY member LIMIT 1 OFFSET 17").queryOne { $0.string(0) })
                try store.prepare("UPDATE accounts SET available = available + 500 WHERE member = ?").run(.text(member))
                store.close()
                let tampered = try Self.replay(["points"], directory: directory, broker: servers)
                #expect(tampered.status == 3, "a tampered store is reported: \(tampered.output.suffix(800))")
                #expect(tampered.output.contains("DIFFERENT: accounts, row member=\"\(member)\": available is"),
                        "the difference names the table, the member and the column: \(tampered.output.suffix(800))")

                // And a timer deleted from the tiers store (a member's month-end review lost).
                let tiers = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("tiers.sqlite").path))
                try tiers.execute("DELETE FROM timers WHERE member = (SELECT member FROM timers ORDER BY member LIMIT 1)")
                let timers = try tiers.prepare("SELECT COUNT(*) FROM timers").queryOne { $0.int64(0) } ?? 0
                tiers.close()
                let lost = try Self.replay(["tiers"], directory: directory, broker: servers)
                #expect(lost.status == 3 && lost.output.contains("DIFFERENT: timers"), "a lost timer is reported (\(timers) left): \(lost.output.suffix(800))")
            })
        }
    }
}
