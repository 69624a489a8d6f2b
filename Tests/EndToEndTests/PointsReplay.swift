import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

/// Replays records through the real `points` executable on a fresh embedded broker, from
/// empty state, and returns the ledger topic.
enum PointsReplay {
    struct Result {
        /// Ledger topic records, partition by partition, in offset order.
        var ledgerByPartition: [Int32: [[UInt8]]]
        var events: [CloudEvent]
    }

    /// A replay while it runs, for a disturbance to act on: the broker, the main instance (which
    /// it may kill and start again) and extra instances sharing its store.
    final class Run {
        let broker: EmbeddedBroker
        let environment: [String: String]
        let directory: URL
        private(set) var main: ServiceProcess
        private(set) var extras: [ServiceProcess] = []
        /// The data directories of the extra instances, in their order: the main one's for an
        /// instance beside it, one of its own for an instance on another host.
        private(set) var extraDirectories: [URL] = []
        private var started = 0
        /// How many times the main instance's host was lost (its data directory deleted).
        private(set) var hostsLost = 0

        init(broker: EmbeddedBroker, environment: [String: String], directory: URL) {
            self.broker = broker
            self.environment = environment
            self.directory = directory
            main = ServiceProcess(name: "points", environment: environment, log: directory.appendingPathComponent("points.log"))
        }

        /// Kills the main instance with SIGKILL, as a crash would, and starts it again.
        func killAndRestartMain() throws {
            main.kill()
            try main.start()
        }

        /// Loses the main instance's host: SIGKILL, and every file of its data directory but
        /// the logs deleted. A new instance starts with the empty directory.
        func loseMainHostAndStartAfresh() throws {
            try loseMainHost(startingAfreshWhen: { true })
        }

        /// Loses the main instance's host: SIGKILL, and every file of its data directory but the
        /// logs deleted. A new instance starts with the empty directory once `ready` holds
        /// (checked every 200 ms, for up to `seconds`): meanwhile the other instances may take
        /// the lost host's tasks over.
        func loseMainHost(startingAfreshWhen ready: () -> Bool, seconds: Double = 60) throws {
            main.kill()
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where !name.hasSuffix(".log") {
                try FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
            hostsLost += 1
            let deadline = Date().addingTimeInterval(seconds)
            while !ready() && Date() < deadline { usleep(200_000) }
            try main.start()
        }

        /// Starts another instance of the service on the same store: the group rebalances.
        func startExtra() throws {
            started += 1
            let extra = ServiceProcess(name: "points", environment: environment, log: directory.appendingPathComponent("points-extra-\(started).log"))
            try extra.start()
            extras.append(extra)
            extraDirectories.append(directory)
        }

        /// Starts another instance on a host of its own: a data directory that shares nothing
        /// with the main one's (beside it, named after it), so its tasks come from Kafka alone.
        func startExtraHost() throws {
            started += 1
            let own = directory.deletingLastPathComponent().appendingPathComponent("\(directory.lastPathComponent)-host-\(started)")
            try FileManager.default.createDirectory(at: own, withIntermediateDirectories: true)
            let extra = ServiceProcess(
                name: "points", environment: environment.merging(["LOYALTY_DATA_DIR": own.path]) { $1 },
                log: directory.appendingPathComponent("points-host-\(started).log"))
            try extra.start()
            extras.append(extra)
            extraDirectories.append(own)
        }

        /// Stops the oldest extra instance gracefully: the group rebalances again.
        func stopExtra() {
            guard !extras.isEmpty else { return }
            extraDirectories.removeFirst()
            #expect(extras.removeFirst().stop() == 0, "an extra instance stops cleanly")
        }

        /// Where the running instances keep their stores, each once.
        var dataDirectories: [URL] {
            [directory] + extraDirectories.filter { $0 != directory }
        }

        func stopAll() {
            while !extras.isEmpty { stopExtra() }
        }
    }

    /// Publishes `records`, starts the service, waits until it has applied at least `inputs`
    /// events, its stores have read every input partition to its end and nothing is left in
    /// flight, stops it, and reads the ledger to its end.
    /// `disturb` is called about once a second with the number of events applied so far.
    static func run(
        _ records: [(topic: String, key: String, value: [UInt8])], inputs: Int, programFile: URL? = nil, seconds: Double = 600,
        settings: [String: String] = [:],
        disturb: ((Run, _ applied: Int64) throws -> Void)? = nil,
        afterStop: ((Run) throws -> Void)? = nil
    ) throws -> Result {
        let directory = try temporaryDirectory("points-replay")
        defer {
            if !keepsTestState {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.deletingLastPathComponent().path)) ?? []
                where name.hasPrefix(directory.lastPathComponent) {
                    try? FileManager.default.removeItem(at: directory.deletingLastPathComponent().appendingPathComponent(name))
                }
            }
        }
        let broker = try EmbeddedBroker(topics: Topics.all)
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        for (index, record) in records.enumerated() {
            try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
            // The embedded broker keeps only so much per partition: let it keep up.
            if index % 20_000 == 19_999 { _ = producer.flush(timeoutMilliseconds: 30_000) }
        }
        #expect(producer.flush(timeoutMilliseconds: 60_000))

        var environment = [
            "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
            "LOYALTY_SESSION_TIMEOUT_MS": "3000",
        ]
        if let programFile { environment["LOYALTY_PROGRAM_FILE"] = programFile.path }
        environment.merge(settings) { $1 }
        // Read the ledger while it is written: the embedded broker keeps only about 5 MiB a partition.
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name])
        defer { reader.close() }
        let run = Run(broker: broker, environment: environment, directory: directory)
        // Done is judged by where the stores have read every input to, not by how many records
        // they applied: commands points sends itself count as applied too, so a count reaches
        // `inputs` before the history is through, and a rebalance can hold it still a while.
        let probe = try EndProbe(bootstrap: broker.bootstrapServers)
        let inputTopics = [
            Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name,
        ]
        try run.main.start()
        // Counted over the store, or the task stores, of every running instance (a lost host's
        // stores are gone, and its successor's count from where they were restored). A task's
        // store may be on several hosts (one left behind when the task moved, a warm copy):
        // the one that has come furthest counts.
        func count(_ sql: String) -> Int64? {
            serviceCountAcrossHosts(in: run.dataDirectories, "points", sql)
        }
        let deadline = Date().addingTimeInterval(seconds)
        var last: Int64 = -1
        while Date() < deadline {
            reader.poll(milliseconds: 1_000)
            guard let applied = count("SELECT COALESCE(SUM(applied), 0) FROM task_clock"),
                  let unsent = count("SELECT COUNT(*) FROM outbox"), let echoes = count("SELECT COUNT(*) FROM echoes") else { continue }
            try disturb?(run, applied)
            if applied >= Int64(inputs) && unsent == 0 && echoes == 0 && applied == last && run.extras.isEmpty
                && probe.hasReadToEnd("points", inAnyOf: run.dataDirectories, topics: inputTopics) { break }
            last = applied
        }
        #expect(run.main.isRunning, "see \(directory.path)/points.log")
        run.stopAll()
        #expect(run.main.stop() == 0)
        try afterStop?(run)

        reader.readToEnd(seconds: 120)
        var byPartition: [Int32: [[UInt8]]] = [:]
        for record in reader.records.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
            byPartition[record.partition, default: []].append(record.value!)
        }
        // Keep each id's first copy: a crash may publish a record twice, with the same bytes.
        var seen: Set<String> = []
        var events: [CloudEvent] = []
        for record in reader.records {
            let event = try CloudEvent.decode(record.value!)
            if seen.insert(event.id).inserted { events.append(event) }
        }
        return Result(ledgerByPartition: byPartition, events: events)
    }

    /// The same, with a record published twice (a crash between its delivery and its outbox
    /// row's deletion, or a new owner republishing rows in flight) counted once: each
    /// partition's records by their first copy. A second copy with other bytes is a difference.
    static func distinctDifferences(_ first: Result, _ second: Result) throws -> [String] {
        func distinct(_ result: Result) throws -> (Result, [String]) {
            var problems: [String] = []
            var byID: [String: [UInt8]] = [:]
            var partitions: [Int32: [[UInt8]]] = [:]
            for (partition, values) in result.ledgerByPartition {
                for value in values {
                    let id = try CloudEvent.decode(value).id
                    if let known = byID[id] {
                        if known != value { problems.append("\(id) published with two payloads") }
                        continue
                    }
                    byID[id] = value
                    partitions[partition, default: []].append(value)
                }
            }
            return (Result(ledgerByPartition: partitions, events: result.events), problems)
        }
        let (a, problemsA) = try distinct(first)
        let (b, problemsB) = try distinct(second)
        return problemsA + problemsB + differences(a, b)
    }

    /// Records where two replays' ledgers differ (empty when byte-identical).
    static func differences(_ first: Result, _ second: Result) -> [String] {
        var differences: [String] = []
        for partition in Set(first.ledgerByPartition.keys).union(second.ledgerByPartition.keys).sorted() {
            let a = first.ledgerByPartition[partition] ?? []
            let b = second.ledgerByPartition[partition] ?? []
            if a.count != b.count { differences.append("partition \(partition): \(a.count) records vs \(b.count)") }
            if let index = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) {
                differences.append("partition \(partition) record \(index):\n\(String(decoding: a[index], as: UTF8.self))\n\(String(decoding: b[index], as: UTF8.self))")
            }
        }
        return differences
    }
}
