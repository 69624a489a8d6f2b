import Foundation
import LoyaltyDomain
import Messaging
import Storage

/// The whole pipeline in `loyalty bench`: the four service executables on one embedded broker,
/// orders in, until every service has applied everything it reads and published all it owes.
extension Bench {
    struct PlatformFigures {
        var orders: Int
        var members: Int
        var throughput: Double
        /// Per service: peak RSS (MiB) and database bytes per member.
        var peakRSSMiB: [String: Double]
        var bytesPerMember: [String: Double]
        /// Per service: CPU it used while the orders were timed, per order, in µs.
        var cpuMicrosPerOrder: [String: Double]
        /// The steady rate held after the timed orders (nil when not asked for).
        var steady: SteadyFigures?
    }

    /// What each service reads (the catalogue's co-partitioned inputs of each).
    static let serviceInputs: [(service: String, topics: [String])] = [
        ("points", [Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name]),
        ("tiers", [Topics.orders.name, Topics.members.name, Topics.engagement.name, Topics.pointsRequests.name]),
        ("campaigns", [Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.campaignCommands.name]),
        ("notifications", [Topics.members.name, Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name]),
    ]

    /// Registers `members` members, then sends `orders` paid orders as fast as the services
    /// take them (a window ahead of the slowest), and times the orders from the first sent until
    /// every service has stored offsets at the end of all its inputs with an empty outbox: each
    /// order's points, tier bonus and status, campaign grants and messages are out by then.
    ///
    /// Then, with `steadySeconds` above 0, it sends `steadyRate` orders a second to the same
    /// services for that long (``holdSteadyRate``, stopping with four windows on their way);
    /// peak RSS covers both parts, database bytes the timed orders.
    static func platformPipeline(
        orders: Int, members: Int, window: Int, steadyRate: Int = 0, steadySeconds: Int = 0, directory: URL
    ) throws -> PlatformFigures {
        let broker = try EmbeddedBroker(topics: Topics.all)
        let children = ChildProcesses()
        defer { children.stopAll() }
        let data = directory.appendingPathComponent("platform")
        for (service, _) in serviceInputs {
            try children.start(
                service, environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": data.path, "LOYALTY_TASK_IDLE_MS": "50",
                    "LOYALTY_WAIT_FOR": "points,tiers,campaigns",
                ],
                log: directory.appendingPathComponent("\(service).log"))
        }
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let probe = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "bench-probe"), listener: StartingOffsets())
        defer { probe.close() }
        let partitions = serviceInputs.map { entry in
            (entry.service, entry.topics.flatMap { topic in (0..<Topics.partitionCount).map { TopicPartition(topic: topic, partition: $0) } })
        }

        /// Offsets a service has stored, by partition (empty while its store cannot be read), and
        /// whether its outbox is empty: one connection for both.
        func progress(_ service: String) -> (offsets: [TopicPartition: Int64], outboxIsEmpty: Bool) {
            let path = data.appendingPathComponent("\(service).sqlite").path
            guard FileManager.default.fileExists(atPath: path), let database = try? Database(DatabaseConfiguration(path: path)) else {
                return ([:], false)
            }
            defer { database.close() }
            let rows = (try? database.prepare("SELECT topic, partition, next_offset FROM offsets").query {
                (TopicPartition(topic: $0.string(0), partition: Int32($0.int64(1))), $0.int64(2))
            }) ?? []
            let outbox = (try? database.prepare("SELECT COUNT(*) FROM outbox").queryOne { $0.int64(0) }) ?? 1
            return (Dictionary(rows) { $1 }, outbox == 0)
        }
        /// Whether every service has read all of its input and published everything; `read`
        /// gets the offsets all services have stored, in all (how far they are).
        func drained(read: inout Int64) throws -> Bool {
            let ends = try probe.logBounds(of: Array(Set(partitions.flatMap(\.1))))
            var isDrained = true
            read = 0
            for (service, inputs) in partitions {
                let (offsets, outboxIsEmpty) = progress(service)
                read += offsets.values.reduce(0, +)
                if !outboxIsEmpty || !inputs.allSatisfy({ (offsets[$0] ?? 0) >= ends[$0]!.high }) { isDrained = false }
            }
            return isDrained
        }
        /// Records of `topic` the slowest of the services has stored offsets past.
        func taken(_ topic: String) -> Int {
            Int(serviceInputs.filter { $0.topics.contains(topic) }.map { entry in
                progress(entry.service).offsets.filter { $0.key.topic == topic }.values.reduce(0, +)
            }.min() ?? 0)
        }
        /// Sends `count` records made by `make`, at most a window ahead of the slowest reader:
        /// the embedded broker keeps only so much of a partition.
        func send(_ count: Int, to topic: String, make: (Int) -> (key: String, value: [UInt8])) throws {
            var sent = 0
            while sent < count {
                if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
                let read = taken(topic)
                while sent < count && sent - read < window {
                    let record = make(sent)
                    try producer.send(topic: topic, key: Array(record.key.utf8), value: record.value)
                    sent += 1
                }
                producer.poll()
                Thread.sleep(forTimeInterval: 0.02)
            }
            _ = producer.flush(timeoutMilliseconds: 30_000)
        }
        /// Waits for `drained`; stops when a service exits, or when none has read anything more
        /// for 120 s without being drained (a service that waits for a producer's progress that
        /// never comes, say, or an outbox that does not empty).
        func waitUntilDrained() throws {
            var read: Int64 = 0
            var stall = StallGuard(seconds: 120)
            while try !drained(read: &read) {
                if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
                try stall.check(read) { _ in
                    let behind = partitions.map { service, _ in "\(service) has read \(progress(service).offsets.values.reduce(0, +))" }
                    return "four services: nothing more read for 120 s and not everything published (" + behind.joined(separator: ", ") + ")"
                }
                producer.poll()
                Thread.sleep(forTimeInterval: 0.1)
            }
        }

        say("  four services: registering \(members) members…")
        try send(members, to: Topics.members.name) { index in
            let id = "bench-p\(index)"
            let event = CloudEvent(id: "bench-p-registered-\(index)", source: "bench-shop", type: EventType.memberRegistered,
                                   time: EventTime(millis: epoch), subject: id,
                                   data: .object(["channels": .object(["email": .string("\(id)@example.com")]), "marketingConsent": true]))
            return (id, event.encoded())
        }
        try waitUntilDrained()

        say("  four services: \(orders) orders…")
        let start = Date()
        let cpuBefore = children.processes.map { ProcessCPU.of($0.process.processIdentifier) }
        try send(orders, to: Topics.orders.name) { index in
            let id = "bench-p\(index % members)"
            // Spread over the year: tiers move, campaigns fire, messages go out.
            let time = epoch + 3_600_000 + Int64(index) * (300 * 86_400_000 / Int64(orders))
            return (id, order(index, member: id, time: time).encoded())
        }
        try waitUntilDrained()
        let seconds = Date().timeIntervalSince(start)
        /// Each service's CPU seconds since `before` (one reading a child); a service whose
        /// reading is missing is left out.
        func cpuSeconds(since before: [ProcessCPU?]) -> [String: Double] {
            var used: [String: Double] = [:]
            for ((name, process), before) in zip(children.processes, before) {
                guard let before, let after = ProcessCPU.of(process.processIdentifier) else { continue }
                used[name] = (after - before).process
            }
            return used
        }
        let cpu = cpuSeconds(since: cpuBefore).mapValues { $0 * 1e6 / Double(orders) }

        // The stores' size after the timed orders, before the steady ones: a reader's page
        // count covers what the write-ahead log holds too (the file alone may lag it).
        var bytes: [String: Double] = [:]
        for (service, _) in serviceInputs {
            let path = data.appendingPathComponent("\(service).sqlite").path
            let database = try Database(DatabaseConfiguration(path: path))
            defer { database.close() }
            let pages = try database.prepare("PRAGMA page_count").queryOne { $0.int64(0) } ?? 0
            let pageSize = try database.prepare("PRAGMA page_size").queryOne { $0.int64(0) } ?? 0
            bytes[service] = Double(pages * pageSize) / Double(members)
        }

        var steady: SteadyFigures?
        if steadySeconds > 0 {
            say("  four services: \(steadyRate) orders/s for \(steadySeconds) s…")
            let ledger = (0..<Topics.partitionCount).map { TopicPartition(topic: Topics.pointsLedger.name, partition: $0) }
            let cpuBeforeSteady = children.processes.map { ProcessCPU.of($0.process.processIdentifier) }
            steady = try holdSteadyRate(
                rate: steadyRate, seconds: steadySeconds, members: members, firstIndex: orders,
                firstTime: epoch + 301 * 86_400_000, bootstrapServers: broker.bootstrapServers,
                ledgerEnds: try probe.logBounds(of: ledger).mapValues(\.high), maxOnTheirWay: 4 * window, producer: producer,
                notificationsStore: data.appendingPathComponent("notifications.sqlite").path, children: children)
            // All four services' CPU an order at this rate, against the timed orders' (sent a window ahead).
            let used = cpuSeconds(since: cpuBeforeSteady)
            if let orders = steady?.orders, used.count == children.processes.count {
                steady?.cpuMicrosPerOrder = used.values.reduce(0, +) * 1e6 / Double(orders)
            }
        }

        var rss: [String: Double] = [:]
        for (name, process) in children.processes { rss[name] = PeakMemory.mebibytes(of: process.processIdentifier) }
        children.stopAll()
        return PlatformFigures(orders: orders, members: members, throughput: Double(orders) / seconds, peakRSSMiB: rss, bytesPerMember: bytes,
            cpuMicrosPerOrder: cpu, steady: steady)
    }
}
