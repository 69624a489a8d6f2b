import Foundation
import Messaging
import Storage
import Testing

@testable import ServiceKit

/// A store restored from its service's changelog alone, by the runtime, for a service the
/// runtime knows nothing of (the counting service of platform `acme`).
@Suite(.serialized) struct ChangelogRestoreTests {
    let input = TopicSpec(name: "cl.in", partitions: 4, compacted: false, key: "member", summary: "")
    let output = TopicSpec(name: "cl.out", partitions: 4, compacted: false, key: "member", summary: "")
    let changelog = TopicSpec(name: Platform.acme.changelog(of: "counting"), partitions: 1, compacted: true, key: "row", summary: "")

    func environment(_ broker: EmbeddedBroker, database: String) -> [String: String] {
        [
            "ACME_BOOTSTRAP_SERVERS": broker.bootstrapServers, "ACME_DATABASE": database,
            "ACME_DATA_DIR": (database as NSString).deletingLastPathComponent,
            "ACME_GROUP_ID": "counting", "ACME_SESSION_TIMEOUT_MS": "3000", "ACME_LOG_LEVEL": "warning",
            "ACME_BATCH_RECORDS": "150", "ACME_CHANGELOG": "on", "ACME_COMMAND_KEYS": "k1=0123456789abcdef0123",
        ]
    }

    /// The changelog with a partition per task, for the `task` layout's four tasks.
    var perTaskChangelog: TopicSpec { TopicSpec(name: changelog.name, partitions: 4, compacted: true, key: "row", summary: "") }

    /// The settings of an instance with a store per task on two threads, its data directory
    /// `host` under `directory`.
    func taskEnvironment(_ broker: EmbeddedBroker, _ directory: URL, host: String, _ settings: [String: String] = [:]) -> [String: String] {
        environment(broker, database: directory.appendingPathComponent("\(host)/counting.sqlite").path)
            .merging(["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "2"].merging(settings) { $1 }) { $1 }
    }

    /// The path of task `task`'s store in `host`'s data directory.
    func taskStore(_ directory: URL, _ host: String, _ task: Int) -> String {
        directory.appendingPathComponent("\(host)/counting.task-\(task).sqlite").path
    }

    /// The inbox rows of `host`'s four task stores together: the events they applied.
    func inboxRows(_ directory: URL, host: String) throws -> Int64 {
        try (0..<4).reduce(0) { total, task in
            guard FileManager.default.fileExists(atPath: taskStore(directory, host, task)) else { return total }
            let store = try Database(DatabaseConfiguration(path: taskStore(directory, host, task)))
            defer { store.close() }
            return total + ((try? store.count("SELECT COUNT(*) FROM inbox")) ?? 0)
        }
    }

    func produce(_ producer: KafkaProducer, _ range: Range<Int>) throws {
        for index in range {
            let member = "m\(index % 40)"
            try producer.send(topic: input.name, key: Array(member.utf8), value: countEvent("e\(index)", member: member, n: Int64(index), time: Int64(index) * 1000))
        }
        #expect(producer.flush(timeoutMilliseconds: 20_000))
    }

    func waitForApplied(_ path: String, _ expected: Int64, seconds: Double = 90) throws -> Int64 {
        let deadline = Date().addingTimeInterval(seconds)
        var applied: Int64 = 0
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: path) {
                let database = try Database(DatabaseConfiguration(path: path))
                applied = (try? database.count("SELECT COUNT(*) FROM inbox")) ?? 0
                database.close()
                if applied >= expected { break }
            }
            usleep(100_000)
        }
        return applied
    }

    /// An instance of the counting service (the one store, keeping its changelog) applies the
    /// events of `range` into the store at `path`, and stops.
    func applyAndStop(_ range: Range<Int>, _ broker: EmbeddedBroker, _ producer: KafkaProducer, into path: String) throws {
        let instance = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
        try produce(producer, range)
        #expect(try waitForApplied(path, Int64(range.count)) == Int64(range.count))
        #expect(instance.stopAndWait().error == nil)
    }

    @Test func aStoreRestoredFromTheChangelogAloneEqualsTheOriginalTableByTableAndGoesOn() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let originalPath = directory.appendingPathComponent("original/counting.sqlite").path
        let restoredPath = directory.appendingPathComponent("restored/counting.sqlite").path

        try applyAndStop(0..<1_000, broker, producer, into: originalPath)

        // Another host, an empty data directory: the store comes from the changelog alone.
        let restored = LoopInstance(environment: environment(broker, database: restoredPath), topics: [input.name], output: output.name)
        usleep(3_000_000)
        #expect(restored.stopAndWait().error == nil)
        #expect(restored.applied == 0, "every input was already applied in the restored store")
        let expected = try Database(DatabaseConfiguration(path: originalPath))
        let actual = try Database(DatabaseConfiguration(path: restoredPath))
        switch try StoreComparison.compare(expected, actual, skippingTables: RuntimeSchema.unloggedTables) {
        case .success(let summary): #expect(summary.rows > 1_000, "inbox, counts, offsets, clocks")
        case .failure(let difference): Issue.record("the restored store differs: \(difference)")
        }
        actual.close()

        // The restored store goes on from the offsets it holds: no event twice, none lost.
        let next = LoopInstance(environment: environment(broker, database: restoredPath), topics: [input.name], output: output.name)
        try produce(producer, 1_000..<1_500)
        #expect(try waitForApplied(restoredPath, 1_500) == 1_500)
        #expect(next.stopAndWait().error == nil)
        #expect(next.applied == 500)
        let after = try Database(DatabaseConfiguration(path: restoredPath))
        let totals = try after.prepare("SELECT member, total, applied FROM counts")
            .query { ($0.string(0), $0.int64(1), $0.int64(2)) }
        #expect(totals.count == 40)
        for (member, total, applied) in totals {
            let mine = stride(from: Int(member.dropFirst())!, to: 1_500, by: 40)
            #expect(total == Int64(mine.reduce(0, +)) && applied == Int64(mine.underestimatedCount), "\(member)")
        }
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
        reader.read(seconds: 60) { $0.count >= 1_500 }
        reader.close()
        #expect(Set(try reader.records.filter { $0.topic == output.name }.map { try CloudEvent.decode($0.value!).id }).count == 1_500)
        #expect(!reader.records.contains { $0.topic == acmeDeadLetters.name })
    }

    /// A release whose migration replaced a logged table restores a changelog an older release
    /// began: with its upgrade, the old table's rows land in the new one; without, the restore
    /// is refused with the reason, and the empty store stays as it was.
    @Test func aChangelogOfAnOlderReleaseIsRestoredThroughTheNewReleasesUpgrades() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let originalPath = directory.appendingPathComponent("original/counting.sqlite").path
        try applyAndStop(0..<400, broker, producer, into: originalPath)
        let expected = try Database(DatabaseConfiguration(path: originalPath))
        let counts = try expected.prepare("SELECT member, total, applied FROM counts ORDER BY member").query { "\($0.string(0)) \($0.int64(1)) \($0.int64(2))" }
        expected.close()
        #expect(counts.count == 40)

        let refusedPath = directory.appendingPathComponent("refused/counting.sqlite").path
        let refused = LoopInstance(
            environment: environment(broker, database: refusedPath), topics: [input.name], output: output.name, renamedCounts: true)
        let deadline = Date().addingTimeInterval(60)
        while !refused.outcome.done && Date() < deadline { usleep(100_000) }
        let reason = refused.stopAndWait().error ?? ""
        #expect(reason.contains("the store has no logged table counts"), "\(reason)")
        let untouched = try Database(DatabaseConfiguration(path: refusedPath))
        #expect(try untouched.count("SELECT COUNT(*) FROM inbox") == 0 && untouched.count("SELECT COUNT(*) FROM tallies") == 0)
        untouched.close()

        let upgradedPath = directory.appendingPathComponent("upgraded/counting.sqlite").path
        let upgraded = LoopInstance(
            environment: environment(broker, database: upgradedPath), topics: [input.name], output: output.name, renamedCounts: true, upgradesLoggedRows: true)
        #expect(try waitForApplied(upgradedPath, 400, seconds: 60) == 400)
        usleep(1_000_000)
        #expect(upgraded.stopAndWait().error == nil)
        #expect(upgraded.applied == 0, "every input was already applied in the restored store")
        let restored = try Database(DatabaseConfiguration(path: upgradedPath))
        let tallies = try restored.prepare("SELECT member, total, applied FROM tallies ORDER BY member").query { "\($0.string(0)) \($0.int64(1)) \($0.int64(2))" }
        restored.close()
        #expect(tallies == counts)
    }

    /// A store per task (`STORE_LAYOUT=task`) writes its task's partition of the changelog; on
    /// another host each task's store comes back from its partition alone, equal to the
    /// original table by table. A changelog with fewer partitions than tasks is refused.
    @Test func eachTasksStoreIsRestoredFromItsPartitionAloneAndEqualsTheOriginal() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, perTaskChangelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        func environment(host: String) -> [String: String] { taskEnvironment(broker, directory, host: host) }
        func taskStore(_ host: String, _ task: Int) -> String { self.taskStore(directory, host, task) }
        func applied(_ host: String) throws -> Int64 { try inboxRows(directory, host: host) }
        let original = LoopInstance(environment: environment(host: "original"), topics: [input.name], output: output.name, independentTasks: true)
        try produce(producer, 0..<1_000)
        let deadline = Date().addingTimeInterval(90)
        while try applied("original") < 1_000, Date() < deadline { usleep(100_000) }
        #expect(original.stopAndWait().error == nil)

        let restored = LoopInstance(environment: environment(host: "restored"), topics: [input.name], output: output.name, independentTasks: true)
        let assigned = Date().addingTimeInterval(60)
        while (0..<4).contains(where: { !FileManager.default.fileExists(atPath: taskStore("restored", $0)) }), Date() < assigned { usleep(100_000) }
        usleep(2_000_000)
        #expect(restored.stopAndWait().error == nil)
        #expect(restored.applied == 0, "every input was already applied in the restored stores")
        var rows = 0
        for task in 0..<4 {
            let expected = try Database(DatabaseConfiguration(path: taskStore("original", task)))
            let actual = try Database(DatabaseConfiguration(path: taskStore("restored", task)))
            switch try StoreComparison.compare(expected, actual, skippingTables: RuntimeSchema.unloggedTables) {
            case .success(let summary): rows += summary.rows
            case .failure(let difference): Issue.record("task \(task)'s restored store differs: \(difference)")
            }
            #expect(try actual.prepare("SELECT DISTINCT partition FROM offsets").query { $0.int64(0) } == [Int64(task)])
            expected.close()
            actual.close()
        }
        #expect(rows > 1_000, "inbox, counts, offsets, clocks")

        // One partition for four tasks: task 1 has none, and no store of it is made from part of a log.
        let narrow = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let refusedDirectory = directory.appendingPathComponent("narrow")
        let refused = LoopInstance(
            environment: self.environment(narrow, database: refusedDirectory.appendingPathComponent("counting.sqlite").path)
                .merging(["ACME_STORE_LAYOUT": "task"]) { $1 },
            topics: [input.name], output: output.name, independentTasks: true)
        let gaveUp = Date().addingTimeInterval(60)
        while !refused.outcome.done, Date() < gaveUp { usleep(100_000) }
        let error = refused.stopAndWait().error ?? "no error"
        #expect(error.contains("has no partition 1 for task 1's store"), "\(error)")
    }

    @Test func aChangelogThatLostItsBeginningIsRefusedNotRestoredInPart() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        // More than the embedded broker keeps of a partition (5 MiB): it drops the oldest.
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let row = RowChange(table: "counts", key: [.text("m1")], row: [.text("m1"), .integer(1), .integer(1)])
        for _ in 0..<300 {
            for _ in 0..<100 { try producer.send(topic: changelog.name, key: row.encodedKey, value: row.encodedValue! + Array(repeating: 0, count: 200), partition: 0) }
            producer.flush(timeoutMilliseconds: 10_000)
        }
        let path = directory.appendingPathComponent("counting.sqlite").path
        let instance = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
        let outcome = instance.stopAndWait()
        #expect(outcome.error?.contains("deleted the first records of the changelog") == true, "\(outcome)")
        let store = try Database(DatabaseConfiguration(path: path))
        #expect(try store.count("SELECT COUNT(*) FROM counts") == 0, "nothing of it was restored")
    }

    /// Rows of a batch whose end never came count for nothing, and nothing before the store
    /// stopped keeping its changelog counts either.
    @Test func onlyFinishedBatchesOfTheStoresLastLoggedHistoryAreRestored() throws {
        func count(_ member: String, _ total: Int64) -> RowChange {
            RowChange(table: "counts", key: [.text(member)], row: [.text(member), .integer(total), .integer(1)])
        }
        func restored(_ records: [(key: [UInt8], value: [UInt8]?)]) throws -> [String: Int64] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            for record in records { try producer.send(topic: changelog.name, key: record.key, value: record.value, partition: 0) }
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            let path = directory.appendingPathComponent("counting.sqlite").path
            let instance = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
            usleep(2_000_000)
            #expect(instance.stopAndWait().error == nil)
            let store = try Database(DatabaseConfiguration(path: path))
            return Dictionary(uniqueKeysWithValues: try store.prepare("SELECT member, total FROM counts").query { ($0.string(0), $0.int64(1)) })
        }
        func row(_ change: RowChange) -> (key: [UInt8], value: [UInt8]?) { (change.encodedKey, change.encodedValue) }
        let end = (key: ChangelogRestore.batchEndKey, value: [UInt8]?([]))
        let restart = (key: ChangelogRestore.restartKey, value: [UInt8]?([]))
        let ended = (key: ChangelogRestore.endedKey, value: [UInt8]?([]))

        // A batch, half a batch of an instance that died, its successor's restart and a batch.
        #expect(try restored([row(count("a", 1)), row(count("b", 1)), end, row(count("a", 99)), row(count("c", 99)), restart,
                              row(count("b", 2)), end, row(count("d", 1))]) == ["a": 1, "b": 2])
        // Compaction keeps only the last record of each key, so a batch end before a restart
        // may be gone: a restart that says it follows no unfinished rows rolls nothing back,
        // and one that counts them rolls back that batch alone.
        func restartAfter(_ unfinished: Int) -> (key: [UInt8], value: [UInt8]?) {
            (ChangelogRestore.restartKey, ChangelogRestore.restartValue(copy: "c", unfinishedRows: unfinished, sequence: 0))
        }
        #expect(try restored([row(count("a", 1)), row(count("b", 1)), restartAfter(0), row(count("c", 1)), end]) == ["a": 1, "b": 1, "c": 1])
        #expect(try restored([row(count("a", 1)), end, row(count("b", 99)), restartAfter(1), row(count("c", 1)), end]) == ["a": 1, "c": 1])
        // The store stopped keeping the changelog: what came before is not its state any more.
        #expect(try restored([row(count("a", 1)), end, ended]) == [:])
        #expect(try restored([row(count("a", 1)), end, ended, restart, row(count("e", 5)), end]) == ["e": 5])
    }

    /// The end of a changelog, read backwards a window at a time: who wrote its last record of
    /// its own, and the rows of an unfinished batch after it.
    @Test func theTailNamesTheLastWriterAndCountsTheUnfinishedRowsAfterIt() throws {
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let configuration = try ServiceConfiguration.fromEnvironment(
            service: "counting", platform: .acme, environment: environment(broker, database: "/nonexistent/counting.sqlite"))
        let row = RowChange(table: "counts", key: [.text("m1")], row: [.text("m1"), .integer(1), .integer(1)])
        func send(_ key: [UInt8], _ value: [UInt8]?, times: Int = 1) throws {
            for _ in 0..<times { try producer.send(topic: changelog.name, key: key, value: value, partition: 0) }
            #expect(producer.flush(timeoutMilliseconds: 10_000))
        }
        func tail() throws -> (LastWriter, Int) {
            let tail = try ChangelogRestore.tail(topic: changelog.name, configuration: configuration)
            return (tail.lastWriter, tail.unfinishedRows)
        }
        #expect(try tail() == (.nobody, 0))
        try send(row.encodedKey, row.encodedValue, times: 3)
        #expect(try tail() == (.nobody, 3))
        try send(ChangelogRestore.batchEndKey, ChangelogRestore.batchEndValue(rows: 3, copy: "first", sequence: 1))
        #expect(try tail() == (.copy("first", sequence: 1), 0))
        try send(ChangelogRestore.restartKey, ChangelogRestore.restartValue(copy: "second", unfinishedRows: 2, sequence: 9))
        // More rows after it than the first window (1,024 records) holds.
        try send(row.encodedKey, row.encodedValue, times: 1_500)
        #expect(try tail() == (.copy("second", sequence: 9), 1_500))
        try send(ChangelogRestore.endedKey, [])
        #expect(try tail() == (.ended, 0))
        // A batch end from before copies were named.
        try send(ChangelogRestore.batchEndKey, Array("12".utf8))
        #expect(try tail() == (.copy(nil, sequence: nil), 0))
    }

    /// A broker down for longer than any one request waits (a slow or restarting one, as on a
    /// busy machine): the tail is read once it is back, rather than the instance stopping.
    @Test func theTailWaitsForABrokerThatIsDownForAWhile() throws {
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let configuration = try ServiceConfiguration.fromEnvironment(
            service: "counting", platform: .acme, environment: environment(broker, database: "/nonexistent/counting.sqlite"))
        try producer.send(topic: changelog.name, key: ChangelogRestore.batchEndKey, value: ChangelogRestore.batchEndValue(rows: 0, copy: "c", sequence: 4), partition: 0)
        #expect(producer.flush(timeoutMilliseconds: 10_000))
        broker.inject(.down)
        nonisolated(unsafe) let downBroker = broker
        let started = Date()
        // Down for longer than any one question waits (5 s for the cluster's id, 10 s for bounds).
        DispatchQueue.global().asyncAfter(deadline: .now() + 12) { downBroker.end(.down) }
        let tail = try ChangelogRestore.tail(topic: changelog.name, configuration: configuration)
        #expect(Date().timeIntervalSince(started) >= 12, "it was down")
        #expect(tail.lastWriter == .copy("c", sequence: 4))
    }

    /// The answers the restore waits for: asked again while none comes, at once refused for
    /// anything but a cluster that does not answer, and after its patience the last error
    /// thrown as it came (a refusal when the answer was only missing), or at once when cancelled.
    @Test func aQuestionIsAskedAgainOnlyWhileTheClusterGivesNoAnswer() throws {
        // librdkafka's codes: -185 its own timeout, -195 a broker it cannot reach, 5 no leader.
        let unanswered: [Int32] = [-185, -195, 5]
        var asked = 0
        let answer = try ChangelogRestore.patiently("a count") { () throws -> Int? in
            asked += 1
            if asked == 1 { return nil }
            if asked <= 4 { throw KafkaError(code: unanswered[asked - 2], message: "no answer") }
            return 7
        }
        #expect(answer == 7 && asked == 5)
        asked = 0
        #expect(throws: KafkaError.self) {
            try ChangelogRestore.patiently("a topic") { () throws -> Int? in
                asked += 1
                throw KafkaError(message: "topic cl.none does not exist in the cluster")
            }
        }
        #expect(asked == 1, "a refusal is not asked again")
        asked = 0
        do {
            _ = try ChangelogRestore.patiently("a count", patienceMilliseconds: 300) { () throws -> Int? in
                asked += 1
                throw KafkaError(code: -185, message: "timed out")
            }
            Issue.record("an answer that never comes is given up")
        } catch let error as KafkaError {
            #expect(error.code == -185 && asked > 1, "the last error, as the caller would have had it without patience")
        }
        do {
            _ = try ChangelogRestore.patiently("an id", patienceMilliseconds: 300) { () -> String? in nil }
            Issue.record("an answer that never comes is given up")
        } catch let refused as ChangelogRestore.Refused {
            #expect(refused.description.contains("an id"))
        }
        asked = 0
        #expect(throws: ChangelogRestore.Cancelled.self) {
            try ChangelogRestore.patiently("a count", cancelled: { asked >= 2 }) { () throws -> Int? in
                asked += 1
                return nil
            }
        }
        #expect(asked == 2)
        asked = 0
        _ = try? ChangelogRestore.patiently("a count", patienceMilliseconds: 0) { () throws -> Int? in
            asked += 1
            return nil
        }
        #expect(asked == 1, "no patience: asked once")
    }

    @Test func aChangelogIsRefusedForAStoreThatHasAppliedRecordsWithoutOne() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let path = directory.appendingPathComponent("counting.sqlite").path
        var unlogged = environment(broker, database: path)
        unlogged["ACME_CHANGELOG"] = "off"
        let first = LoopInstance(environment: unlogged, topics: [input.name], output: output.name)
        try produce(producer, 0..<100)
        #expect(try waitForApplied(path, 100) == 100)
        #expect(first.stopAndWait().error == nil)
        let logged = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
        let refused = logged.stopAndWait()
        #expect(refused.error?.contains("has applied records without a changelog") == true, "\(refused)")
    }

    /// A host comes back with its store after another instance restored the store from the
    /// changelog and went on, or a file is put back from a snapshot: the old store is replaced
    /// by what the changelog holds, rather than resumed, which would log a second history over
    /// the other's. A plain restart resumes.
    @Test func aStoreTheChangelogWentOnWithoutIsReplacedByItNotResumed() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let hostA = directory.appendingPathComponent("a/counting.sqlite").path
        let hostB = directory.appendingPathComponent("b/counting.sqlite").path
        func copyName(_ path: String) throws -> String? {
            let store = try Database(DatabaseConfiguration(path: path))
            defer { store.close() }
            return try ChangelogCopy.read(from: store).name
        }
        func expectSame(_ expectedPath: String, _ actualPath: String, _ what: String) throws {
            let expected = try Database(DatabaseConfiguration(path: expectedPath))
            let actual = try Database(DatabaseConfiguration(path: actualPath))
            defer { expected.close(); actual.close() }
            if case .failure(let difference) = try StoreComparison.compare(expected, actual, skippingTables: RuntimeSchema.unloggedTables) {
                Issue.record("\(what): \(difference)")
            }
        }
        func run(_ path: String, producing range: Range<Int>? = nil, until total: Int64) throws -> Int {
            let instance = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
            if let range { try produce(producer, range) } else { usleep(3_000_000) }
            #expect(try waitForApplied(path, total) == total)
            let outcome = instance.stopAndWait()
            #expect(outcome.error == nil, "\(outcome)")
            return instance.applied
        }

        #expect(try run(hostA, producing: 0..<300, until: 300) == 300)
        let firstCopy = try copyName(hostA)
        #expect(firstCopy != nil)
        // A plain restart resumes the same copy.
        #expect(try run(hostA, producing: 300..<350, until: 350) == 50)
        #expect(try copyName(hostA) == firstCopy, "a plain restart restores nothing")

        // Another host restores the store and goes on; meanwhile host A's file gains a row the
        // changelog never had.
        #expect(try run(hostB, producing: 350..<600, until: 600) == 250, "the other host restored the first 350 and applied the rest")
        let stray = try Database(DatabaseConfiguration(path: hostA))
        try stray.execute("INSERT INTO counts(member, total, applied) VALUES('stray', 1, 1)")
        stray.close()

        // Host A comes back: its store is replaced by the changelog's, the stray row with it.
        #expect(try run(hostA, until: 600) == 0, "the store came back from the changelog with all 600 applied")
        let secondCopy = try copyName(hostA)
        #expect(secondCopy != nil && secondCopy != firstCopy)
        try expectSame(hostB, hostA, "the store that came back differs from the one the changelog went on with")

        // A snapshot of host A now, put back after host A went on: the changelog is ahead of it
        // under its own name, so it is restored too.
        let snapshot = directory.appendingPathComponent("snapshot/counting.sqlite").path
        try FileManager.default.createDirectory(atPath: (snapshot as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: hostA + suffix) {
            try FileManager.default.copyItem(atPath: hostA + suffix, toPath: snapshot + suffix)
        }
        #expect(try run(hostA, producing: 600..<700, until: 700) == 100)
        #expect(try copyName(snapshot) == secondCopy)
        #expect(try run(snapshot, until: 700) == 0, "the snapshot came back from the changelog with all 700 applied")
        try expectSame(hostA, snapshot, "the snapshot put back differs from the store the changelog went on with")

        // Each event counted once, in a store restored from the changelog alone.
        let hostC = directory.appendingPathComponent("c/counting.sqlite").path
        #expect(try run(hostC, until: 700) == 0)
        try expectSame(snapshot, hostC, "a store restored from the changelog differs from the store that wrote it")
        let copy = try Database(DatabaseConfiguration(path: hostC))
        let totals = try copy.prepare("SELECT member, total FROM counts").query { ($0.string(0), $0.int64(1)) }
        #expect(totals.count == 40)
        for (member, total) in totals {
            #expect(total == Int64(stride(from: Int(member.dropFirst())!, to: 700, by: 40).reduce(0, +)), "\(member)")
        }
    }

    /// A standby keeps its store a warm copy of the changelog, writing nothing; started as a
    /// service, it catches up with what it missed and goes on, each event applied once.
    @Test func aStandbyKeepsAWarmCopyAndTakesOverFromWhereItStood() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let activePath = directory.appendingPathComponent("active/counting.sqlite").path
        let standbyPath = directory.appendingPathComponent("standby/counting.sqlite").path
        var standingBy = environment(broker, database: standbyPath)
        standingBy["ACME_STANDBY"] = "on"

        let active = LoopInstance(environment: environment(broker, database: activePath), topics: [input.name], output: output.name)
        try produce(producer, 0..<200)
        #expect(try waitForApplied(activePath, 200) == 200)
        let standby = LoopInstance(environment: standingBy, topics: [input.name], output: output.name)
        try produce(producer, 200..<400)
        #expect(try waitForApplied(activePath, 400) == 400)
        #expect(try waitForApplied(standbyPath, 400) == 400, "the standby's store has every event the active one applied")
        let stoppedStandby = standby.stopAndWait()
        #expect(stoppedStandby.error == nil, "\(stoppedStandby)")
        #expect(standby.applied == 0, "a standby applies no input itself")
        do {
            let expected = try Database(DatabaseConfiguration(path: activePath))
            let actual = try Database(DatabaseConfiguration(path: standbyPath))
            defer { expected.close(); actual.close() }
            #expect(try ChangelogCopy.standbyPosition(of: actual) ?? 0 > 0, "the standby keeps where it stands in the changelog")
            #expect(try ChangelogCopy.read(from: actual).name == nil, "and is nobody's copy: it wrote nothing")
            // The active store may have committed a batch the changelog does not hold yet.
            if try expected.count("SELECT COUNT(*) FROM outbox") == 0,
               case .failure(let difference) = try StoreComparison.compare(expected, actual, skippingTables: RuntimeSchema.unloggedTables) {
                Issue.record("the standby's store differs from the active one: \(difference)")
            }
        }
        // The active instance goes on while the standby is down, then its host is lost. A row
        // only the standby's store has shows that it catches up rather than restores anew.
        let marked = try Database(DatabaseConfiguration(path: standbyPath))
        try marked.execute("INSERT INTO counts(member, total, applied) VALUES('only-here', 1, 1)")
        marked.close()
        try produce(producer, 400..<500)
        #expect(try waitForApplied(activePath, 500) == 500)
        #expect(active.stopAndWait().error == nil)
        // A store that served is never cleared to become a standby.
        var servedAsStandby = environment(broker, database: activePath)
        servedAsStandby["ACME_STANDBY"] = "on"
        let refused = LoopInstance(environment: servedAsStandby, topics: [input.name], output: output.name).stopAndWait()
        #expect(refused.error?.contains("is not a standby's") == true, "\(refused)")

        // The standby takes over: it catches up with the 100 it missed from the changelog, not
        // from the input, and goes on.
        let promoted = LoopInstance(environment: environment(broker, database: standbyPath), topics: [input.name], output: output.name)
        try produce(producer, 500..<600)
        #expect(try waitForApplied(standbyPath, 600) == 600)
        let stopped = promoted.stopAndWait()
        #expect(stopped.error == nil, "\(stopped)")
        #expect(promoted.applied == 100, "only the events after the active instance's last")
        let store = try Database(DatabaseConfiguration(path: standbyPath))
        #expect(try ChangelogCopy.standbyPosition(of: store) == nil && ChangelogCopy.read(from: store).name != nil, "a copy of its own now")
        #expect(try store.count("SELECT COUNT(*) FROM counts WHERE member = 'only-here'") == 1, "caught up, not restored anew")
        let totals = try store.prepare("SELECT member, total FROM counts WHERE member != 'only-here'").query { ($0.string(0), $0.int64(1)) }
        #expect(totals.count == 40)
        for (member, total) in totals {
            #expect(total == Int64(stride(from: Int(member.dropFirst())!, to: 600, by: 40).reduce(0, +)), "\(member)")
        }
        store.close()
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name])
        reader.read(seconds: 60) { $0.count >= 600 }
        reader.close()
        #expect(Set(try reader.records.map { try CloudEvent.decode($0.value!).id }).count == 600)
    }

    /// In the `task` layout a standby keeps a copy of every task's store from the task's
    /// partition of the changelog; started as the service, the tasks it is given take over
    /// from their copies and catch up with what they missed, each event applied once.
    @Test func aStandbyKeepsEveryTasksStoreWarmAndTakesOverFromWhereEachStood() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, perTaskChangelog, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        func environment(host: String, _ settings: [String: String] = [:]) -> [String: String] {
            taskEnvironment(broker, directory, host: host, settings)
        }
        func taskStore(_ host: String, _ task: Int) -> String { self.taskStore(directory, host, task) }
        func applied(_ host: String, atLeast expected: Int64) throws -> Int64 {
            let deadline = Date().addingTimeInterval(90)
            var total: Int64 = 0
            repeat {
                total = try inboxRows(directory, host: host)
                if total >= expected { break }
                usleep(100_000)
            } while Date() < deadline
            return total
        }

        let active = LoopInstance(environment: environment(host: "active"), topics: [input.name], output: output.name, independentTasks: true)
        try produce(producer, 0..<200)
        #expect(try applied("active", atLeast: 200) == 200)
        let standby = LoopInstance(
            environment: environment(host: "standby", ["ACME_STANDBY": "on"]), topics: [input.name], output: output.name, independentTasks: true)
        try produce(producer, 200..<400)
        #expect(try applied("active", atLeast: 400) == 400)
        #expect(try applied("standby", atLeast: 400) == 400, "the standby's task stores have every event the active ones applied")
        let stoppedStandby = standby.stopAndWait()
        #expect(stoppedStandby.error == nil, "\(stoppedStandby)")
        #expect(standby.applied == 0, "a standby applies no input itself")
        for task in 0..<4 {
            let expected = try Database(DatabaseConfiguration(path: taskStore("active", task)))
            let actual = try Database(DatabaseConfiguration(path: taskStore("standby", task)))
            defer { expected.close(); actual.close() }
            #expect(try ChangelogCopy.standbyPosition(of: actual) ?? 0 > 0, "task \(task)'s copy keeps where it stands in its partition")
            #expect(try actual.prepare("SELECT DISTINCT partition FROM offsets").query { $0.int64(0) } == [Int64(task)])
            // The active store may have committed a batch the changelog does not hold yet.
            if try expected.count("SELECT COUNT(*) FROM outbox") == 0,
               case .failure(let difference) = try StoreComparison.compare(expected, actual, skippingTables: RuntimeSchema.unloggedTables) {
                Issue.record("task \(task)'s standby copy differs from the active store: \(difference)")
            }
        }
        // The active instance goes on while the standby is down; then its host is lost. A row
        // only the standby's copy of task 0 has shows that it catches up rather than restores anew.
        let marked = try Database(DatabaseConfiguration(path: taskStore("standby", 0)))
        try marked.execute("INSERT INTO counts(member, total, applied) VALUES('only-here', 1, 1)")
        marked.close()
        try produce(producer, 400..<500)
        #expect(try applied("active", atLeast: 500) == 500)
        #expect(active.stopAndWait().error == nil)

        // The standby takes over every task: each catches up from its partition of the
        // changelog, not from the input, and goes on.
        let promoted = LoopInstance(environment: environment(host: "standby"), topics: [input.name], output: output.name, independentTasks: true)
        try produce(producer, 500..<600)
        #expect(try applied("standby", atLeast: 600) == 600)
        let stopped = promoted.stopAndWait()
        #expect(stopped.error == nil, "\(stopped)")
        #expect(promoted.applied == 100, "only the events after the active instance's last")
        var totals: [String: Int64] = [:]
        for task in 0..<4 {
            let store = try Database(DatabaseConfiguration(path: taskStore("standby", task)))
            defer { store.close() }
            #expect(try ChangelogCopy.standbyPosition(of: store) == nil && ChangelogCopy.read(from: store).name != nil, "task \(task)'s copy is its own now")
            if task == 0 { #expect(try store.count("SELECT COUNT(*) FROM counts WHERE member = 'only-here'") == 1, "caught up, not restored anew") }
            let rows = try store.prepare("SELECT member, total FROM counts WHERE member != 'only-here'").query { ($0.string(0), $0.int64(1)) }
            for (member, total) in rows {
                #expect(totals.updateValue(total, forKey: member) == nil, "\(member) in one task's store alone")
            }
        }
        #expect(totals.count == 40)
        for (member, total) in totals {
            #expect(total == Int64(stride(from: Int(member.dropFirst())!, to: 600, by: 40).reduce(0, +)), "\(member)")
        }
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name])
        reader.read(seconds: 60) { $0.count >= 600 }
        reader.close()
        #expect(Set(try reader.records.map { try CloudEvent.decode($0.value!).id }).count == 600)
    }

    @Test func aSecondInstanceOnAStoreWithAChangelogIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [input, output, changelog, acmeDeadLetters])
        let path = directory.appendingPathComponent("counting.sqlite").path
        let first = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
        _ = try waitForApplied(path, 0)
        usleep(1_000_000)
        let second = LoopInstance(environment: environment(broker, database: path), topics: [input.name], output: output.name)
        let refused = second.stopAndWait()
        #expect(refused.error?.contains("is in use by another process") == true, "\(refused)")
        #expect(first.stopAndWait().error == nil)
    }
}
