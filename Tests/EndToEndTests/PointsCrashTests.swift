import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

extension EndToEndSecondLane {
    /// The real `points` executable on the embedded broker, killed with SIGKILL mid-stream.
    @Suite struct PointsCrashTests {
        struct Published {
            var ledger: [String: [UInt8]] = [:]
            var conflictingIDs: Set<String> = []
            var balances: [String: JSONObject] = [:]
            var deadLetterReasons: [String: Int] = [:]
            var sequences: [String: Set<Int64>] = [:]
            var refusals = 0
            var entries = 0
        }

        /// Folds the records read so far into what was published.
        func collect(_ records: ArraySlice<ConsumedRecord>, into published: inout Published) throws {
            for record in records {
                let event = try CloudEvent.decode(record.value!)
                switch record.topic {
                case Topics.deadLetters.name:
                    if let reason = event.data["reason"]?.stringValue, published.ledger["dead-letter " + event.id] == nil {
                        published.ledger["dead-letter " + event.id] = record.value!
                        published.deadLetterReasons[reason, default: 0] += 1
                    }
                case Topics.pointsBalances.name:
                    let data = event.data.objectValue!
                    let member = data["memberId"]!.stringValue!
                    if (data["entries"]?.int64Value ?? 0) >= (published.balances[member]?["entries"]?.int64Value ?? -1) {
                        published.balances[member] = data
                    }
                default:
                    if let known = published.ledger[event.id] {
                        if known != record.value! { published.conflictingIDs.insert(event.id) }
                        continue
                    }
                    published.ledger[event.id] = record.value!
                    if event.type == "points.refused" {
                        published.refusals += 1
                    } else {
                        published.entries += 1
                        published.sequences[event.subject!, default: []].insert(event.data["sequence"]!.int64Value!)
                    }
                }
            }
        }

        @Test func everyEventIsAppliedExactlyOnceAcrossThreeKills() throws {
            let scenario = PointsScenario(members: 500, days: 60, seed: 20261123)
            #expect(scenario.records.count >= 20_000)
            let directory = try temporaryDirectory("points-crash")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let service = ServiceProcess(
                name: "points",
                environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                    "LOYALTY_SESSION_TIMEOUT_MS": "3000", "LOYALTY_TASK_IDLE_MS": "300",
                ],
                log: directory.appendingPathComponent("points.log"))
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func publish(_ range: Range<Int>) throws {
                for record in scenario.records[range] {
                    try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
                }
                #expect(producer.flush(timeoutMilliseconds: 30_000))
            }
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name, Topics.pointsBalances.name, Topics.deadLetters.name])
            defer { reader.close() }

            // Publish in four parts; kill the service while it works through each of the first three.
            let parts = stride(from: 0, to: scenario.records.count, by: scenario.records.count / 4 + 1).map {
                $0..<min($0 + scenario.records.count / 4 + 1, scenario.records.count)
            }
            try service.start()
            var kills = 0
            for part in parts {
                try publish(part)
                guard kills < 3 else { continue }
                // Let it get going on this part, then pull the plug.
                let before = reader.records.count
                let deadline = Date().addingTimeInterval(60)
                while reader.records.count < before + 300 && Date() < deadline { reader.poll(milliseconds: 100) }
                #expect(service.isRunning, "the service died by itself: see \(service.log.path)")
                service.kill()
                kills += 1
                try service.start()
            }
            #expect(kills == 3)

            // Wait until every expected entry and refusal has been published.
            let expectedEntries = Set(scenario.expected.values.flatMap(\.entryIDs))
            let expectedRefusals = Set(scenario.expected.values.flatMap(\.refusalIDs))
            var published = Published()
            var consumed = 0
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                reader.poll(milliseconds: 500)
                try collect(reader.records[consumed...], into: &published)
                consumed = reader.records.count
                let done = expectedEntries.isSubset(of: published.ledger.keys) && expectedRefusals.isSubset(of: published.ledger.keys)
                    && published.balances.count == scenario.expected.count
                    && scenario.expected.keys.allSatisfy { member in
                        published.balances[member]?["entries"]?.int64Value == Int64(published.sequences[member]?.count ?? -1)
                    }
                if done { break }
            }
            #expect(service.stop() == 0, "a requested stop exits 0")
            reader.poll(milliseconds: 1000)
            try collect(reader.records[consumed...], into: &published)

            // No ledger event id was published with two different payloads.
            #expect(published.conflictingIDs.isEmpty)
            // Exactly the expected entries and refusals (releases aside), each once.
            let publishedEntryIDs = Set(published.ledger.keys.filter { !$0.hasPrefix("release/") && !$0.hasPrefix("dead-letter ") && !$0.hasSuffix("/refused") })
            let publishedRefusalIDs = Set(published.ledger.keys.filter { $0.hasSuffix("/refused") })
            #expect(publishedEntryIDs.subtracting(expectedEntries).isEmpty, "unexpected entries")
            #expect(expectedEntries.subtracting(publishedEntryIDs).isEmpty, "missing entries")
            #expect(publishedRefusalIDs == expectedRefusals)
            // Each member's ledger is numbered 1…n without gaps.
            for (member, sequences) in published.sequences {
                #expect(sequences == Set(1...Int64(sequences.count)), "\(member)")
            }
            // Every balance equals the one computed from the events.
            var mismatches: [String] = []
            for (member, expected) in scenario.expected {
                guard let balance = published.balances[member] else { mismatches.append("\(member): no balance"); continue }
                let actual = (balance["available"]!.int64Value!, balance["pending"]!.int64Value!, balance["debt"]!.int64Value!,
                              balance["lifetimeEarned"]!.int64Value!, balance["lifetimeReversed"]!.int64Value!)
                let wanted = (max(expected.net, 0), Int64(0), max(-expected.net, 0), expected.earned, expected.reversed)
                if actual != wanted { mismatches.append("\(member): \(actual) != \(wanted)") }
            }
            #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
            #expect(published.deadLetterReasons == scenario.expectedDeadLetters)

            // The inbox holds each distinct event, and each command the service sent itself, once.
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path))
            let inbox = try database.prepare("SELECT COUNT(*) FROM inbox").queryOne { $0.int64(0) }
            #expect(inbox == Int64(scenario.events.count + scenario.derivedCommands))
            let echoes = try database.prepare("SELECT COUNT(*) FROM echoes").queryOne { $0.int64(0) }
            #expect(echoes == 0, "every command sent to itself came back")
            let outbox = try database.prepare("SELECT COUNT(*) FROM outbox").queryOne { $0.int64(0) }
            #expect(outbox == 0, "a graceful stop flushes the outbox")
        }
    }
}
