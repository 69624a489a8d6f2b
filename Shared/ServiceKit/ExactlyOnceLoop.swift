import Dispatch
import Foundation
import LoyaltyDomain
import Messaging
import Storage

/// The loop every service runs (ARCHITECTURE.md, "The exactly-once loop"): poll, merge each
/// task's partitions by event time, apply a batch in one transaction, publish its outbox.
/// Runs on the calling thread, which it keeps until a stop is requested.
public final class ExactlyOnceLoop<Processor: StreamProcessor>: RebalanceListener {
    private let configuration: ServiceConfiguration
    private let applier: BatchApplier<Processor>
    private let logger: Logger
    private let stop: StopSignal
    private var consumer: KafkaConsumer!
    private var broadcast: BroadcastReader?
    private let relay: OutboxRelay
    private let checkpointer: WALCheckpointer
    private var merger: EventTimeMerger<PolledRecord<Processor.Body>>
    private var paused: Set<TopicPartition> = []
    private var committedOffsets: [TopicPartition: Int64] = [:]
    private var startupError: Error?
    /// Records a partition may buffer before it is paused (the merge waits on its siblings).
    private let pauseThreshold = 50_000

    /// Totals since start, for logs and tests.
    public private(set) var totals = BatchOutcome()

    public init(configuration: ServiceConfiguration, processor: Processor, logger: Logger, stop: StopSignal) throws {
        self.configuration = configuration
        self.logger = logger
        self.stop = stop
        let directory = (configuration.databasePath as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let database = try Database(DatabaseConfiguration(path: configuration.databasePath, synchronous: configuration.synchronous))
        applier = try BatchApplier(database: database, processor: processor, timerMode: configuration.timerMode)
        // Checkpoints happen on a connection of their own, not inside the loop's commits.
        try database.execute("PRAGMA wal_autocheckpoint = 0")
        checkpointer = try WALCheckpointer(path: configuration.databasePath, intervalMilliseconds: 200, logger: logger)
        merger = EventTimeMerger(
            topics: processor.inputTopics, sortedTopics: processor.sortedInputTopics,
            serviceTopics: processor.serviceInputTopics, idleMilliseconds: configuration.taskIdleMilliseconds)
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: configuration.bootstrapServers))
        relay = OutboxRelay(producer: producer, logger: logger)
    }

    /// Runs until a stop is requested; then finishes the batch in hand, flushes the outbox
    /// and leaves the group.
    public func run() throws {
        let processor = applier.processor
        let republished = try relay.republishUnsent(from: applier.database)
        logger.info("starting", [
            "bootstrap": configuration.bootstrapServers, "database": configuration.databasePath,
            "group": configuration.groupID, "topics": processor.inputTopics.joined(separator: ","),
            "timers": configuration.timerMode.rawValue, "republished": String(republished),
        ])
        if !processor.broadcastTopics.isEmpty { try catchUpWithBroadcastTopics(processor.broadcastTopics) }
        var consumerConfiguration = ConsumerConfiguration(bootstrapServers: configuration.bootstrapServers, groupID: configuration.groupID)
        consumerConfiguration.sessionTimeoutMilliseconds = configuration.sessionTimeoutMilliseconds
        consumer = try KafkaConsumer(consumerConfiguration, listener: self)
        try consumer.subscribe(processor.inputTopics)

        var lastReport = monotonicMilliseconds()
        var lastCommit = lastReport
        while !stop.isRequested {
            try applyBroadcastRecords(timeoutMilliseconds: 0)
            pollInto(maxRecords: configuration.maxBatchRecords, timeoutMilliseconds: 20)
            if let startupError { throw startupError }
            try relay.poll()
            refreshEnds()
            let first = merger.next(now: monotonicMilliseconds())
            var wallClock: EventTime?
            if configuration.timerMode == .wallClock {
                let now = EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
                if try applier.hasTimersDue(tasks: merger.assignedTasks, by: now) { wallClock = now }
            }
            if first != nil || !relay.rowsToDelete.isEmpty || wallClock != nil {
                try applyBatch(startingWith: first?.item, wallClock: wallClock)
            }
            resumePartitions()
            let now = monotonicMilliseconds()
            if now - lastCommit >= 2_000 {
                consumer.commitAdvisory(committedOffsets)
                lastCommit = now
            }
            if now - lastReport >= 10_000 {
                logger.info("progress", [
                    "applied": String(totals.applied), "duplicates": String(totals.duplicates),
                    "deadLettered": String(totals.deadLettered), "timersFired": String(totals.timersFired),
                    "buffered": String(merger.bufferedCount), "outboxInFlight": String(relay.inFlightCount),
                    "echoesPending": String(merger.pendingEchoes),
                    "heldBy": merger.heldPartitions(now: now)
                        .sorted { $0.partition.description < $1.partition.description }
                        .map { "\($0.partition)(\($0.milliseconds) ms)" }.joined(separator: ","),
                ])
                lastReport = now
            }
        }
        logger.info("stopping: flushing the outbox")
        let drained = try relay.drain(timeoutMilliseconds: 30_000)
        if !relay.rowsToDelete.isEmpty { try applyBatch(startingWith: nil, wallClock: nil) }
        consumer.commitAdvisory(committedOffsets)
        consumer.close()
        broadcast?.close()
        checkpointer.stop()
        logger.info("stopped", ["applied": String(totals.applied), "outboxDrained": String(drained)])
    }

    /// Reads the broadcast topics to their end before any task record is applied, so that a
    /// fresh instance decides on the same definitions as the one before it.
    private func catchUpWithBroadcastTopics(_ topics: [String]) throws {
        let reader = try BroadcastReader(configuration: configuration, topics: topics, logger: logger) { [applier] partitions in
            try applier.storedOffsets(partitions)
        }
        broadcast = reader
        let deadline = monotonicMilliseconds() + 30_000
        while !reader.isCaughtUp && !stop.isRequested {
            guard monotonicMilliseconds() < deadline else {
                throw ConfigurationError(variable: "LOYALTY_BOOTSTRAP_SERVERS", problem: "could not read \(topics.joined(separator: ", ")) to its end within 30 s")
            }
            try applyBroadcastRecords(timeoutMilliseconds: 100)
        }
        logger.info("broadcast topics read", ["topics": topics.joined(separator: ",")])
    }

    /// Applies the broadcast records that have arrived, in a batch of their own.
    private func applyBroadcastRecords(timeoutMilliseconds: Int32) throws {
        guard let broadcast else { return }
        let records = broadcast.poll(maxRecords: 500, timeoutMilliseconds: timeoutMilliseconds)
        guard !records.isEmpty else { return }
        let outcome = try applier.applyBroadcast(records)
        try relay.publish(outcome.outbox)
    }

    /// Applies one batch: `first` and then whatever the merge releases, up to the batch size,
    /// with the echoes the batch sends itself holding back what sorts after them.
    private func applyBatch(startingWith first: PolledRecord<Processor.Body>?, wallClock: EventTime?) throws {
        let delivered = relay.rowsToDelete
        var pending = first
        var pulled = 0
        let limit = configuration.maxBatchRecords
        let now = monotonicMilliseconds()
        let outcome = try applier.apply(
            nextRecord: { newEchoes in
                for echo in newEchoes { merger.expectEcho(echo.key, on: echo.partition) }
                if let record = pending {
                    pending = nil
                    pulled += 1
                    return record
                }
                guard first != nil, pulled < limit, let next = merger.next(now: now) else { return nil }
                pulled += 1
                return next.item
            },
            committableOffsets: { merger.committableOffsets },
            deliveredOutbox: delivered, wallClock: wallClock, tasks: merger.assignedTasks)
        relay.deleted(delivered.count)
        committedOffsets.merge(merger.committableOffsets) { $1 }
        for echo in outcome.echoes { merger.expectEcho(echo.key, on: echo.partition) }
        if let marker = configuration.faultKillAfterCommit.map({ Array($0.utf8) }),
           outcome.outbox.contains(where: { $0.value.map { $0.contains(marker) } ?? false }) {
            logger.warning("LOYALTY_FAULT_KILL_AFTER_COMMIT: killing the process after commit, before publishing")
            kill(getpid(), SIGKILL)
        }
        totals.applied += outcome.applied
        totals.duplicates += outcome.duplicates
        totals.deadLettered += outcome.deadLettered
        totals.skippedBehindOffset += outcome.skippedBehindOffset
        totals.timersFired += outcome.timersFired
        try relay.publish(outcome.outbox)
    }

    /// Moves up to `maxRecords` records from Kafka into the merge buffers.
    private func pollInto(maxRecords: Int, timeoutMilliseconds: Int32) {
        var timeout = timeoutMilliseconds
        for _ in 0..<maxRecords {
            guard let event = consumer.poll(timeoutMilliseconds: timeout) else { return }
            timeout = 0
            switch event {
            case .record(let record):
                let decoded: Result<Decoded<Processor.Body>, Rejection>
                do { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                let partition = record.topicPartition
                let key: MergeKey
                switch decoded {
                case .success(let input):
                    key = MergeKey(time: input.time.millis, rank: input.rank, id: input.eventID)
                case .failure:
                    // Rejected records go first and straight to dead letters. Keyed by their event
                    // id when there is one, so a rejected echo still releases what waits for it.
                    key = MergeKey(time: .min, rank: .min, id: record.eventID ?? "\(partition)@\(record.offset)")
                }
                merger.add(PolledRecord(record: record, decoded: decoded), key: key, offset: record.offset, from: partition)
                // Sorted partitions are never paused: an echo the merge waits for may be in them.
                if merger.bufferedCount(partition) >= pauseThreshold, !paused.contains(partition),
                   !merger.sortedTopics.contains(partition.topic) {
                    consumer.pause([partition])
                    paused.insert(partition)
                }
            case .endOfPartition(let partition, let offset):
                merger.markCaughtUp(partition, at: offset)
            case .error(let error):
                logger.warning("consumer error", ["error": error.description])
            }
        }
    }

    /// Tells the merge where the broker last said each empty partition ends, so a partition
    /// with records fetched but not yet polled holds the merge.
    private func refreshEnds() {
        for partition in merger.emptyPartitions {
            if let marks = consumer.cachedWatermarks(of: partition) { merger.updateEnd(partition, to: marks.high) }
        }
    }

    /// Resumes paused partitions whose buffers have drained.
    private func resumePartitions() {
        let resumable = paused.filter { merger.bufferedCount($0) < pauseThreshold / 2 }
        if !resumable.isEmpty {
            consumer.resume(Array(resumable))
            paused.subtract(resumable)
        }
    }

    // MARK: RebalanceListener

    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        do {
            let offsets = try applier.storedOffsets(partitions)
            // An offset past the end means the state belongs to another cluster (say, an
            // earlier embedded broker) or the broker lost data: refuse rather than skip records.
            for (partition, offset) in offsets.sorted(by: { $0.key.description < $1.key.description }) {
                let end = try consumer.watermarks(of: partition).high
                if offset > end {
                    throw ConfigurationError(
                        variable: "LOYALTY_DATABASE",
                        problem: "stored offset \(offset) of \(partition) is past the end of the partition (\(end)): "
                            + "the database belongs to another Kafka cluster or the broker lost data; start with a fresh data directory")
                }
            }
            applier.forget(tasks: partitions.map(\.partition))
            merger.assign(partitions, positions: offsets)
            for echo in try applier.storedEchoes(partitions) { merger.expectEcho(echo.key, on: echo.partition) }
            // Rows another instance committed but did not publish (an echo awaited here among them).
            let republished = try relay.republishUnsent(from: applier.database)
            if republished > 0 { logger.info("republished unsent outbox rows", ["rows": String(republished)]) }
            logger.info("partitions assigned", ["partitions": partitions.map(\.description).sorted().joined(separator: ",")])
            return offsets
        } catch {
            // Cannot trust our own offsets: refuse to consume rather than start from a wrong place.
            startupError = error
            logger.error("cannot start from the stored offsets", ["error": "\(error)"])
            stop.request()
            return [:]
        }
    }

    public func partitionsRevoked(_ partitions: [TopicPartition]) {
        merger.revoke(partitions)
        applier.forget(tasks: partitions.map(\.partition))
        paused.subtract(partitions)
        for partition in partitions { committedOffsets[partition] = nil }
        logger.info("partitions revoked", ["partitions": partitions.map(\.description).sorted().joined(separator: ",")])
    }
}

/// Milliseconds of a monotonic clock, for waits and reports only.
func monotonicMilliseconds() -> Int64 {
    Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
}
