import Foundation
import LoyaltyDomain
import Messaging
import PointsService
import Reporting
import ReferenceProgram
import ServiceKit
import Storage
import Synchronization

/// `loyalty bench`: how many events a second the points service takes with every guarantee on,
/// against the raw Kafka and SQLite ceilings measured in the same run, on the embedded broker.
enum Bench {
    struct Options {
        var events = 200_000
        var members = 100_000
        var rate = 5_000
        var latencySeconds = 10
        /// The four-service pipeline: orders, and the members they come from.
        var platformOrders = 20_000
        var platformMembers = 5_000
        /// Then a steady rate of orders to the four services, held this long (0: not measured).
        var steadyRate = 5_000
        var steadySeconds = 60
        /// Events produced ahead of what has come back: the embedded broker keeps only about
        /// 5 MiB a partition, so a backlog must not outgrow it.
        var window = 20_000
        /// `loyalty simulate` over a year of this many members.
        var simulationMembers = 1_000
        /// The scaling section: order events and members of each of its runs.
        var scalingEvents = 40_000
        var scalingMembers = 10_000
        /// Members whose task stores a new host restores from Kafka in the scaling section.
        var restoreMembers = 100_000
        /// The large store: the points service with this many members, and orders among them.
        var largeMembers = 1_000_000
        var largeEvents = 100_000
        /// One section alone (`--only`), for profiling or a quicker figure; nil runs them all.
        var only: Section?

        enum Section: String, CaseIterable {
            case ceilings, points, platform, simulate, scaling, tasks, large
        }

        init(arguments: [String]) throws {
            var iterator = arguments.makeIterator()
            while let flag = iterator.next() {
                if flag == "--only" {
                    guard let section = iterator.next().flatMap(Section.init(rawValue:)) else {
                        throw CLIError("--only: " + Section.allCases.map(\.rawValue).joined(separator: ", "))
                    }
                    only = section
                    continue
                }
                // A steady run of 0 s is none.
                guard let text = iterator.next(), let value = Int(text), value > 0 || (value == 0 && flag == "--steady-seconds") else {
                    throw CLIError(Bench.usage)
                }
                switch flag {
                case "--events": events = value
                case "--members": members = value
                case "--rate": rate = value
                case "--latency-seconds": latencySeconds = value
                case "--platform-orders": platformOrders = value
                case "--platform-members": platformMembers = value
                case "--steady-rate": steadyRate = value
                case "--steady-seconds": steadySeconds = value
                case "--simulate-members": simulationMembers = value
                case "--scaling-events": scalingEvents = value
                case "--scaling-members": scalingMembers = value
                case "--restore-members": restoreMembers = value
                case "--large-members": largeMembers = value
                case "--large-events": largeEvents = value
                default: throw CLIError("unknown option \(flag)")
                }
            }
        }
    }


    /// The command's usage line, for `--help` and for a wrong option.
    static let usage = "usage: loyalty bench [--events N] [--members N] [--rate N] [--latency-seconds N] [--platform-orders N] [--platform-members N] [--steady-rate N] [--steady-seconds N] [--simulate-members N] [--scaling-events N] [--scaling-members N] [--restore-members N] [--large-members N] [--large-events N] [--only ceilings|points|platform|simulate|scaling|tasks|large]"

    static let epoch: Int64 = 1_767_196_800_000  // 2026-01-01T00:00:00+08:00

    /// A realistic paid order: two lines, one of them high-margin (about 400 bytes).
    static func order(_ index: Int, member: String, time: Int64) -> CloudEvent {
        CloudEvent(
            id: "bench-order-\(index)", source: "bench-shop", type: EventType.orderPaid, time: EventTime(millis: time), subject: member,
            data: .object([
                "orderId": .string("B-\(index)"), "paidMinor": 25_800, "currency": "CNY",
                "lines": .array([
                    .object(["sku": "SKU-10021", "category": "apparel", "paidMinor": 15_800]),
                    .object(["sku": "SKU-88310", "category": "high-margin", "paidMinor": 10_000]),
                ]),
            ]))
    }

    static func member(_ index: Int, of members: Int) -> String { "bench-m\(index % members)" }

    static func run(arguments: [String]) throws {
        let options = try Options(arguments: arguments)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loyalty-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let started = Date()
        say("loyalty bench: \(options.events) order events, \(options.members) members, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        switch options.only {
        case .ceilings?:
            say("  Kafka ceiling \(grouped(try kafkaCeiling(options))) records/s")
            let hop = try kafkaHopLatency(options)
            say(String(format: "  Kafka latency at %d records/s, one hop: p50 %.1f / p99 %.1f ms", options.rate, hop.p50, hop.p99))
            say("  SQLite ceiling \(grouped(try sqliteCeiling(options, directory: directory))) events/s")
            let reference = try referenceCeiling(options, directory: directory)
            say("  reference ceiling \(grouped(reference)) events/s")
            let twoStores = try referenceCeiling(options, directory: directory, stores: 2)
            say("  reference ceiling, two stores on two threads \(grouped(twoStores)) events/s ("
                + String(format: "%.2f", twoStores / max(reference, 1)) + "× one)")
            return
        case .points?:
            let pipeline = try pointsPipeline(options, directory: directory)
            say(String(format: "  points pipeline %.0f events/s, ", pipeline.throughput)
                + "CPU \(micros(pipeline.cpuMicrosPerEvent)) an event (loop \(micros(pipeline.loopMicrosPerEvent))), "
                + String(format: "latency at %d events/s p50 %.1f / p99 %.1f / max %.1f ms ", options.rate, pipeline.p50, pipeline.p99, pipeline.max)
                + String(format: "(to the ledger record's send p50 %.1f / p99 %.1f, from it p50 %.1f / p99 %.1f), ",
                         pipeline.toLedgerSent.p50, pipeline.toLedgerSent.p99, pipeline.ledgerSentToRead.p50, pipeline.ledgerSentToRead.p99)
                + String(format: "peak RSS %.1f MiB, %.0f bytes a member", pipeline.peakRSSMiB, pipeline.bytesPerMember))
            return
        case .platform?:
            let platform = try platformPipeline(
                orders: options.platformOrders, members: options.platformMembers, window: options.window / 4,
                steadyRate: options.steadyRate, steadySeconds: options.steadySeconds, directory: directory)
            say(String(format: "  four services %.0f orders/s", platform.throughput))
            for service in ["points", "tiers", "campaigns", "notifications"] {
                say("    \(service): CPU \(micros(platform.cpuMicrosPerOrder[service] ?? .nan)) an order, "
                    + String(format: "peak RSS %.1f MiB, %.0f bytes a member", platform.peakRSSMiB[service] ?? 0, platform.bytesPerMember[service] ?? 0))
            }
            if let steady = platform.steady { say(steadyLine(steady)) }
            return
        case .simulate?:
            say(simulationLine(try simulation(members: options.simulationMembers, directory: directory)))
            return
        case .scaling?:
            for line in scalingLines(try scaling(options, directory: directory)) { say(line) }
            return
        case .tasks?:
            // The store-per-task part of the scaling section alone.
            for line in taskScalingLines(try taskScaling(
                events: options.scalingEvents, members: options.scalingMembers, restoreMembers: options.restoreMembers, window: options.window,
                directory: directory)) { say(line) }
            return
        case .large?:
            say(largeStoreLine(try largeStore(options, directory: directory), options))
            return
        case nil:
            break
        }

        let kafka = try kafkaCeiling(options)
        let hop = try kafkaHopLatency(options)
        say("  Kafka ceiling and latency measured")
        let sqlite = try sqliteCeiling(options, directory: directory)
        say("  SQLite ceiling measured")
        let reference = try referenceCeiling(options, directory: directory)
        let referenceTwoStores = try referenceCeiling(options, directory: directory, stores: 2)
        say("  reference ceiling measured")
        let pipeline = try pointsPipeline(options, directory: directory)
        let platform = try platformPipeline(
            orders: options.platformOrders, members: options.platformMembers, window: options.window / 4,
            steadyRate: options.steadyRate, steadySeconds: options.steadySeconds, directory: directory)
        let simulation = try simulation(members: options.simulationMembers, directory: directory)
        let scaling = try scaling(options, directory: directory)
        let large = try largeStore(options, directory: directory)

        let ceiling = min(kafka, sqlite)
        let fixed = min(kafka, reference)
        func ms(_ value: Double) -> String { value.isNaN ? "n/a" : String(format: "%.1f ms", value) }
        var rows: [(String, String)] = [
            ("Kafka ceiling: produce + consume through Messaging", "\(grouped(kafka)) records/s"),
            ("Kafka latency at \(grouped(Double(options.rate))) records/s, one hop (send → read)", "p50 \(ms(hop.p50))  p99 \(ms(hop.p99))"),
            ("SQLite ceiling: the points writes, no Kafka", "\(grouped(sqlite)) events/s"),
            ("reference ceiling: one 100 B insert + one 200 B upsert an event", "\(grouped(reference)) events/s"),
            ("  the same over two stores, each on a thread of its own", "\(grouped(referenceTwoStores)) events/s ("
                + String(format: "%.2f", referenceTwoStores / max(reference, 1)) + "× one)"),
            ("points pipeline, exactly-once, real executable", "\(grouped(pipeline.throughput)) events/s"),
            ("  as a share of the smaller ceiling", String(format: "%.0f %%", 100 * pipeline.throughput / ceiling)),
            ("  as a share of Kafka and the reference, the smaller", String(format: "%.0f %%", 100 * pipeline.throughput / fixed)),
            ("  CPU an event: the service, its loop thread", "\(micros(pipeline.cpuMicrosPerEvent)), \(micros(pipeline.loopMicrosPerEvent))"),
            ("latency at \(grouped(Double(options.rate))) events/s, order → ledger event",
             "p50 \(ms(pipeline.p50))  p99 \(ms(pipeline.p99))  max \(ms(pipeline.max))"),
            ("  order sent → ledger record sent: the broker, the service", "p50 \(ms(pipeline.toLedgerSent.p50))  p99 \(ms(pipeline.toLedgerSent.p99))"),
            ("  ledger record sent → read: the broker's second hop", "p50 \(ms(pipeline.ledgerSentToRead.p50))  p99 \(ms(pipeline.ledgerSentToRead.p99))"),
            ("points peak RSS with \(grouped(Double(options.members))) members", String(format: "%.1f MiB", pipeline.peakRSSMiB)),
            ("database size per member", "\(grouped(pipeline.bytesPerMember)) bytes"),
            ("four services, \(grouped(Double(platform.orders))) orders of \(grouped(Double(platform.members))) members, until all is out",
             "\(grouped(platform.throughput)) orders/s"),
            ("  as a share of the smaller ceiling", String(format: "%.0f %%", 100 * platform.throughput / ceiling)),
        ] + ["points", "tiers", "campaigns", "notifications"].map { service in
            ("  \(service): CPU an order, peak RSS, database per member",
             "\(micros(platform.cpuMicrosPerOrder[service] ?? .nan)), " + String(format: "%.1f MiB, ", platform.peakRSSMiB[service] ?? 0)
                + "\(grouped(platform.bytesPerMember[service] ?? 0)) bytes")
        }
        rows += [
            ("loyalty simulate: a year of \(grouped(Double(simulation.members))) members, \(grouped(Double(simulation.events))) events, one core",
             "\(grouped(simulation.eventsPerSecond)) events/s"),
            ("  as a share of the smaller ceiling", String(format: "%.0f %%", 100 * simulation.eventsPerSecond / ceiling)),
            ("  peak RSS of the command, and per event", String(format: "%.1f MiB, ", simulation.peakRSSMiB) + "\(grouped(simulation.bytesPerEvent)) bytes"),
            ("  time a record applied, service by service", simulation.perServiceText),
        ]
        let width = rows.map(\.0.count).max()!
        say("")
        for (label, value) in rows {
            say("  \(label.padding(toLength: width, withPad: " ", startingAt: 0))   \(value)")
        }
        if let steady = platform.steady { say(steadyLine(steady)) }
        for line in scalingLines(scaling) { say(line) }
        say(largeStoreLine(large, options))
        say(String(format: "\n  (%.0f s in all; release build recommended: swift build -c release)", Date().timeIntervalSince(started)))
    }

    static func simulationLine(_ figures: SimulationFigures) -> String {
        String(format: "  loyalty simulate: a year of %d members, %d events (%d records applied by the four services) in %.1f s: %.0f events/s; peak RSS %.1f MiB, %.0f bytes an event; ",
               figures.members, figures.events, figures.recordsApplied, figures.seconds, figures.eventsPerSecond, figures.peakRSSMiB, figures.bytesPerEvent)
            + "a record applied: \(figures.perServiceText)"
    }

    // MARK: Ceilings

    /// The embedded broker's own latency, one hop: records of the bench's orders' size sent
    /// at the latency run's rate for half of `latencySeconds`, each timed from its send to its
    /// read, by the same producer and consumer settings the pipeline's bench side uses. An order's
    /// way to its ledger event crosses the broker twice. Returns p50 and p99 in milliseconds.
    static func kafkaHopLatency(_ options: Options) throws -> (p50: Double, p99: Double) {
        let topic = TopicSpec(name: "bench.hop", partitions: Topics.partitionCount)
        let broker = try EmbeddedBroker(topics: [topic])
        // The clients go before the broker (they would log its going): they are the callee's.
        return try withExtendedLifetime(broker) { try hopLatency(options, topic: topic, bootstrapServers: broker.bootstrapServers) }
    }

    private static func hopLatency(_ options: Options, topic: TopicSpec, bootstrapServers: String) throws -> (p50: Double, p99: Double) {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        defer { _ = producer.flush(timeoutMilliseconds: 5_000) }
        var consumerSettings = ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "bench-hop")
        consumerSettings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(consumerSettings, listener: StartingOffsets())
        defer { consumer.close() }
        try consumer.subscribe([topic.name])
        let payload = order(0, member: member(0, of: options.members), time: epoch).encoded()
        _ = try warmUp(producer, consumer, topic: topic.name, payload: payload, what: "Kafka latency")
        let count = options.rate * max(options.latencySeconds / 2, 1)
        var sentAt: [Date] = []
        sentAt.reserveCapacity(count)
        var latencies: [Double] = []
        latencies.reserveCapacity(count)
        // A record read again (after a rebalance) counts once.
        var read = [Bool](repeating: false, count: count)
        let start = Date()
        var lastRead = Date()
        while latencies.count < count {
            while sentAt.count < count && Date().timeIntervalSince(start) >= Double(sentAt.count) / Double(options.rate) {
                // The record's index in its key: the key is what the hop keeps as it was sent.
                let index = sentAt.count
                sentAt.append(Date())
                try producer.send(topic: topic.name, key: Array(String(index).utf8), value: payload)
            }
            producer.poll()
            var next = consumer.poll(timeoutMilliseconds: 1)
            while let event = next {
                if case .record(let record) = event, let index = record.keyString.flatMap({ Int($0) }), index < sentAt.count, !read[index] {
                    read[index] = true
                    latencies.append(Date().timeIntervalSince(sentAt[index]) * 1000)
                    lastRead = Date()
                }
                if case .error(let error, let partition?, let offset) = event, error.code == KafkaError.offsetOutOfRange {
                    throw CLIError("Kafka latency: the embedded broker deleted records of \(partition) from \(offset) on before they were read")
                }
                next = consumer.poll(timeoutMilliseconds: 0)
            }
            guard Date().timeIntervalSince(lastRead) < 60 else { throw CLIError("Kafka latency: nothing read for 60 s after \(latencies.count) of \(count)") }
        }
        latencies.sort()
        return (percentile(0.5, of: latencies), percentile(0.99, of: latencies))
    }

    /// Sends one record and waits until the consumer reads it: the consumer has joined its
    /// group and been given its partitions, so a clock started after this times records only.
    /// Returns the record read.
    static func warmUp(_ producer: KafkaProducer, _ consumer: KafkaConsumer, topic: String, payload: [UInt8], what: String) throws -> ConsumedRecord {
        try producer.send(topic: topic, key: Array("warm-up".utf8), value: payload)
        _ = producer.flush(timeoutMilliseconds: 10_000)
        let joinBy = Date().addingTimeInterval(60)
        while true {
            if case .record(let record) = consumer.poll(timeoutMilliseconds: 100) { return record }
            guard Date() < joinBy else { throw CLIError("\(what): the consumer got nothing from the embedded broker within 60 s") }
        }
    }

    /// The value at fraction `p` of `sorted` (0 when it is empty).
    static func percentile(_ p: Double, of sorted: [Double]) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    /// Produces and consumes `events` orders through the project's own producer and consumer.
    static func kafkaCeiling(_ options: Options) throws -> Double {
        let topic = TopicSpec(name: "bench.kafka", partitions: Topics.partitionCount)
        let broker = try EmbeddedBroker(topics: [topic])
        // The clients go before the broker (they would log its going): they are the callee's.
        return try withExtendedLifetime(broker) { try kafkaCeiling(options, topic: topic, bootstrapServers: broker.bootstrapServers) }
    }

    private static func kafkaCeiling(_ options: Options, topic: TopicSpec, bootstrapServers: String) throws -> Double {
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers))
        let listener = StartingOffsets()
        // Records the embedded broker deleted before they were read are an error here, not a
        // silent jump to what it still has (which would leave the count short for good).
        var consumerSettings = ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "bench")
        consumerSettings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(consumerSettings, listener: listener)
        try consumer.subscribe([topic.name])
        let payloads = (0..<1000).map { order($0, member: member($0, of: options.members), time: epoch).encoded() }
        // Join the group before the clock starts.
        let joined = try warmUp(producer, consumer, topic: topic.name, payload: payloads[0], what: "Kafka ceiling")
        // Where each partition's reading has got to: a record read again (after a rebalance) counts once.
        var nextOffsets = [Int64](repeating: 0, count: Int(topic.partitions))
        nextOffsets[Int(joined.partition)] = joined.offset + 1

        let keys = (0..<options.events).map { Array(member($0, of: options.members).utf8) }
        let start = Date()
        var produced = 0
        var consumed = 0
        var stall = StallGuard(seconds: 60)
        // The window holds per partition: the embedded broker keeps about 5 MiB of each, and a
        // partition whose fetches pause for a moment while the others run on would otherwise
        // fall behind what it keeps.
        let partitionWindow = max(options.window / Int(topic.partitions), 1)
        var inFlight = [Int](repeating: 0, count: Int(topic.partitions))
        func take(_ event: ConsumerEvent?) throws -> Bool {
            switch event {
            case .record(let record)? where record.offset >= nextOffsets[Int(record.partition)]:
                nextOffsets[Int(record.partition)] = record.offset + 1
                consumed += 1
                inFlight[Int(record.partition)] -= 1
            case .error(let error, let partition?, let offset)? where error.code == KafkaError.offsetOutOfRange:
                throw CLIError("Kafka ceiling: the embedded broker deleted records of \(partition) from \(offset) on before they were read")
            case .record?, .error?, .endOfPartition?, nil:
                break
            }
            return event != nil
        }
        while consumed < options.events {
            try stall.check(consumed) {
                "Kafka ceiling: nothing consumed for 60 s after \($0) of \(options.events) records "
                    + "(\(producer.outstanding) still queued in the producer)"
            }
            // Round the partitions with room: one whose fetches pause holds back only itself.
            var sentThisRound = true
            while produced < options.events && sentThisRound {
                sentThisRound = false
                for partition in inFlight.indices where produced < options.events && inFlight[partition] < partitionWindow {
                    try producer.send(topic: topic.name, key: keys[produced], value: payloads[produced % payloads.count], partition: Int32(partition))
                    inFlight[partition] += 1
                    produced += 1
                    sentThisRound = true
                }
            }
            producer.poll()
            if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil })?.error {
                throw CLIError("Kafka ceiling: a record was not delivered: \(failed)")
            }
            if try take(consumer.poll(timeoutMilliseconds: 5)) {
                while try take(consumer.poll(timeoutMilliseconds: 0)) {}
            }
        }
        let seconds = Date().timeIntervalSince(start)
        _ = producer.flush(timeoutMilliseconds: 5_000)
        consumer.close()
        return Double(options.events) / seconds
    }

    /// Deletes a ceiling's store once it is measured: the writes still cached for it are then
    /// dropped rather than written back to the disk while the sections after it run.
    static func removeStore(at path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    /// Applies the points writes of `events` orders (inbox, ledger entry, account with its lots
    /// and balance, two outbox rows, release timer, offsets) straight to a fresh database with
    /// the points schema and the service's durability settings, in batches of the service's size.
    static func sqliteCeiling(_ options: Options, directory: URL) throws -> Double {
        let path = directory.appendingPathComponent("ceiling.sqlite").path
        defer { removeStore(at: path) }
        let database = try Database(DatabaseConfiguration(path: path))
        let processor = PointsProcessor(program: try Program.load(json: ReferenceProgram.bytes()), commandKeys: try CommandKeys.parse("bench=bench-secret-0123456789"))
        _ = try database.migrate(RuntimeSchema.migrations + processor.migrations)
        // Checkpoints as the service does them: on a connection of their own.
        try database.execute("PRAGMA wal_autocheckpoint = 0")
        let checkpointer = try WALCheckpointer(path: path, intervalMilliseconds: 200, logger: Logger(service: "bench"))
        defer { checkpointer.stop() }
        let rules = processor.rules
        let inbox = try database.prepare("INSERT INTO inbox(event_id, payload_hash, task, event_time) VALUES(?, ?, ?, ?)")
        let ledger = try database.prepare(
            "INSERT INTO ledger(member, sequence, entry_id, time, kind, source, points, available_after, pending_after, debt_after, cause_id, order_id, lots) "
                + "VALUES(?, ?, ?, ?, 'earned', 'base', ?, 0, ?, 0, ?, ?, ?)")
        let account = try database.prepare(
            "INSERT INTO accounts(member, task, available, pending, debt, state) VALUES(?, 0, 0, ?, 0, ?) "
                + "ON CONFLICT(member) DO UPDATE SET pending = excluded.pending, state = excluded.state")
        let outbox = try database.prepare("INSERT INTO outbox(topic, key, value) VALUES(?, ?, ?)")
        let timer = try database.prepare("INSERT OR REPLACE INTO timers(task, due, rank, member, kind, ref, payload) VALUES(0, ?, 0, ?, 'release', ?, x'')")
        let offset = try database.prepare(
            "INSERT INTO offsets(topic, partition, next_offset) VALUES('loyalty.orders', 0, ?) ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset")
        let sample = order(0, member: "bench-m0", time: epoch)
        let ledgerEvent = sample.encoded() + sample.encoded()  // about the size of a ledger event
        var state = PointsAccount(member: "bench-m0", registeredAt: EventTime(millis: epoch)).encoded()
        state += Array(repeating: UInt8(ascii: " "), count: 250)
        // The rules are not part of this ceiling: the base of the sample order, once.
        let base = rules.basePoints(OrderPaid(orderID: "B", paidMinor: 25_800, lines: [
            OrderLine(category: "apparel", paidMinor: 15_800), OrderLine(category: "high-margin", paidMinor: 10_000),
        ]))
        let batchSize = 2_000
        let start = Date()
        var index = 0
        while index < options.events {
            try database.transaction {
                for _ in 0..<min(batchSize, options.events - index) {
                    let memberID = member(index, of: options.members)
                    try inbox.run(.text("bench-order-\(index)"), .integer(Int64(index)), .integer(0), .integer(epoch))
                    try ledger.run(.text(memberID), .integer(Int64(index / options.members + 1)), .text("bench-order-\(index)/base"), .integer(epoch),
                                   .integer(base), .integer(base), .text("bench-order-\(index)"), .text("B-\(index)"), .text("L\(index):+\(base)"))
                    try account.run(.text(memberID), .integer(base), .blob(state))
                    try outbox.run(.text(Topics.pointsLedger.name), .blob(Array(memberID.utf8)), .blob(ledgerEvent))
                    try outbox.run(.text(Topics.pointsBalances.name), .blob(Array(memberID.utf8)), .blob(state))
                    try timer.run(.integer(epoch + 168 * 3_600_000), .text(memberID), .text("L\(index)"))
                    index += 1
                }
                try offset.run(.integer(Int64(index)))
            }
        }
        return Double(options.events) / Date().timeIntervalSince(start)
    }

    /// A ceiling that does not move when the design does: per event, one ~100-byte INSERT keyed
    /// by (member, sequence) and one ~200-byte UPSERT of the member's row, in transactions of
    /// 2,000, WAL, `synchronous=NORMAL` (the store's settings), SQLite's 4 KiB pages. Whatever
    /// the services' schema and settings become, a share of this one compares across versions.
    ///
    /// With `stores` above one, the members are spread over that many stores, each written by
    /// a thread of its own at the same time: the most that stores per task could give on this
    /// machine. Events/s of all stores together, from the moment every store is ready.
    static func referenceCeiling(_ options: Options, directory: URL, stores: Int = 1) throws -> Double {
        let writers = try (0..<stores).map { store in
            try ReferenceWriter(path: directory.appendingPathComponent("reference-\(store).sqlite").path)
        }
        defer { for writer in writers { writer.close() } }
        let start = Date()
        let errors = Mutex<[Error]>([])
        DispatchQueue.concurrentPerform(iterations: stores) { store in
            do {
                try writers[store].write(options, share: (store, stores))
            } catch {
                errors.withLock { $0.append(error) }
            }
        }
        if let error = errors.withLock({ $0.first }) { throw error }
        return Double(options.events) / Date().timeIntervalSince(start)
    }

    /// One store of the reference ceiling, created and ready before the clock starts.
    final class ReferenceWriter: @unchecked Sendable {
        let path: String
        // Used by its writing thread alone once the clock starts.
        private let database: Database
        private let checkpointer: WALCheckpointer
        private let insert: Statement
        private let upsert: Statement

        init(path: String) throws {
            self.path = path
            // SQLite's page size, not the services': the reference stays where it was.
            database = try Database(DatabaseConfiguration(path: path, pageSize: DatabaseConfiguration.sqliteDefaultPageSize))
            try database.execute("""
                CREATE TABLE entries(member TEXT NOT NULL, sequence INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY(member, sequence)) WITHOUT ROWID;
                CREATE TABLE members(member TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
                """)
            try database.execute("PRAGMA wal_autocheckpoint = 0")
            checkpointer = try WALCheckpointer(path: path, intervalMilliseconds: 200, logger: Logger(service: "bench"))
            insert = try database.prepare("INSERT INTO entries(member, sequence, body) VALUES(?, ?, ?)")
            upsert = try database.prepare("INSERT INTO members(member, body) VALUES(?, ?) ON CONFLICT(member) DO UPDATE SET body = excluded.body")
        }

        /// Writes the events of the members in this store's share (member number modulo the
        /// count of stores), in transactions of 2,000.
        func write(_ options: Options, share: (store: Int, of: Int)) throws {
            let entry = [UInt8](repeating: UInt8(ascii: "e"), count: 100 - 24)  // with its key, about 100 bytes
            let row = [UInt8](repeating: UInt8(ascii: "m"), count: 200 - 12)
            let mine = (0..<options.events).lazy.filter { ($0 % options.members) % share.of == share.store }
            var events = mine.makeIterator()
            var next = events.next()
            while next != nil {
                try database.transaction {
                    var written = 0
                    while written < 2_000, let index = next {
                        let memberID = member(index, of: options.members)
                        try insert.run(.text(memberID), .integer(Int64(index / options.members + 1)), .blob(entry))
                        try upsert.run(.text(memberID), .blob(row))
                        written += 1
                        next = events.next()
                    }
                }
            }
        }

        func close() {
            checkpointer.stop()
            database.close()
            removeStore(at: path)
        }
    }

    // MARK: The pipeline

    struct PipelineFigures {
        var throughput: Double
        var p50: Double
        var p99: Double
        var max: Double
        /// The latency split where the ledger record was sent (its Kafka timestamp): from the
        /// order's send through the broker and the service, and from there through the broker
        /// to the bench; p50 and p99 of each.
        var toLedgerSent: (p50: Double, p99: Double)
        var ledgerSentToRead: (p50: Double, p99: Double)
        var peakRSSMiB: Double
        var bytesPerMember: Double
        /// CPU the service used during the timed pipeline, per event: the whole process, and
        /// its loop (the main thread), which is what one thread can take at most.
        var cpuMicrosPerEvent: Double
        var loopMicrosPerEvent: Double
    }

    /// The scaling section: the points pipeline with one instance and with two sharing its
    /// store, on the same events, in the same run.
    struct ScalingFigures {
        var events: Int
        var members: Int
        var oneInstance: Double
        /// One instance decoding on the loop's thread (`LOYALTY_DECODE_AHEAD=off`).
        var decodingOnTheLoop: Double
        var twoInstances: Double
        /// One instance keeping a changelog (`LOYALTY_CHANGELOG=on`).
        var withChangelog: Double
        /// Points with a store per task (`LOYALTY_STORE_LAYOUT=task`): one instance of one thread,
        /// of two threads, and two instances of one thread each.
        var pointsPerTask: (oneThread: Double, twoThreads: Double, twoInstances: Double)
        var restore: RestoreFigures
        /// A warm standby (`LOYALTY_STANDBY=on`) of the same store taking over: its catch-up.
        var standbyTakeover: RestoreFigures
        /// Tiers with a store per task, on threads and on instances.
        var tasks: TaskScalingFigures
    }

    /// A store restored from its changelog by a new instance with an empty data directory.
    struct RestoreFigures {
        var members: Int
        var rows: Int
        var seconds: Double
    }

    /// Members of the store the restore is timed on: its changelog must fit in what the
    /// embedded broker keeps of a partition (5 MiB; no compaction there).
    static let restoreMembers = 3_000

    static func scaling(_ options: Options, directory: URL) throws -> ScalingFigures {
        var small = options
        small.events = options.scalingEvents
        small.members = options.scalingMembers
        say("  scaling: one instance…")
        let one = try pointsPipeline(small, directory: directory.appendingPathComponent("scaling-1"), measureLatency: false)
        say("  scaling: one instance decoding on the loop's thread…")
        let decodingOnTheLoop = try pointsPipeline(
            small, directory: directory.appendingPathComponent("scaling-1-loop-decodes"), measureLatency: false, settings: ["LOYALTY_DECODE_AHEAD": "off"])
        say("  scaling: two instances on one store…")
        let two = try pointsPipeline(small, directory: directory.appendingPathComponent("scaling-2"), instances: 2, measureLatency: false)
        say("  scaling: one instance keeping a changelog…")
        let logged = try pointsPipeline(
            small, directory: directory.appendingPathComponent("scaling-changelog"), measureLatency: false, settings: ["LOYALTY_CHANGELOG": "on"])
        say("  scaling: a store restored from its changelog…")
        var restoring = options
        restoring.members = restoreMembers
        restoring.events = restoreMembers
        var restore: RestoreFigures?
        var takeover: RestoreFigures?
        let place = directory.appendingPathComponent("scaling-restore")
        _ = try pointsPipeline(
            restoring, directory: place, measureLatency: false, checkInAfterRegistering: false, settings: ["LOYALTY_CHANGELOG": "on"],
            standbyAlongside: true
        ) { broker in
            // The standby stopped with the active instance; started as a service, it catches up.
            takeover = try timeRestore(broker: broker, members: restoreMembers, directory: place, dataDirectory: "standby-host")
            restore = try timeRestore(broker: broker, members: restoreMembers, directory: place, dataDirectory: "new-host")
        }
        // Points with a store per task: its tasks wait for each other through peer marks alone.
        func perTask(_ threads: Int, instances: Int) throws -> Double {
            say("  scaling: points with a store per task, \(instances) instance(s) of \(threads) thread(s)…")
            return try pointsPipeline(
                small, directory: directory.appendingPathComponent("scaling-tasks-\(instances)x\(threads)"), instances: instances,
                measureLatency: false, settings: ["LOYALTY_STORE_LAYOUT": "task", "LOYALTY_THREADS": String(threads)]).throughput
        }
        let pointsPerTask = (oneThread: try perTask(1, instances: 1), twoThreads: try perTask(2, instances: 1), twoInstances: try perTask(1, instances: 2))
        let tasks = try taskScaling(
            events: small.events, members: small.members, restoreMembers: options.restoreMembers, window: options.window, directory: directory)
        return ScalingFigures(
            events: small.events, members: small.members, oneInstance: one.throughput, decodingOnTheLoop: decodingOnTheLoop.throughput,
            twoInstances: two.throughput,
            withChangelog: logged.throughput, pointsPerTask: pointsPerTask, restore: restore!, standbyTakeover: takeover!, tasks: tasks)
    }

    /// Starts a points instance with an empty data directory beside a stopped one whose store
    /// kept a changelog, and reads from its log how long the restore took and how many rows it
    /// applied.
    static func timeRestore(broker: EmbeddedBroker, members: Int, directory: URL, dataDirectory: String) throws -> RestoreFigures {
        let children = ChildProcesses()
        defer { _ = children.stopAll() }
        let log = directory.appendingPathComponent("points-restored-\(dataDirectory).log")
        try children.start("points", environment: [
            "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.appendingPathComponent(dataDirectory).path,
            "LOYALTY_WAIT_FOR": "none", "LOYALTY_CHANGELOG": "on",
        ], log: log)
        return try waitFor(300, "the instance to restore its store", log: log, children: children) { () -> RestoreFigures? in
            let lines = ServiceLog(log)
            let start = lines.entries("restoring the store from the changelog").first
            // A standby taking over catches up (and says nothing of restoring when it was up to date).
            if let done = lines.entries("a standby's store takes over").first, let rows = done.rows {
                return RestoreFigures(members: members, rows: rows, seconds: Double(done.time - (start?.time ?? done.time)) / 1000)
            }
            if let done = lines.entries("restored the store from the changelog").first, let start, let rows = done.rows {
                return RestoreFigures(members: members, rows: rows, seconds: Double(done.time - start.time) / 1000)
            }
            return nil
        }
    }

    /// The JSON lines of a service's log, as far as it is written.
    struct ServiceLog {
        /// One line with a message: when it was written (milliseconds), and its fields.
        struct Entry {
            var time: Int64
            var fields: JSONObject
            /// The `rows` field, when it has one.
            var rows: Int? { fields["rows"]?.stringValue.flatMap { Int($0) } }
        }

        private let lines: [JSONObject]

        init(_ url: URL) {
            lines = ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n")
                .compactMap { try? JSONValue.parse(Array($0.utf8)).objectValue }
        }

        /// The lines with `message`, in the order written (those without a readable time left out).
        func entries(_ message: String) -> [Entry] {
            lines.filter { $0["msg"]?.stringValue == message }.compactMap { line in
                line["ts"]?.stringValue.flatMap { try? EventTime.parse($0) }.map { Entry(time: $0.millis, fields: line) }
            }
        }
    }

    /// A figure rounded to a whole number, its thousands separated by commas.
    static func grouped(_ value: Double) -> String { ReportPage.grouped(Int64(value.rounded())) }

    /// CPU microseconds to one decimal (steps of the kernel's clock tick over the run), or n/a
    /// where they could not be read.
    static func micros(_ value: Double) -> String { value.isNaN ? "n/a" : String(format: "%.1f µs", value) }

    static func scalingLines(_ figures: ScalingFigures) -> [String] {
        return [
            "  scaling, points pipeline, \(grouped(Double(figures.events))) orders of \(grouped(Double(figures.members))) members:",
            "    one instance                         \(grouped(figures.oneInstance)) events/s (decoding on a thread beside the loop)",
            "    one instance decoding on its loop    \(grouped(figures.decodingOnTheLoop)) events/s ("
                + String(format: "%.2f", figures.decodingOnTheLoop / max(figures.oneInstance, 1)) + "× decoding beside it; LOYALTY_DECODE_AHEAD=off)",
            "    two instances sharing the store      \(grouped(figures.twoInstances)) events/s ("
                + String(format: "%.2f", figures.twoInstances / max(figures.oneInstance, 1)) + "× one; they take turns at each other's frontiers)",
            "    one instance keeping a changelog     \(grouped(figures.withChangelog)) events/s ("
                + String(format: "%.2f", figures.withChangelog / max(figures.oneInstance, 1)) + "× one without)",
            "    a store per task, one thread         \(grouped(figures.pointsPerTask.oneThread)) events/s ("
                + String(format: "%.2f", figures.pointsPerTask.oneThread / max(figures.oneInstance, 1)) + "× one store; tasks wait for each other through peer marks)",
            "    a store per task, two threads        \(grouped(figures.pointsPerTask.twoThreads)) events/s ("
                + String(format: "%.2f", figures.pointsPerTask.twoThreads / max(figures.pointsPerTask.oneThread, 1)) + "× one thread)",
            "    a store per task, two instances      \(grouped(figures.pointsPerTask.twoInstances)) events/s ("
                + String(format: "%.2f", figures.pointsPerTask.twoInstances / max(figures.pointsPerTask.oneThread, 1)) + "× one instance of one thread)",
            "  restore from the changelog, \(grouped(Double(figures.restore.members))) members with an order each: "
                + "\(grouped(Double(figures.restore.rows))) rows in " + String(format: "%.2f s", figures.restore.seconds)
                + " (\(grouped(Double(figures.restore.rows) / max(figures.restore.seconds, 0.001))) rows/s; one store's changelog is one "
                + "partition, of which the embedded broker keeps 5 MiB: many members are restored below, a store per task)",
            "  a warm standby of that store taking over: caught up \(grouped(Double(figures.standbyTakeover.rows))) rows in "
                + String(format: "%.2f s", figures.standbyTakeover.seconds) + " (LOYALTY_STANDBY)",
        ] + taskScalingLines(figures.tasks)
    }

    /// The large store: the points service's memory and store with many members, registered
    /// (nothing else: a million check-ins took half the bench's five minutes) and then some of
    /// them ordering (no latency run: the figures are sizes). Its directory, about a
    /// gigabyte, is removed as soon as the figures are taken.
    static func largeStore(_ options: Options, directory: URL) throws -> PipelineFigures {
        var large = options
        large.members = options.largeMembers
        large.events = options.largeEvents
        let place = directory.appendingPathComponent("large")
        defer { try? FileManager.default.removeItem(at: place) }
        say("  large store: \(large.members) members…")
        return try pointsPipeline(large, directory: place, measureLatency: false, checkInAfterRegistering: false)
    }

    static func largeStoreLine(_ figures: PipelineFigures, _ options: Options) -> String {
        return "  large store, points service with \(grouped(Double(options.largeMembers))) members and \(grouped(Double(options.largeEvents))) orders: "
            + String(format: "peak RSS %.1f MiB, ", figures.peakRSSMiB) + "\(grouped(figures.bytesPerMember)) bytes a member, "
            + "\(grouped(figures.throughput)) events/s"
    }

    /// The points service (`instances` of it on one store) from members registered to every
    /// order's ledger entry out; with `measureLatency`, then orders at a fixed rate.
    /// With `checkInAfterRegistering`, each member checks in after registering and the run
    /// waits for the check-ins' ledger entries; without, it waits for the service's stored
    /// offsets past the registrations (which publish nothing).
    static func pointsPipeline(
        _ options: Options, directory: URL, instances: Int = 1, measureLatency: Bool = true, checkInAfterRegistering: Bool = true,
        settings: [String: String] = [:], standbyAlongside: Bool = false, afterStop: ((EmbeddedBroker) throws -> Void)? = nil
    ) throws -> PipelineFigures {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker(topics: Topics.all)
        let children = ChildProcesses()
        defer { children.stopAll() }
        let data = directory.appendingPathComponent("points")
        for index in 0..<instances {
            try children.start(
                // The points service alone, as configured by default: it waits for no producer
                // here, and passes over a shop partition read to its end at once (no grace).
                "points", environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": data.path, "LOYALTY_WAIT_FOR": "none",
                ].merging(settings) { $1 },
                log: directory.appendingPathComponent("points-\(index).log"))
        }
        if standbyAlongside {
            // A warm standby of the store, on a host of its own, after the instances (the
            // figures read the first child).
            try children.start("points", environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.appendingPathComponent("standby-host").path,
                "LOYALTY_WAIT_FOR": "none", "LOYALTY_CHANGELOG": "on", "LOYALTY_STANDBY": "on",
            ], log: directory.appendingPathComponent("points-standby.log"))
        }
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let listener = StartingOffsets()
        // Ledger records deleted before they were read would leave the count short for good.
        var consumerSettings = ConsumerConfiguration(bootstrapServers: broker.bootstrapServers, groupID: "bench-ledger")
        consumerSettings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(consumerSettings, listener: listener)
        try consumer.subscribe([Topics.pointsLedger.name])

        /// Stops a wait that can no longer end: a service gone, an event not delivered, or
        /// `done` unchanged for 120 s (`stuck` says what, with `done`).
        var stall = StallGuard(seconds: 120)
        func checkProgress(_ done: Int, stuck: (Int) -> String) throws {
            if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
            if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil })?.error {
                throw CLIError("an event was not delivered: \(failed)")
            }
            try stall.check(done, stuck: stuck)
        }

        /// Sends `count` units of events from `make`, each of which earns one ledger entry, and
        /// waits for as many entries, keeping at most a window in flight; `arrived` is told of each.
        func pump(
            _ count: Int, pace: Double? = nil, make: (Int) -> [CloudEvent], arrived: (CloudEvent, ConsumedRecord, Date) -> Void = { _, _, _ in }
        ) throws -> TimeInterval {
            var produced = 0
            var received = 0
            let start = Date()
            while received < count {
                try checkProgress(received) { "no ledger entry for 120 s after \($0) of \(count) (\(produced) sent, \(producer.outstanding) still queued in the producer)" }
                while produced < count && produced - received < options.window {
                    if let pace, Date().timeIntervalSince(start) < Double(produced) / pace { break }
                    for event in make(produced) {
                        try producer.send(topic: Topics.inputTopic(forEventType: event.type)!.name, key: Array(event.subject!.utf8), value: event.encoded())
                    }
                    produced += 1
                }
                producer.poll()
                var next = consumer.poll(timeoutMilliseconds: 1)
                while let event = next {
                    if case .record(let record) = event, let value = record.value, let decoded = try? CloudEvent.decode(value),
                       decoded.type == "points.earned" || decoded.type == "points.refused" {
                        received += 1
                        arrived(decoded, record, Date())
                    }
                    if case .error(let error, let partition?, let offset) = event, error.code == KafkaError.offsetOutOfRange {
                        throw CLIError("the embedded broker deleted ledger records of \(partition) from \(offset) on before the bench read them")
                    }
                    next = consumer.poll(timeoutMilliseconds: 0)
                }
            }
            return Date().timeIntervalSince(start)
        }

        /// Sends `count` registrations, at most a window ahead of what the service has stored
        /// offsets past on the members topic (read from its store, as the four-service run does).
        func register(_ count: Int, make: (Int) -> CloudEvent) throws {
            let store = data.appendingPathComponent("points.sqlite").path
            var reader: Database?
            defer { reader?.close() }
            func applied() -> Int {
                if reader == nil, FileManager.default.fileExists(atPath: store) { reader = try? Database(DatabaseConfiguration(path: store)) }
                let sum = try? reader?.prepare("SELECT COALESCE(SUM(next_offset), 0) FROM offsets WHERE topic = ?")
                    .queryOne(.text(Topics.members.name)) { $0.int64(0) }
                return Int(sum ?? 0)
            }
            var sent = 0
            while true {
                let done = applied()
                guard done < count else { break }
                try checkProgress(done) { "no registration applied for 120 s after \($0) of \(count) (\(sent) sent)" }
                while sent < count && sent - done < options.window {
                    let event = make(sent)
                    try producer.send(topic: Topics.members.name, key: Array(event.subject!.utf8), value: event.encoded())
                    sent += 1
                }
                producer.poll()
                // The ledger's reader stays in its group (nothing comes yet): the timed run
                // after this must not wait for it to join again.
                while consumer.poll(timeoutMilliseconds: 0) != nil {}
                Thread.sleep(forTimeInterval: 0.02)
            }
        }

        // Members first: events of unregistered members would only be kept, not earned.
        say("  registering \(options.members) members…")
        func registration(_ index: Int) -> CloudEvent {
            CloudEvent(id: "bench-registered-\(index)", source: "bench-shop", type: EventType.memberRegistered,
                       time: EventTime(millis: epoch), subject: member(index, of: options.members), data: .object([:]))
        }
        if checkInAfterRegistering {
            // A registration earns nothing, so a check-in after it marks each member done.
            _ = try pump(options.members) { index in
                [registration(index),
                 CloudEvent(id: "bench-checkin-\(index)", source: "bench-shop", type: EventType.checkedIn,
                            time: EventTime(millis: epoch + 60_000), subject: member(index, of: options.members), data: .object([:]))]
            }
        } else {
            try register(options.members, make: registration)
        }
        say("  pipeline…")
        let pid = children.processes.first!.process.processIdentifier
        let cpuBefore = ProcessCPU.of(pid)
        let seconds = try pump(options.events) { index in [order(index, member: member(index, of: options.members), time: epoch + 3_600_000 + Int64(index))] }
        let throughput = Double(options.events) / seconds
        // Not a number where /proc cannot be read (printed as n/a).
        let cpu = ProcessCPU.of(pid).flatMap { after in cpuBefore.map { after - $0 } } ?? ProcessCPU(process: .nan, mainThread: .nan)

        say(measureLatency ? "  latency at \(options.rate) events/s…" : "  (no latency run)")
        let latencyEvents = measureLatency ? options.rate * options.latencySeconds : 0
        var sentAt: [String: Date] = [:]
        var latencies: [Double] = []
        var toLedgerSent: [Double] = []
        var ledgerSentToRead: [Double] = []
        latencies.reserveCapacity(latencyEvents)
        _ = try pump(latencyEvents, pace: Double(options.rate), make: { index in
            let event = order(options.events + index, member: member(index, of: options.members), time: epoch + 7_200_000 + Int64(index))
            sentAt[event.id] = Date()
            return [event]
        }, arrived: { event, record, at in
            guard let cause = event.data["causeId"]?.stringValue, let sent = sentAt[cause] else { return }
            latencies.append(at.timeIntervalSince(sent) * 1000)
            // The relay's producer stamps the ledger record as it sends it (same host, same clock).
            if let stamp = record.timestamp.map({ Date(timeIntervalSince1970: Double($0) / 1000) }) {
                toLedgerSent.append(stamp.timeIntervalSince(sent) * 1000)
                ledgerSentToRead.append(at.timeIntervalSince(stamp) * 1000)
            }
        })
        latencies.sort()
        func percentile(_ p: Double) -> Double { Self.percentile(p, of: latencies) }
        // Not a number where the ledger records carried no timestamp (printed as n/a).
        func split(_ values: [Double]) -> (p50: Double, p99: Double) {
            values.isEmpty ? (.nan, .nan) : (Self.percentile(0.5, of: values), Self.percentile(0.99, of: values))
        }
        toLedgerSent.sort()
        ledgerSentToRead.sort()

        let peakMiB = PeakMemory.mebibytes(of: pid)
        consumer.close()
        // Every order was applied; what the producer still holds are acknowledgements on their way.
        _ = producer.flush(timeoutMilliseconds: 5_000)
        // A warm standby has read the changelog on by then (a pass every half second): its
        // takeover catches up with what the active instance committed last.
        if standbyAlongside { Thread.sleep(forTimeInterval: 2) }
        children.stopAll()
        try afterStop?(broker)
        let size = (try? FileManager.default.attributesOfItem(atPath: data.appendingPathComponent("points.sqlite").path)[.size] as? Int) ?? 0
        return PipelineFigures(
            throughput: throughput, p50: percentile(0.5), p99: percentile(0.99), max: latencies.last ?? 0,
            toLedgerSent: split(toLedgerSent), ledgerSentToRead: split(ledgerSentToRead),
            peakRSSMiB: peakMiB, bytesPerMember: Double(size) / Double(options.members),
            cpuMicrosPerEvent: cpu.process * 1e6 / Double(options.events), loopMicrosPerEvent: cpu.mainThread * 1e6 / Double(options.events))
    }
}
