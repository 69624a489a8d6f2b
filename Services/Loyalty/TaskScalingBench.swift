import Foundation
import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

extension Bench {
    /// Tiers with a store per task (`LOYALTY_STORE_LAYOUT=task`) on the same orders three
    /// ways: one instance applying its tasks on one thread, one on two threads, and two
    /// instances of one thread each (tiers, since points cannot keep a store per task yet);
    /// and the task stores of many members restored from their changelog by a new host.
    struct TaskScalingFigures {
        var events: Int
        var members: Int
        var oneThread: TaskRun
        var twoThreads: TaskRun
        var twoInstances: TaskRun
        var restore: RestoreFigures
        var warmTakeover: WarmTakeoverFigures
    }

    /// A lost host's tasks taken over by a host that kept warm copies of them
    /// (`LOYALTY_STANDBY_REPLICAS=1`).
    struct WarmTakeoverFigures {
        /// The tasks taken over, and the rows their copies still had to read.
        var tasks: Int
        var rowsCaughtUp: Int
        /// The longest catch-up of one task's store, from its copy's place.
        var catchUpSeconds: Double
        /// The same host restoring its first tasks whole when it joined: their rows and time.
        var wholeRows: Int
        var wholeSeconds: Double
        /// From the kill to the survivor having every task, failure detection included.
        var failoverSeconds: Double
        var sessionTimeoutSeconds: Double
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
    static func taskScaling(events: Int, members: Int, restoreMembers: Int, window: Int, directory: URL) throws -> TaskScalingFigures {
        say("  scaling: tiers, a store per task, one thread…")
        let one = try tiersPipeline(events: events, members: members, directory: directory.appendingPathComponent("tasks-1-thread"), threads: 1, window: window)
        say("  scaling: tiers, a store per task, two threads…")
        let two = try tiersPipeline(events: events, members: members, directory: directory.appendingPathComponent("tasks-2-threads"), threads: 2, window: window)
        say("  scaling: tiers, a store per task, two instances of one thread…")
        let instances = try tiersPipeline(
            events: events, members: members, directory: directory.appendingPathComponent("tasks-2-instances"), threads: 1, instances: 2, window: window)
        say("  scaling: tiers, the task stores of \(grouped(Double(restoreMembers))) members restored by a new host…")
        let (restore, warm) = try taskRestore(members: restoreMembers, window: window, directory: directory.appendingPathComponent("tasks-restore"))
        return TaskScalingFigures(
            events: events, members: members, oneThread: one, twoThreads: two, twoInstances: instances, restore: restore, warmTakeover: warm)
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
            "    restored by a host with an empty data directory, every task from its changelog partition (LOYALTY_CHANGELOG=on), "
                + "\(grouped(Double(figures.restore.members))) members with an order each: \(grouped(Double(figures.restore.rows))) rows in "
                + String(format: "%.2f s", figures.restore.seconds)
                + " (\(grouped(Double(figures.restore.rows) / max(figures.restore.seconds, 0.001))) rows/s)",
            "    a lost host's \(figures.warmTakeover.tasks) tasks taken over from warm copies (LOYALTY_STANDBY_REPLICAS=1): "
                + "\(grouped(Double(figures.warmTakeover.rowsCaughtUp))) rows caught up, "
                + String(format: "%.2f s", figures.warmTakeover.catchUpSeconds) + " for the longest task, against "
                + "\(grouped(Double(figures.warmTakeover.wholeRows))) rows in " + String(format: "%.2f s", figures.warmTakeover.wholeSeconds)
                + " for the survivor's own first tasks restored whole; "
                + String(format: "%.1f s", figures.warmTakeover.failoverSeconds) + " from the kill to every task running again, "
                + String(format: "%.0f s", figures.warmTakeover.sessionTimeoutSeconds) + " of which the group's session timeout",
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
            try children.start("tiers", environment: tiersEnvironment(broker: broker, data: data, threads: threads),
                               log: directory.appendingPathComponent("tiers-\(index).log"))
        }
        let feed = try TiersFeed(broker: broker, data: data, children: children, window: window)
        // Members first: tiers keeps an order of a member it does not know aside.
        try feed.register(members)
        // Every task has its store open (the instances share them out) before the clock starts.
        while feed.stores.applied(Topics.members).stores < Int(Topics.partitionCount) { Thread.sleep(forTimeInterval: 0.01) }
        let pids = children.processes.map(\.process.processIdentifier)
        func cpu() -> Double { pids.compactMap { ProcessCPU.of($0)?.process }.reduce(0, +) }
        func cpuByThread() -> [String: Double] {
            pids.reduce(into: [:]) { sum, pid in sum.merge(ProcessCPU.byThread(of: pid)) { $0 + $1 } }
        }
        let cpuBefore = cpu()
        let threadsBefore = cpuByThread()
        let start = Date()
        try feed.order(events, members: members)
        let seconds = Date().timeIntervalSince(start)
        let cores = (cpu() - cpuBefore) / seconds
        let coresByThread = cpuByThread().mapValues { $0 / seconds }.merging(threadsBefore.mapValues { -$0 / seconds }) { $0 + $1 }
        feed.finish()
        children.stopAll()
        return TaskRun(throughput: Double(events) / seconds, cores: cores, coresByThread: coresByThread)
    }

    /// What a tiers instance of the bench is started with: the embedded broker, a data
    /// directory, a store per task applied on `threads` threads.
    static func tiersEnvironment(broker: EmbeddedBroker, data: URL, threads: Int, changelog: Bool = false) -> [String: String] {
        [
            "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": data.path, "LOYALTY_WAIT_FOR": "none",
            "LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": String(threads), "LOYALTY_CHANGELOG": changelog ? "on" : "off",
        ]
    }

    /// The stores of `members` members restored from Kafka by a host that has none: tiers with
    /// a store per task and a changelog applies each member's registration and an order; then
    /// it stops, and an instance with an empty data directory takes every task, restoring each
    /// task's store from its partition of the changelog. Timed from the first task's restore
    /// starting to the last one's end, as its log says.
    ///
    /// Then a second host joins, both keeping warm copies of each other's tasks
    /// (`LOYALTY_STANDBY_REPLICAS=1`), and the first is killed: the second takes its tasks over
    /// from the copies.
    static func taskRestore(members: Int, window: Int, directory: URL) throws -> (RestoreFigures, WarmTakeoverFigures) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker(topics: Topics.all)
        let children = ChildProcesses()
        defer { children.stopAll() }
        let first = directory.appendingPathComponent("first-host")
        try children.start("tiers", environment: tiersEnvironment(broker: broker, data: first, threads: 2, changelog: true),
                           log: directory.appendingPathComponent("tiers-first-host.log"))
        let feed = try TiersFeed(broker: broker, data: first, children: children, window: window)
        try feed.register(members)
        try feed.order(members, members: members)
        feed.finish()
        children.stopAll()

        let log = directory.appendingPathComponent("tiers-new-host.log")
        let warmCopies = ["LOYALTY_STANDBY_REPLICAS": "1"]
        try children.start(
            "tiers", environment: tiersEnvironment(broker: broker, data: directory.appendingPathComponent("new-host"), threads: 2, changelog: true)
                .merging(warmCopies) { $1 },
            log: log)
        let restore = try waitFor(300, "the new host to restore every task", log: log, children: children) { () -> RestoreFigures? in
            let lines = ServiceLog(log)
            let restored = lines.entries("restored the store from the changelog")
            guard Set(restored.compactMap { $0.fields["partition"]?.stringValue }).count == Int(Topics.partitionCount),
                  let end = restored.map(\.time).max(), let start = lines.entries("restoring the store from the changelog").map(\.time).min() else { return nil }
            return RestoreFigures(members: members, rows: restored.map { $0.rows ?? 0 }.reduce(0, +), seconds: Double(end - start) / 1000)
        }

        // A second host joins; once it keeps warm copies of the first's tasks, the first is lost.
        let secondLog = directory.appendingPathComponent("tiers-second-host.log")
        let secondEnvironment = tiersEnvironment(broker: broker, data: directory.appendingPathComponent("second-host"), threads: 2, changelog: true)
            .merging(warmCopies) { $1 }
        try children.start("tiers", environment: secondEnvironment, log: secondLog)
        // The survivor notices the loss once its group session times out: the part of the
        // failover no copy can shorten.
        let sessionTimeout = try ServiceConfiguration.fromEnvironment(service: "tiers", platform: .loyalty, environment: secondEnvironment)
            .sessionTimeoutMilliseconds
        let copied = try waitFor(300, "the second host to keep warm copies", log: secondLog, children: children) { () -> Set<String>? in
            let lines = ServiceLog(secondLog)
            guard let placed = lines.entries("warm copies placed").last,
                  let tasks = placed.fields["tasks"]?.stringValue.map({ Set($0.split(separator: ",").map(String.init)) }), !tasks.isEmpty else { return nil }
            let restored = Set(lines.entries("restored the store from the changelog").filter { $0.time >= placed.time }
                .compactMap { $0.fields["partition"]?.stringValue })
            return tasks.isSubset(of: restored) ? tasks : nil
        }
        let joined = ServiceLog(secondLog)
        let firstAssigned = joined.entries("partitions assigned").first?.time ?? 0
        let whole = joined.entries("restored the store from the changelog").filter { $0.time <= firstAssigned }
        let wholeStart = joined.entries("restoring the store from the changelog").filter { $0.time <= firstAssigned }.map(\.time).min() ?? 0
        Thread.sleep(forTimeInterval: 1)
        let killedAt = Int64(Date().timeIntervalSince1970 * 1000)
        children.kill(0)
        let takeovers = try waitFor(300, "the second host to take the lost host's tasks over", log: secondLog, children: children) { () -> [ServiceLog.Entry]? in
            let lines = ServiceLog(secondLog)
            let taken = lines.entries("a standby's store takes over").filter { $0.time >= killedAt }
            return Set(taken.compactMap { $0.fields["partition"]?.stringValue }).isSuperset(of: copied) ? taken : nil
        }
        let running = try waitFor(60, "the second host to run every task", log: secondLog, children: children) { () -> Int64? in
            ServiceLog(secondLog).entries("partitions assigned").last { $0.time >= killedAt }.map(\.time)
        }
        let warm = WarmTakeoverFigures(
            tasks: copied.count, rowsCaughtUp: takeovers.map { $0.rows ?? 0 }.reduce(0, +),
            catchUpSeconds: takeovers.compactMap { $0.fields["seconds"]?.stringValue.flatMap(Double.init) }.max() ?? 0,
            wholeRows: whole.map { $0.rows ?? 0 }.reduce(0, +), wholeSeconds: Double((whole.map(\.time).max() ?? wholeStart) - wholeStart) / 1000,
            failoverSeconds: Double(running - killedAt) / 1000, sessionTimeoutSeconds: Double(sessionTimeout) / 1000)
        return (restore, warm)
    }

    /// Polls `check` every 100 ms until it gives a value, for up to `seconds`; an instance
    /// exiting, or the time running out, ends the bench naming `what` and the log.
    static func waitFor<Value>(
        _ seconds: Double, _ what: String, log: URL, children: ChildProcesses, check: () -> Value?
    ) throws -> Value {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status) while the bench waited for \(what); see \(log.path)") }
            if let value = check() { return value }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw CLIError("the bench waited \(Int(seconds)) s for \(what) in vain; see \(log.path)")
    }
}

/// The offsets the task stores of tiers in one data directory hold, read as they grow: how far
/// the instances have applied each topic.
final class TaskStoreOffsets {
    private let data: URL
    private var readers: [Int32: Database] = [:]

    init(data: URL) { self.data = data }
    deinit { for reader in readers.values { reader.close() } }

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
}

/// Sends the bench's members and orders to tiers instances, never more than a window ahead of
/// what their stores have applied (the embedded broker keeps only about 5 MiB of a partition).
final class TiersFeed {
    let stores: TaskStoreOffsets
    private let producer: KafkaProducer
    private let children: ChildProcesses
    private let window: Int
    private var stall = StallGuard(seconds: 120)

    init(broker: EmbeddedBroker, data: URL, children: ChildProcesses, window: Int) throws {
        stores = TaskStoreOffsets(data: data)
        producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        self.children = children
        self.window = window
    }

    /// Registers members 0..<count and waits until tiers has applied every registration.
    func register(_ count: Int) throws {
        try send(count, of: Topics.members) { index in
            CloudEvent(id: "bench-registered-\(index)", source: "bench-shop", type: EventType.memberRegistered,
                       time: EventTime(millis: Bench.epoch), subject: Bench.member(index, of: count), data: .object([:]))
        }
    }

    /// Sends `count` orders, one a millisecond from an hour after the registrations, spread
    /// over `members`, and waits until tiers has applied every one.
    func order(_ count: Int, members: Int) throws {
        try send(count, of: Topics.orders) { index in
            Bench.order(index, member: Bench.member(index, of: members), time: Bench.epoch + 3_600_000 + Int64(index))
        }
    }

    /// Waits for the deliveries still on their way.
    func finish() { _ = producer.flush(timeoutMilliseconds: 5_000) }

    private func send(_ count: Int, of topic: TopicSpec, event: (Int) -> CloudEvent) throws {
        let before = stores.applied(topic).records
        for index in 0..<count {
            let made = event(index)
            try producer.send(topic: topic.name, key: Array(made.subject!.utf8), value: made.encoded())
            if index % 1_000 == 999 {
                producer.poll()
                while index - (stores.applied(topic).records - before) > window {
                    try checkChildren()
                    Thread.sleep(forTimeInterval: 0.002)
                }
            }
        }
        while true {
            let done = stores.applied(topic).records - before
            if done >= count { return }
            try checkChildren()
            if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil })?.error {
                throw CLIError("an event was not delivered: \(failed)")
            }
            try stall.check(done) { "tiers applied nothing of \(topic.name) for 120 s after \($0) of \(count)" }
            producer.poll()
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    private func checkChildren() throws {
        if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
    }
}
