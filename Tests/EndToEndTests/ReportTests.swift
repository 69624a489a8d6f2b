import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
@testable import Reporting
import Testing

extension EndToEnd {
    /// `loyalty report`: the points-health page of a running system, rendered in headless
    /// Chromium, with its totals checked against the ledger.
    @Suite struct ReportTests {
        static func chromium() throws -> URL {
            for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] where FileManager.default.isExecutableFile(atPath: path) {
                return URL(fileURLWithPath: path)
            }
            throw TestFailure("no chromium: scripts/install-deps installs Debian's chromium")
        }

        /// Runs headless Chromium on `page` with `arguments`; returns standard output and error.
        static func runChromium(_ arguments: [String], page: URL) throws -> (output: String, errors: String) {
            let process = Process()
            process.executableURL = try chromium()
            process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                                 "--enable-logging=stderr", "--v=0"] + arguments + [page.absoluteString]
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let out = output.fileHandleForReading.readDataToEndOfFile()
            let err = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }

        @Test func theUpliftIntervalAndTheExpiryForecastFollowTheirDefinitions() throws {
            typealias Group = PointsHealth.Campaign.Group
            let uplift = try #require(PointsHealth.uplift(
                treated: Group(members: 90, triggers: 400, orders: 120), control: Group(members: 10, triggers: 100, orders: 20)))
            // 120/400 − 20/100 = 0.1; 1.96 × √(120/400² + 20/100²) = 0.1002…
            #expect(abs(uplift.estimate - 0.1) < 1e-9)
            let halfWidth: Double = 1.96 * (120.0 / 160_000.0 + 20.0 / 10_000.0).squareRoot()
            #expect(abs(uplift.high - uplift.estimate - halfWidth) < 1e-9)
            #expect(PointsHealth.uplift(treated: Group(members: 1, triggers: 1, orders: 1), control: Group()) == nil, "no control triggered")

            let program = try Program.load(json: ReferenceProgram.bytes())
            func entry(_ id: String, _ time: String, kind: String, points: Int64, lots: [JSONValue]) throws -> CloudEvent {
                CloudEvent(id: id, source: "loyalty/points", type: "points.\(kind)", time: try EventTime.parse(time), subject: "m",
                           data: ["memberId": "m", "sequence": .int(Int64(id.dropFirst())!), "kind": .string(kind), "points": .int(points), "lots": .array(lots)])
            }
            let ledger = [
                try entry("e1", "2026-01-10T10:00:00+08:00", kind: "earned", points: 500,
                          lots: [["lotId": "L1", "delta": 500, "expiresAt": "2027-02-01T00:00:00+08:00"]]),
                try entry("e2", "2026-02-10T10:00:00+08:00", kind: "earned", points: 100,
                          lots: [["lotId": "L2", "delta": 100, "expiresAt": "2027-03-01T00:00:00+08:00"]]),
                try entry("e3", "2026-03-05T10:00:00+08:00", kind: "redeemed", points: -200, lots: [["lotId": "L1", "delta": -200]]),
            ]
            let health = PointsHealth(asOf: try EventTime.parse("2026-03-31T23:59:59+08:00"), program: program, ledger: ledger,
                                      tierChanges: [], campaignDefinitions: [], campaignResults: [], deadLetters: [])
            #expect(health.months.map(\.label) == ["2026-01", "2026-02", "2026-03"])
            #expect(health.months.map(\.liability) == [500, 600, 400])
            #expect(health.totalIssued == 600 && health.totalRedeemed == 200 && health.liability == 400)
            // A lot expiring at 00:00 on 1 February 2027 is January's.
            #expect(health.expiryForecast.count == 12 && health.expiryForecast.first?.month == "2026-03")
            #expect(health.expiryForecast.filter { $0.points > 0 }.map { "\($0.month) \($0.points)" } == ["2027-01 300", "2027-02 100"])
            let earlier = PointsHealth(asOf: try EventTime.parse("2026-02-28T00:00:00+08:00"), program: program, ledger: ledger,
                                       tierChanges: [], campaignDefinitions: [], campaignResults: [], deadLetters: [])
            #expect(earlier.liability == 600 && earlier.totalRedeemed == 0, "as of a past instant")
        }

        @Test func aLedgerEntryReadFromAPublishedRecordIsTheEntryOfTheWholeEvent() throws {
            // The simulation's summary reads only what an entry holds of each ledger record.
            let time = try EventTime.parse("2026-01-10T10:00:00+08:00")
            let events = [
                // The member named in the data, not the record's key, is the entry's.
                CloudEvent(id: "s1/base", source: "loyalty/points", type: "points.earned", time: time, subject: "key-1", data: [
                    "entryId": "s1/base", "memberId": "m1", "sequence": 3, "kind": "earned", "source": "base", "points": 440,
                    "delta": ["available": 0, "pending": 440], "details": ["campaign": "first-order"],
                    "lots": [["lotId": "L1", "delta": 440, "expiresAt": "2027-01-31T16:00:00.000Z"], ["lotId": "L2", "delta": -3]],
                ]),
                CloudEvent(id: "r1", source: "loyalty/points", type: "points.refused", time: time, subject: "m2",
                           data: ["sequence": 4, "kind": "refused", "reason": "insufficient-points", "points": 0]),
                CloudEvent(id: "w1", source: "loyalty/points", type: "points.expiry-warning", time: time, subject: "m3",
                           data: ["memberId": "m3", "sequence": 5, "points": 12, "expiresAt": "2027-01-31T16:00:00.000Z"]),
            ]
            func fields(_ entry: PointsHealth.LedgerEntry) -> String {
                "\(entry.time.millis) \(entry.sequence) \(entry.role) \(entry.kind) \(entry.member) \(entry.points) "
                    + entry.lots.map { "\($0.id) \($0.delta) \($0.expiresAt?.millis ?? -1)" }.joined(separator: ",")
            }
            for event in events {
                let read = try #require(PointsHealth.LedgerEntry(publishedRecord: event.encoded()))
                #expect(fields(read) == fields(PointsHealth.LedgerEntry(event)))
            }
            #expect(fields(try #require(PointsHealth.LedgerEntry(publishedRecord: events[0].encoded()))).hasSuffix(
                "3 movement earned m1 440 L1 440 1801411200000,L2 -3 -1"))
            #expect(PointsHealth.LedgerEntry(publishedRecord: Array(#"{"type":"points.earned"}"#.utf8)) == nil, "no time")
        }

        @Test func aLedgerEntryReadInPlaceIsTheEntryOfItsProjectionWhateverTheBytes() throws {
            // The summary reads each ledger record where it stands; the projection of what an
            // entry holds is the reading it stands for. A record with escapes, members passed
            // over, a refusal and lots, then every byte of it broken and the record cut at
            // every byte, then duplicates and values of the wrong type where they are read or not.
            let record = #"""
                {"specversion":"1.0","id":"s1/base","source":"loyalty/points","type":"points.earned","time":"2026-01-06T17:28:45.025Z",
                 "subject":"m\u00e934","data":{"entryId":"s1/base","memberId":"m\u0031","sequence":7,"kind":"earned","reason":"x",
                 "points":440,"delta":{"available":0,"pending":440},"lots":[{"lotId":"L1","delta":440,"expiresAt":"2027-01-31T16:00:00.000Z"},
                 {"lotId":"L\"2","delta":-3,"note":[1,{"a":null}]},{"delta":5},7,{"lotId":"L3","expiresAt":"2027-01-31T16:00:00+08:00"}],
                 "details":{"campaign":"first-order"}}}
                """#
            let bytes = Array(record.utf8)
            var variants: [[UInt8]] = [bytes] + (0...bytes.count).map { Array(bytes[..<$0]) }
            for index in bytes.indices {
                for replacement: UInt8 in [0x7D, 0x5D, 0x2C, 0x22, 0x5C, 0x78, 0x30, 0x01, 0xFF, 0x7B] {
                    var variant = bytes
                    variant[index] = replacement
                    variants.append(variant)
                }
            }
            for (find, replace) in [
                (#""type":"points.earned""#, #""type":"points.refused""#), (#""type":"points.earned""#, #""type":"points.expiry-warning""#),
                (#""subject""#, #""type""#), (#""entryId""#, #""kind""#), (#""entryId""#, #""specversion""#), (#""note""#, #""delta""#),
                (#""note""#, #""extra""#), (#""note""#, #""x":1,"x""#), (#""details""#, #""lots""#), (#""campaign""#, #""campaign":1,"campaign""#),
                (#""subject":"m\u00e934""#, #""subject":{"a":1,"a":2}"#), (#""sequence":7"#, #""sequence":{"a":1,"a":2}"#),
                (#""sequence":7"#, #""sequence":7.0"#), (#""points":440"#, #""points":"440""#), (#""delta":{"#, #""delta":{"x":1,"x":2,"#),
                (#""lotId":"L1""#, #""lotId":["a",{"b":1,"b":2}]"#), (#""time":"2026-01-06T17:28:45.025Z""#, #""time":"2026-02-30T00:00:00Z""#),
                (#""time":"2026-01-06T17:28:45.025Z""#, #""time":"2026-01-06T17:28:45+08:00""#), (#""data":{"#, #""data":[{"#),
                (#""memberId":"m\u0031","#, ""), (#""type":"points.earned""#, #""t\u0079pe":"points.earned""#),
                (#""type":"points.earned""#, #""type":"points.earned","t\u0079pe":"x""#), (#""delta":-3"#, #""delta":-3,"lotI\u0064":"y""#),
                (#""entryId""#, #""type","entryId""#), (#""kind":"earned""#, #""kind":"earned","kind"}"#),
                // Canonically equal keys of other lengths: a duplicate from an object's 17th member on, as a parse finds it.
                (#""delta":-3,"#, #""delta":-3,"\u00e9":1,"# + (1...14).map { #""k\#($0)":0,"# }.joined() + #""e\u0301":2,"#),
                (#""delta":-3,"#, #""delta":-3,"\u00e9":1,"# + (1...13).map { #""k\#($0)":0,"# }.joined() + #""e\u0301":2,"#),
                // Nesting to the limit and past it inside a lot, and many lots, empty or not.
                (#""note":[1,{"a":null}]"#, #""note":"# + String(repeating: "[", count: 124) + String(repeating: "]", count: 124)),
                (#""note":[1,{"a":null}]"#, #""note":"# + String(repeating: "[", count: 125) + String(repeating: "]", count: 125)),
                (#""lots":["#, #""lots":["# + Array(repeating: #"{},{"lotId":"x"},[[]],"#, count: 200).joined()),
            ] {
                variants.append(Array(record.replacingOccurrences(of: find, with: replace).utf8))
            }
            func fields(_ entry: PointsHealth.LedgerEntry?) -> String {
                guard let entry else { return "none" }
                return "\(entry.time.millis) \(entry.sequence) \(entry.role) \(entry.kind) \(entry.member) \(entry.points) "
                    + entry.lots.map { "\($0.id) \($0.delta) \($0.expiresAt?.millis ?? -1)" }.joined(separator: ",")
            }
            var read = 0
            for variant in variants {
                let inPlace = PointsHealth.LedgerEntry(publishedRecord: variant)
                #expect(fields(inPlace) == fields(PointsHealth.LedgerEntry(projecting: variant)), "\(String(decoding: variant, as: UTF8.self))")
                if inPlace != nil { read += 1 }
            }
            #expect(fields(PointsHealth.LedgerEntry(publishedRecord: bytes)) == "1767720525025 7 movement earned m1 440 L1 440 1801411200000,L\"2 -3 -1,L3 0 1801382400000")
            #expect(read > 100 && read < variants.count / 2)
            // The nesting limit is where a parse has it: one level more is refused.
            #expect(variants.suffix(3).map { PointsHealth.LedgerEntry(publishedRecord: $0) != nil } == [true, false, true])
        }

        @Test func theReportOfAYearRendersInChromiumWithTheLedgersTotals() throws {
            let scenario = CampaignScenario(members: 150, seed: 77, spending: true)
            let directory = try temporaryDirectory("report-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for record in scenario.records {
                try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
            }
            #expect(producer.flush(timeoutMilliseconds: 60_000))
            let environment = [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_WAIT_FOR": "tiers,campaigns",
            ]
            let services = ["points", "tiers", "campaigns"].map {
                ServiceProcess(name: $0, environment: environment, log: directory.appendingPathComponent("\($0).log"))
            }
            for service in services { try service.start() }
            defer { for service in services { _ = service.stop() } }
            let probe = try EndProbe(bootstrap: broker.bootstrapServers)
            let deadline = Date().addingTimeInterval(240)
            while Date() < deadline {
                if probe.hasReadToEnd("tiers", in: directory, topics: [Topics.orders.name])
                    && probe.hasReadToEnd("campaigns", in: directory, topics: [Topics.members.name, Topics.orders.name, Topics.engagement.name])
                    && probe.hasReadToEnd("points", in: directory, topics: [
                        Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name,
                    ]) { break }
                usleep(500_000)
            }
            #expect(Date() < deadline, "the services read the year")
            // and published what they committed.
            while Date() < deadline, ["points", "tiers", "campaigns"].contains(where: { serviceCount(in: directory, $0, "SELECT COUNT(*) FROM outbox") != 0 }) {
                usleep(200_000)
            }

            // The ledger as published: what the page's totals must equal.
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name, Topics.pointsBalances.name])
            defer { reader.close() }
            reader.readToEnd(seconds: 30)
            let ledger = try reader.records.filter { $0.topic == Topics.pointsLedger.name }.map { try CloudEvent.decode($0.value!) }
                .filter { $0.type != "points.refused" && $0.type != "points.expiry-warning" }
            // The liability from another source: each member's latest published balance.
            var latest: [String: JSONValue] = [:]
            for record in reader.records where record.topic == Topics.pointsBalances.name {
                let balance = try CloudEvent.decode(record.value!)
                latest[balance.subject ?? ""] = balance.data
            }
            let owed = latest.values.reduce(Int64(0)) {
                $0 + ($1["available"]?.int64Value ?? 0) + ($1["pending"]?.int64Value ?? 0) - ($1["debt"]?.int64Value ?? 0)
            }
            func sum(_ kinds: Set<String>) -> Int64 {
                ledger.filter { kinds.contains($0.data["kind"]?.stringValue ?? "") }.reduce(0) { $0 + ($1.data["points"]?.int64Value ?? 0) }
            }
            let issued = sum(["earned", "imported"]), redeemed = -sum(["redeemed", "cash-offset"])
            let liability = ledger.reduce(0) { $0 + ($1.data["points"]?.int64Value ?? 0) }
            #expect(issued > 0 && redeemed > 0 && liability > 0)
            #expect(liability == owed, "the ledger's sum is what the members' balances add up to")

            for locale in ["en", "zh-CN"] {
                let page = directory.appendingPathComponent("report-\(locale).html")
                let cli = ServiceProcess(name: "loyalty", environment: environment, log: directory.appendingPathComponent("report-\(locale).log"))
                try cli.startWith(arguments: ["report", "--locale", locale, "--out", page.path])
                cli.process?.waitUntilExit()
                #expect(cli.stop() == 0, "\((try? String(contentsOf: directory.appendingPathComponent("report-\(locale).log"), encoding: .utf8)) ?? "")")
                let html = try String(contentsOf: page, encoding: .utf8)
                #expect(!html.contains("<script") && !html.contains(" src=") && !html.contains("<link"), "no scripts, nothing fetched")

                let (dom, errors) = try Self.runChromium(["--dump-dom"], page: page)
                #expect(!errors.contains("CONSOLE"), "the page logs no errors: \(errors.split(separator: "\n").filter { $0.contains("CONSOLE") }.prefix(3))")
                for chart in ["chart-flows", "chart-liability", "chart-expiry", "chart-tiers", "chart-campaigns", "chart-dead-letters", "chart-refusals"] {
                    #expect(dom.contains("<svg id=\"\(chart)\""), "\(locale): \(chart) is on the page")
                }
                func value(_ id: String) -> Int64? {
                    guard let range = dom.range(of: "id=\"\(id)\" data-value=\"") else { return nil }
                    return Int64(dom[range.upperBound...].prefix { $0 != "\"" })
                }
                #expect(value("total-issued") == issued, "\(locale): issued")
                #expect(value("total-redeemed") == redeemed, "\(locale): redeemed")
                #expect(value("liability") == owed, "\(locale): liability")
                #expect(value("total-expired") == -sum(["expired"]) && value("total-deducted") == -sum(["deducted"]), "\(locale): expired and deducted")
                #expect(dom.contains(locale == "en" ? "Points health" : "积分健康报告"))
            }

            // The screenshot a reader can look at: .build/report-screenshot.png.
            var root = ServiceProcess.productsDirectory
            while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) && root.path != "/" { root.deleteLastPathComponent() }
            let screenshot = root.appendingPathComponent(".build/report-screenshot.png")
            try? FileManager.default.removeItem(at: screenshot)
            _ = try Self.runChromium(["--screenshot=\(screenshot.path)", "--window-size=1280,3600"], page: directory.appendingPathComponent("report-en.html"))
            let png = try #require(FileManager.default.contents(atPath: screenshot.path), "chromium saved a screenshot")
            #expect(png.count > 10_000 && Array(png.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
        }
    }
}
