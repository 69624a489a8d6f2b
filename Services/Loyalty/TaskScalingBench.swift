import Foundation
import LoyaltyDomain
import Messaging
import Storage

extension Bench {
    /// Tiers with a store per task (`LOYALTY_STORE_LAYOUT=task`) on the same orders three
    /// ways: one instance applying its tasks on one thread, one on two threads, and two
    /// instances of one thread each (tiers, since points cannot keep a store per task yet).
    struct TaskScalingFigures {
        var events: Int
        var members: Int
        var oneThread: TaskRun
        var twoThreads: TaskRun
        var twoInstances: TaskRun
    }

    /// One run: orders applied a second, and the cores its processes used meanwhile (CPU
    /// seconds over wall seconds, every instance together).
    struct TaskRun {
        var throughput: Double
        var cores: Double
        /// The cores each kind of thread kept busy (``ProcessCPU/byThread(of:)``), every instance together.
        var coresByThread: [String: Double]
    }

    /// `window`: orders sent ahead of those applied at most (the embedded broker keeps little of a partition).
    static func taskScaling(events: Int, members: Int, window: Int, directory: URL) throws -> TaskScalingFigures {
        say("  scaling: tiers, a store per task, one thread…")
        let one = try tiersPipeline(events: events, members: members, directory: directory.appendingPathComponent("tasks-1-thread"), threads: 1, window: window)
        say("  scaling: tiers, a store per task, two threads…")
        let two = try tiersPipeline(events: events, members: members, directory: directory.appendingPathComponent("tasks-2-threads"), threads: 2, window: window)
        say("  scaling: tiers, a store per task, two instances of one thread…")
        let instances = try tiersPipeline(
            events: events, members: members, directory: directory.appendingPathComponent("tasks-2-instances"), threads: 1, instances: 2, window: window)
        return TaskScalingFigures(events: events, members: members, oneThread: one, twoThreads: two, twoInstances: instances)
    }

    static func taskScalingLines(_ figures: TaskScalingFigures) -> [String] {
        func line(_ label: String, _ run: TaskRun, against base: TaskRun? = nil) -> String {
            let ratio = base.map { String(format: ", %.2f× one thread", run.throughput / max($0.throughput, 1)) } ?? ""
            let threads = run.coresByThread.filter { $0.value >= 0.005 }.sorted { $0.value > $1.value }
                .map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", ")
            return "    \(label.padding(toLength: 37, withPad: " ", startingAt: 0))\(grouped(run.throughput)) events/s ("
                + String(format: "%.2f cores busy", run.cores) + ratio + "; by thread: \(threads))"
        }
        return [
            "  scaling, tiers with a store per task (LOYALTY_STORE_LAYOUT=task), \(grouped(Double(figures.events))) orders of "
                + "\(grouped(Double(figures.members))) members:",
            line("one instance, one thread", figures.oneThread),
            line("one instance, two threads", figures.twoThreads, against: figures.oneThread),
            line("two instances, one thread each", figures.twoInstances, against: figures.oneThread),
        ]
    }

    /// The tiers service (`instances` of it on one data directory, each applying its tasks on
    /// `threads` threads) from members registered to every order applied, as the offsets its
    /// task stores hold say.
    static func tiersPipeline(events: Int, members: Int, directory: URL, threads: Int, instances: Int = 1, window: Int) throws -> TaskRun {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker(topics: Topics.all)
        let children = ChildProcesses()
        defer { children.stopAll() }
        let data = directory.appendingPathComponent("tiers")
        for index in 0..<instances {
            try children.start("tiers", environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": data.path, "LOYALTY_WAIT_FOR": "none",
                "LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": String(threads),
            ], log: directory.appendingPathComponent("tiers-\(index).log"))
        }
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        var readers: [Int32: Database] = [:]
        defer { for reader in readers.values { reader.close() } }
        /// Records of `topic` the task stores have stored offsets past, and how many stores are open.
        func applied(_ topic: TopicSpec) -> (records: Int, stores: Int) {
            var sum: Int64 = 0
            for task in 0..<Topics.partitionCount {
                let path = data.appendingPathComponent("tiers.task-\(task).sqlite").path
                if readers[task] == nil, FileManager.default.fileExists(atPath: path) {
                    readers[task] = try? Database(DatabaseConfiguration(path: path))
                }
                let stored = try? readers[task]?.prepare("SELECT COALESCE(SUM(next_offset), 0) FROM offsets WHERE topic = ?")
                    .queryOne(.text(topic.name)) { $0.int64(0) }
                sum += stored ?? 0
            }
            return (Int(sum), readers.count)
        }
        var stall = StallGuard(seconds: 120)
        /// Waits until every one of `count` records of `topic` is applied.
        func waitFor(_ count: Int, of topic: TopicSpec) throws {
            while true {
                let done = applied(topic).records
                if done >= count { return }
                if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
                if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil })?.error {
                    throw CLIError("an event was not delivered: \(failed)")
                }
                try stall.check(done) { "tiers applied nothing of \(topic.name) for 120 s after \($0) of \(count)" }
                producer.poll()
                Thread.sleep(forTimeInterval: 0.005)
            }
        }
        func send(_ event: CloudEvent) throws {
            try producer.send(topic: Topics.inputTopic(forEventType: event.type)!.name, key: Array(event.subject!.utf8), value: event.encoded())
        }
        // Members first: tiers keeps an order of a member it does not know aside.
        for index in 0..<members {
            try send(CloudEvent(id: "bench-registered-\(index)", source: "bench-shop", type: EventType.memberRegistered,
                                time: EventTime(millis: epoch), subject: member(index, of: members), data: .object([:])))
        }
        try waitFor(members, of: Topics.members)
        // Every task has its store open (the instances share them out) before the clock starts.
        while applied(Topics.members).stores < Int(Topics.partitionCount) { Thread.sleep(forTimeInterval: 0.01) }
        let pids = children.processes.map(\.process.processIdentifier)
        func cpu() -> Double { pids.compactMap { ProcessCPU.of($0)?.process }.reduce(0, +) }
        func cpuByThread() -> [String: Double] {
            pids.reduce(into: [:]) { sum, pid in sum.merge(ProcessCPU.byThread(of: pid)) { $0 + $1 } }
        }
        let cpuBefore = cpu()
        let threadsBefore = cpuByThread()
        let start = Date()
        for index in 0..<events {
            try send(order(index, member: member(index, of: members), time: epoch + 3_600_000 + Int64(index)))
            if index % 1_000 == 999 {
                producer.poll()
                // At most a window ahead of what is applied.
                while index - applied(Topics.orders).records > window {
                    if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
                    Thread.sleep(forTimeInterval: 0.002)
                }
            }
        }
        try waitFor(events, of: Topics.orders)
        let seconds = Date().timeIntervalSince(start)
        let cores = (cpu() - cpuBefore) / seconds
        let coresByThread = cpuByThread().mapValues { $0 / seconds }.merging(threadsBefore.mapValues { -$0 / seconds }) { $0 + $1 }
        _ = producer.flush(timeoutMilliseconds: 5_000)
        children.stopAll()
        return TaskRun(throughput: Double(events) / seconds, cores: cores, coresByThread: coresByThread)
    }
}
