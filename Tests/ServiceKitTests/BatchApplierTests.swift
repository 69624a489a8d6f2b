import Basics
import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

@testable import ServiceKit

/// The exactly-once transaction, without Kafka.
@Suite struct BatchApplierTests {
    let topics = ["in.a", "in.b"]

    func makeApplier(
        _ directory: URL, timerMode: TimerMode = .streamTime, inboxHorizon: Int64? = nil, outboxInMemoryOnly: Bool = false,
        inboxInMemoryOnly: Bool = false
    ) throws -> (BatchApplier<CountingProcessor>, CountingProcessor) {
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("state.sqlite").path))
        let processor = CountingProcessor(inputTopics: topics, outputTopic: "out")
        let applier = try BatchApplier(
            database: database, processor: processor, timerMode: timerMode, inboxHorizon: inboxHorizon, outboxInMemoryOnly: outboxInMemoryOnly,
            inboxInMemoryOnly: inboxInMemoryOnly)
        return (applier, processor)
    }

    /// A batch on a new store with the runtime's tables, outside any loop.
    func makeBatch(_ directory: URL) throws -> (Database, Batch) {
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("state.sqlite").path))
        _ = try database.migrate(RuntimeSchema.migrations)
        let platform = Platform(name: "test", deadLetters: "dead-letters", instances: "instances", partitionCount: 6)
        return (database, try Batch(database: database, service: "test", platform: platform, selfTopics: [:], rank: { _ in 0 }, timers: TableTimers(database: database)))
    }

    func polled(
        _ processor: CountingProcessor, topic: String = "in.a", partition: Int32 = 0, offset: Int64, value: [UInt8]?,
        timestamp: Int64? = nil, timestampType: ConsumedRecord.TimestampType = .createTime
    ) -> PolledRecord<CountingProcessor.Body> {
        let record = ConsumedRecord(
            topic: topic, partition: partition, offset: offset, key: key(on: partition), value: value, timestamp: timestamp, timestampType: timestampType)
        let decoded: Result<Decoded<CountingProcessor.Body>, Rejection>
        do { decoded = .success(try processor.decode(record)) } catch { decoded = .failure(error) }
        return PolledRecord(record: record, decoded: decoded)
    }

    /// A key whose home partition is `partition` (the counting processor reads its member from
    /// the subject, so any key on the right partition will do).
    func key(on partition: Int32) -> [UInt8] {
        (0...).lazy.map { Array("m\($0)".utf8) }.first { Murmur2Partitioner.partition(of: $0, partitions: Platform.acme.partitionCount) == partition }!
    }

    func outputs(_ outcome: BatchOutcome, topic: String) throws -> [CloudEvent] {
        try outcome.outbox.filter { $0.topic == topic }.map { try CloudEvent.decode($0.value!) }
    }

    /// Upstream marks are kept across restarts as read, a promise to a key with its tie.
    @Test func storedMarksKeepTheKeyTheyPromise() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, _) = try makeApplier(directory)
        let partition = TopicPartition(topic: "in.a", partition: 2)
        let tied = ProgressMark(producer: "campaigns", task: 2, time: 40, idle: false, tie: (3, "m-1/claim"))
        let idle = ProgressMark(producer: "tiers", task: 2, time: 50, idle: true, positions: ["in.b": 9])
        try applier.database.transaction { try applier.storeMarks([(partition, tied, 7), (partition, idle, 8)]) }
        let stored = try applier.storedMarks([partition])[partition] ?? []
        #expect(stored.map(\.mark) == [tied, idle] && stored.map(\.offset) == [7, 8])
    }

    @Test func duplicatesAreSkippedAndConflictsDeadLettered() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        let outcome = try applier.apply([
            polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 5, time: 1000)),
            polled(processor, offset: 1, value: countEvent("e1", member: "m", n: 5, time: 1000)),   // re-sent: same payload
            polled(processor, offset: 2, value: countEvent("e1", member: "m", n: 7, time: 1000)),   // same id, other payload
            polled(processor, offset: 3, value: countEvent("e2", member: "m", n: 1, time: 2000)),
        ])
        #expect(outcome.applied == 2)
        #expect(outcome.duplicates == 1)
        #expect(outcome.deadLettered == 1)
        #expect(try applier.database.count("SELECT total FROM counts WHERE member = 'm'") == 6)
        let letters = try outputs(outcome, topic: acmeDeadLetters.name)
        #expect(letters.count == 1)
        #expect(letters.first?.data["reason"]?.stringValue == "conflicting-duplicate")
        #expect(letters.first?.data["offset"]?.int64Value == 2)
        #expect(try applier.storedOffsets([TopicPartition(topic: "in.a", partition: 0)]) == [TopicPartition(topic: "in.a", partition: 0): 4])
        // Outbox rows are in the table until the relay reports them delivered.
        #expect(try applier.database.count("SELECT COUNT(*) FROM outbox") == Int64(outcome.outbox.count))
        let delivered = outcome.outbox.map { UInt64($0.seq) }
        _ = try applier.apply([], deliveredOutbox: delivered)
        #expect(try applier.database.count("SELECT COUNT(*) FROM outbox") == 0)
    }

    @Test func anOutboxKeptInMemoryOnlyHandsOutTheSameRowsNumberedOnAndStoresNone() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["stored", "memory"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        let (stored, processor) = try makeApplier(directory.appendingPathComponent("stored"))
        let (inMemory, _) = try makeApplier(directory.appendingPathComponent("memory"), outboxInMemoryOnly: true)
        let batches = [
            [countEvent("e1", member: "m", n: 5, time: 1000), countEvent("e1", member: "m", n: 7, time: 1000)],
            [countEvent("e2", member: "m", n: 1, time: 2000)],
        ]
        var seqs: [Int64] = []
        for (index, batch) in batches.enumerated() {
            let records = batch.enumerated().map { polled(processor, offset: Int64(index * 10 + $0.offset), value: $0.element) }
            let expected = try stored.apply(records).outbox
            let outcome = try inMemory.apply(records)
            func unnumbered(_ rows: [OutboxRow]) -> [OutboxRow] { rows.map { var row = $0; row.seq = 0; return row } }
            #expect(!expected.isEmpty)
            #expect(unnumbered(outcome.outbox) == unnumbered(expected))
            seqs += outcome.outbox.map(\.seq)
        }
        #expect(seqs == Array(1...Int64(seqs.count)), "numbered on from batch to batch")
        #expect(try inMemory.database.count("SELECT COUNT(*) FROM outbox") == 0)
        #expect(try stored.database.count("SELECT COUNT(*) FROM outbox") > 0)
    }

    /// The same batches through a stored inbox and one kept in memory: duplicates, conflicts,
    /// pruning at the horizon, a batch rolled back and a record carried to the next batch
    /// come out the same, and the memory keeps as many ids as the table has rows.
    @Test func anInboxKeptInMemoryOnlyAnswersAsTheStoredOneAndStoresNone() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["stored", "memory"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        let day: Int64 = 86_400_000
        let pair = [
            try makeApplier(directory.appendingPathComponent("stored"), inboxHorizon: 10 * day),
            try makeApplier(directory.appendingPathComponent("memory"), inboxHorizon: 10 * day, inboxInMemoryOnly: true),
        ]
        #expect(!pair[0].0.inboxInMemoryOnly && pair[1].0.inboxInMemoryOnly)
        for (_, processor) in pair { processor.platformTypes = ["count.grant"] }
        var offset: Int64 = 0
        // Events of member "m2" go to task 1, the rest to task 0: each task is pruned by its own clock.
        func records(_ values: [[UInt8]], for processor: CountingProcessor) -> [PolledRecord<CountingProcessor.Body>] {
            values.enumerated().map {
                let task: Int32 = (try? CloudEvent.decode($0.element).subject) == "m2" ? 1 : 0
                return polled(processor, partition: task, offset: offset + Int64($0.offset), value: $0.element)
            }
        }
        func sameOutcome(_ values: [[UInt8]], _ what: String) throws -> BatchOutcome {
            let outcomes = try pair.map { applier, processor in try applier.apply(records(values, for: processor)) }
            offset += Int64(values.count)
            let (stored, memory) = (outcomes[0], outcomes[1])
            #expect(memory.applied == stored.applied && memory.duplicates == stored.duplicates && memory.late == stored.late, "\(what)")
            #expect(memory.deadLettersByReason == stored.deadLettersByReason && memory.timersFired == stored.timersFired, "\(what)")
            #expect(memory.outbox.map(\.value) == stored.outbox.map(\.value), "\(what)")
            #expect(pair[1].0.memoryInboxCount == Int(try pair[0].0.database.count("SELECT COUNT(*) FROM inbox")), "\(what): as many ids as rows")
            #expect(try pair[1].0.database.count("SELECT COUNT(*) FROM inbox") == 0, "\(what): no row stored")
            return stored
        }
        let month = try sameOutcome(
            (0..<30).map { countEvent("d\($0)", member: "m", n: 1, time: Int64($0) * day) }
                + (0..<3).map { countEvent("t\($0)", member: "m2", n: 1, time: Int64($0) * day) }
                + [countEvent("g1", member: "m", n: 5, time: 2 * day, type: "count.grant")],
            "a month, pruned on task 0, three days on task 1")
        // The grant, a platform record, is dated by the stream time it was applied at (day 29).
        #expect(month.applied == 34 && pair[1].0.memoryInboxCount == 11 + 3 + 1)
        let resent = try sameOutcome([
            countEvent("d25", member: "m", n: 1, time: 25 * day), countEvent("d26", member: "m", n: 2, time: 26 * day),
            countEvent("late", member: "m", n: 1, time: 22 * day), countEvent("d3", member: "m", n: 1, time: 3 * day),
            countEvent("d20", member: "m", n: 1, time: 20 * day),
        ], "sent again")
        #expect(resent.duplicates == 2 && resent.applied == 1 && resent.late == 1)
        #expect(resent.deadLettersByReason == ["conflicting-duplicate": 1, "older-than-inbox-horizon": 1])
        // Ids that differ in their bytes are two events, even when Unicode finds them equivalent.
        let lookalikes = try sameOutcome([
            countEvent("caf\u{E9}", member: "m", n: 1, time: 29 * day), countEvent("cafe\u{301}", member: "m", n: 1, time: 29 * day),
        ], "ids equal but for their bytes")
        #expect(lookalikes.applied == 2 && lookalikes.duplicates == 0)

        // A batch that fails keeps none of its ids: sent again, they are applied.
        for (_, processor) in pair { processor.failOnMembers = ["bad"] }
        for (applier, processor) in pair {
            #expect(throws: (any Error).self) {
                try applier.apply(records([countEvent("x1", member: "m", n: 1, time: 30 * day), countEvent("b1", member: "bad", n: 1, time: 30 * day)], for: processor))
            }
        }
        for (_, processor) in pair { processor.failOnMembers = [] }
        let again = try sameOutcome([countEvent("x1", member: "m", n: 1, time: 30 * day)], "after a rollback")
        #expect(again.applied == 1 && again.duplicates == 0)

        // A record carried to the next batch, its timers not all fired, is applied there once.
        _ = try sameOutcome((1...3).map { countEvent("r\($0)", member: "m\($0 + 2)", n: 1_000, time: 31 * day, type: "count.remind") }, "reminders")
        for (applier, _) in pair { applier.timerBudget = 1 }
        let carried = try sameOutcome([countEvent("p", member: "m", n: 1, time: 32 * day)], "carried")
        #expect(carried.applied == 1 && carried.duplicates == 0 && carried.timersFired == 3)
        let duplicate = try sameOutcome([countEvent("p", member: "m", n: 1, time: 32 * day)], "carried, sent again")
        #expect(duplicate.duplicates == 1)

        // A platform record older than the horizon, its row pruned since, is asked about.
        _ = try sameOutcome([countEvent("later", member: "m", n: 1, time: 45 * day)], "two weeks on")
        let granted = try sameOutcome([countEvent("g1", member: "m", n: 5, time: 2 * day, type: "count.grant")], "a grant sent again")
        #expect(granted.duplicates == 1 && pair.allSatisfy { $0.1.askedWhetherApplied.contains("g1") })
    }

    /// The same batches through a stored `timers` table and timers kept in memory: timers set,
    /// set again, cancelled by ref and by kind, taken by the service (from a record that moves
    /// no clock), and fired by stream time
    /// (some cancelling or setting others as they fire, within a chunk read at once), under a
    /// budget or not, every task's in event-time order or each its own, and a batch rolled back.
    /// After each batch both published the same records and hold the same timers.
    @Test(arguments: [(budget: nil, everyTask: false), (budget: 3, everyTask: false), (budget: nil, everyTask: true), (budget: 2, everyTask: true)] as [(Int?, Bool)])
    func timersKeptInMemoryOnlyFireAsTheStoredOnes(budget: Int?, everyTask: Bool) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["stored", "memory"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        let pair = [
            try makeApplier(directory.appendingPathComponent("stored")),
            try BatchApplierTests.memoryTimersApplier(directory.appendingPathComponent("memory"), topics: topics),
        ]
        #expect(!pair[0].0.timersInMemoryOnly && pair[1].0.timersInMemoryOnly)
        for (applier, processor) in pair {
            processor.clocklessTypes = ["count.churn-aside"]
            applier.timerBudget = budget
            if everyTask { applier.taskHasRecordToCome = { $0 != 5 } }
        }
        func storedTimers() throws -> [DueTimer] {
            try pair[0].0.database.prepare("SELECT task, due, rank, member, kind, ref, payload FROM timers ORDER BY task, due, rank, member, kind, ref")
                .query { row in
                    DueTimer(
                        task: Int32(row.int64(0)), due: EventTime(millis: row.int64(1)), rank: row.int(2), member: row.string(3), kind: row.string(4),
                        ref: row.string(5), payload: row.isNull(6) ? [] : row.blob(6))
                }
        }
        var random = SeededRandom(seed: 7 + UInt64(budget ?? 0) + (everyTask ? 100 : 0))
        var offsets: [Int32: Int64] = [:]
        var time: Int64 = 10_000
        var fired = 0
        var taken = 0
        var failedFiring = 0
        for round in 0..<200 {
            // Mostly forward in time, now and then a late record that sets timers already due.
            time += Int64(random.next() % 7) * 100
            let values: [(task: Int32, value: [UInt8])] = (0..<(1 + random.next() % 6)).map { index in
                let task = Int32(random.next() % 6)
                // A record set aside moves no clock: dated ahead, it takes the timers due before it.
                let type = ["count.add", "count.churn", "count.churn", "count.churn-aside"][Int(random.next() % 4)]
                let dated = type == "count.churn-aside" ? time + 1_500 : random.next() % 8 == 0 ? time - 2_000 : time
                return (task, countEvent("e\(round)-\(index)", member: "m\(task)", n: Int64(random.next() % 1_000_000), time: dated, type: type))
            }
            var next = offsets
            let placed = values.map { entry -> (task: Int32, offset: Int64, value: [UInt8]) in
                defer { next[entry.task, default: 0] += 1 }
                return (entry.task, next[entry.task] ?? 0, entry.value)
            }
            func records(for processor: CountingProcessor) -> [PolledRecord<CountingProcessor.Body>] {
                placed.map { polled(processor, partition: $0.task, offset: $0.offset, value: $0.value) }
            }
            // Now and then the batch's last member fails it, after its timers have been worked;
            // or a member's timer fails it as it fires, partway through a chunk of due timers.
            if round % 17 == 9 {
                for (applier, processor) in pair {
                    processor.failOnMembers = ["m\(values.last!.task)"]
                    #expect(throws: (any Error).self) { try applier.apply(records(for: processor)) }
                    processor.failOnMembers = []
                }
                continue
            }
            let failsAsItFires = round % 7 == 3
            let results = pair.map { applier, processor in
                processor.failOnMembers = failsAsItFires ? Set((0..<6).map { "b-\($0)" }) : []
                defer { processor.failOnMembers = [] }
                return Result { try applier.apply(records(for: processor)) }
            }
            guard case .success(let stored) = results[0], case .success(let memory) = results[1] else {
                #expect(failsAsItFires && (try? results[0].get()) == nil && (try? results[1].get()) == nil, "round \(round): both fail or neither")
                failedFiring += 1
                #expect(pair[1].0.memoryTimers!.all.map(Self.exactly) == (try storedTimers()).map(Self.exactly), "round \(round), rolled back")
                continue
            }
            offsets = next
            let outcomes = [stored, memory]
            #expect(outcomes[1].outbox.map(\.value) == outcomes[0].outbox.map(\.value), "round \(round)")
            #expect(outcomes[1].timersFired == outcomes[0].timersFired, "round \(round)")
            fired += outcomes[0].timersFired
            taken += try outputs(outcomes[0], topic: "out").filter { $0.type == "count.taken" }.count
            #expect(pair[1].0.memoryTimers!.all.map(Self.exactly) == (try storedTimers()).map(Self.exactly), "round \(round)")
            #expect(try pair[1].0.database.count("SELECT COUNT(*) FROM timers") == 0, "none stored")
        }
        #expect(fired > 100 && taken > 20, "the rounds fire and take timers: \(fired), \(taken)")
        #expect(failedFiring > 3 && pair.allSatisfy { $0.1.failedFiring }, "and fail as one fires: \(failedFiring)")
        #expect(pair[1].0.memoryTimers!.count > 0, "and leave some set")
    }

    /// A timer with its texts as bytes: "Zo\u{E9}" and "Zoe\u{301}" are two members here, as in the table.
    static func exactly(_ timer: DueTimer) -> [String] {
        let numbers = [String(timer.task), String(timer.due.millis), String(timer.rank)]
        let texts = [timer.member, timer.kind, timer.ref].map { Array($0.utf8).description }
        return numbers + texts + [timer.payload.description]
    }

    /// Many timers set and most removed: the slots are compacted when the batch commits, and
    /// the timers left answer as before, their order, the earliest due, a chunk of the due
    /// and a rollback after it included.
    @Test func memoryTimersCompactedAfterManyRemovalsAnswerAsBefore() {
        let timers = MemoryTimers()
        var random = SeededRandom(seed: 11)
        var model: [DueTimer] = []
        for index in 0..<6_000 {
            let request = TimerRequest(
                due: EventTime(millis: Int64(random.next() % 500) * 10), rank: Int(random.next() % 3), member: ["Zo\u{E9}", "Zoe\u{301}", "a"][index % 3],
                kind: "k", ref: String(index), payload: [UInt8(index % 256)])
            let task = Int32(random.next() % 2)
            timers.schedule(request, task: task)
            model.append(DueTimer(
                task: task, due: request.due, rank: request.rank, member: request.member, kind: request.kind, ref: request.ref, payload: request.payload))
        }
        timers.commit()
        for timer in model where Int(timer.ref)! % 5 != 0 { timers.remove(timer) }
        model.removeAll { Int($0.ref)! % 5 != 0 }
        #expect(timers.slotCount == 6_000)
        timers.commit()
        #expect(timers.slotCount == model.count, "compacted to the timers left")
        func tableOrder(_ timers: [DueTimer]) -> [[String]] {
            timers.sorted {
                ($0.task, $0.due.millis, $0.rank) != ($1.task, $1.due.millis, $1.rank)
                    ? ($0.task, $0.due.millis, $0.rank) < ($1.task, $1.due.millis, $1.rank)
                    : ($0.member.utf8.lexicographicallyPrecedes($1.member.utf8) || (Array($0.member.utf8) == Array($1.member.utf8) && $0.ref.utf8.lexicographicallyPrecedes($1.ref.utf8)))
            }.map(Self.exactly)
        }
        #expect(timers.all.map(Self.exactly) == tableOrder(model))
        for task: Int32 in [0, 1] {
            let own = tableOrder(model.filter { $0.task == task })
            #expect(timers.earliestDue(task: task) == model.filter { $0.task == task }.map(\.due.millis).min())
            let chunk = timers.due(task: task, upTo: 2_000, count: 100)
            #expect(chunk.map(Self.exactly) == Array(own.prefix { Int64($0[1])! <= 2_000 }.prefix(100)))
        }
        // Taken off their queues but not fired: a rollback puts every timer back.
        timers.discard()
        #expect(timers.all.map(Self.exactly) == tableOrder(model))
        #expect(timers.due(task: 0, upTo: .max, count: .max).count == model.filter { $0.task == 0 }.count)
    }

    static func memoryTimersApplier(_ directory: URL, topics: [String]) throws -> (BatchApplier<CountingProcessor>, CountingProcessor) {
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("state.sqlite").path))
        let processor = CountingProcessor(inputTopics: topics, outputTopic: "out")
        return (try BatchApplier(database: database, processor: processor, timerMode: .streamTime, timersInMemoryOnly: true), processor)
    }

    @Test func theInboxKeepsEventsWithinTheHorizonAndRefusesOlderOnes() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let day: Int64 = 86_400_000
        let (applier, processor) = try makeApplier(directory, inboxHorizon: 10 * day)
        // One event a day for 30 days.
        let days = (0..<30).map { polled(processor, offset: Int64($0), value: countEvent("d\($0)", member: "m", n: 1, time: Int64($0) * day)) }
        _ = try applier.apply(days)
        // Only the last ten days' rows are kept.
        #expect(try applier.database.count("SELECT COUNT(*) FROM inbox") == 11)
        #expect(try applier.database.count("SELECT MIN(event_time) FROM inbox") == 19 * day)
        let outcome = try applier.apply([
            // A re-send within the horizon is still a duplicate.
            polled(processor, offset: 30, value: countEvent("d25", member: "m", n: 1, time: 25 * day)),
            // A late event within the horizon is applied, and counted as late.
            polled(processor, offset: 31, value: countEvent("late", member: "m", n: 1, time: 22 * day)),
            // One older than the horizon may have been applied before: refused, with the reason.
            polled(processor, offset: 32, value: countEvent("d3", member: "m", n: 1, time: 3 * day)),
        ])
        #expect(outcome.duplicates == 1)
        #expect(outcome.applied == 1 && outcome.late == 1)
        #expect(outcome.deadLettered == 1)
        #expect(try outputs(outcome, topic: acmeDeadLetters.name).first?.data["reason"]?.stringValue == "older-than-inbox-horizon")
        #expect(try applier.database.count("SELECT total FROM counts WHERE member = 'm'") == 31)
    }

    @Test func aPlatformRecordOlderThanTheHorizonIsAskedAboutAndCountsAsADuplicateWhenApplied() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let day: Int64 = 86_400_000
        let (applier, processor) = try makeApplier(directory, inboxHorizon: 10 * day)
        processor.platformTypes = ["count.grant"]
        _ = try applier.apply([
            polled(processor, offset: 0, value: countEvent("g1", member: "m", n: 100, time: 1 * day, type: "count.grant")),
            polled(processor, offset: 1, value: countEvent("recent", member: "m", n: 1, time: 30 * day)),
        ])
        #expect(try applier.database.count("SELECT COUNT(*) FROM inbox WHERE event_id = 'g1'") == 0, "pruned")
        let outcome = try applier.apply([
            // Sent again by a writer that replayed its outputs: the store says it has it.
            polled(processor, offset: 2, value: countEvent("g1", member: "m", n: 100, time: 1 * day, type: "count.grant")),
            // As late, but never seen: applied, not refused (a service's record never is for its lag).
            polled(processor, offset: 3, value: countEvent("g2", member: "m", n: 10, time: 2 * day, type: "count.grant")),
            // Within the horizon the inbox answers alone.
            polled(processor, offset: 4, value: countEvent("g3", member: "m", n: 1_000, time: 25 * day, type: "count.grant")),
        ])
        #expect(outcome.duplicates == 1 && outcome.applied == 2 && outcome.deadLettered == 0)
        #expect(processor.askedWhetherApplied == ["g1", "g2"])
        #expect(try applier.database.count("SELECT total FROM counts WHERE member = 'm'") == 1_111)
        #expect(try applier.database.count("SELECT COUNT(*) FROM inbox WHERE event_id = 'g1'") == 1, "remembered again")
    }

    @Test func sortedRecordsReadAgainAfterARestartAreRecognisedByTheirOffsetsOnceTheInboxForgetsThem() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let day: Int64 = 86_400_000
        let b0 = TopicPartition(topic: "in.b", partition: 0)
        func start() throws -> (BatchApplier<CountingProcessor>, CountingProcessor) {
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("state.sqlite").path))
            let processor = CountingProcessor(inputTopics: topics, outputTopic: "out")
            processor.sortedInputTopics = ["in.b"]
            return (try BatchApplier(database: database, processor: processor, timerMode: .streamTime, inboxHorizon: 10 * day), processor)
        }
        var (applier, processor) = try start()
        // A sorted partition hands out offsets 1 and 2 (early times) while offset 0 (a later
        // time) is still waiting, so the stored offset stays at 0.
        _ = try applier.apply([
            polled(processor, topic: "in.b", offset: 1, value: countEvent("c1", member: "m", n: 1, time: 1 * day)),
            polled(processor, topic: "in.b", offset: 2, value: countEvent("c2", member: "m", n: 2, time: 2 * day)),
        ], committableOffsets: [b0: 0])
        // Stream time moves on past the horizon: the inbox forgets c1 and c2.
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("later", member: "m", n: 4, time: 40 * day))])
        #expect(try applier.database.count("SELECT COUNT(*) FROM inbox WHERE event_id IN ('c1', 'c2')") == 0)
        // A restart reads the partition again from offset 0: 1 and 2 are recognised, 0 is applied.
        (applier, processor) = try start()
        let again = try applier.apply([
            polled(processor, topic: "in.b", offset: 1, value: countEvent("c1", member: "m", n: 1, time: 1 * day)),
            polled(processor, topic: "in.b", offset: 2, value: countEvent("c2", member: "m", n: 2, time: 2 * day)),
            polled(processor, topic: "in.b", offset: 0, value: countEvent("c0", member: "m", n: 8, time: 41 * day)),
        ], committableOffsets: [b0: 3])
        #expect(again.skippedBehindOffset == 2)
        #expect(again.applied == 1)
        #expect(try applier.database.count("SELECT total FROM counts WHERE member = 'm'") == 15)
        // Once the stored offset has passed them, their marks are gone.
        #expect(try applier.database.count("SELECT COUNT(*) FROM applied_offsets") == 0)
    }

    @Test func undecodableRecordsAreDeadLetteredWithTheirReasonAndTheOffsetMoves() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        let outcome = try applier.apply([
            polled(processor, offset: 10, value: Array("{broken".utf8)),
            polled(processor, offset: 11, value: nil),
            polled(processor, offset: 12, value: countEvent("e1", member: "m", n: 3, time: 1000)),
        ])
        let letters = try outputs(outcome, topic: acmeDeadLetters.name)
        #expect(letters.map { $0.data["reason"]?.stringValue } == ["not-json", "empty-payload"])
        #expect(letters.first?.data["payload"]?.stringValue == "{broken")
        #expect(letters.first?.id == "dead-letter/counting/in.a/0/10")
        #expect(outcome.applied == 1)
        #expect(try applier.storedOffsets([TopicPartition(topic: "in.a", partition: 0)]).values.first == 13)
    }

    @Test func recordsBehindTheStoredOffsetAreNotAppliedAgain() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 1))])
        // Another owner's copy of the same record, e.g. after a rebalance.
        let again = try applier.apply([polled(processor, offset: 0, value: countEvent("e1-copy", member: "m", n: 1, time: 1))])
        #expect(again.skippedBehindOffset == 1)
        #expect(try applier.database.count("SELECT total FROM counts") == 1)
    }

    /// Two instances on one store: each reads, in one statement, the frontiers the other
    /// committed for its tasks and the commands on their way; a task nobody has committed a
    /// frontier for holds everything.
    @Test func theBoundOfOtherInstancesIsTheirLowestFrontierOrCommandOnItsWay() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (first, _) = try makeApplier(directory)
        let (second, _) = try makeApplier(directory)
        #expect(first.partitionCount == 6)
        let mine: Set<Int32> = [0, 1, 2]
        let theirs: Set<Int32> = [3, 4, 5]
        func frontier(_ key: MergeKey, _ promise: TaskPromise = .none) -> TaskFrontier { TaskFrontier(key: key, promise: promise) }
        try first.database.transaction {
            try first.storeFrontiers([
                0: frontier(MergeKey(time: 40, rank: 1, id: "a"), .busy(40)), 1: frontier(.highest, .idle(7)),
                2: frontier(MergeKey(time: 25, rank: 0, id: "b"), .busy(20)),
            ])
        }
        #expect(try second.otherTasksBound(owned: theirs).bound == MergeKey(time: 25, rank: 0, id: "b"))
        #expect(try first.otherTasksBound(owned: mine).bound == .lowest, "no frontier of tasks 3 to 5 yet")
        try second.database.transaction {
            try second.storeFrontiers([3: frontier(.highest), 4: frontier(MergeKey(time: 90, rank: 0, id: "c")), 5: .unknown])
        }
        #expect(try first.otherTasksBound(owned: mine).bound == .lowest, "task 5 has records not read yet")
        try second.database.transaction { try second.storeFrontiers([5: frontier(.highest)]) }
        #expect(try first.otherTasksBound(owned: mine).bound == MergeKey(time: 90, rank: 0, id: "c"))
        #expect(try first.otherTasksBound(owned: mine).stored[2] == frontier(MergeKey(time: 25, rank: 0, id: "b"), .busy(20)), "its own, to check")
        #expect(try second.otherTasksBound(owned: theirs).promises == [.busy(40), .idle(7), .busy(20)], "for the progress marks")
        // A command on its way to any task bounds both, until it is applied.
        let insertEcho = try first.database.prepare("INSERT INTO echoes(event_id, topic, task, time, rank) VALUES(?, 'in.a', ?, ?, ?)")
        try insertEcho.run(.text("credit-z"), .integer(1), .integer(30), .integer(5))
        try insertEcho.run(.text("credit-y"), .integer(4), .integer(30), .integer(5))
        try insertEcho.run(.text("credit-late"), .integer(4), .integer(70), .integer(0))
        #expect(try first.otherTasksBound(owned: mine).bound == MergeKey(time: 30, rank: 5, id: "credit-y"))
        #expect(try second.otherTasksBound(owned: theirs).bound == MergeKey(time: 25, rank: 0, id: "b"))
        try first.database.execute("DELETE FROM echoes WHERE time = 30")
        #expect(try first.otherTasksBound(owned: mine).bound == MergeKey(time: 70, rank: 0, id: "credit-late"))
        // Tasks given up are not known until their next owner commits them.
        try second.forgetFrontiers(of: [4])
        #expect(try first.otherTasksBound(owned: mine).bound == .lowest)
    }

    @Test func aRecordOnAnotherPartitionThanItsKeysIsDeadLetteredAndMovesNoClock() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        _ = try applier.apply([polled(processor, partition: 2, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 1_000))])
        // A producer with another partitioner put a key of partition 2 on partition 5, far ahead.
        var stray = polled(processor, partition: 5, offset: 0, value: countEvent("e2", member: "m", n: 5, time: 9_000))
        stray.record.key = key(on: 2)
        let outcome = try applier.apply([stray])
        #expect(outcome.applied == 0 && outcome.deadLettered == 1)
        let letter = try #require(try outputs(outcome, topic: acmeDeadLetters.name).first)
        #expect(letter.data["reason"]?.stringValue == "wrong-partition")
        #expect(letter.data["detail"]?.stringValue == "the key belongs on partition 2 of 6 (murmur2, the Java client's partitioner), not on partition 5")
        #expect(try applier.database.count("SELECT total FROM counts WHERE member = 'm'") == 1)
        #expect(try applier.database.count("SELECT COUNT(*) FROM task_clock WHERE task = 5") == 0, "task 5's clock did not move")
        #expect(try applier.storedOffsets([TopicPartition(topic: "in.a", partition: 5)])[TopicPartition(topic: "in.a", partition: 5)] == 1)
        // On a command topic, a copy of a command on its way, on another partition, leaves it awaited.
        processor.sortedInputTopics = ["in.b"]
        try applier.database.execute("INSERT INTO echoes(event_id, topic, task, time, rank) VALUES('cmd-1', 'in.b', 2, 2000, 0)")
        var copy = polled(processor, topic: "in.b", partition: 3, offset: 0, value: countEvent("cmd-1", member: "m", n: 5, time: 2_000))
        copy.record.key = key(on: 2)
        #expect(try applier.apply([copy]).deadLettered == 1)
        #expect(try applier.database.count("SELECT COUNT(*) FROM echoes WHERE event_id = 'cmd-1'") == 1)
    }

    @Test func aServiceWithIndependentTasksMayNotSendItselfARecord() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let processor = CountingProcessor(inputTopics: ["in.a", "in.b"], outputTopic: "in.b")
        processor.tasksAreIndependent = true
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("state.sqlite").path))
        let applier = try BatchApplier(database: database, processor: processor, timerMode: .streamTime)
        let failure = #expect(throws: ApplyFailure.self) {
            try applier.apply([polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 1))])
        }
        #expect(failure?.underlying is SelfCommandRefused)
        #expect(try database.count("SELECT COUNT(*) FROM counts") == 0 && database.count("SELECT COUNT(*) FROM outbox") == 0)
        // The same processor sending to itself is a command when its tasks are not independent.
        processor.tasksAreIndependent = false
        let outcome = try applier.apply([polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 1))])
        #expect(outcome.applied == 1 && outcome.outbox.contains { $0.topic == "in.b" })
    }

    /// In a task's own store of a service whose tasks send each other commands: a record that
    /// sends another task a command ends its batch (what follows may wait for the answer); a
    /// command must sort above its cause, and a timer may send none (the peer marks promise
    /// what sorts above a task's pending input, and count input, not timers).
    @Test func inATasksOwnStoreACommandToAnotherTaskEndsTheBatchAndMustRankAboveItsCause() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        /// Task 0's store; `outputs` the topic its totals go to (`in.b` makes them commands, of rank 0).
        func taskZero(_ name: String, outputs: String) throws -> (BatchApplier<CountingProcessor>, CountingProcessor) {
            let processor = CountingProcessor(inputTopics: ["in.a", "in.b"], outputTopic: outputs)
            processor.sortedInputTopics = ["in.b"]
            processor.commandTopics = ["in.b"]
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("\(name).sqlite").path))
            let applier = try BatchApplier(database: database, processor: processor, timerMode: .streamTime)
            applier.ownTask = 0
            return (applier, processor)
        }
        func partition(_ member: String) -> Int32 { Murmur2Partitioner.partition(of: Array(member.utf8), partitions: Platform.acme.partitionCount) }
        // Passes (rank 1, above their cause) to member m<n>: e1's to task 0, e2's to another task.
        let home = (1...).first { partition("m\($0)") == 0 }!
        let away = (1...).first { partition("m\($0)") != 0 }!
        let (passing, processor) = try taskZero("passing", outputs: "out")
        processor.passing = ("in.b", 1)
        let member = String(decoding: key(on: 0), as: UTF8.self)
        let records = [
            polled(processor, offset: 0, value: countEvent("e1", member: member, n: Int64(home), time: 1_000)),
            polled(processor, offset: 1, value: countEvent("e2", member: member, n: Int64(away), time: 2_000)),
            polled(processor, offset: 2, value: countEvent("e3", member: member, n: 1, time: 3_000)),
        ]
        #expect(home < 40 && away < 40, "members m<n % 40>")
        let outcome = try passing.apply(records)
        #expect(outcome.applied == 2, "the batch ends after the record that sent another task a command")
        #expect(outcome.echoes.map(\.key.id) == ["pass/e1"], "a command to its own task is an echo; one to another task is not")
        #expect(try passing.apply(Array(records[2...])).applied == 1)

        // Totals as commands, of rank 0 like the records that cause them.
        let (totals, counting) = try taskZero("totals", outputs: "in.b")
        let awayMember = "m\(away)"
        #expect(try totals.apply([polled(counting, offset: 0, value: countEvent("h1", member: member, n: 1, time: 1_000))]).applied == 1,
                "a command of the same rank to its own task is an echo, awaited")
        do {
            _ = try totals.apply([polled(counting, offset: 1, value: countEvent("a1", member: awayMember, n: 1, time: 2_000))])
            Issue.record("a command to another task at its cause's rank was let through")
        } catch {
            #expect("\(error)".contains("which does not sort above its cause a1"), "\(error)")
        }
        // A reminder of the away member's fires on the next record past it, and sends its task a command.
        #expect(try totals.apply([polled(counting, offset: 1, value: countEvent("r1", member: awayMember, n: 500, time: 3_100, type: "count.remind"))]).applied == 1)
        do {
            _ = try totals.apply([polled(counting, offset: 2, value: countEvent("h2", member: member, n: 1, time: 4_000))])
            Issue.record("a timer's command to another task was let through")
        } catch {
            #expect("\(error)".contains("a timer of counting sent another task a command on in.b"), "\(error)")
        }
        // A pass sent by a record the processor said sends none: its peer marks promised past it.
        let (undeclared, quiet) = try taskZero("undeclared", outputs: "out")
        quiet.passing = ("in.b", 1)
        quiet.saidToSendNone = ["u1"]
        do {
            _ = try undeclared.apply([polled(quiet, offset: 0, value: countEvent("u1", member: member, n: Int64(away), time: 1_000))])
            Issue.record("a command from a record said to send none was let through")
        } catch {
            #expect("\(error)".contains("while applying u1, which its processor said sends none"), "\(error)")
        }
        // Totals as commands on an input topic that is not the one the marks go on.
        let (offTopic, stray) = try taskZero("off-topic", outputs: "in.a")
        stray.passing = ("in.b", 1_000_000)
        do {
            _ = try offTopic.apply([polled(stray, offset: 0, value: countEvent("o1", member: awayMember, n: 1, time: 1_000))])
            Issue.record("a command to another task off the marks' topic was let through")
        } catch {
            #expect("\(error)".contains("sent another task a command on in.a; with a store per task its commands go on in.b"), "\(error)")
        }
        #expect(try totals.database.count("SELECT total FROM counts WHERE member = '\(member)'") == 1, "nothing of the refused batches stays")
        #expect(try totals.database.count("SELECT COUNT(*) FROM counts WHERE member = '\(awayMember)'") == 0)
    }

    /// A task's side of the peer marks survives its store: marks read, answers owed, holds and
    /// what it published; taken on again, it numbers its marks in a new epoch.
    @Test func aTasksPeerBookIsKeptInItsStore() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        #expect(try applier.storedPeerBook(task: 1, tasks: 0..<3) == PeerMarkBook(task: 1, tasks: 0..<3), "nothing kept yet")
        func key(_ time: Int64, _ rank: Int) -> MergeKey { MergeKey(time: time, rank: rank, id: "") }
        var book = PeerMarkBook(task: 1, tasks: 0..<3)
        book.tookOver(atLeast: 7)
        book.read(PeerMark(task: 0, number: .init(epoch: 3, count: 9), own: key(5, 2), readFromPeers: .highest, to: 1))
        book.read(PeerMark(
            task: 2, number: .init(epoch: 4, count: 1), own: .highest, readFromPeers: key(4, 1), to: 1,
            acknowledges: .init(epoch: 2, count: 6), asksForAnswer: true))
        book = try #require(book.publishing(earliestSender: key(6, 0), commandsSent: [0: key(6, 5), 2: key(8, 5)])).book
        book.read(PeerMark(task: 0, number: .init(epoch: 3, count: 10), own: key(5, 2), readFromPeers: key(6, 1), to: 1, asksForAnswer: true))
        #expect(book.holds.count == 2 && book.answersOwed == [0] && book.published != nil && book.number == .init(epoch: 7, count: 1))
        try applier.database.transaction { try applier.storePeerBook(book) }
        #expect(try applier.storedPeerBook(task: 1, tasks: 0..<3) == book)
        var taken = try applier.storedPeerBook(task: 1, tasks: 0..<3)
        taken.tookOver()
        try applier.database.transaction { try applier.storePeerBook(taken) }
        let again = try applier.storedPeerBook(task: 1, tasks: 0..<3)
        #expect(again.number == .init(epoch: 8, count: 0) && again.published == nil && again.holds == book.holds)

        // A service with chains of three keeps a third figure, read and published.
        processor.longestCommandChain = 3
        var deep = try applier.storedPeerBook(task: 1, tasks: 0..<3)
        #expect(deep.levels == 3)
        deep.read(PeerMark(task: 0, number: .init(epoch: 3, count: 11), own: key(9, 2), readFromPeers: key(7, 1), deeper: [key(6, 3)], to: 1))
        deep.read(PeerMark(task: 2, number: .init(epoch: 4, count: 2), own: key(8, 1), readFromPeers: key(9, 4), deeper: [.highest], to: 1))
        deep = try #require(deep.publishing(earliestSender: nil)).book
        #expect(deep.published?.deeper == [key(7, 1)], "the lowest readFromPeers read")
        #expect(deep.bound == key(6, 3), "held at the lowest figure of every level")
        try applier.database.transaction { try applier.storePeerBook(deep) }
        #expect(try applier.storedPeerBook(task: 1, tasks: 0..<3) == deep)
    }

    @Test func aFailingBatchLeavesNothingBehind() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        processor.failOnMembers = ["bad"]
        let good = polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 1))
        let bad = polled(processor, offset: 1, value: countEvent("e2", member: "bad", n: 1, time: 2))
        // The error names the record it failed on.
        let failure = #expect(throws: ApplyFailure.self) { try applier.apply([good, bad]) }
        #expect(failure?.eventID == "e2" && failure?.offset == 1 && failure?.underlying is CountingProcessor.Failure)
        #expect(try applier.database.count("SELECT COUNT(*) FROM counts") == 0)
        #expect(try applier.database.count("SELECT COUNT(*) FROM inbox") == 0)
        #expect(try applier.database.count("SELECT COUNT(*) FROM outbox") == 0)
        #expect(try applier.database.count("SELECT COUNT(*) FROM offsets") == 0)
        processor.failOnMembers = []
        let retried = try applier.apply([good])
        #expect(retried.applied == 1)
    }

    @Test func timersFireOnStreamTimeBeforeTheRecordThatPassesThem() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        // Reminders due at 1500 and 1200 (set in that order), then a record at 1000, then one at 2000.
        let first = try applier.apply([
            polled(processor, offset: 0, value: countEvent("r1", member: "m", n: 500, time: 1000, type: "count.remind")),
            polled(processor, offset: 1, value: countEvent("r2", member: "m", n: 200, time: 1000, type: "count.remind")),
            polled(processor, offset: 2, value: countEvent("e1", member: "m", n: 1, time: 1100)),
        ])
        #expect(first.timersFired == 0)
        let second = try applier.apply([polled(processor, offset: 3, value: countEvent("e2", member: "m", n: 1, time: 2000))])
        #expect(second.timersFired == 2)
        let events = try second.outbox.map { try CloudEvent.decode($0.value!) }
        // Both reminders come out before the record at 2000, earliest due first, at their due times.
        #expect(events.map(\.id) == ["reminder/r2", "reminder/r1", "out/e2"])
        #expect(events.map(\.time.millis) == [1200, 1500, 2000])
        #expect(try applier.database.count("SELECT COUNT(*) FROM timers") == 0)
    }

    /// A store fed every task's records in one event-time order (the simulation's) may fire,
    /// before a record, the timers due before its time of every task with a record to come,
    /// the earliest of all first, where each task's would otherwise wait for its own next
    /// record; one due at the record's very millisecond still waits for its own task, and a
    /// task with nothing more to read keeps its timers.
    @Test func everyTasksTimersMayFireBeforeALaterRecordInEventTimeOrder() throws {
        for everyTask in [false, true] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let (applier, processor) = try makeApplier(directory)
            if everyTask { applier.taskHasRecordToCome = { $0 != 3 } }
            // Task 3, which reads nothing more, has a reminder due at 1100.
            _ = try applier.apply([polled(processor, partition: 3, offset: 0, value: countEvent("r3", member: "m", n: 100, time: 1000, type: "count.remind"))])
            // Task 1's reminder is due at 1500, task 0's at 1200 and at 2000.
            _ = try applier.apply([
                polled(processor, partition: 1, offset: 0, value: countEvent("r1", member: "m", n: 500, time: 1000, type: "count.remind")),
                polled(processor, partition: 0, offset: 0, value: countEvent("r0", member: "m", n: 200, time: 1000, type: "count.remind")),
                polled(processor, partition: 0, offset: 1, value: countEvent("r0-at-2000", member: "m", n: 1000, time: 1000, type: "count.remind")),
            ])
            // A record of task 2 at 2000.
            let later = try applier.apply([polled(processor, partition: 2, offset: 0, value: countEvent("e", member: "m", n: 1, time: 2000))])
            let events = try later.outbox.map { try CloudEvent.decode($0.value!) }
            #expect(events.map(\.id) == (everyTask ? ["reminder/r0", "reminder/r1", "out/e"] : ["out/e"]), "every task's timers first: \(everyTask)")
            #expect(try applier.database.count("SELECT COUNT(*) FROM timers") == (everyTask ? 2 : 4))
            // Task 0's record at 2100 fires what is left of its own.
            let own = try applier.apply([polled(processor, partition: 0, offset: 2, value: countEvent("e0", member: "m", n: 1, time: 2100))])
            #expect(try own.outbox.map { try CloudEvent.decode($0.value!).id }
                    == (everyTask ? ["reminder/r0-at-2000", "out/e0"] : ["reminder/r0", "reminder/r0-at-2000", "out/e0"]))
        }
    }

    /// A day on which every member's timer comes due is spread over batches: a batch fires no
    /// more timers than its budget, and the record they come before waits, its offset held,
    /// until they have all fired. What comes out is what one unbounded batch gives.
    @Test func aBatchFiresNoMoreTimersThanItsBudgetAndTheRecordBehindThemWaits() throws {
        let reminders = (1...5).map { index in
            countEvent("r\(index)", member: "m\(index)", n: Int64(index) * 100, time: 1000, type: "count.remind")
        }
        let passing = countEvent("e", member: "m", n: 1, time: 2000)
        func storedOffset(_ applier: BatchApplier<CountingProcessor>) throws -> Int64? {
            try applier.database.prepare("SELECT next_offset FROM offsets WHERE topic = 'in.a' AND partition = 0").queryOne { $0.int64(0) }
        }

        let unboundedDirectory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: unboundedDirectory) }
        let (unbounded, unboundedProcessor) = try makeApplier(unboundedDirectory)
        _ = try unbounded.apply(reminders.enumerated().map { polled(unboundedProcessor, offset: Int64($0.offset), value: $0.element) })
        let expected = try unbounded.apply([polled(unboundedProcessor, offset: 5, value: passing)]).outbox.map(\.value)
        #expect(expected.count == 6)

        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        applier.timerBudget = 2
        _ = try applier.apply(reminders.enumerated().map { polled(processor, offset: Int64($0.offset), value: $0.element) })
        var pending: PolledRecord<CountingProcessor.Body>? = polled(processor, offset: 5, value: passing)
        var outbox: [[UInt8]?] = []
        var fired: [Int] = []
        // The merge handed the record out: it counts offset 6 as committable.
        for _ in 0..<3 {
            let outcome = try applier.apply(
                nextRecord: { _ in defer { pending = nil }; return pending },
                committableOffsets: { [TopicPartition(topic: "in.a", partition: 0): 6] })
            outbox += outcome.outbox.map(\.value)
            fired.append(outcome.timersFired)
            if applier.carriedRecord != nil {
                #expect(outcome.applied == 0)
                #expect(try storedOffset(applier) == 5, "the waiting record's offset is not stored past")
            }
        }
        #expect(fired == [2, 2, 1])
        #expect(applier.carriedRecord == nil)
        #expect(try storedOffset(applier) == 6)
        #expect(outbox == expected)

        // Through the array form, the batches follow one another by themselves.
        let arrayDirectory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: arrayDirectory) }
        let (arrayApplier, arrayProcessor) = try makeApplier(arrayDirectory)
        arrayApplier.timerBudget = 2
        _ = try arrayApplier.apply(reminders.enumerated().map { polled(arrayProcessor, offset: Int64($0.offset), value: $0.element) })
        let outcome = try arrayApplier.apply([polled(arrayProcessor, offset: 5, value: passing)])
        #expect(outcome.timersFired == 5 && outcome.applied == 1)
        #expect(outcome.outbox.map(\.value) == expected)
    }

    /// Timers set in the past by late records, due by the stream time already: those the
    /// budget leaves unfired fire first in the next batch, even with no record to come.
    @Test func timersTheBudgetLeftUnfiredFireInTheNextBatchWithoutARecord() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        applier.timerBudget = 1
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("e", member: "m", n: 1, time: 10_000))])
        var late: [PolledRecord<CountingProcessor.Body>] = [
            polled(processor, offset: 1, value: countEvent("r1", member: "m1", n: 100, time: 1_000, type: "count.remind")),
            polled(processor, offset: 2, value: countEvent("r2", member: "m2", n: 200, time: 1_000, type: "count.remind")),
        ]
        let first = try applier.apply(nextRecord: { _ in late.isEmpty ? nil : late.removeFirst() }, committableOffsets: { nil })
        #expect(first.applied == 2 && first.timersFired == 1)
        #expect(applier.tasksWithTimersLeft == [0])
        let second = try applier.apply(nextRecord: { _ in nil }, committableOffsets: { nil })
        #expect(try second.outbox.map { try CloudEvent.decode($0.value!).id } == ["reminder/r2"])
        #expect(applier.tasksWithTimersLeft.isEmpty)
        #expect(try applier.database.count("SELECT COUNT(*) FROM timers") == 0)
    }

    @Test func aConflictingDuplicateFromTheFarFutureFiresNoTimer() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("r1", member: "m", n: 500, time: 1000, type: "count.remind"))])
        // The same id again, with another payload and a time years ahead: dead-lettered, and the
        // timer due at 1500 stays where it is.
        let outcome = try applier.apply([polled(processor, offset: 1, value: countEvent("r1", member: "m", n: 7, time: 9_999_999_999))])
        #expect(outcome.deadLettered == 1)
        #expect(outcome.timersFired == 0)
        #expect(try applier.database.count("SELECT COUNT(*) FROM timers") == 1)
    }

    @Test func aTimerSetInThePastFiresInTheSameBatch() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 10_000))])
        // A late record (time 1000) sets a timer due at 1100, long before stream time 10000.
        let outcome = try applier.apply([polled(processor, offset: 1, value: countEvent("r1", member: "m", n: 100, time: 1000, type: "count.remind"))])
        #expect(outcome.timersFired == 1)
        #expect(try outputs(outcome, topic: "out").map(\.id) == ["reminder/r1"])
    }

    @Test func aTimerSetInThePastByARecordThatMovesNoClockFiresInTheSameBatch() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        processor.clocklessTypes = ["count.remind"]
        processor.firesDueTimersAtBatchEnd = true
        _ = try applier.apply([polled(processor, offset: 0, value: countEvent("e1", member: "m", n: 1, time: 10_000))])
        // An answer-like record dated 1000 sets a timer due at 1100 and moves no clock: the timer
        // fires at the batch's end, not at the task's next record, as the processor asks.
        let outcome = try applier.apply([polled(processor, offset: 1, value: countEvent("r1", member: "m", n: 100, time: 1000, type: "count.remind"))])
        #expect(outcome.timersFired == 1)
        #expect(try outputs(outcome, topic: "out").map(\.id) == ["reminder/r1"])
        #expect(try applier.database.count("SELECT stream_time FROM task_clock") == 10_000, "the clock stays")
    }

    @Test func aServiceTakesAMembersTimersDueBeforeAKeyAndFiresThemItself() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        processor.clocklessTypes = ["count.take"]
        _ = try applier.apply([
            polled(processor, offset: 0, value: countEvent("r1", member: "m", n: 4_000, time: 1000, type: "count.remind")),
            polled(processor, offset: 1, value: countEvent("r2", member: "m", n: 6_000, time: 1000, type: "count.remind")),
            polled(processor, offset: 2, value: countEvent("r3", member: "o", n: 4_000, time: 1000, type: "count.remind")),
        ])
        // Dated 6000 and moving no clock: m's timer due at 5000 is taken, its one at 7000 and o's stay.
        let outcome = try applier.apply([polled(processor, offset: 3, value: countEvent("t1", member: "m", n: 0, time: 6000, type: "count.take"))])
        #expect(try outputs(outcome, topic: "out").map(\.id) == ["taken/r1"])
        #expect(outcome.timersFired == 0)
        #expect(try applier.database.count("SELECT COUNT(*) FROM timers") == 2)
    }

    @Test func wallClockModeFiresByTheClockNotByRecords() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory, timerMode: .wallClock)
        let set = try applier.apply([
            polled(processor, offset: 0, value: countEvent("r1", member: "m", n: 100, time: 1000, type: "count.remind")),
            polled(processor, offset: 1, value: countEvent("e1", member: "m", n: 1, time: 5000)),
        ])
        #expect(set.timersFired == 0)
        let early = try applier.apply([], wallClock: EventTime(millis: 1099), tasks: [0])
        #expect(early.timersFired == 0)
        let due = try applier.apply([], wallClock: EventTime(millis: 1100), tasks: [0])
        #expect(due.timersFired == 1)
    }

    // MARK: Hostile records

    @Test func anEventTooFarAheadIsDeadLetteredAndMovesNoClock() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let day: Int64 = 86_400_000
        let (applier, processor) = try makeApplier(directory)
        applier.futureMargin = 30 * day
        let start: Int64 = 1_767_225_600_000
        // Task 1's first record is measured against the newest other task (task 0).
        let outcome = try applier.apply([
            polled(processor, partition: 0, offset: 0, value: countEvent("a1", member: "m", n: 1, time: start)),
            polled(processor, partition: 0, offset: 1, value: countEvent("a2", member: "m", n: 1, time: 253_402_214_400_000)),  // 9999-12-31
            polled(processor, partition: 0, offset: 2, value: countEvent("a3", member: "m", n: 1, time: start + 29 * day)),
            polled(processor, partition: 1, offset: 0, value: countEvent("b1", member: "m", n: 1, time: start + 60 * day)),
            polled(processor, partition: 1, offset: 1, value: countEvent("b2", member: "m", n: 1, time: start + 20 * day)),
        ])
        #expect(outcome.applied == 3)
        let letters = try outputs(outcome, topic: acmeDeadLetters.name)
        #expect(letters.map { $0.data["reason"]?.stringValue } == ["time-out-of-range", "time-out-of-range"])
        #expect(letters.map { $0.data["offset"]?.int64Value } == [1, 0])
        #expect(try applier.database.count("SELECT stream_time FROM task_clock WHERE task = 0") == start + 29 * day)
        #expect(try applier.database.count("SELECT stream_time FROM task_clock WHERE task = 1") == start + 20 * day)

        // In wall-clock mode the bound is the machine clock's.
        let clockDirectory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: clockDirectory) }
        let (clocked, clockedProcessor) = try makeApplier(clockDirectory, timerMode: .wallClock)
        clocked.futureMargin = day
        clocked.clock = { EventTime(millis: start) }
        let clockedOutcome = try clocked.apply([
            polled(clockedProcessor, offset: 0, value: countEvent("c1", member: "m", n: 1, time: start + day - 1)),
            polled(clockedProcessor, offset: 1, value: countEvent("c2", member: "m", n: 1, time: start + day + 1)),
        ])
        #expect(clockedOutcome.applied == 1)
        #expect(try outputs(clockedOutcome, topic: acmeDeadLetters.name).map { $0.data["reason"]?.stringValue } == ["time-out-of-range"])
    }

    /// In a store of one task (as every store will be once tasks keep their own), the margin is
    /// measured from what the task and the record alone say, so every run decides alike.
    @Test func theMarginOfATaskAloneComesFromItsStreamTimeAndTheBrokersTimestamp() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let day: Int64 = 86_400_000
        let (applier, processor) = try makeApplier(directory)
        applier.futureMargin = 30 * day
        let start: Int64 = 1_767_225_600_000
        func reasons(_ outcome: BatchOutcome) throws -> [String?] {
            try outputs(outcome, topic: acmeDeadLetters.name).map { $0.data["reason"]?.stringValue }
        }
        // The store's first record is bounded by its Kafka timestamp, even one its writer set
        // (a writer's mistake: milliseconds taken for seconds, say).
        let first = try applier.apply([
            polled(processor, offset: 0, value: countEvent("a0", member: "m", n: 1, time: start + 31 * day), timestamp: start),
            polled(processor, offset: 1, value: countEvent("a1", member: "m", n: 1, time: start + 29 * day), timestamp: start),
        ])
        #expect(first.applied == 1)
        #expect(try reasons(first) == ["time-out-of-range"])
        #expect(try applier.database.count("SELECT stream_time FROM task_clock WHERE task = 0") == start + 29 * day)

        // A year later the partition wakes up. A timestamp the writer set does not let a record
        // past its task's stream time (a writer could set any); one the broker set does.
        let later = start + 29 * day + 365 * day
        let wakingUp = try applier.apply([
            polled(processor, offset: 2, value: countEvent("b0", member: "m", n: 1, time: later), timestamp: later),
            polled(processor, offset: 3, value: countEvent("b1", member: "m", n: 1, time: later + 40 * day), timestamp: later, timestampType: .logAppendTime),
            polled(processor, offset: 4, value: countEvent("b2", member: "m", n: 1, time: later + 1), timestamp: later, timestampType: .logAppendTime),
            polled(processor, offset: 5, value: countEvent("b3", member: "m", n: 1, time: later + 2), timestamp: later + 2),
        ])
        #expect(wakingUp.applied == 2)
        #expect(try reasons(wakingUp) == ["time-out-of-range", "time-out-of-range"])
        #expect(try outputs(wakingUp, topic: acmeDeadLetters.name).map { $0.data["offset"]?.int64Value } == [2, 3])
        #expect(try applier.database.count("SELECT stream_time FROM task_clock WHERE task = 0") == later + 2)

        // A record without a timestamp, first in its store, has no bound (as before).
        let bareDirectory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: bareDirectory) }
        let (bare, bareProcessor) = try makeApplier(bareDirectory)
        bare.futureMargin = 30 * day
        let bareOutcome = try bare.apply([polled(bareProcessor, offset: 0, value: countEvent("c0", member: "m", n: 1, time: start + 400 * day))])
        #expect(bareOutcome.applied == 1)
    }

    @Test func aDeadLetterCarriesABoundedExcerptAndWhereTheRecordIs() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        // 600 KB of quotes: escaped whole, twice the size, more than the producer takes.
        let quotes = [UInt8](repeating: UInt8(ascii: "\""), count: 600_000)
        let outcome = try applier.apply([polled(processor, offset: 7, value: quotes)])
        #expect(outcome.deadLettered == 1)
        let row = try #require(outcome.outbox.first { $0.topic == acmeDeadLetters.name })
        #expect(row.value!.count < 120_000)
        let letter = try CloudEvent.decode(row.value!)
        #expect(letter.data["payload"]?.stringValue == String(repeating: "\"", count: Batch.payloadExcerptBytes))
        #expect(letter.data["payloadBytes"]?.int64Value == 600_000)
        #expect(letter.data["payloadTruncated"] == .bool(true))
        #expect(letter.data["offset"]?.int64Value == 7)
        #expect(letter.data["topic"]?.stringValue == "in.a")
    }

    @Test func deadLettersOfRecordsWithPersonalDataCarryNoneOfIt() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, processor) = try makeApplier(directory)
        processor.personalDataTopics = ["in.b"]
        let profile = Array(#"{"phone":"13800138000","email":"pat@example.com"}"#.utf8)
        let outcome = try applier.apply([polled(processor, topic: "in.b", offset: 3, value: profile)])
        let row = try #require(outcome.outbox.first { $0.topic == acmeDeadLetters.name })
        let text = String(decoding: row.value!, as: UTF8.self)
        #expect(!text.contains("13800138000") && !text.contains("pat@example.com"))
        let letter = try CloudEvent.decode(row.value!)
        #expect(letter.data["payload"] == nil && letter.data["payloadBytes"]?.int64Value == Int64(profile.count))
        #expect(letter.data["topic"]?.stringValue == "in.b" && letter.data["offset"]?.int64Value == 3)
    }

    @Test func aRecordTooLargeToPublishIsRefusedBeforeItIsCommitted() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (database, batch) = try makeBatch(directory)
        #expect(throws: OutputTooLarge.self) {
            try batch.emit(topic: "out", key: "m", value: [UInt8](repeating: 0x61, count: Batch.maximumRecordBytes + 1))
        }
        try batch.emit(topic: "out", key: nil, value: [UInt8](repeating: 0x61, count: Batch.maximumRecordBytes))
        #expect(try database.count("SELECT COUNT(*) FROM outbox") == 1)
    }

    @Test func aTimerSetAgainAsItIsWritesNothingAndANewPayloadReplacesTheOld() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (database, batch) = try makeBatch(directory)
        let timer = TimerRequest(due: EventTime(millis: 86_400_000), rank: 2, member: "m1", kind: "digest", ref: "1", payload: [1, 2])
        try batch.schedule(timer)
        #expect(database.changes == 1)
        // The same timer again (a second entry of the day): no row is deleted or written.
        try batch.schedule(timer)
        #expect(database.changes == 0)
        var moved = timer
        moved.payload = [3]
        try batch.schedule(moved)
        #expect(database.changes == 1)
        #expect(try database.count("SELECT COUNT(*) FROM timers") == 1)
        let payload = try database.prepare("SELECT payload FROM timers WHERE member = 'm1'").queryOne { $0.blob(0) }
        #expect(payload == [3])
    }

    @Test func failuresAreCountedAgainstARecordOnlyInARow() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (applier, _) = try makeApplier(directory)
        let partition = TopicPartition(topic: "in.a", partition: 3)
        #expect(try applier.recordStrike(nil) == nil)
        #expect(try applier.recordStrike((partition, 41, "trap"))?.strikes == 1)
        // A start that left no note (a kill from outside) neither counts nor forgets.
        #expect(try applier.recordStrike(nil)?.strikes == 1)
        #expect(try applier.recordStrike((partition, 41, "trap"))?.strikes == 2)
        #expect(applier.poisonRecord?.offset == 41, "two in a row: set aside when it comes")
        // Another record starts the count again.
        let other = try applier.recordStrike((partition, 42, "overflow"))
        #expect(other?.offset == 42 && other?.strikes == 1)
        // Counted until a batch stores offsets past the record.
        #expect(try applier.clearStrikes(ifPast: [partition: 42]) == false)
        #expect(try applier.clearStrikes(ifPast: [partition: 43]) == true)
        #expect(try applier.recordStrike(nil) == nil)

        applier.poisonRecord = (partition, 42, "overflow")
        let record = ConsumedRecord(topic: "in.a", partition: 3, offset: 42, key: nil, value: nil)
        #expect(applier.poisonRejection(for: record)?.code.rawValue == "poison-record")
        #expect(applier.poisonRejection(for: ConsumedRecord(topic: "in.a", partition: 3, offset: 43, key: nil, value: nil)) == nil)
    }

    @Test func acknowledgedOutboxRowsAreDeletedAsRunsOfConsecutiveRows() {
        #expect(BatchApplier<CountingProcessor>.runs(of: [7, 5, 6, 9, 12, 11, 9]) == [5...7, 9...9, 11...12])
        #expect(BatchApplier<CountingProcessor>.runs(of: [3]) == [3...3])
        #expect(BatchApplier<CountingProcessor>.runs(of: []).isEmpty)
    }

    /// A store rebuilt from history (a replay) batches its inputs differently from the
    /// store it is compared with: the inbox it keeps must not depend on that.
    @Test func theInboxKeptPastTheHorizonDoesNotDependOnBatching() throws {
        let day: Int64 = 86_400_000
        let events = (0..<1_800).map { index in (id: "e\(index)", time: Int64(index) * 600_000 + 7 * 60_000) }  // every 10 minutes
        var kept: [[String]] = []
        for batchSize in [1, 7, 1_800] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let (applier, processor) = try makeApplier(directory, inboxHorizon: 10 * day)
            for start in stride(from: 0, to: events.count, by: batchSize) {
                let batch = events[start..<min(start + batchSize, events.count)].enumerated().map { offset, event in
                    polled(processor, offset: Int64(start + offset), value: countEvent(event.id, member: "m", n: 1, time: event.time))
                }
                _ = try applier.apply(batch)
            }
            kept.append(try applier.database.prepare("SELECT event_id FROM inbox ORDER BY event_time").query { $0.string(0) })
        }
        #expect(kept[0].count < events.count, "the inbox was pruned")
        #expect(kept[1] == kept[0] && kept[2] == kept[0], "kept \(kept.map(\.count))")
    }

    /// A record that moves no clock (another service's answer) is applied whenever it arrives,
    /// early in one store and late in another (a live store waiting on a slow keeper, a rebuild
    /// reading every answer at once): the inbox row it leaves must not depend on when.
    @Test func theInboxRowOfARecordThatMovesNoClockDoesNotDependOnWhenItArrived() throws {
        let day: Int64 = 86_400_000
        let answers = [("a-old", 2 * day), ("a-recent", 25 * day)]
        var kept: [[String]] = []
        var totals: [Int64] = []
        for arrivesLate in [false, true] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let (applier, processor) = try makeApplier(directory, inboxHorizon: 10 * day)
            processor.platformTypes = ["count.answer"]
            processor.clocklessTypes = ["count.answer"]
            var offset: Int64 = 0
            func answer(_ id: String, at time: Int64) -> PolledRecord<CountingProcessor.Body> {
                defer { offset += 1 }
                return polled(processor, offset: offset, value: countEvent(id, member: "m", n: 100, time: time, type: "count.answer"))
            }
            for dayIndex in Int64(0)...30 {
                var batch = [polled(processor, offset: offset, value: countEvent("e\(dayIndex)", member: "m", n: 1, time: dayIndex * day + 1))]
                offset += 1
                if !arrivesLate, let (id, time) = answers.first(where: { $0.1 / day == dayIndex }) { batch.append(answer(id, at: time)) }
                _ = try applier.apply(batch)
            }
            if arrivesLate { _ = try applier.apply(answers.map { answer($0.0, at: $0.1) }) }
            kept.append(try applier.database.prepare("SELECT event_id FROM inbox WHERE event_id LIKE 'a-%' ORDER BY event_id").query { $0.string(0) })
            totals.append(try applier.database.count("SELECT total FROM counts WHERE member = 'm'"))
            if arrivesLate { #expect(processor.askedWhetherApplied == ["a-old"], "older than the horizon, the processor answers for it") }
        }
        #expect(kept[0] == ["a-recent"] && kept[1] == kept[0], "kept \(kept)")
        #expect(totals == [231, 231], "both answers applied in both stores")
    }

    /// Two instances on one host share a task's store file; the group gives the task to the
    /// second while the first, slow, still has a batch to commit. The second claims the store
    /// before it reads anything of it: the first's batch then commits nothing, and fails so
    /// that its instance applies the task no more.
    @Test func aBatchOfAnInstanceWhoseTaskAnotherClaimedCommitsNothing() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (slow, processor) = try makeApplier(directory)
        slow.ownTask = 0
        try slow.claimTask()
        _ = try slow.apply([polled(processor, offset: 0, value: countEvent("e0", member: "m", n: 1, time: 1_000))])
        let (newOwner, newProcessor) = try makeApplier(directory)
        newOwner.ownTask = 0
        try newOwner.claimTask()
        #expect(throws: TaskTakenOver.self) {
            _ = try slow.apply([polled(processor, offset: 1, value: countEvent("e1", member: "m", n: 10, time: 2_000))])
        }
        #expect(throws: TaskTakenOver.self) { _ = try slow.applyBroadcast([]) }
        #expect(try newOwner.database.count("SELECT total FROM counts WHERE member = 'm'") == 1, "the slow batch left nothing")
        #expect(try newOwner.database.count("SELECT COUNT(*) FROM outbox") == 1)
        let outcome = try newOwner.apply([polled(newProcessor, offset: 1, value: countEvent("e1", member: "m", n: 10, time: 2_000))])
        #expect(outcome.applied == 1)
        #expect(try newOwner.database.count("SELECT total FROM counts WHERE member = 'm'") == 11)
    }
}
