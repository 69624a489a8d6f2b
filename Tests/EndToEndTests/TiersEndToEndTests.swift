import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

extension EndToEndSecondLane {
    /// The real `points` and `tiers` executables on the embedded broker over a year for 1,000
    /// members: tiers, tier changes, tier bonuses and balances equal those computed independently,
    /// with the tiers service killed three times mid-stream (keeping a store per task), and
    /// however late its grants arrive.
    @Suite struct TiersEndToEndTests {
        struct Outcome {
            var tiers: [String: String] = [:]
            var changes: [String: [UInt8]] = [:]
            var conflicting: Set<String> = []
            var bonuses: [String: Int64] = [:]
            var balances: [String: JSONObject] = [:]
        }

        func collect(_ records: ArraySlice<ConsumedRecord>, into outcome: inout Outcome) throws {
            for record in records {
                let event = try CloudEvent.decode(record.value!)
                switch record.topic {
                case Topics.tierStatus.name:
                    outcome.tiers[event.subject!] = event.data["tier"]?.stringValue
                case Topics.tierChanges.name:
                    if let known = outcome.changes[event.id], known != record.value! { outcome.conflicting.insert(event.id) }
                    outcome.changes[event.id] = record.value!
                case Topics.pointsBalances.name:
                    let data = event.data.objectValue!
                    if (data["entries"]?.int64Value ?? 0) >= (outcome.balances[event.subject!]?["entries"]?.int64Value ?? -1) {
                        outcome.balances[event.subject!] = data
                    }
                default:
                    if event.type == "points.earned", event.data["source"]?.stringValue == "tier-bonus" {
                        outcome.bonuses[event.id] = event.data["points"]?.int64Value
                    }
                }
            }
        }

        /// A broker holding the scenario's records, a reader of what points and tiers publish,
        /// and the services' settings for `directory`.
        func begin(_ scenario: TierScenario, in directory: URL) throws -> (EmbeddedBroker, TopicReader, [String: String]) {
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for record in scenario.records { try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value) }
            #expect(producer.flush(timeoutMilliseconds: 60_000))
            let reader = try TopicReader(
                bootstrap: broker.bootstrapServers,
                topics: [Topics.pointsLedger.name, Topics.pointsBalances.name, Topics.tierChanges.name, Topics.tierStatus.name])
            let environment = [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_SESSION_TIMEOUT_MS": "3000", "LOYALTY_WAIT_FOR": "tiers",
            ]
            return (broker, reader, environment)
        }

        /// Runs both services over the scenario; `killTiers` kills the tiers service three times
        /// while it works, `tiersLate` starts it only once the points service has read its topics
        /// (and waited, having no word of tiers' progress); `tiersStorePerTask`: tiers keeps a
        /// store per task (`LOYALTY_STORE_LAYOUT=task`).
        func run(_ scenario: TierScenario, killTiers: Bool, tiersLate: Bool, tiersStorePerTask: Bool = false) throws -> Outcome {
            let directory = try temporaryDirectory("tiers-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let (broker, reader, environment) = try begin(scenario, in: directory)
            defer { reader.close() }
            defer { withExtendedLifetime(broker) {} }
            let points = ServiceProcess(name: "points", environment: environment, log: directory.appendingPathComponent("points.log"))
            let tiers = ServiceProcess(
                name: "tiers", environment: environment.merging(["LOYALTY_STORE_LAYOUT": tiersStorePerTask ? "task" : "service"]) { $1 },
                log: directory.appendingPathComponent("tiers.log"))
            try points.start()
            func count(_ service: String, _ table: String) -> Int64 { serviceCount(in: directory, service, "SELECT COUNT(*) FROM \(table)") }
            if tiersLate {
                // Points has everything to read, but nothing tiers has promised past: it waits.
                let deadline = Date().addingTimeInterval(60)
                func log() -> String { (try? String(contentsOf: directory.appendingPathComponent("points.log"), encoding: .utf8)) ?? "" }
                while !log().contains("partitions assigned") && Date() < deadline { reader.poll(milliseconds: 200) }
                reader.poll(milliseconds: 3_000)
                #expect(serviceApplied(in: directory, "points") == 0, "points applies nothing before tiers has said how far it is")
            }
            try tiers.start()
            if killTiers {
                for _ in 0..<3 {
                    let before = reader.records.count
                    let deadline = Date().addingTimeInterval(60)
                    while reader.records.count < before + 2_000 && Date() < deadline { reader.poll(milliseconds: 100) }
                    #expect(tiers.isRunning, "see \(directory.path)/tiers.log")
                    tiers.kill()
                    try tiers.start()
                }
            }
            let orderEvents = Int64(scenario.events.filter { $0.type != EventType.memberRegistered }.count)
            let wantedBonuses = scenario.expectedBonus.filter { $0.value > 0 }.count
            var outcome = Outcome()
            var consumed = 0
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                reader.poll(milliseconds: 1_000)
                try collect(reader.records[consumed...], into: &outcome)
                consumed = reader.records.count
                if serviceApplied(in: directory, "tiers") >= orderEvents && count("tiers", "outbox") == 0 && count("points", "outbox") == 0
                    && outcome.bonuses.count >= wantedBonuses && outcome.changes.count >= scenario.expectedChanges.count { break }
            }
            reader.poll(milliseconds: 3_000)
            try collect(reader.records[consumed...], into: &outcome)
            #expect(tiers.stop() == 0)
            #expect(points.stop() == 0, "\(points.lastErrors)")
            if tiersStorePerTask {
                // A store per task, each holding its own task alone.
                #expect(serviceTaskStores(in: directory, "tiers") == (0..<Topics.orders.partitions).map { "tiers.task-\($0).sqlite" })
                #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("tiers.sqlite").path))
                for (task, file) in serviceTaskStores(in: directory, "tiers").enumerated() {
                    let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent(file).path))
                    #expect(try store.prepare("SELECT DISTINCT task FROM task_clock").query { $0.int64(0) } == [Int64(task)])
                }
            }
            return outcome
        }

        func check(_ outcome: Outcome, _ scenario: TierScenario) {
            var tierMismatches: [String] = []
            for (member, tier) in scenario.expectedTier where (outcome.tiers[member] ?? "newcomer") != tier {
                tierMismatches.append("\(member): \(outcome.tiers[member] ?? "newcomer") != \(tier)")
            }
            #expect(tierMismatches.isEmpty, "\(tierMismatches.prefix(5))")
            #expect(outcome.conflicting.isEmpty, "no tier change published with two payloads")
            #expect(Set(outcome.changes.keys) == Set(scenario.expectedChanges.keys), "every tier change once, none lost")
            let kinds = outcome.changes.mapValues { (try? CloudEvent.decode($0))?.data["change"]?.stringValue ?? "" }
            #expect(kinds == scenario.expectedChanges)
            // Every order's tier bonus is the one of the tier held just before it.
            var bonusMismatches: [String] = []
            for (order, bonus) in scenario.expectedBonus {
                let published = outcome.bonuses["tier-bonus/\(order)/tier-bonus"] ?? 0
                if published != bonus { bonusMismatches.append("\(order): \(published) != \(bonus)") }
            }
            #expect(bonusMismatches.isEmpty, "\(bonusMismatches.prefix(5))")
            var balanceMismatches: [String] = []
            for (member, net) in scenario.expectedNet {
                let balance = outcome.balances[member]
                // Inactivity deductions (members who stop buying) are the points rules' business,
                // tested elsewhere; here the balance plus what they took must be the model's.
                let actual = (balance?["available"]?.int64Value ?? 0) + (balance?["pending"]?.int64Value ?? 0)
                    - (balance?["debt"]?.int64Value ?? 0) + (balance?["lifetimeDeducted"]?.int64Value ?? 0)
                if actual != net || balance?["lifetimeEarned"]?.int64Value != scenario.expectedEarned[member] {
                    balanceMismatches.append("\(member): \(actual) != \(net)")
                }
            }
            #expect(balanceMismatches.isEmpty, "\(balanceMismatches.prefix(5))")
        }

        /// Tiers as three instances on hosts that share nothing but Kafka: a data directory
        /// each, a store per task, the changelog on. During the year one host is lost (killed,
        /// its directory deleted), a new one starts empty, and another leaves and comes back
        /// with its old stores, which the changelog has gone on without, and finishes the year
        /// alone once the others leave. Every task moved is
        /// restored from its changelog partition; the tiers, tier changes, bonuses and balances
        /// are still the rules' (`check`), each tier change published with one payload.
        @Test func aYearOfTiersOnHostsThatShareOnlyKafkaMatchesTheRulesThroughALostHost() throws {
            let scenario = TierScenario(members: 1_000, seed: 45)
            let directory = try temporaryDirectory("tiers-hosts")
            defer { try? FileManager.default.removeItem(at: directory) }
            let (broker, reader, environment) = try begin(scenario, in: directory)
            defer { reader.close() }
            defer { withExtendedLifetime(broker) {} }
            // A task restored from a changelog that lagged its outputs sends those outputs again,
            // up to a whole year of them when a host dies early. Points' inbox keeps three days
            // here, so that most of those repeats come after it has let their first copies go.
            let points = ServiceProcess(
                name: "points", environment: environment.merging(["INBOX_HORIZON_DAYS": "3"]) { $1 },
                log: directory.appendingPathComponent("points.log"))
            func host(_ name: String) -> ServiceProcess {
                ServiceProcess(
                    name: "tiers",
                    environment: environment.merging([
                        "LOYALTY_DATA_DIR": directory.appendingPathComponent(name).path, "LOYALTY_STORE_LAYOUT": "task", "LOYALTY_CHANGELOG": "on",
                    ]) { $1 },
                    log: directory.appendingPathComponent("tiers-\(name).log"))
            }
            let (a, b, c, d) = (host("a"), host("b"), host("c"), host("d"))
            try points.start()
            for tiers in [a, b, c] { try tiers.start() }
            func advance(by records: Int) {
                let before = reader.records.count
                let deadline = Date().addingTimeInterval(60)
                while reader.records.count < before + records && Date() < deadline { reader.poll(milliseconds: 100) }
            }
            advance(by: 2_000)
            // Host a is lost with its disk.
            #expect(a.isRunning, "see \(a.log.path)")
            a.kill()
            try FileManager.default.removeItem(at: directory.appendingPathComponent("a"))
            advance(by: 2_000)
            // A new host with an empty directory.
            try d.start()
            advance(by: 2_000)
            // Host b leaves, and comes back later with stores the changelog went on without.
            #expect(b.stop() == 0, "see \(b.log.path)")
            advance(by: 2_000)
            let bAgain = ServiceProcess(name: "tiers", environment: b.environment, log: directory.appendingPathComponent("tiers-b-again.log"))
            try bAgain.start()
            advance(by: 1_000)
            // The others leave: host b finishes the year alone, with every task.
            for tiers in [c, d] { #expect(tiers.stop() == 0, "see \(tiers.log.path)") }
            let wantedBonuses = scenario.expectedBonus.filter { $0.value > 0 }.count
            var outcome = Outcome()
            var consumed = 0
            let deadline = Date().addingTimeInterval(300)
            func tiersMatch() -> Bool { scenario.expectedTier.allSatisfy { (outcome.tiers[$0.key] ?? "newcomer") == $0.value } }
            while Date() < deadline {
                reader.poll(milliseconds: 1_000)
                try collect(reader.records[consumed...], into: &outcome)
                consumed = reader.records.count
                if serviceCount(in: directory, "points", "SELECT COUNT(*) FROM outbox") == 0 && outcome.bonuses.count >= wantedBonuses
                    && outcome.changes.count >= scenario.expectedChanges.count && tiersMatch() { break }
            }
            reader.poll(milliseconds: 3_000)
            try collect(reader.records[consumed...], into: &outcome)
            #expect(bAgain.stop() == 0, "\(bAgain.lastErrors)")
            #expect(points.stop() == 0, "\(points.lastErrors)")
            check(outcome, scenario)
            // Tasks came to hosts without their stores, and were restored from the changelog
            // with what the hosts before had applied.
            let logs = try [b, c, d, bAgain].map { try String(contentsOf: $0.log, encoding: .utf8) }.joined(separator: "\n")
            let restores = logs.split(separator: "\n").filter { $0.contains("restored the store from the changelog") }
            #expect(restores.contains { !$0.contains(#""rows":"0""#) }, "\(restores.prefix(3))")
            #expect(try String(contentsOf: bAgain.log, encoding: .utf8).contains("task store opened"), "host b, back, took tasks on")
        }

        @Test func aYearOfTiersWithThreeKillsAndWithLateGrantsMatchesTheRules() throws {
            let scenario = TierScenario(members: 1_000, seed: 44)
            #expect(Set(scenario.expectedTier.values).count >= 4, "the year reaches most tiers")
            #expect(scenario.expectedChanges.values.contains("downgraded") && scenario.expectedChanges.values.contains("at-risk"))
            #expect(scenario.expectedBonus.values.contains { $0 > 0 })
            // Tiers killed three times keeps a store per task: each is opened again at the restart.
            let concurrent = try run(scenario, killTiers: true, tiersLate: false, tiersStorePerTask: true)
            check(concurrent, scenario)
            let late = try run(scenario, killTiers: false, tiersLate: true)
            check(late, scenario)
        }
    }
}
