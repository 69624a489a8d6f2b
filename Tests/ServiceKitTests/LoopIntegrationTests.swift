import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Synchronization
import Testing

@testable import ServiceKit

/// One service instance running the loop on its own thread, as a process would.
final class LoopInstance: Sendable {
    final class Outcome: Sendable {
        let value = Mutex<(done: Bool, error: String?)>((false, nil))
        let applied = Mutex<Int>(0)
        /// The threads that decoded records, and whether the loop's own was among them.
        let decoding = Mutex<(threads: Int, onTheLoopsThread: Bool)>((0, false))
        /// The threads that applied records, and whether the loop's own was among them.
        let applying = Mutex<(threads: Int, onTheLoopsThread: Bool)>((0, false))
    }

    let stop = StopSignal()
    private let finished = Outcome()

    /// `independentTasks`: the processor declares its tasks independent (as a store per task
    /// needs), and the loop is given a processor per task, as the services' `main` gives it.
    /// `failingMembers`: applying a record of one of them throws.
    /// `passing`: the processor passes counts on to other members as commands (`CountingProcessor.passing`).
    init(
        environment: [String: String], topics: [String], output: String, independentTasks: Bool = false, failingMembers: Set<String> = [],
        passing: (topic: String, every: Int64)? = nil, bouncing: Bool = false, progress: (topics: [String], held: String)? = nil,
        renamedCounts: Bool = false, upgradesLoggedRows: Bool = false
    ) {
        let thread = Thread { [stop, finished] in
            do {
                let configuration = try ServiceConfiguration.fromEnvironment(service: "counting", platform: .acme, environment: environment)
                let applyingThreads = ThreadLog()
                func makeProcessor() -> CountingProcessor {
                    let processor = CountingProcessor(inputTopics: topics, outputTopic: output)
                    processor.tasksAreIndependent = independentTasks
                    processor.applyingThreads = applyingThreads
                    processor.failOnMembers = failingMembers
                    processor.renamedCounts = renamedCounts
                    processor.upgradesLoggedRows = upgradesLoggedRows
                    if let progress {
                        processor.progressTopics = progress.topics
                        processor.heldTopic = progress.held
                    }
                    if let passing {
                        processor.passing = passing
                        processor.bouncing = bouncing
                        processor.commandTopics = [passing.topic]
                        processor.sortedInputTopics = [passing.topic]
                    }
                    return processor
                }
                let processor = makeProcessor()
                let loop = try ExactlyOnceLoop(
                    configuration: configuration, processor: processor, makeProcessor: independentTasks || passing != nil ? makeProcessor : nil,
                    logger: Logger(service: "counting", minimumLevel: .warning), stop: stop)
                try loop.run()
                let loopThread = UInt(pthread_self())
                let threads = processor.decodingThreads.withLock { $0 }
                finished.decoding.withLock { $0 = (threads.count, threads.contains(loopThread)) }
                let applied = applyingThreads.threads.withLock { $0 }
                finished.applying.withLock { $0 = (applied.count, applied.contains(loopThread)) }
                finished.applied.withLock { $0 = loop.totals.applied }
                finished.value.withLock { $0 = (true, nil) }
            } catch {
                finished.value.withLock { $0 = (true, "\(error)") }
            }
        }
        thread.start()
    }

    /// Whether the loop has ended (by itself, or asked to), and its error if it failed.
    var outcome: (done: Bool, error: String?) { finished.value.withLock { $0 } }

    /// Events this instance applied (known once it has stopped).
    var applied: Int { finished.applied.withLock { $0 } }
    /// How many threads decoded, and whether the loop's was one (known once it has stopped).
    var decoding: (threads: Int, onTheLoopsThread: Bool) { finished.decoding.withLock { $0 } }
    /// How many threads applied, and whether the loop's was one (known once it has stopped).
    var applying: (threads: Int, onTheLoopsThread: Bool) { finished.applying.withLock { $0 } }

    /// Asks for a graceful stop and waits for it.
    func stopAndWait(seconds: Double = 60) -> (done: Bool, error: String?) {
        stop.request()
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let state = finished.value.withLock { $0 }
            if state.done { return state }
            usleep(20_000)
        }
        return (false, "did not stop")
    }
}

/// Reads a topic from the beginning.
final class TopicReader: RebalanceListener {
    var records: [ConsumedRecord] = []

    init(bootstrap: String, topics: [String]) throws {
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: bootstrap, groupID: "reader-\(UUID())"), listener: self)
        try consumer.subscribe(topics)
        self.consumerBox = consumer
    }

    private var consumerBox: KafkaConsumer?

    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    func partitionsRevoked(_ partitions: [TopicPartition]) {}

    /// Reads until `done` holds or the time is up.
    func read(seconds: Double, until done: ([ConsumedRecord]) -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline && !done(records) {
            if case .record(let record) = consumerBox!.poll(timeoutMilliseconds: 100) { records.append(record) }
        }
    }

    func close() { consumerBox?.close() }
}

@Suite(.serialized) struct LoopIntegrationTests {
    let inputA = TopicSpec(name: "sk.in.a", partitions: 4, compacted: false, key: "member", summary: "")
    let inputB = TopicSpec(name: "sk.in.b", partitions: 4, compacted: false, key: "member", summary: "")
    let output = TopicSpec(name: "sk.out", partitions: 4, compacted: false, key: "member", summary: "")

    func environment(_ broker: EmbeddedBroker, database: String) -> [String: String] {
        [
            "ACME_BOOTSTRAP_SERVERS": broker.bootstrapServers, "ACME_DATABASE": database,
            "ACME_DATA_DIR": (database as NSString).deletingLastPathComponent,
            "ACME_GROUP_ID": "counting", "ACME_TASK_IDLE_MS": "200", "ACME_SESSION_TIMEOUT_MS": "3000",
            "ACME_LOG_LEVEL": "warning", "ACME_BATCH_RECORDS": "200",
        ]
    }

    /// Produces `count` events starting at `first`, alternating between the two input topics.
    func produce(_ producer: KafkaProducer, from first: Int, count: Int) throws {
        for index in first..<(first + count) {
            let member = "m\(index % 50)"
            let topic = index % 2 == 0 ? inputA.name : inputB.name
            try producer.send(topic: topic, key: Array(member.utf8), value: countEvent("e\(index)", member: member, n: Int64(index), time: Int64(index) * 1000))
        }
        #expect(producer.flush(timeoutMilliseconds: 20_000))
    }

    /// Produces `count` events starting at `first` as `produce` does, and among them records that
    /// are not JSON and reminders whose timers fire on later records. Returns how many records
    /// it sent.
    func produceWithNoiseAndReminders(_ producer: KafkaProducer, from first: Int, count: Int) throws -> Int {
        try produce(producer, from: first, count: count)
        var sent = count
        for index in stride(from: first + 7, to: first + count, by: 97) {
            let member = "m\(index % 50)"
            try producer.send(topic: inputA.name, key: Array(member.utf8), value: Array("not JSON \(index)".utf8))
            try producer.send(
                topic: inputB.name, key: Array(member.utf8),
                value: countEvent("r\(index)", member: member, n: 5_000, time: Int64(index) * 1000 + 1, type: "count.remind"))
            sent += 2
        }
        #expect(producer.flush(timeoutMilliseconds: 20_000))
        return sent
    }

    func waitForApplied(_ database: Database, _ expected: Int64, seconds: Double = 90) throws -> Int64 {
        let deadline = Date().addingTimeInterval(seconds)
        var applied: Int64 = 0
        while Date() < deadline {
            applied = try database.count("SELECT COUNT(*) FROM inbox")
            if applied >= expected { break }
            usleep(100_000)
        }
        return applied
    }

    @Test func aRebalanceBetweenTwoInstancesLosesAndDuplicatesNothing() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters])
        let databasePath = directory.appendingPathComponent("counting.sqlite").path
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let observer = try Database(DatabaseConfiguration(path: databasePath))
        _ = try observer.migrate(RuntimeSchema.migrations + CountingProcessor(inputTopics: [], outputTopic: "").migrations)

        let first = LoopInstance(environment: environment(broker, database: databasePath), topics: [inputA.name, inputB.name], output: output.name)
        try produce(producer, from: 0, count: 2000)
        #expect(try waitForApplied(observer, 500) >= 500)

        // A second instance joins the group: the partitions are split between the two.
        let second = LoopInstance(environment: environment(broker, database: databasePath), topics: [inputA.name, inputB.name], output: output.name)
        try produce(producer, from: 2000, count: 2000)
        usleep(4_000_000)
        // The first leaves: the second takes every partition.
        let stopped = first.stopAndWait()
        #expect(stopped.done && stopped.error == nil)
        try produce(producer, from: 4000, count: 1000)
        #expect(try waitForApplied(observer, 5000) == 5000)
        let secondStopped = second.stopAndWait()
        #expect(secondStopped.done && secondStopped.error == nil)
        // Both instances did part of the work, and together applied each event once.
        #expect(first.applied > 0 && second.applied > 0)
        #expect(first.applied + second.applied == 5000)

        // State: every member's total is exactly the sum of its events.
        let totals = try observer.prepare("SELECT member, total, applied FROM counts").query { ($0.string(0), $0.int64(1), $0.int64(2)) }
        #expect(totals.count == 50)
        for (member, total, applied) in totals {
            let index = Int(member.dropFirst())!
            let mine = stride(from: index, to: 5000, by: 50)
            #expect(total == Int64(mine.reduce(0, +)), "\(member)")
            #expect(applied == Int64(mine.underestimatedCount), "\(member)")
        }
        // Outputs: one per event, none with two payloads, none lost.
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
        reader.read(seconds: 60) { $0.count >= 5000 }
        usleep(500_000)
        reader.read(seconds: 1) { _ in false }
        reader.close()
        var payloadByID: [String: [UInt8]] = [:]
        var conflicting = 0
        for record in reader.records where record.topic == output.name {
            let event = try CloudEvent.decode(record.value!)
            if let known = payloadByID[event.id], known != record.value! { conflicting += 1 }
            payloadByID[event.id] = record.value!
        }
        #expect(payloadByID.count == 5000)
        #expect(conflicting == 0)
        #expect(reader.records.filter { $0.topic == acmeDeadLetters.name }.isEmpty)
        #expect(try observer.count("SELECT COUNT(*) FROM outbox") == 0)
    }

    /// A processor that still owes something on one of its progress topics (records it keeps
    /// aside) holds its marks there at the key it names, busy, while its marks on the others
    /// follow its merge as ever; the bound's key survives the trip through Kafka.
    @Test func aProcessorsBoundHoldsItsMarksOnThatTopicAlone() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let held = TopicSpec(name: "sk.held", partitions: 4, compacted: false, key: "member", summary: "")
        let free = TopicSpec(name: "sk.free", partitions: 4, compacted: false, key: "member", summary: "")
        let broker = try EmbeddedBroker(topics: [inputA, inputB, output, held, free, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        try produce(producer, from: 10, count: 400)
        let instance = LoopInstance(
            environment: environment(broker, database: directory.appendingPathComponent("counting.sqlite").path),
            topics: [inputA.name, inputB.name], output: output.name, progress: ([held.name, free.name], held.name))
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, held.name, free.name])
        // Every output, then marks that say all of it was read on the free topic.
        func lastMarks(on topic: String) throws -> [Int32: ProgressMark] {
            var marks: [Int32: ProgressMark] = [:]
            for record in reader.records where record.topic == topic {
                marks[record.partition] = try ProgressMark.decode(CloudEvent.decode(record.value!), partition: record.partition)
            }
            return marks
        }
        reader.read(seconds: 90) { records in
            records.filter { $0.topic == output.name }.count >= 400
                && ((try? lastMarks(on: free.name))?.values.filter(\.idle).count ?? 0) == 4
        }
        #expect(instance.stopAndWait().error == nil)
        reader.read(seconds: 1) { _ in false }
        reader.close()
        let freeMarks = try lastMarks(on: free.name), heldMarks = try lastMarks(on: held.name)
        #expect(freeMarks.count == 4 && freeMarks.values.allSatisfy { $0.idle && $0.tie == nil && $0.time >= 10_000 }, "\(freeMarks)")
        #expect(heldMarks.count == 4)
        for (task, mark) in heldMarks {
            #expect(!mark.idle && mark.time == 5 && mark.tie?.rank == 7 && mark.tie?.id == "kept-\(task)", "task \(task): \(mark)")
        }
        // The same promise is published once per task: its repeats are left out.
        #expect(reader.records.filter { $0.topic == held.name }.count == 4)
    }

    @Test func decodingAheadPublishesExactlyWhatDecodingOnTheLoopsThreadDoes() throws {
        // Per mode: each output partition's records (key, value), in offset order.
        var published: [String: [Int32: [String]]] = [:]
        for mode in ["on", "off"] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters])
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            // Everything is on the topics before the loop starts, so each poll spans many
            // records of every partition: what the merge hands out depends on all of them.
            let expected = try produceWithNoiseAndReminders(producer, from: 0, count: 3000)
            var environment = environment(broker, database: directory.appendingPathComponent("counting.sqlite").path)
            environment["ACME_DECODE_AHEAD"] = mode
            let instance = LoopInstance(environment: environment, topics: [inputA.name, inputB.name], output: output.name)
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
            reader.read(seconds: 90) { $0.count >= expected }
            #expect(instance.stopAndWait().error == nil)
            reader.read(seconds: 1) { _ in false }
            reader.close()
            #expect(reader.records.count >= expected, "decode ahead \(mode): every input has its output or dead letter")
            // On: one thread beside the loop's decoded everything; off: the loop's own did.
            #expect(instance.decoding.threads == 1)
            #expect(instance.decoding.onTheLoopsThread == (mode == "off"))
            published[mode] = try publishedByPartition(reader.records)
        }
        let ahead = published["on"] ?? [:], onTheLoop = published["off"] ?? [:]
        #expect(ahead.values.reduce(0) { $0 + $1.count } > 3000)
        // The same records, bytes and order, whichever thread decodes; the first difference if not.
        #expect(ahead.keys.sorted() == onTheLoop.keys.sorted())
        for partition in ahead.keys.sorted() {
            let (mine, theirs) = (ahead[partition] ?? [], onTheLoop[partition] ?? [])
            let first = (0..<max(mine.count, theirs.count)).first { $0 >= mine.count || $0 >= theirs.count || mine[$0] != theirs[$0] }
            #expect(first == nil, "partition \(partition), record \(first ?? 0): decoded ahead \(first.flatMap { $0 < mine.count ? mine[$0] : nil } ?? "none"), on the loop's thread \(first.flatMap { $0 < theirs.count ? theirs[$0] : nil } ?? "none")")
        }
    }

    /// Each output partition's records (key and value, or a dead letter's id and reason), in
    /// offset order.
    func publishedByPartition(_ records: [ConsumedRecord]) throws -> [Int32: [String]] {
        var byPartition: [Int32: [String]] = [:]
        for record in records.sorted(by: { ($0.topic, $0.partition, $0.offset) < ($1.topic, $1.partition, $1.offset) }) {
            if record.topic == output.name {
                byPartition[record.partition, default: []].append("\(record.keyString ?? "") \(String(decoding: record.value ?? [], as: UTF8.self))")
            } else {
                // A dead letter before its task has a stream time carries the machine's: compared by what it says.
                let letter = try CloudEvent.decode(record.value!)
                byPartition[100 + record.partition, default: []].append("\(letter.id) \(letter.data["reason"]?.stringValue ?? "")")
            }
        }
        return byPartition
    }

    /// One store, a store per task applied on the loop's thread, a store per task on a
    /// thread each (`THREADS=4`, four tasks), and stores per task on hosts that share nothing
    /// but Kafka (a data directory per instance, the changelog on, the first host lost with
    /// its directory): the same records on every partition.
    @Test func aStorePerTaskPublishesExactlyWhatOneStoreDoesThroughRestartsAndMovingTasks() throws {
        var published: [String: [Int32: [String]]] = [:]
        for (layout, threads, hosts) in [("service", 4, "one"), ("task", 1, "one"), ("task", 4, "one"), ("task", 2, "separate")] {
            let run = "\(layout) layout, \(threads) threads, \(hosts) host"
            let separateHosts = hosts == "separate"
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let changelog = TopicSpec(name: Platform.acme.changelog(of: "counting"), partitions: 4, compacted: true, key: "row", summary: "")
            let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters] + (separateHosts ? [changelog] : []))
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func produceRound(from first: Int, count: Int) throws -> Int {
                try produceWithNoiseAndReminders(producer, from: first, count: count)
            }
            var instances = 0
            func hostDirectory(_ instance: Int) -> URL {
                separateHosts ? directory.appendingPathComponent("host-\(instance)") : directory
            }
            func start() -> LoopInstance {
                instances += 1
                var environment = environment(broker, database: hostDirectory(instances).appendingPathComponent("counting.sqlite").path)
                environment["ACME_STORE_LAYOUT"] = layout
                environment["ACME_THREADS"] = String(threads)
                if separateHosts { environment["ACME_CHANGELOG"] = "on" }
                return LoopInstance(environment: environment, topics: [inputA.name, inputB.name], output: output.name, independentTasks: true)
            }
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
            // An output or a dead letter for every record (reminders fire besides).
            func waitForOutputs(atLeast count: Int) { reader.read(seconds: 90) { Set($0.map { "\($0.topic) \($0.partition) \($0.offset)" }).count >= count } }
            var sent = try produceRound(from: 0, count: 1500)
            let first = start()
            waitForOutputs(atLeast: sent)
            // A second instance takes half the tasks; then the first leaves and comes back.
            let second = start()
            sent += try produceRound(from: 1500, count: 1500)
            waitForOutputs(atLeast: sent)
            #expect(first.stopAndWait().error == nil)
            // The first host is lost with its disk: its tasks come back from the changelog. (Its
            // loop lets go of its stores just after it returns, SQLite removing their `-shm`
            // files meanwhile: a removal that finds a file gone tries again.)
            if separateHosts {
                for attempt in 1... {
                    do {
                        try FileManager.default.removeItem(at: hostDirectory(1))
                        break
                    } catch where attempt < 20 {
                        usleep(100_000)
                    }
                }
            }
            sent += try produceRound(from: 3000, count: 1000)
            let third = start()
            sent += try produceRound(from: 4000, count: 1000)
            waitForOutputs(atLeast: sent)
            #expect(second.stopAndWait().error == nil)
            #expect(third.stopAndWait().error == nil)
            // Stopping flushed every outbox: what is left to read is on the broker.
            reader.read(seconds: 3) { _ in false }
            reader.close()
            #expect(first.applied > 0 && second.applied > 0 && third.applied > 0, "\(run): every instance had tasks")
            published[run] = try publishedByPartition(reader.records)
            // The first instance owned all four tasks for a while. With one thread its loop's
            // own applied them; with a thread per task, those applied them while the loop's
            // thread polled and decoded what came next.
            let applying = first.applying, taskThreads = layout == "task" && threads > 1
            #expect(applying.threads == (layout == "task" ? threads : 1) && applying.onTheLoopsThread == !taskThreads, "\(run): \(applying)")
            if taskThreads {
                #expect(first.decoding.threads == 1 && first.decoding.onTheLoopsThread, "\(run): \(first.decoding)")
            }

            if separateHosts {
                // Each task's latest store is on the host that owned it last: restored from its
                // changelog partition where it came from another host, and every count once.
                var total: Int64 = 0
                var onTheThirdHost: Int64 = 0
                for task in 0..<4 {
                    let path = hostDirectory(3).appendingPathComponent("counting.task-\(task).sqlite").path
                    guard FileManager.default.fileExists(atPath: path) else { continue }
                    let store = try Database(DatabaseConfiguration(path: path))
                    onTheThirdHost += try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts")
                    store.close()
                }
                // The third host began with its tasks' stores restored, not empty: it applied
                // only what came after, far less than its stores count.
                #expect(onTheThirdHost - Int64(third.applied) > 1_000, "\(run): the third host holds \(onTheThirdHost), applied \(third.applied)")
                let changelogReader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [changelog.name])
                changelogReader.read(seconds: 30) { Set($0.map(\.partition)).count >= 4 }
                changelogReader.close()
                #expect(Set(changelogReader.records.map(\.partition)) == [0, 1, 2, 3], "\(run): each task writes its own partition")
                for task in 0..<4 {
                    let stores = try [2, 3].compactMap { host -> (clock: Int64, applied: Int64)? in
                        let path = hostDirectory(host).appendingPathComponent("counting.task-\(task).sqlite").path
                        guard FileManager.default.fileExists(atPath: path) else { return nil }
                        let store = try Database(DatabaseConfiguration(path: path))
                        defer { store.close() }
                        return (try store.count("SELECT COALESCE(SUM(next_offset), 0) FROM offsets"), try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts"))
                    }
                    total += stores.max { $0.clock < $1.clock }?.applied ?? 0
                }
                #expect(total == 5000, "\(run): every count applied once")
                published[run] = try publishedByPartition(reader.records)
                continue
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sqlite") }.sorted()
            if layout == "task" {
                // A file per task, each holding its own task's clock and rows alone.
                #expect(files == (0..<4).map { "counting.task-\($0).sqlite" })
                var total: Int64 = 0
                for task in 0..<4 {
                    let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.task-\(task).sqlite").path))
                    #expect(try store.prepare("SELECT task FROM task_clock").query { $0.int64(0) } == [Int64(task)])
                    #expect(try store.count("SELECT COUNT(*) FROM outbox") == 0)
                    total += try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts")
                }
                #expect(total == 5000, "every count applied once")
            } else {
                #expect(files == ["counting.sqlite"])
                let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.sqlite").path))
                #expect(try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts") == 5000, "every count applied once")
            }
        }
        let oneStore = published["service layout, 4 threads, one host"] ?? [:]
        #expect(oneStore.values.reduce(0) { $0 + $1.count } > 5000)
        for run in ["task layout, 1 threads, one host", "task layout, 4 threads, one host", "task layout, 2 threads, separate host"] {
            // Outputs are told apart by id, whatever instance published them: compare each
            // partition's distinct records (a task moving may publish a row twice, same bytes).
            let perTask = published[run] ?? [:]
            #expect(oneStore.keys.sorted() == perTask.keys.sorted(), "\(run)")
            for partition in oneStore.keys.sorted() {
                let (mine, theirs) = (Set(perTask[partition] ?? []), Set(oneStore[partition] ?? []))
                #expect(mine == theirs, "\(run), partition \(partition): only per task \(mine.subtracting(theirs).prefix(2)), only in one store \(theirs.subtracting(mine).prefix(2))")
            }
        }
    }

    /// A task's store claimed by another instance of the host whose assignment was already
    /// past (a slow instance's, come late), while the group still gives the task here: the
    /// loop's next batch of it commits nothing, and after twice the session timeout the loop
    /// takes the task on again from its store and reads its partitions again from the store's
    /// offsets. Every record is applied once and has its output.
    @Test func aTaskClaimedByAnInstanceWhoseAssignmentIsPastIsTakenOnAgain() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        var environment = environment(broker, database: directory.appendingPathComponent("counting.sqlite").path)
        environment["ACME_STORE_LAYOUT"] = "task"
        environment["ACME_THREADS"] = "1"
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name])
        func outputs() -> Set<String> { Set(reader.records.map { String(decoding: $0.value ?? [], as: UTF8.self) }.compactMap { try? CloudEvent.decode(Array($0.utf8)).id }) }
        try produce(producer, from: 0, count: 1_000)
        let instance = LoopInstance(environment: environment, topics: [inputA.name, inputB.name], output: output.name, independentTasks: true)
        // Each copy of an output counts once (a task taken on again may send some again).
        func outputsRead(_ records: [ConsumedRecord]) -> Int { Set(records.map { $0.value ?? [] }).count }
        reader.read(seconds: 90) { outputsRead($0) >= 1_000 }
        #expect(outputs().count == 1_000)
        // The stale claim.
        let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.task-1.sqlite").path))
        try store.execute("INSERT OR REPLACE INTO store_identity(name, value) VALUES('task-owner', 'an instance whose assignment is past')")
        try produce(producer, from: 1_000, count: 1_000)
        reader.read(seconds: 90) { outputsRead($0) >= 2_000 }
        #expect(outputs() == Set((0..<2_000).map { "out/e\($0)" }), "every record has its output: \(2_000 - outputs().count) missing")
        #expect(instance.stopAndWait().error == nil)
        #expect(try store.prepare("SELECT value FROM store_identity WHERE name = 'task-owner'").queryOne { $0.string(0) } != "an instance whose assignment is past",
                "claimed again")
        store.close()
        var total: Int64 = 0
        for task in 0..<4 {
            let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.task-\(task).sqlite").path))
            total += try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts")
            store.close()
        }
        #expect(total == 2_000, "every count applied once")
        reader.close()
    }

    /// Tasks that send each other commands (`CountingProcessor.passing`), each in a store of
    /// its own, waiting for one another through peer marks: every task publishes, in order,
    /// what one store publishes, on two threads, on two hosts with directories of their own,
    /// and on two hosts keeping changelogs, one of them lost with its directory midway and
    /// replaced by a third that restores its tasks (their marks numbered past the lost
    /// owner's). Three records share each time, so commands and records of equal times meet.
    @Test func tasksThatSendEachOtherCommandsPublishInStoresOfTheirOwnWhatOneStoreDoes() throws {
        let commands = TopicSpec(name: "sk.commands", partitions: 4, compacted: false, key: "member", summary: "")
        let changelog = TopicSpec(name: Platform.acme.changelog(of: "counting"), partitions: 4, compacted: true, key: "row", summary: "")
        let events = 1_200
        let expected = events + stride(from: 0, to: events, by: 7).underestimatedCount
        /// `loseAHost`: the first host is stopped once a third of the outputs are out, and its
        /// directory removed; a third host with an empty one takes its place.
        func run(_ settings: [[String: String]], loseAHost: Bool = false) throws -> [Int32: [String]] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: [inputA, inputB, commands, output, acmeDeadLetters, changelog])
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func host(_ index: Int, _ extra: [String: String]) -> LoopInstance {
                LoopInstance(
                    environment: environment(broker, database: directory.appendingPathComponent("host-\(index)/counting.sqlite").path)
                        .merging(["ACME_COMMAND_KEYS": "k1=0123456789abcdef0123"].merging(extra) { $1 }) { $1 },
                    topics: [inputA.name, inputB.name, commands.name], output: output.name, passing: (commands.name, 7))
            }
            var instances = settings.enumerated().map { host($0.offset, $0.element) }
            for index in 0..<events {
                let member = "m\(index % 40)"
                try producer.send(
                    topic: index % 2 == 0 ? inputA.name : inputB.name, key: Array(member.utf8),
                    value: countEvent("e\(index)", member: member, n: Int64(index), time: Int64(index / 3) * 1000))
            }
            #expect(producer.flush(timeoutMilliseconds: 20_000))
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
            func distinct() -> Int { Set(reader.records.map { "\($0.topic) \($0.keyString ?? "") \(String(decoding: $0.value ?? [], as: UTF8.self))" }).count }
            if loseAHost {
                // On a busy machine the first host may join late: it is lost once it holds tasks.
                let lostDirectory = directory.appendingPathComponent("host-0")
                let deadline = Date().addingTimeInterval(120)
                while Date() < deadline,
                      (try? FileManager.default.contentsOfDirectory(atPath: lostDirectory.path))?.contains(where: { $0.hasPrefix("counting.task-") }) != true {
                    usleep(100_000)
                }
                let target = min(max(expected / 3, distinct() + 100), expected)
                reader.read(seconds: 120) { _ in distinct() >= target }
                let lost = instances.removeFirst()
                #expect(lost.stopAndWait().error == nil)
                try removeDirectory(lostDirectory)
                instances.append(host(settings.count, settings[0]))
            }
            reader.read(seconds: 180) { _ in distinct() >= expected }
            usleep(500_000)
            reader.read(seconds: 0.5) { _ in false }
            reader.close()
            for instance in instances {
                let stopped = instance.stopAndWait()
                #expect(stopped.error == nil, "\(stopped)")
            }
            #expect(!reader.records.contains { $0.topic == acmeDeadLetters.name }, "nothing dead-lettered")
            // A task that moved may publish a record again (same id, same bytes): each counts once,
            // where it first came.
            var byPartition: [Int32: [String]] = [:]
            var seen: Set<String> = []
            for record in reader.records.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) where record.topic == output.name {
                let event = try CloudEvent.decode(record.value!)
                let line = "\(event.id) \(event.data["total"]?.int64Value ?? -1)"
                guard seen.insert(line).inserted else { continue }
                byPartition[record.partition, default: []].append(line)
            }
            #expect(byPartition.values.reduce(0) { $0 + $1.count } == expected, "every count and every pass once")
            return byPartition
        }
        let oneStore = try run([[:]])
        let twoThreads = try run([["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "2"]])
        #expect(twoThreads == oneStore, "a store per task on two threads")
        let twoHosts = try run([["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "1"], ["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "1"]])
        #expect(twoHosts == oneStore, "a store per task on two hosts")
        let hostLost = try run(
            [["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "1", "ACME_CHANGELOG": "on"], ["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "1", "ACME_CHANGELOG": "on"]],
            loseAHost: true)
        #expect(hostLost == oneStore, "a store per task on two hosts with changelogs, one lost with its directory")
    }

    /// Tasks that last said they were idle, and then one of them reads new input: its passes
    /// bounce back (`CountingProcessor.bouncing`) when they leave the receiver's total odd, and
    /// the sender's later records wait for those answers, in a store per task as in one store,
    /// though the peers' last marks said they held no one (``PeerHold``). Every total the
    /// tasks publish, partition by partition and in order, is what one store publishes.
    @Test func aTaskThatWakesUpWaitsForTheAnswersToItsCommandsAsOneStoreDoes() throws {
        let commands = TopicSpec(name: "sk.commands", partitions: 4, compacted: false, key: "member", summary: "")
        let members = (0..<40).map { "m\($0)" }
        func partition(_ member: String) -> Int32 { Murmur2Partitioner.partition(of: Array(member.utf8), partitions: inputA.partitions) }
        let waking = members.filter { partition($0) == 2 }
        func run(_ settings: [String: String]) throws -> [Int32: [String]] {
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: [inputA, commands, output, acmeDeadLetters])
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let instance = LoopInstance(
                environment: environment(broker, database: directory.appendingPathComponent("counting.sqlite").path)
                    .merging(["ACME_COMMAND_KEYS": "k1=0123456789abcdef0123"].merging(settings) { $1 }) { $1 },
                topics: [inputA.name, commands.name], output: output.name, passing: (commands.name, 3), bouncing: true)
            // First every member once, passing nothing (n not a multiple of 3), until every task is idle.
            for (index, member) in members.enumerated() {
                try producer.send(topic: inputA.name, key: Array(member.utf8), value: countEvent("a\(index)", member: member, n: 1, time: Int64(index) * 1000))
            }
            #expect(producer.flush(timeoutMilliseconds: 20_000))
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
            reader.read(seconds: 60) { $0.count >= members.count }
            usleep(1_500_000)
            // Then one task alone reads new input: every third record passes, within the same second as the next.
            for index in 0..<60 {
                let member = waking[index % waking.count]
                try producer.send(
                    topic: inputA.name, key: Array(member.utf8),
                    value: countEvent("b\(index)", member: member, n: Int64(index + 1), time: 100_000 + Int64(index / 2) * 1000))
            }
            #expect(producer.flush(timeoutMilliseconds: 20_000))
            var seen = 0
            repeat {
                seen = reader.records.count
                reader.read(seconds: 3) { _ in false }
            } while reader.records.count > seen
            reader.close()
            let stopped = instance.stopAndWait()
            #expect(stopped.error == nil, "\(stopped)")
            #expect(!reader.records.contains { $0.topic == acmeDeadLetters.name }, "nothing dead-lettered")
            var byPartition: [Int32: [String]] = [:]
            for record in reader.records where record.topic == output.name {
                let event = try CloudEvent.decode(record.value!)
                byPartition[record.partition, default: []].append("\(event.id) \(event.data["total"]?.int64Value ?? -1)")
            }
            return byPartition
        }
        let oneStore = try run([:])
        let returned = oneStore.values.joined().filter { $0.hasPrefix("out/returned/") }.count
        #expect(returned >= 3, "some passes bounce back (\(returned))")
        let storePerTask = try run(["ACME_STORE_LAYOUT": "task", "ACME_THREADS": "2"])
        #expect(storePerTask == oneStore, "a store per task, on two threads")
    }

    /// Two tasks on two threads fail in the same turn, at every start: each record counts its
    /// own strikes (the crash note keeps a region per thread), so both are set aside as poison
    /// and the service goes on, rather than the two taking turns at being noted for ever.
    @Test func recordsFailingOnTwoThreadsInOneTurnAreBothSetAsideAsPoison() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [inputA, output, acmeDeadLetters])
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        func partition(_ member: String) -> Int32 { Murmur2Partitioner.partition(of: Array(member.utf8), partitions: inputA.partitions) }
        // A record each of two failing members on tasks 1 and 2 (threads 1 and 2 of four), amid 400 others.
        let failing = [Int32(1), 2].map { task in (0..<1_000).map { "bad-\($0)" }.first { partition($0) == task }! }
        for index in 0..<402 {
            let member = index == 200 || index == 201 ? failing[index - 200] : "m\(index % 40)"
            let value = countEvent("e\(index)", member: member, n: 1, time: 1_767_225_600_000 + Int64(index) * 60_000)
            try producer.send(topic: inputA.name, key: Array(member.utf8), value: value, partition: partition(member))
        }
        #expect(producer.flush(timeoutMilliseconds: 10_000))
        var environment = environment(broker, database: directory.appendingPathComponent("counting.sqlite").path)
        environment["ACME_STORE_LAYOUT"] = "task"
        environment["ACME_THREADS"] = "4"
        environment["ACME_BATCH_RECORDS"] = "2000"
        var failedStarts = 0
        var last: LoopInstance?
        // Each start that fails ends by itself; one that sets them aside runs until stopped.
        // Whichever failing record's thread comes to it first stops a start, and a strike of
        // a record that did not come in that start is forgotten: the two may take turns for a
        // few starts before each fails twice in a row.
        for _ in 1...12 {
            let instance = LoopInstance(
                environment: environment, topics: [inputA.name], output: output.name, independentTasks: true, failingMembers: Set(failing))
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, !instance.outcome.done { usleep(100_000) }
            if instance.outcome.done {
                failedStarts += 1
                continue
            }
            last = instance
            break
        }
        let survivor = try #require(last, "a start set the two records aside within twelve")
        #expect(survivor.stopAndWait().error == nil)
        #expect(failedStarts >= 2)
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [acmeDeadLetters.name])
        reader.read(seconds: 30) { Set($0.compactMap { $0.value.flatMap { try? CloudEvent.decode($0) }?.id }).count >= 2 }
        reader.close()
        // A start that failed on one task may have published another's letter without deleting
        // it from the outbox: it goes out again, with the same id, and counts once.
        let letters = Dictionary(reader.records.compactMap { $0.value.flatMap { try? CloudEvent.decode($0) } }.map { ($0.id, $0) }) { first, _ in first }.values
        #expect(letters.allSatisfy { $0.data["reason"]?.stringValue == "poison-record" })
        #expect(letters.compactMap { $0.data["key"]?.stringValue }.sorted() == failing.sorted(), "each failing record set aside once")
        var applied: Int64 = 0
        for task in 0..<4 {
            let store = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.task-\(task).sqlite").path))
            applied += try store.count("SELECT COALESCE(SUM(applied), 0) FROM counts")
        }
        #expect(applied == 400, "every other record applied once")
    }

    @Test func aStorePerTaskIsRefusedWhereItCannotHoldTheServicesState() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let databasePath = directory.appendingPathComponent("counting.sqlite").path
        /// `commands`: the processor's own command topics among its inputs; `sorted`: its sorted inputs.
        func loop(
            _ settings: [String: String], independent: Bool = true, commands: Set<String> = [], sorted: Set<String> = []
        ) throws -> ExactlyOnceLoop<CountingProcessor> {
            let environment = ["ACME_BOOTSTRAP_SERVERS": "127.0.0.1:1", "ACME_DATABASE": databasePath, "ACME_DATA_DIR": directory.path]
                .merging(settings) { $1 }
            let configuration = try ServiceConfiguration.fromEnvironment(service: "counting", platform: .acme, environment: environment)
            let processor = CountingProcessor(inputTopics: [inputA.name, inputB.name], outputTopic: output.name)
            processor.tasksAreIndependent = independent
            processor.commandTopics = commands
            processor.sortedInputTopics = sorted
            return try ExactlyOnceLoop(configuration: configuration, processor: processor, logger: Logger(service: "counting", minimumLevel: .error), stop: StopSignal())
        }
        func refusal(_ settings: [String: String], independent: Bool = true, commands: Set<String> = [], sorted: Set<String> = []) -> String {
            do {
                _ = try loop(settings, independent: independent, commands: commands, sorted: sorted)
                return "started"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal(["ACME_STORE_LAYOUT": "tasks"]).contains("expected service or task"))
        #expect(refusal(["ACME_STORE_LAYOUT": "task", "ACME_REPLAY_OF": "counting"]).contains("does not work with ACME_REPLAY_OF"))
        // Tasks that send each other commands: their peer marks share one lane with every
        // command, which is never paused.
        #expect(refusal(["ACME_STORE_LAYOUT": "task"], independent: false).contains("sends commands to its own tasks on 0 signed command topics"))
        #expect(refusal(["ACME_STORE_LAYOUT": "task"], independent: false, commands: [inputA.name, inputB.name], sorted: [inputA.name, inputB.name])
            .contains("on 2 signed command topics; their peer marks need exactly one"))
        #expect(refusal(["ACME_STORE_LAYOUT": "task"], independent: false, commands: [inputB.name])
            .contains("command topic sk.in.b is not one of its sorted input topics"))
        #expect(refusal(["ACME_STORE_LAYOUT": "task"], independent: false, commands: [inputB.name], sorted: [inputB.name]) == "started")
        // Beside the other layout's stores: refused either way, nothing created.
        _ = try Database(DatabaseConfiguration(path: databasePath))
        #expect(refusal(["ACME_STORE_LAYOUT": "task"]).contains("counting.sqlite holds this service's state in the service layout"))
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: databasePath + suffix) }
        _ = try loop(["ACME_STORE_LAYOUT": "task"])
        _ = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("counting.task-3.sqlite").path))
        #expect(refusal([:]).contains("counting.task-3.sqlite holds this service's state in the task layout"))
        #expect(!FileManager.default.fileExists(atPath: databasePath))
    }

    @Test func anUndecodableRecordIsDeadLetteredAndProcessingGoesOn() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters])
        let databasePath = directory.appendingPathComponent("counting.sqlite").path
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let instance = LoopInstance(environment: environment(broker, database: databasePath), topics: [inputA.name, inputB.name], output: output.name)

        try producer.send(topic: inputA.name, key: Array("m1".utf8), value: countEvent("ok-1", member: "m1", n: 1, time: 1000))
        try producer.send(topic: inputA.name, key: Array("m1".utf8), value: Array("this is not JSON".utf8))
        try producer.send(topic: inputB.name, key: Array("m1".utf8), value: Array(#"{"specversion":"1.0","id":"x","source":"s","type":"count.add","time":"2026-01-01T00:00:00Z","subject":"m1","data":{}}"#.utf8))
        try producer.send(topic: inputA.name, key: Array("m1".utf8), value: countEvent("ok-2", member: "m1", n: 2, time: 2000))
        #expect(producer.flush(timeoutMilliseconds: 10_000))

        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [output.name, acmeDeadLetters.name])
        reader.read(seconds: 60) { $0.count >= 4 }
        reader.close()
        #expect(instance.stopAndWait().error == nil)

        let letters = try reader.records.filter { $0.topic == acmeDeadLetters.name }.map { try CloudEvent.decode($0.value!) }
        let reasons = Set(letters.compactMap { $0.data["reason"]?.stringValue })
        #expect(reasons == ["not-json", "invalid-event"])
        #expect(letters.first { $0.data["reason"]?.stringValue == "not-json" }?.data["payload"]?.stringValue == "this is not JSON")
        #expect(letters.allSatisfy { $0.subject == "m1" && $0.data["service"]?.stringValue == "counting" })
        // The runtime names what it writes after the platform that runs it, never its own.
        #expect(letters.allSatisfy { $0.type == "acme.dead-letter" && $0.source == "acme/counting" })
        let outputs = try reader.records.filter { $0.topic == output.name }.map { try CloudEvent.decode($0.value!).id }
        #expect(Set(outputs) == ["out/ok-1", "out/ok-2"])
    }

    @Test func theWriteAheadLogStaysWithinItsLimitThroughALongRun() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker(topics: [inputA, inputB, output, acmeDeadLetters])
        let databasePath = directory.appendingPathComponent("counting.sqlite").path
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        try produce(producer, from: 0, count: 30_000)
        let observer = try Database(DatabaseConfiguration(path: databasePath))
        _ = try observer.migrate(RuntimeSchema.migrations + CountingProcessor(inputTopics: [], outputTopic: "").migrations)

        var environment = environment(broker, database: databasePath)
        environment["ACME_WAL_LIMIT_MB"] = "1"
        let instance = LoopInstance(environment: environment, topics: [inputA.name, inputB.name], output: output.name)
        // Sample the log's size all through the run; the progress only now and then, since a
        // reader in the log keeps the writer from starting it over (the limit's own subject).
        var largest: Int64 = 0
        let deadline = Date().addingTimeInterval(180)
        var samples = 0
        while try Date() < deadline && (samples % 25 != 0 || observer.count("SELECT COUNT(*) FROM inbox") < 30_000) {
            let size = (try? FileManager.default.attributesOfItem(atPath: databasePath + "-wal")[.size] as? Int).flatMap { $0 } ?? 0
            largest = max(largest, Int64(size))
            samples += 1
            usleep(20_000)
        }
        #expect(try observer.count("SELECT COUNT(*) FROM inbox") == 30_000)
        #expect(instance.stopAndWait().error == nil)
        // Twice the limit (where the writer stops to wait for the checkpoint), plus at most what
        // one batch of 200 records writes past it.
        #expect(largest > 0)
        #expect(largest <= 3 * 1_048_576, "the write-ahead log reached \(largest) bytes")
    }
}

/// Removes a directory whose files may still be going away as it is removed: SQLite deletes a
/// store's `-wal` file when its last connection closes, which a stopped loop's background
/// checkpointer may do a moment after the loop returned.
func removeDirectory(_ directory: URL) throws {
    for _ in 0..<10 {
        do {
            return try FileManager.default.removeItem(at: directory)
        } catch let error as CocoaError where error.code == .fileNoSuchFile {
            if !FileManager.default.fileExists(atPath: directory.path) { return }
            usleep(100_000)
        }
    }
    try FileManager.default.removeItem(at: directory)
}
