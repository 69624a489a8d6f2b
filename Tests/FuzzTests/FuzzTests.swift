import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

import CampaignsService
import NotificationsService
import PointsService
import TiersService

/// Random and mutated records thrown at each service's decode-and-apply path, in process, on a
/// real store, with a fixed seed and a bounded number of records: no crash; every record is
/// applied, passed over, a duplicate, or dead-lettered with a reason; every refusal has a
/// reason; points balances equal the sums of their ledger entries; no clock leaves the range
/// of the valid records' times.
@Suite struct FuzzTests {
    static let recordsPerService = 3_000
    static let seed: UInt64 = 20_261_129

    @Test func pointsSurvivesHostileRecords() throws {
        let processor = PointsProcessor(program: try Program.load(json: ReferenceProgram.bytes()), commandKeys: fuzzKeys)
        let run = try FuzzRun(processor: processor, seed: Self.seed)
        try run.throwRecords(Self.recordsPerService)
        run.report()
        // Every member's balance is the sum of its ledger entries, and the last entry says so.
        let members = try run.database.prepare("SELECT member, available, pending, debt FROM accounts").query { row in
            (row.string(0), row.int64(1), row.int64(2), row.int64(3))
        }
        #expect(!members.isEmpty)
        for (member, available, pending, debt) in members {
            #expect(available >= 0 && pending >= 0 && debt >= 0, "\(member)")
            let sum = try run.database.prepare("SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = ?").queryOne(.text(member)) { $0.int64(0) } ?? 0
            #expect(sum == available + pending - debt, "\(member): balance is the sum of the ledger")
            let last = try run.database.prepare(
                "SELECT available_after, pending_after, debt_after FROM ledger WHERE member = ? ORDER BY sequence DESC LIMIT 1"
            ).queryOne(.text(member)) { ($0.int64(0), $0.int64(1), $0.int64(2)) }
            if let last { #expect(last == (available, pending, debt), "\(member): the last entry's balance is the balance") }
        }
        let refusals = try run.database.prepare("SELECT reason FROM refusals").query { $0.string(0) }
        #expect(refusals.allSatisfy { !$0.isEmpty })
        #expect(run.tally.applied > 0 && run.tally.deadLettered > 0)
    }

    @Test func tiersSurvivesHostileRecords() throws {
        let run = try FuzzRun(processor: TiersProcessor(program: try Program.load(json: ReferenceProgram.bytes())), seed: Self.seed)
        try run.throwRecords(Self.recordsPerService)
        run.report()
        #expect(run.tally.applied > 0 && run.tally.deadLettered > 0)
    }

    @Test func campaignsSurvivesHostileRecordsAndDefinitions() throws {
        let program = try Program.load(json: ReferenceProgram.bytes())
        let defaults = try CampaignDefinition.loadFile(json: ReferenceProgram.campaignsBytes(), tiers: program.tiers.levels.map(\.id))
        let run = try FuzzRun(processor: CampaignsProcessor(program: program, defaults: defaults, commandKeys: fuzzKeys), seed: Self.seed)
        try run.throwDefinitions(300)
        try run.throwRecords(Self.recordsPerService)
        run.report()
        #expect(run.tally.applied > 0 && run.tally.deadLettered > 0)
    }

    @Test func notificationsSurvivesHostileRecords() throws {
        let program = try Program.load(json: ReferenceProgram.bytes())
        let templates = try MessageTemplates.load(json: ReferenceProgram.templatesBytes())
        let run = try FuzzRun(processor: NotificationsProcessor(program: program, templates: templates), seed: Self.seed)
        try run.throwRecords(Self.recordsPerService)
        run.report()
        #expect(run.tally.applied > 0 && run.tally.deadLettered > 0)
    }
}

/// What became of the records thrown at a service.
struct FuzzTally {
    var thrown = 0
    var applied = 0
    var passedOver = 0
    var duplicates = 0
    var deadLettered = 0
    var skipped = 0
    var reasons: [String: Int] = [:]
    var mutations: [String: Int] = [:]
}

/// One service's store, fed mutated records through the exactly-once transaction.
final class FuzzRun<Processor: StreamProcessor> {
    let applier: BatchApplier<Processor>
    var database: Database { applier.database }
    let directory: URL
    var random: FuzzRandom
    var tally = FuzzTally()
    private var offsets: [TopicPartition: Int64] = [:]
    private var sent: [(topic: String, key: [UInt8]?, value: [UInt8]?)] = []
    /// Valid events, in time order, to mutate: a small shop's year.
    private let corpus: [(topic: String, event: JSONValue)]
    private let latestValidTime: Int64

    init(processor: Processor, seed: UInt64) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(processor.name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("\(processor.name).sqlite").path))
        applier = try BatchApplier(database: database, processor: processor, timerMode: .streamTime, inboxHorizon: 90 * 86_400_000)
        applier.futureMargin = 366 * 86_400_000
        applier.commandKeys = fuzzKeys
        random = FuzzRandom(seed: seed)
        var corpus: [(String, JSONValue)] = []
        let start = try EventTime.parse("2026-01-01T09:00:00+08:00").millis
        var time = start
        let members = (0..<12).map { "fz\($0)" }
        func event(_ type: String, _ member: String, _ data: JSONValue) -> (String, JSONValue) {
            time += 3_600_000 * Int64(1 + corpus.count % 7)
            let id = "fz-\(corpus.count)"
            return (Topics.inputTopic(forEventType: type)?.name ?? Topics.members.name, .object(JSONObject([
                "specversion": "1.0", "id": .string(id), "source": "shop", "type": .string(type),
                "time": .string(EventTime(millis: time).description), "subject": .string(member), "data": data,
            ])))
        }
        for (index, member) in members.enumerated() {
            var data: JSONObject = [
                "channels": ["sms": .string("1380013800\(index % 10)"), "email": .string("\(member)@example.com")],
                "marketingConsent": true, "locale": "en", "birthday": .string("1990-0\(1 + index % 9)-15"),
            ]
            if index > 0 { data["referrerId"] = .string(members[index - 1]) }
            corpus.append(event(EventType.memberRegistered, member, .object(data)))
        }
        for round in 0..<40 {
            for (index, member) in members.enumerated() where (round + index) % 3 == 0 {
                let order = "O-\(member)-\(round)"
                corpus.append(event(EventType.orderPaid, member, ["orderId": .string(order), "paidMinor": .int(Int64(5_000 + 1_000 * index)), "lines": [["category": "apparel", "paidMinor": .int(Int64(5_000 + 1_000 * index))]]]))
                corpus.append(event(EventType.checkedIn, member, [:]))
                if round % 4 == 1 { corpus.append(event(EventType.orderRefunded, member, ["orderId": .string(order), "refundId": .string("F-\(order)"), "refundMinor": 1_000])) }
                if round % 5 == 2 { corpus.append(event(EventType.reviewPosted, member, [:])) }
                if round % 6 == 3 { corpus.append(event(EventType.redeem, member, ["rewardId": "express-delivery", "quantity": 1])) }
                if round % 7 == 4 { corpus.append(event(EventType.transfer, member, ["toMemberId": .string(members[(index + 1) % members.count]), "transferId": .string("T-\(order)"), "points": 20])) }
                if round % 8 == 5 { corpus.append(event(EventType.adjust, member, ["points": 15, "reason": "goodwill", "operator": "ops"])) }
                if round % 9 == 6 { corpus.append(event(EventType.pointsGrant, member, ["component": "campaign-bonus", "points": 30, "orderId": .string(order), "campaignId": "member-day"])) }
                if round % 10 == 7 { corpus.append(event(EventType.taskCompleted, member, ["task": "newcomer"])) }
                if round % 11 == 8 { corpus.append(event(EventType.memberUpdated, member, ["locale": "zh-CN"])) }
            }
        }
        corpus.append(event(EventType.memberClosed, members[3], [:]))
        // Each service gets the records of the topics it reads; the platform's commands signed
        // (mutants of them then carry a signature that no longer fits).
        self.corpus = corpus.filter { processor.inputTopics.contains($0.0) }.map { topic, event in
            guard let type = event["type"]?.stringValue, [EventType.adjust, EventType.pointsGrant].contains(type),
                  let decoded = try? CloudEvent.decode(event), let signed = try? JSONValue.parse(fuzzKeys.sign(decoded).encoded())
            else { return (topic, event) }
            return (topic, signed)
        }
        latestValidTime = time
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Throws `count` records at the service, in batches, then checks that each was accounted
    /// for and that no clock left the valid records' range.
    func throwRecords(_ count: Int) throws {
        var batch: [PolledRecord<Processor.Body>] = []
        for index in 0..<count {
            // The corpus in order, with mutants among it, so that valid records keep state moving.
            let (topic, key, value) = nextRecord(position: index, of: count)
            let partition = key.map { Murmur2Partitioner.partition(of: $0, partitions: Topics.partitionCount) } ?? 0
            let location = TopicPartition(topic: topic, partition: partition)
            let offset = offsets[location, default: 0]
            offsets[location] = offset + 1
            let record = ConsumedRecord(topic: topic, partition: partition, offset: offset, key: key, value: value)
            let decoded: Result<Decoded<Processor.Body>, Rejection>
            do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
            if case .success(let input) = decoded, !input.isRelevant { tally.passedOver += 1 }
            batch.append(PolledRecord(record: record, decoded: decoded))
            tally.thrown += 1
            if batch.count == 40 || index == count - 1 {
                try apply(batch)
                batch.removeAll()
            }
        }
        #expect(tally.applied + tally.passedOver + tally.duplicates + tally.deadLettered + tally.skipped == tally.thrown,
                "every record is applied, passed over, a duplicate or dead-lettered")
        let clocks = try database.prepare("SELECT MAX(stream_time) FROM task_clock").queryOne { $0.int64(0) } ?? 0
        #expect(clocks <= latestValidTime + 366 * 86_400_000, "no clock was dragged ahead: \(EventTime(millis: clocks))")
    }

    /// Throws mutated campaign definitions at the broadcast path (campaigns only).
    func throwDefinitions(_ count: Int) throws {
        let topic = Topics.campaignDefinitions.name
        for index in 0..<count {
            var definition: JSONObject = [
                "id": .string("fz-campaign-\(index % 7)"), "version": .int(Int64(index + 1)), "name": "fuzz",
                "trigger": ["event": "order.paid", "when": "order.paidMinor >= 1000"], "reward": ["points": 10],
            ]
            switch random.below(6) {
            case 0: definition["trigger"] = ["event": "order.paid", "when": .string(String(repeating: "(", count: 50_000) + "true" + String(repeating: ")", count: 50_000))]
            case 1: definition["trigger"] = ["event": "order.paid", "when": .string(String(repeating: "!", count: 5_000) + "true")]
            case 2: definition["reward"] = ["points": .number("99999999999999999999")]
            case 3: definition["budgetPoints"] = .int(-5)
            case 4: definition = random.mutate(.object(definition)).objectValue ?? definition
            default: break
            }
            let value = JSONValue.object([
                "specversion": "1.0", "id": .string("def-\(index)"), "source": "loyalty/cli", "type": "campaign.defined",
                "time": "2026-01-01T00:00:00+08:00", "subject": .string("fz-campaign-\(index % 7)"), "data": .object(definition),
            ]).serialized()
            let location = TopicPartition(topic: topic, partition: 0)
            let offset = offsets[location, default: 0]
            offsets[location] = offset + 1
            let outcome = try applier.applyBroadcast([ConsumedRecord(topic: topic, partition: 0, offset: offset, key: Array("fz-campaign-\(index % 7)".utf8), value: value)])
            try account(outcome)
        }
    }

    private func apply(_ batch: [PolledRecord<Processor.Body>]) throws {
        let outcome = try applier.apply(batch)
        tally.applied += outcome.applied
        tally.duplicates += outcome.duplicates
        tally.deadLettered += outcome.deadLettered
        tally.skipped += outcome.skippedBehindOffset
        try account(outcome)
    }

    /// Every dead letter and refusal in the outbox names its reason; the outbox is then
    /// delivered, as the relay would.
    private func account(_ outcome: BatchOutcome) throws {
        for row in outcome.outbox {
            #expect(row.value!.count <= Batch.maximumRecordBytes)
            let event = try CloudEvent.decode(row.value!)
            if row.topic == Topics.deadLetters.name {
                let reason = event.data["reason"]?.stringValue ?? ""
                let detail = event.data["detail"]?.stringValue ?? ""
                #expect(!reason.isEmpty && !detail.isEmpty, "a dead letter names its reason")
                tally.reasons[reason, default: 0] += 1
            } else if event.type.hasSuffix(".refused") {
                let reason = event.data["reason"]?.stringValue ?? ""
                #expect(!reason.isEmpty, "a refusal names its reason")
                tally.reasons["refused: \(reason)", default: 0] += 1
            }
        }
        _ = try applier.apply([], deliveredOutbox: outcome.outbox.map { UInt64($0.seq) })
    }

    private func nextRecord(position: Int, of count: Int) -> (String, [UInt8]?, [UInt8]?) {
        var base = corpus[min(corpus.count - 1, position * corpus.count / count)]
        // Half the mutants carry an id of their own, so that they reach the rules rather than
        // stop at the inbox as conflicting copies of the valid event.
        if random.below(2) == 0 {
            base.event = replacing(base.event, "id", with: .string("fz-mutant-\(position)"))
        }
        let key = base.event["subject"]?.stringValue.map { Array($0.utf8) }
        let kind = random.below(14)
        let name: String
        var value: [UInt8]?
        switch kind {
        case 0, 1, 2, 3:
            name = "valid"
            value = base.event.serialized()
        case 4:
            name = "field mutated"
            value = random.mutate(base.event).serialized()
        case 12, 13:
            name = "re-signed"
            value = replacing(base.event, "signature", with: .string("fuzz:\(String(repeating: "0", count: 64))")).serialized()
        case 5:
            name = "truncated"
            let bytes = base.event.serialized()
            value = Array(bytes.prefix(random.below(bytes.count)))
        case 6:
            name = "duplicated"
            if let earlier = sent.randomElement(using: &random) { tally.mutations[name, default: 0] += 1; return earlier }
            value = base.event.serialized()
        case 7:
            name = "re-typed"
            // (A signed type in place of another: its signature must not fit.)
            let types = [EventType.orderPaid, EventType.memberClosed, EventType.adjust, EventType.transferCredit, EventType.referralReward,
                         "campaign.defined", "points.earned", "order.unknown", "", "tier.changed"]
            value = replacing(base.event, "type", with: .string(types[random.below(types.count)])).serialized()
        case 8:
            name = "time-shifted"
            let times = ["9999-12-31T23:59:59+08:00", "0001-01-01T00:00:00+08:00", "1970-01-01T00:00:00Z", "2026-02-30T10:00:00+08:00",
                         "2027-06-01T10:00:00+08:00", "2025-01-01T10:00:00+08:00", "not a time", "2026-03-01T10:00:00+99:00"]
            value = replacing(base.event, "time", with: .string(times[random.below(times.count)])).serialized()
        case 9:
            name = "oversized"
            var data = base.event["data"]?.objectValue ?? JSONObject()
            data["orderId"] = .string(String(repeating: "x", count: 200_000 + random.below(400_000)))
            value = replacing(base.event, "data", with: .object(data)).serialized()
        case 10:
            name = "re-sourced"
            let sources = ["loyalty/points", "loyalty/campaigns", "loyalty/evil", "", "shop"]
            value = replacing(base.event, "source", with: .string(sources[random.below(sources.count)])).serialized()
        default:
            name = "random bytes"
            value = random.below(10) == 0 ? nil : (0..<random.below(200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        tally.mutations[name, default: 0] += 1
        let record = (base.topic, key, value)
        sent.append(record)
        return record
    }

    private func replacing(_ event: JSONValue, _ field: String, with value: JSONValue) -> JSONValue {
        guard var object = event.objectValue else { return event }
        object[field] = value
        return .object(object)
    }

    func report() {
        let outcomes = "thrown \(tally.thrown): applied \(tally.applied), passed over \(tally.passedOver), duplicates \(tally.duplicates), "
            + "dead-lettered \(tally.deadLettered), behind offset \(tally.skipped)"
        print("fuzz \(applier.processor.name): \(outcomes)")
        print("fuzz \(applier.processor.name) mutations: " + tally.mutations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("fuzz \(applier.processor.name) reasons: " + tally.reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
}

/// Seeded random numbers with the fuzzer's helpers, so that a run can be repeated exactly.
struct FuzzRandom: RandomNumberGenerator {
    private var base: SeededRandom
    init(seed: UInt64) { base = SeededRandom(seed: seed) }

    mutating func next() -> UInt64 { base.next() }

    mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }

    /// The value with one member somewhere in it replaced by a hostile one.
    mutating func mutate(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(var object) where !object.members.isEmpty && below(4) != 0:
            let index = below(object.members.count)
            object.members[index].value = mutate(object.members[index].value)
            return .object(object)
        case .array(var array) where !array.isEmpty && below(4) != 0:
            let index = below(array.count)
            array[index] = mutate(array[index])
            return .array(array)
        default:
            let hostile: [JSONValue] = [
                .null, .bool(true), .number("-1"), .number("0"), .number("9223372036854775807"), .number("-9223372036854775808"),
                .number("1e308"), .number("100000000000000"), .number("3.5"), .string(""), .string("\u{0}\u{202E}"),
                .string(String(repeating: "é", count: 5_000)), .array([.null]), .object(JSONObject()),
                .array(Array(repeating: .number("1"), count: 20_000)),
            ]
            return hostile[below(hostile.count)]
        }
    }
}

/// The command key of the fuzz runs.
let fuzzKeys = try! CommandKeys.parse("fuzz=fuzz-test-secret-000001")
