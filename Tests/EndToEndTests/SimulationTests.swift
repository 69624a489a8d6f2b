import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import Reporting
import Testing

extension EndToEnd {
    /// `loyalty simulate`: a history run through the four services' rules in one process equals
    /// what the four running services publish for it, and a baseline comparison shows what a
    /// changed campaign would have cost, member by member.
    @Suite struct SimulationTests {
        /// Runs `loyalty simulate` with `arguments`; returns its exit status and standard output.
        static func simulate(_ arguments: [String], directory: URL, environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
            let log = directory.appendingPathComponent("simulate-\(UUID().uuidString.prefix(6)).out")
            let cli = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path].merging(environment) { $1 }, log: log)
            try cli.startWith(arguments: ["simulate"] + arguments)
            cli.process!.waitUntilExit()
            return (cli.process!.terminationStatus, try String(contentsOf: log, encoding: .utf8))
        }

        /// The history's events, one per line, as the shop published them.
        static func writeHistory(_ events: [CloudEvent], to file: URL) throws {
            var bytes: [UInt8] = []
            for event in events { bytes += event.encoded() + [UInt8(ascii: "\n")] }
            try Data(bytes).write(to: file)
        }

        /// The events of a file the simulation wrote, one per line.
        static func events(in file: URL) throws -> [(bytes: [UInt8], event: CloudEvent)] {
            guard let data = FileManager.default.contents(atPath: file.path) else { return [] }
            return try Array(data).split(separator: UInt8(ascii: "\n")).map { line in (Array(line), try CloudEvent.decode(Array(line))) }
        }

        /// What the simulation published, in the form the platform tests compare runs in.
        static func outputs(in directory: URL) throws -> PlatformFaultTests.Outputs {
            var outputs = PlatformFaultTests.Outputs()
            for topic in PlatformFaultTests.outputTopics {
                for (bytes, event) in try events(in: directory.appendingPathComponent("\(topic).jsonl")) {
                    // The partition the services' producer would have chosen for the subject.
                    let partition = Murmur2Partitioner.partition(of: Array((event.subject ?? "").utf8), partitions: Topics.partitionCount)
                    try outputs.add(topic: topic, partition: partition, value: bytes)
                }
            }
            return outputs
        }

        /// Each member's end state from the simulation's members.jsonl.
        static func members(in directory: URL) throws -> [String: JSONValue] {
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent("members.jsonl").path) else { return [:] }
            var members: [String: JSONValue] = [:]
            for line in Array(data).split(separator: UInt8(ascii: "\n")) {
                let value = try JSONValue.parse(Array(line))
                members[value["member"]?.stringValue ?? ""] = value
            }
            return members
        }

        /// Where what the services published and what the simulation wrote to `out` differ
        /// (empty when they agree record for record), but for what is left of `budget`: the
        /// services' tasks leave it to the keeper's own record, returned, while the simulation
        /// counts it in its one store.
        static func differences(
            _ published: PlatformFaultTests.Outputs, simulatedIn out: URL, budget: String
        ) throws -> (keeper: JSONValue?, differences: [String]) {
            var simulated = try outputs(in: out)
            var publishedByTask = published
            let results = Topics.campaignResults.name
            let keeper = try publishedByTask.records[results]?.removeValue(forKey: "\(budget)/budget").map { try JSONValue.parse($0) }
            for key in simulated.records[results]?.keys.sorted() ?? [] {
                var data = try JSONValue.parse(simulated.records[results]![key]!).objectValue ?? [:]
                if data["campaignId"]?.stringValue == budget { data["budgetLeft"] = .null }
                simulated.records[results]![key] = Array(JSONValue.object(data).jsonString.utf8)
            }
            return (keeper, PlatformFaultTests.differences(publishedByTask, simulated))
        }

        /// A budget with room for one birthday, and two members on tasks of their own: the
        /// first's birthday comes a day before the second's, but the first's task reads its next
        /// record (and so fires the birthday) only a week after the second's. The services'
        /// keeper grants the budget in the order of the birthdays' times, since the first task
        /// promises nothing past a timer it has not fired; the simulation, which counts the
        /// budget in one store, fires every task's timers before a later record, and agrees.
        @Test func aBudgetThatRunsOutBetweenTwoTasksTimersGoesToTheEarlierInTheSimulationToo() throws {
            let budget = try CampaignsEndToEndTests.definitionEvent(
                #"{"id":"birthday-budget","version":1,"name":"Birthday on a budget","trigger":{"event":"birthday"},"reward":{"points":100},"budgetPoints":100}"#,
                from: EventTime(millis: CampaignScenario.start))
            func task(_ member: String) -> Int32 { Murmur2Partitioner.partition(of: Array(member.utf8), partitions: Topics.partitionCount) }
            let first = "bday-first"
            let second = try #require((0..<100).map { "bday-second-\($0)" }.first { task($0) != task(first) })
            let day = CampaignScenario.day
            func event(_ type: String, _ member: String, _ time: Int64, _ data: JSONObject = [:]) -> CloudEvent {
                CloudEvent(id: "\(member)/\(type)/\(time)", source: "campaign-shop", type: type, time: EventTime(millis: time), subject: member, data: .object(data))
            }
            let start = CampaignScenario.start
            let events = [
                event(EventType.memberRegistered, first, start + 3_600_000, ["birthday": "1990-03-10"]),
                event(EventType.memberRegistered, second, start + 3_600_000, ["birthday": "1990-03-11"]),
                // 12 March, 10:00 and 20 March, 10:00 (Shanghai): each member's first record after
                // the birthdays, the second member's first.
                event(EventType.checkedIn, second, start + 70 * day + 10 * 3_600_000),
                event(EventType.checkedIn, first, start + 78 * day + 10 * 3_600_000),
            ]
            let history = [budget] + events
            let published = try PlatformFaultTests.run(
                records: [(Topics.campaignDefinitions.name, "birthday-budget", budget.encoded())]
                    + events.map { (Topics.inputTopic(forEventType: $0.type)!.name, $0.subject!, $0.encoded()) },
                budget: false)
            let directory = try temporaryDirectory("simulate")
            defer { removeTestState(at: directory) }
            let file = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory(history, to: file)
            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(["--history", file.path, "--out", out.path], directory: directory)
            #expect(status == 0, "\(output.suffix(2_000))")

            func budgetRewards(_ outputs: PlatformFaultTests.Outputs) throws -> [String] {
                try (outputs.records[Topics.campaignRewards.name] ?? [:]).values.map { try JSONValue.parse($0) }
                    .filter { $0["data"]?["campaignId"]?.stringValue == "birthday-budget" }.compactMap { $0["data"]?["memberId"]?.stringValue }
            }
            let rewards = (services: try budgetRewards(published), simulation: try budgetRewards(try Self.outputs(in: out)))
            #expect(rewards.services == [first], "the keeper grants the budget to the earlier birthday")
            #expect(rewards.simulation == [first], "so does the simulation")
            let (keeper, differences) = try Self.differences(published, simulatedIn: out, budget: "birthday-budget")
            #expect(keeper?["budgetLeft"]?.int64Value == 0, "the keeper spent the budget")
            #expect(differences.isEmpty, "\(differences.count) differences: \(differences.prefix(3))")
        }

        @Test func aSimulatedYearEqualsWhatTheServicesPublishMemberByMember() throws {
            let scenario = CampaignScenario(members: 1_000, seed: 71, spending: true)
            let published = try PlatformFaultTests().undisturbed(scenario, seed: 71)
            let directory = try temporaryDirectory("simulate")
            defer { try? FileManager.default.removeItem(at: directory) }
            let history = directory.appendingPathComponent("history.jsonl")
            // The small budget the services spent through the keeper, counted here in one store:
            // its triggers are orders, which both decide in event-time order.
            let budget = try CampaignsEndToEndTests.definitionEvent(CampaignsEndToEndTests.budgetCampaign, from: EventTime(millis: CampaignScenario.start))
            try Self.writeHistory([budget] + scenario.events, to: history)
            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
            #expect(status == 0, "\(output.suffix(2_000))")
            #expect(output.contains("simulated notifications"), "progress is told: \(output.prefix(600))")
            // Each service's line says what it applied and its time a record, from a clock that ran.
            for service in ["tiers", "campaigns", "points", "notifications"] {
                let line = output.split(separator: "\n").first { $0.hasPrefix("simulated \(service): ") }
                let micros = line?.components(separatedBy: " (").last?.split(separator: " ").first.flatMap { Int($0) }
                #expect(line?.hasSuffix(" µs a record)") == true && (micros ?? 0) > 0, "\(service)'s time is told: \(line ?? "no line")")
            }

            // Every output, record for record (the compacted topics' latest value per key).
            let (keeper, differences) = try Self.differences(published, simulatedIn: out, budget: "budget-test")
            #expect(keeper?["budgetLeft"]?.int64Value == 0 && keeper?["pointsGranted"]?.int64Value == 5_000, "the keeper spent the budget")
            #expect(differences.isEmpty, "\(differences.count) differences: \(differences.prefix(3))")

            // Every member's end state, field by field, against what the services published.
            func bySubject(_ topic: String) throws -> [String: [CloudEvent]] {
                try Dictionary(grouping: (published.records[topic] ?? [:]).values.map { try CloudEvent.decode($0) }) { $0.subject ?? "" }
            }
            let rewards = try bySubject(Topics.campaignRewards.name)
            let messages = try bySubject(Topics.notifications.name)
            let members = try Self.members(in: out)
            #expect(members.count == 1_000, "every registered member has an end state")
            var compared = (balances: 0, tiers: 0, campaigns: 0, messages: 0)
            for (member, state) in members.sorted(by: { $0.key < $1.key }) {
                let balanceBytes = try #require(published.records[Topics.pointsBalances.name]?[member], "\(member) has a balance")
                let balance = try JSONValue.parse(balanceBytes)
                for field in ["available", "pending", "debt"] {
                    #expect(state["points"]?["balance"]?[field] == balance[field], "\(member) \(field)")
                }
                #expect(state["points"]?["entries"]?.arrayValue?.count == balance["entries"]?.int64Value.map(Int.init), "\(member) ledger entries")
                compared.balances += 1
                if let bytes = published.records[Topics.tierStatus.name]?[member] {
                    let status = try JSONValue.parse(bytes)
                    #expect(state["tiers"]?["tier"] == status["tier"], "\(member) tier")
                    #expect(state["tiers"]?["tierSince"]?.stringValue.flatMap { try? EventTime.parse($0) }
                            == status["since"]?.stringValue.flatMap { try? EventTime.parse($0) }, "\(member) tier since")
                    compared.tiers += 1
                }
                // Rewards per campaign: as many as the member was published.
                var published: [String: Int64] = [:]
                for event in rewards[member] ?? [] { published[event.data["campaignId"]?.stringValue ?? "", default: 0] += 1 }
                var simulated: [String: Int64] = [:]
                for entry in state["campaigns"]?["campaigns"]?.arrayValue ?? [] {
                    if let times = entry["rewards"]?.int64Value, times > 0 { simulated[entry["campaign"]?.stringValue ?? ""] = times }
                }
                #expect(simulated == published, "\(member) rewards by campaign")
                if !published.isEmpty { compared.campaigns += 1 }
                // Messages: the same idempotency keys.
                let sent = Set((state["notifications"]?["sent"]?.arrayValue ?? []).compactMap { $0["idempotencyKey"]?.stringValue })
                let told = Set((messages[member] ?? []).compactMap { $0.data["idempotencyKey"]?.stringValue })
                #expect(sent == told, "\(member) messages")
                if !told.isEmpty { compared.messages += 1 }
            }
            #expect(compared.balances == 1_000 && compared.tiers > 500 && compared.campaigns > 300 && compared.messages > 500,
                    "members compared: \(compared)")
        }

        /// Member day at ×3 instead of ×2: each member-day order earns its base once more
        /// (DOMAIN.md: a multiplier campaign grants floor(base × (multiplier − 1)), base
        /// floor(paidMinor / 100)), and nothing else changes.
        @Test func aBaselineComparisonShowsWhatATripleMemberDayWouldHaveCost() throws {
            let directory = try temporaryDirectory("simulate-baseline")
            defer { try? FileManager.default.removeItem(at: directory) }
            var events: [CloudEvent] = []
            func add(_ type: String, _ member: String, _ time: String, _ data: JSONObject) throws {
                events.append(CloudEvent(
                    id: "e\(events.count + 1)", source: "shop", type: type, time: try EventTime.parse(time), subject: member, data: .object(data)))
            }
            for member in ["m1", "m2", "m3"] { try add(EventType.memberRegistered, member, "2026-01-02T09:00:00+08:00", [:]) }
            // Member days are the 18th; orders come long after the first-order campaign's 30 days.
            try add(EventType.orderPaid, "m1", "2026-03-18T10:00:00+08:00", ["orderId": "m1-a", "paidMinor": 12_345])
            try add(EventType.orderPaid, "m1", "2026-03-20T10:00:00+08:00", ["orderId": "m1-b", "paidMinor": 50_000])
            try add(EventType.orderPaid, "m2", "2026-04-18T23:59:00+08:00", ["orderId": "m2-a", "paidMinor": 99_999])
            try add(EventType.orderPaid, "m2", "2026-05-18T00:01:00+08:00", ["orderId": "m2-b", "paidMinor": 5_050])
            try add(EventType.orderPaid, "m3", "2026-03-10T10:00:00+08:00", ["orderId": "m3-a", "paidMinor": 30_000])
            try add(EventType.orderPaid, "m3", "2026-05-19T00:00:00+08:00", ["orderId": "m3-b", "paidMinor": 7_000])
            let history = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory(events, to: history)
            let reference = String(decoding: try ReferenceProgram.campaignsBytes(), as: UTF8.self)
            let memberDay = "\"reward\": {\"orderPointsMultiplier\": 2.0}"
            let triple = try #require(reference.range(of: memberDay), "the reference member day doubles order points")
            let proposal = directory.appendingPathComponent("campaigns-proposal.json")
            try reference.replacingCharacters(in: triple, with: "\"reward\": {\"orderPointsMultiplier\": 3.0}")
                .write(to: proposal, atomically: true, encoding: .utf8)

            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(
                ["--history", history.path, "--campaigns", proposal.path, "--baseline", "in-force", "--out", out.path], directory: directory)
            #expect(status == 0, "\(output.suffix(1_500))")

            let expected: [String: Int64] = ["m1": 12_345 / 100, "m2": 99_999 / 100 + 5_050 / 100, "m3": 0]
            let before = try Self.members(in: out.appendingPathComponent("baseline"))
            let after = try Self.members(in: out)
            for (member, difference) in expected {
                func points(_ state: JSONValue?) -> Int64 {
                    (state?["points"]?["balance"]?["available"]?.int64Value ?? 0) + (state?["points"]?["balance"]?["pending"]?.int64Value ?? 0)
                }
                #expect(before[member] != nil && after[member] != nil)
                #expect(points(after[member]) - points(before[member]) == difference, "\(member): \(points(before[member])) → \(points(after[member]))")
            }
            // The side-by-side figures show the same cost, for the campaign and for the points issued.
            let total = expected.values.reduce(0, +)
            let lines = output.split(separator: "\n").map(String.init)
            for label in ["member-day: points", "points issued", "outstanding liability"] {
                let line = try #require(lines.first { $0.hasPrefix(label + " ") }, "\(label) in: \(output.suffix(2_000))")
                #expect(line.hasSuffix("+\(ReportPage.grouped(total))"), "\(line)")
            }
            for label in ["points reversed", "members in growth", "win-back: coupons"] {
                let unchanged = try #require(lines.first { $0.hasPrefix(label + " ") }, "\(label) in: \(output.suffix(2_000))")
                #expect(unchanged.hasSuffix(" 0"), "\(unchanged)")
            }

            // Each simulation's report: the points issued are those of its ledger, and differ by the cost.
            var issuedByRun: [Int64] = []
            for run in [out, out.appendingPathComponent("baseline")] {
                let issued = try Self.events(in: run.appendingPathComponent("\(Topics.pointsLedger.name).jsonl"))
                    .filter { $0.event.data["kind"]?.stringValue == "earned" }.reduce(Int64(0)) { $0 + ($1.event.data["points"]?.int64Value ?? 0) }
                issuedByRun.append(issued)
                let page = directory.appendingPathComponent("report-\(run.lastPathComponent).html")
                let log = directory.appendingPathComponent("report-\(run.lastPathComponent).out")
                let cli = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path], log: log)
                try cli.startWith(arguments: ["report", "--simulation", run.path, "--out", page.path])
                cli.process!.waitUntilExit()
                #expect(cli.process!.terminationStatus == 0, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
                let html = try String(contentsOf: page, encoding: .utf8)
                #expect(html.contains("id=\"total-issued\" data-value=\"\(issued)\""), "\(run.lastPathComponent): issued \(issued)")
            }
            #expect(issuedByRun[0] - issuedByRun[1] == total)

            // Run again into the same directory: the earlier run's files go (the baseline with them);
            // a directory of other files is never emptied.
            let again = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
            #expect(again.status == 0, "\(again.output.suffix(600))")
            #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("baseline").path), "no file of the earlier run is left")
            let foreign = directory.appendingPathComponent("notes")
            try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
            try "mine".write(to: foreign.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
            let refused = try Self.simulate(["--history", history.path, "--out", foreign.path], directory: directory)
            #expect(refused.status != 0 && refused.output.contains("not a simulation's"), "\(refused.output.suffix(600))")
            #expect(FileManager.default.fileExists(atPath: foreign.appendingPathComponent("notes.txt").path))
        }

        /// A history with a line that is not a CloudEvent of a known type is refused before
        /// anything runs, naming the line; so are rule files that do not load.
        @Test func aBadHistoryOrRuleFileIsRefusedWithItsPlace() throws {
            let directory = try temporaryDirectory("simulate-refused")
            defer { try? FileManager.default.removeItem(at: directory) }
            let good = CloudEvent(
                id: "e1", source: "shop", type: EventType.memberRegistered, time: try EventTime.parse("2026-01-02T09:00:00+08:00"), subject: "m1",
                data: .object([:]))
            let cases: [(lines: [String], says: String)] = [
                ([String(decoding: good.encoded(), as: UTF8.self), "", "{\"id\": 3"], "history.jsonl:3: not a CloudEvent"),
                ([String(decoding: good.encoded(), as: UTF8.self).replacingOccurrences(of: "member.registered", with: "teleport.started")],
                 "history.jsonl:1: no input topic takes events of type teleport.started"),
            ]
            for (lines, says) in cases {
                let history = directory.appendingPathComponent("history.jsonl")
                try (lines.joined(separator: "\n") + "\n").write(to: history, atomically: true, encoding: .utf8)
                let out = directory.appendingPathComponent("out-\(UUID().uuidString.prefix(4))")
                let (status, output) = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
                #expect(status != 0 && output.contains(says), "\(output.suffix(600))")
                #expect(!FileManager.default.fileExists(atPath: out.path), "nothing is written")
            }
            let history = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory([good], to: history)
            let campaigns = directory.appendingPathComponent("campaigns.json")
            try "{\"campaigns\": [{\"id\": \"x\"}]}".write(to: campaigns, atomically: true, encoding: .utf8)
            let (status, output) = try Self.simulate(["--history", history.path, "--campaigns", campaigns.path], directory: directory)
            #expect(status != 0 && output.contains("campaigns \(campaigns.path) refused"), "\(output.suffix(600))")
        }

        /// A campaign defined in the history (a signed `campaign.defined`, read whole before the
        /// first record as the campaigns service reads its definitions) grants from its time on.
        @Test func aCampaignDefinedInTheHistoryGrantsItsReward() throws {
            let directory = try temporaryDirectory("simulate-definition")
            defer { try? FileManager.default.removeItem(at: directory) }
            let definition = try CampaignsEndToEndTests.definitionEvent(
                #"{"id":"history-bonus","version":1,"name":"Bonus","trigger":{"event":"order.paid"},"reward":{"points":777}}"#,
                from: try EventTime.parse("2026-01-01T00:00:00+08:00"))
            let events = [
                CloudEvent(id: "r1", source: "shop", type: EventType.memberRegistered, time: try EventTime.parse("2026-01-02T09:00:00+08:00"),
                           subject: "m1", data: .object([:])),
                definition,
                CloudEvent(id: "o1", source: "shop", type: EventType.orderPaid, time: try EventTime.parse("2026-03-01T10:00:00+08:00"),
                           subject: "m1", data: .object(["orderId": "m1-a", "paidMinor": 10_000])),
            ]
            let history = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory(events, to: history)
            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
            #expect(status == 0, "\(output.suffix(1_500))")
            let ledger = try Self.events(in: out.appendingPathComponent("\(Topics.pointsLedger.name).jsonl")).map(\.event)
            let granted = ledger.filter { $0.data["details"]?["campaign"]?.stringValue == "history-bonus" }
            #expect(granted.count == 1 && granted.first?.data["points"]?.int64Value == 777 && granted.first?.subject == "m1", "\(ledger.map(\.id))")
            let deadLetters = try Self.events(in: out.appendingPathComponent("\(Topics.deadLetters.name).jsonl")).map(\.event)
            #expect(!deadLetters.contains { $0.data["service"]?.stringValue == "campaigns" }, "\(deadLetters.map { $0.data["detail"]?.stringValue ?? "" })")
            #expect(output.contains("history-bonus: points"), "\(output.suffix(1_500))")
        }

        /// Two member ids that are one `String` but two record keys ("Zoé" composed and
        /// decomposed) are two members in the simulation, as they are to the services.
        @Test func lookalikeMemberIdsAreTwoMembersInTheSimulation() throws {
            let directory = try temporaryDirectory("simulate-lookalikes")
            defer { try? FileManager.default.removeItem(at: directory) }
            let composed = "Zo\u{E9}"
            let decomposed = "Zoe\u{301}"
            let time = try EventTime.parse("2026-03-01T09:00:00+08:00")
            let events = [
                CloudEvent(id: "r1", source: "shop", type: EventType.memberRegistered, time: time, subject: composed, data: .object([:])),
                CloudEvent(id: "r2", source: "shop", type: EventType.memberRegistered, time: time.adding(milliseconds: 1), subject: decomposed, data: .object([:])),
                CloudEvent(id: "o1", source: "shop", type: EventType.orderPaid, time: time.adding(milliseconds: 3_600_000), subject: composed,
                           data: .object(["orderId": "O1", "paidMinor": 50_000])),
                CloudEvent(id: "o2", source: "shop", type: EventType.orderPaid, time: time.adding(milliseconds: 3_600_001), subject: decomposed,
                           data: .object(["orderId": "O2", "paidMinor": 20_000])),
            ]
            let history = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory(events, to: history)
            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
            #expect(status == 0, "\(output.suffix(1_500))")
            let lines = try #require(FileManager.default.contents(atPath: out.appendingPathComponent("members.jsonl").path))
            let members = try Array(lines).split(separator: UInt8(ascii: "\n")).map { try JSONValue.parse(Array($0)) }
            // Each with its own order: its base points and its spend towards a tier.
            let views = members.map { member in
                (Array((member["member"]?.stringValue ?? "").utf8), member["points"]?["entries"]?.arrayValue?.first?["points"]?.int64Value,
                 member["tiers"]?["qualifyingSpendMinor"]?.int64Value)
            }
            #expect(views.count == 2 && views[0] == (Array(composed.utf8), 500, 50_000) && views[1] == (Array(decomposed.utf8), 200, 20_000), "\(members)")
            let newcomers = output.split(separator: "\n").first { $0.hasPrefix("members in newcomer") }
            #expect(newcomers?.split(separator: " ").last == "2", "the report counts both: \(output.suffix(1_500))")
        }

        /// A history is read in pieces from its file: lines ending in CRLF, blank lines and a
        /// last line with no newline are all read, whatever piece they fall in.
        @Test func aHistoryIsReadWholeWhateverItsLineEndings() throws {
            let directory = try temporaryDirectory("simulate-line-endings")
            defer { try? FileManager.default.removeItem(at: directory) }
            func registered(_ member: String) -> String {
                String(decoding: CloudEvent(
                    id: "e-\(member)", source: "shop", type: EventType.memberRegistered, time: EventTime(millis: 1_767_225_600_000), subject: member,
                    data: .object([:])).encoded(), as: UTF8.self)
            }
            // Over 1 MiB of registrations, so that a line straddles the reader's 1 MiB pieces.
            let members = (0..<8_000).map { "member-\($0)" }
            let text = members.dropLast().map { registered($0) }.joined(separator: "\r\n") + "\r\n\n" + registered(members.last!)
            let history = directory.appendingPathComponent("history.jsonl")
            try text.write(to: history, atomically: true, encoding: .utf8)
            #expect(text.utf8.count > 1 << 20)
            let out = directory.appendingPathComponent("out")
            let (status, output) = try Self.simulate(["--history", history.path, "--out", out.path], directory: directory)
            #expect(status == 0 && output.contains("simulating \(members.count) events"), "\(output.suffix(600))")
            let ended = try Self.members(in: out)
            #expect(ended.count == members.count && ended[members.last!] != nil && ended[members[4_000]] != nil)
        }

        /// `--history kafka` reads the running system's history: the shop's topics, the
        /// operators' signed commands on the command topic (not what the services sent there),
        /// with the keys as written; the same history from a file gives the same figures.
        @Test func theHistoryOfARunningSystemIsReadFromItsTopics() throws {
            let directory = try temporaryDirectory("simulate-kafka")
            defer { try? FileManager.default.removeItem(at: directory) }
            func event(_ id: String, _ type: String, _ member: String, _ time: String, _ data: JSONObject, source: String = "shop") throws -> CloudEvent {
                CloudEvent(id: id, source: source, type: type, time: try EventTime.parse(time), subject: member, data: .object(data))
            }
            let shop = [
                try event("k1", EventType.memberRegistered, "k-ann", "2026-01-02T09:00:00+08:00", [:]),
                try event("k2", EventType.memberRegistered, "k-bo", "2026-01-02T09:30:00+08:00", [:]),
                try event("k3", EventType.orderPaid, "k-ann", "2026-02-03T10:00:00+08:00", ["orderId": "a1", "paidMinor": 25_000]),
                try event("k4", EventType.orderPaid, "k-bo", "2026-02-04T10:00:00+08:00", ["orderId": "b1", "paidMinor": 8_800]),
                try event("k5", EventType.checkedIn, "k-bo", "2026-02-05T08:00:00+08:00", [:]),
            ]
            let adjustment = testCommandKeys.sign(try event(
                "k-adjust", EventType.adjust, "k-ann", "2026-02-06T10:00:00+08:00", ["points": 30, "reason": "goodwill", "operator": "ops-1"],
                source: "loyalty/cli"))
            // What a service sent to the command topic is not history: the simulation sends its own.
            let grant = testCommandKeys.sign(try event(
                "tier-bonus/k3", EventType.pointsGrant, "k-ann", "2026-02-03T10:00:00+08:00",
                ["component": "tier-bonus", "orderId": "a1", "points": 999], source: "loyalty/tiers"))
            let history = directory.appendingPathComponent("history.jsonl")
            try Self.writeHistory(shop + [adjustment], to: history)

            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for event in shop + [adjustment, grant] {
                let topic = Topics.inputTopic(forEventType: event.type)!
                try producer.send(topic: topic.name, key: Array(event.subject!.utf8), value: event.encoded())
            }
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let fromFile = directory.appendingPathComponent("from-file")
            let fromKafka = directory.appendingPathComponent("from-kafka")
            let file = try Self.simulate(["--history", history.path, "--out", fromFile.path], directory: directory)
            let kafka = try Self.simulate(
                ["--history", "kafka", "--out", fromKafka.path], directory: directory,
                environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers])
            #expect(file.status == 0 && kafka.status == 0, "\(file.output.suffix(500))\n\(kafka.output.suffix(500))")
            #expect(kafka.output.contains("simulating 6 events"), "five shop events and the adjustment: \(kafka.output.prefix(300))")
            let filed = try Self.events(in: fromFile.appendingPathComponent("\(Topics.pointsLedger.name).jsonl")).map(\.bytes)
            let read = try Self.events(in: fromKafka.appendingPathComponent("\(Topics.pointsLedger.name).jsonl")).map(\.bytes)
            #expect(!filed.isEmpty && Set(filed) == Set(read), "the same ledger from the file and from the topics")
            let members = try Self.members(in: fromKafka)
            #expect(members["k-ann"]?["points"]?["entries"]?.arrayValue?.contains { $0["causeId"]?.stringValue == "k-adjust" && $0["points"]?.int64Value == 30 } == true,
                    "the operator's adjustment is applied")
            #expect(try Self.events(in: fromKafka.appendingPathComponent("\(Topics.pointsLedger.name).jsonl"))
                .allSatisfy { $0.event.data["points"]?.int64Value != 999 }, "the service's earlier grant is not taken as history")
        }
    }
}
