import Foundation
import LoyaltyDomain
import ServiceKit
import Storage
import Testing

extension EndToEndSecondLane {
    /// The real `points` executable keeping a changelog loses its host twice during a year:
    /// killed, its data directory deleted, and a new instance started with an empty one, which
    /// restores the store from the changelog and goes on. Its ledger equals, byte for byte, that
    /// of an undisturbed run without a changelog. (A year of 1,000 members writes more changes
    /// than the embedded broker keeps of a partition, about 5 MiB, without compaction: these years
    /// are of 40 to 60 members, one store's changelog being one partition. A longer changelog is
    /// refused there, `ChangelogRestoreTests`.)
    @Suite struct LostHostTests {
        /// The points store, restored from the changelog alone by a new instance with an empty
        /// data directory, equals the store that wrote it, table by table and row by row (the
        /// runtime's bookkeeping of one host left out).
        @Test func aPointsStoreRestoredFromItsChangelogEqualsTheOriginal() throws {
            let scenario = YearScenario(members: 40, seed: 29)
            let settings = ["LOYALTY_CHANGELOG": "on"]
            _ = try PointsReplay.run(scenario.records, inputs: scenario.events.count, settings: settings) { _, _ in } afterStop: { run in
                let restoredDirectory = run.directory.appendingPathComponent("new-host")
                let restoredPath = restoredDirectory.appendingPathComponent("points.sqlite").path
                let environment = run.environment.merging(["LOYALTY_DATA_DIR": restoredDirectory.path]) { $1 }
                let restoring = ServiceProcess(name: "points", environment: environment, log: run.directory.appendingPathComponent("new-host.log"))
                try restoring.start()
                // It restores before it starts consuming; then there is nothing left to apply.
                let deadline = Date().addingTimeInterval(120)
                var log = ""
                while Date() < deadline {
                    log = (try? String(contentsOf: restoring.log, encoding: .utf8)) ?? ""
                    if log.contains("partitions assigned") { break }
                    usleep(200_000)
                }
                usleep(2_000_000)
                #expect(restoring.stop() == 0)
                #expect(log.contains("restored the store from the changelog"), "see \(restoring.log.path)")
                let original = try Database(DatabaseConfiguration(path: run.directory.appendingPathComponent("points.sqlite").path))
                let restored = try Database(DatabaseConfiguration(path: restoredPath))
                switch try StoreComparison.compare(original, restored, skippingTables: RuntimeSchema.unloggedTables) {
                case .success(let summary): #expect(summary.rows > scenario.events.count, "inbox, ledger, accounts, timers")
                case .failure(let difference): Issue.record("the restored store differs: \(difference)")
                }
            }
        }

        @Test func lostHostsChangeNothingWithAChangelog() throws {
            let scenario = YearScenario(members: 60, seed: 23)
            #expect(scenario.events.count > 3_000)
            let expected = try PointsReplay.run(scenario.records, inputs: scenario.events.count)
            #expect(expected.events.count > scenario.events.count / 2, "the ledger has content")
            let timeline = PointsFaultTests.Timeline(total: scenario.events.count, [
                (0.3, { try $0.loseMainHostAndStartAfresh() }),
                (0.65, { try $0.loseMainHostAndStartAfresh() }),
            ])
            // The command keys come from the environment (`ServiceProcess`), as on hosts that
            // share nothing else.
            var restores: [String] = []
            let disturbed = try PointsReplay.run(scenario.records, inputs: scenario.events.count, settings: ["LOYALTY_CHANGELOG": "on"]) {
                try timeline.advance($0, applied: $1)
            } afterStop: { run in
                let log = try String(contentsOf: run.directory.appendingPathComponent("points.log"), encoding: .utf8)
                restores = log.split(separator: "\n").filter { $0.contains("restored the store from the changelog") }.map(String.init)
            }
            // Each new instance restored what its predecessor had committed, not an empty store.
            #expect(restores.count == 2 && restores.allSatisfy { !$0.contains(#""rows":"0""#) }, "\(restores)")
            #expect(timeline.isDone, "both hosts were lost")
            let differences = try PointsReplay.distinctDifferences(expected, disturbed)
            let missing = Set(expected.events.map(\.id)).subtracting(disturbed.events.map(\.id)).sorted()
            let extra = Set(disturbed.events.map(\.id)).subtracting(expected.events.map(\.id)).sorted()
            #expect(missing.isEmpty && extra.isEmpty, "missing \(missing.prefix(20)), extra \(extra.prefix(20))")
            #expect(differences.isEmpty, "\(differences.prefix(2))")
        }

        /// Warm copies (`LOYALTY_STANDBY_REPLICAS=1`): two hosts each keep a copy of the other's
        /// tasks, placed by the instance directory. When one host is lost, the other takes its
        /// tasks over from the copies, reading only what the copies had not yet read of the
        /// changelog; the host that comes back empty copies the survivor's tasks, and takes them
        /// over the same way when the survivor leaves. The ledger equals one store's undisturbed run.
        @Test func warmCopiesOnActiveHostsTakeALostHostsTasksOver() throws {
            /// A log's lines as JSON objects, from the last start of its instance on.
            func lastStart(_ log: String) -> [JSONObject] {
                let lines = log.split(separator: "\n").compactMap { (try? JSONValue.parse(Array($0.utf8)))?.objectValue }
                return Array(lines.suffix(from: lines.lastIndex { $0["msg"]?.stringValue == "starting" } ?? 0))
            }
            /// The tasks whose copies the instance serving HTTP from `directory` has read on at
            /// least once, as its metrics say.
            func copiedTasks(_ directory: URL) -> Set<String> {
                guard let api = (try? String(contentsOf: directory.appendingPathComponent("points.http"), encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines), let metrics = try? HTTPClient.get(api, "/metrics") else { return [] }
                return Set(String(decoding: metrics.body, as: UTF8.self).split(separator: "\n")
                    .filter { $0.hasPrefix("loyalty_warm_copy_lag_records{") }
                    .compactMap { $0.split(separator: "task=\"").last?.split(separator: "\"").first.map(String.init) })
            }
            /// Waits up to a minute for the instance of `directory`, logging to `log`, to keep the
            /// copies it is placed (its last placement since it started names tasks, and its
            /// metrics show each read), and a second more. Returns how many it keeps.
            @discardableResult
            func waitForCopies(_ directory: URL, log: URL) -> Int {
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline {
                    let lines = lastStart((try? String(contentsOf: log, encoding: .utf8)) ?? "")
                    if let placed = lines.last(where: { $0["msg"]?.stringValue == "warm copies placed" })?["tasks"]?.stringValue, !placed.isEmpty,
                       Set(placed.split(separator: ",").map(String.init)).isSubset(of: copiedTasks(directory)) {
                        usleep(1_000_000)
                        return copiedTasks(directory).count
                    }
                    usleep(200_000)
                }
                return 0
            }
            /// The `from` offsets of the takeovers from a copy since the log's instance last started.
            func takeovers(_ log: String?) -> [Int64] {
                lastStart(log ?? "").filter { $0["msg"]?.stringValue == "a standby's store takes over" }.compactMap {
                    $0["from"]?.stringValue.flatMap { Int64($0) }
                }
            }
            let scenario = YearScenario(members: 60, seed: 37)
            let expected = try PointsReplay.run(scenario.records, inputs: scenario.events.count)
            var copiesInMetrics = 0
            let timeline = PointsFaultTests.Timeline(total: scenario.events.count, [
                (0.15, { try $0.startExtraHost() }),
                (0.4, { run in
                    // The host is lost once the other keeps copies of its tasks (a host lost
                    // while the group rebalances has announced none), and the new host starts
                    // once the survivor has taken the lost host's tasks over.
                    let log = run.directory.appendingPathComponent("points-host-1.log")
                    // An operator sees the copies in the joining host's metrics.
                    copiesInMetrics = waitForCopies(run.extraDirectories[0], log: log)
                    try run.loseMainHost(startingAfreshWhen: {
                        takeovers((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains { $0 > 0 }
                    })
                }),
                (0.75, { run in
                    // The survivor leaves once the new host keeps copies of its tasks.
                    waitForCopies(run.directory, log: run.directory.appendingPathComponent("points.log"))
                    run.stopExtra()
                }),
            ])
            var logs: [String: String] = [:]
            let disturbed = try PointsReplay.run(
                scenario.records, inputs: scenario.events.count,
                settings: [
                    "LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": "2", "LOYALTY_CHANGELOG": "on", "LOYALTY_STANDBY_REPLICAS": "1",
                    // Instances are then named in the directory by their HTTP addresses.
                    "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0",
                ]
            ) {
                try timeline.advance($0, applied: $1)
            } afterStop: { run in
                for name in try FileManager.default.contentsOfDirectory(atPath: run.directory.path) where name.hasSuffix(".log") {
                    logs[name] = try String(contentsOf: run.directory.appendingPathComponent(name), encoding: .utf8)
                }
            }
            #expect(timeline.isDone, "the host joined, was lost, and the other left")
            let extra = logs["points-host-1.log"]
            #expect(extra?.contains("warm copies placed") == true, "the joining host was given copies")
            #expect(copiesInMetrics > 0, "the joining host's metrics show the copies it keeps")
            #expect(takeovers(extra).contains { $0 > 0 }, "the surviving host took the lost host's tasks over from warm copies")
            #expect(takeovers(logs["points.log"]).contains { $0 > 0 }, "the host that came back took the leaving host's tasks over from warm copies")
            let differences = try PointsReplay.distinctDifferences(expected, disturbed)
            #expect(differences.isEmpty, "\(differences.prefix(2))")
        }

        /// Points with a store per task across hosts that share only Kafka: a second host joins
        /// with a data directory of its own and takes some tasks, the first host is lost (killed,
        /// its directory deleted, a new instance started with an empty one), and the second
        /// leaves, its tasks restored on the first from the changelog. Reward stock, transfers
        /// and referrals cross tasks as commands. The ledger equals one store's undisturbed run.
        @Test func pointsWithAStorePerTaskOnHostsThatShareOnlyKafkaPublishTheLedgerOfOneStore() throws {
            let scenario = YearScenario(members: 60, seed: 31)
            let expected = try PointsReplay.run(scenario.records, inputs: scenario.events.count)
            #expect(expected.events.contains { $0.data["details"]?["reward"]?.stringValue == "tea-set" }, "the year redeems stocked rewards")
            let timeline = PointsFaultTests.Timeline(total: scenario.events.count, [
                (0.2, { try $0.startExtraHost() }),
                (0.45, { try $0.loseMainHostAndStartAfresh() }),
                (0.7, { $0.stopExtra() }),
            ])
            var restores = 0
            let disturbed = try PointsReplay.run(
                scenario.records, inputs: scenario.events.count,
                settings: ["LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": "2", "LOYALTY_CHANGELOG": "on"]
            ) {
                try timeline.advance($0, applied: $1)
            } afterStop: { run in
                for name in try FileManager.default.contentsOfDirectory(atPath: run.directory.path) where name.hasSuffix(".log") {
                    let log = try String(contentsOf: run.directory.appendingPathComponent(name), encoding: .utf8)
                    restores += log.split(separator: "\n").filter { $0.contains("restored the store from the changelog") }.count
                }
            }
            #expect(timeline.isDone, "the host joined, was lost, and the other left")
            #expect(restores > 0, "tasks moved to hosts without their stores and were restored")
            let differences = try PointsReplay.distinctDifferences(expected, disturbed)
            #expect(differences.isEmpty, "\(differences.prefix(2))")
        }
    }
}
