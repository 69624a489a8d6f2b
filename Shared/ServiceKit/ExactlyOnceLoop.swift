import Dispatch
import Foundation
import Basics
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
    private let timerCensus: TimerCensus
    private let crashNote: CrashNote
    /// Tells the platform's tools (a broker reset, say) that the database is open here.
    private let useLock: FileUseLock
    /// A standby's change capture (`STANDBY`): `run` keeps the store a copy of the changelog.
    private var standby: ChangeCapture?
    private var merger: EventTimeMerger<PolledRecord<Processor.Body>>
    private var paused: Set<TopicPartition> = []
    private var committedOffsets: [TopicPartition: Int64] = [:]
    private var startupError: Error?
    private var everAssigned = false
    /// Records a partition may buffer before it is paused (the merge waits on its siblings).
    private var pauseThreshold: Int { configuration.pauseRecords }

    /// What `/ready` and `/metrics` report.
    public let status: ServiceStatus
    private var httpServer: HTTPServer?
    /// The address other instances are told to send member lookups to.
    private var advertisedAddress: String?
    /// The assignment changed: announce it on the platform's instances topic (when serving HTTP).
    private var announcementDue = false
    /// Partitions read to their end at least once since they were assigned.
    private var reachedEnd: Set<TopicPartition> = []
    /// Partitions revoked during the poll under way (see `poll`).
    private var revokedWhilePolling: Set<TopicPartition> = []
    /// A batch erased personal data and the write-ahead log has not been truncated since.
    private var erasurePending = false
    private var lastErasureAttempt: Int64 = 0
    /// The progress marks last published, per task (``ProgressMark``).
    private var publishedMarks: [Int32: ProgressMark] = [:]
    /// The frontiers last committed for the tasks this instance owns, while it shares the
    /// store's tasks with other instances (``EventTimeMerger/frontier(of:)``).
    private var committedFrontiers: [Int32: TaskFrontier] = [:]
    /// The promises of the tasks other instances own, as last read with their frontiers.
    private var otherInstancesPromises: [TaskPromise] = []
    private var lastFrontierRepair: Int64 = 0
    private var lastMarkCheck: Int64 = 0
    /// Rebuilding the store from history (the platform's replay command): the records to apply, and how far
    /// the rebuild has come.
    private let replay: ReplayPlan?
    private var replayProgress = ReplayProgress()
    /// The rebuild ended without applying everything its plan names (it applied nothing more
    /// for a long while): no proof, and no store to put in place.
    public private(set) var rebuildIsIncomplete = false

    /// Totals since start, for logs and tests.
    public private(set) var totals = BatchOutcome()

    /// `replay`: rebuild the store at `configuration.databasePath` from the topics instead of
    /// serving: apply exactly the records the plan names, publish nothing, and return once
    /// they are all applied.
    public init(configuration: ServiceConfiguration, processor: Processor, logger: Logger, stop: StopSignal, replay: ReplayPlan? = nil) throws {
        self.configuration = configuration
        self.replay = replay
        self.logger = logger
        self.stop = stop
        status = ServiceStatus(service: configuration.service, metricPrefix: configuration.platform.metricPrefix)
        let directory = (configuration.databasePath as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let database = try Database(DatabaseConfiguration(
            path: configuration.databasePath, synchronous: configuration.synchronous, cacheSizeKiB: configuration.cacheMiB * 1024))
        // A changelog is one store's, written by one instance in commit order: that instance
        // holds the file alone, and any other is refused, whichever starts first.
        let keepsChangelog = configuration.changelog && replay == nil
        do {
            useLock = try FileUseLock(path: configuration.databasePath, exclusive: keepsChangelog)
        } catch {
            throw ConfigurationError(variable: configuration.platform.variable("CHANGELOG"), problem: "\(error)")
        }
        applier = try BatchApplier(
            database: database, processor: processor, timerMode: configuration.timerMode,
            inboxHorizon: configuration.inboxHorizonDays > 0 ? Int64(configuration.inboxHorizonDays) * 86_400_000 : nil)
        applier.futureMargin = configuration.futureMarginMilliseconds
        // A batch's timers stay about as many as its records: its outbox stays as small.
        applier.timerBudget = max(2 * configuration.maxBatchRecords, 1_000)
        applier.commandKeys = try configuration.commandKeys()
        // Personal data the service erases is overwritten in the file, not merely unlinked:
        // from the first statement on, a restore's clearing included.
        if processor.storesPersonalData { try database.execute("PRAGMA secure_delete = ON") }
        var changelogProducer: KafkaProducer?
        if keepsChangelog && configuration.standby {
            // A standby writes nothing to Kafka (no producer, so it fences nobody): it checks
            // the cluster, and `run` keeps its store a copy of the changelog.
            let tail = try ChangelogRestore.tail(topic: configuration.platform.changelog(of: configuration.service), configuration: configuration)
            try applier.claimCluster(tail.clusterID)
            // A standby begins empty: a store that served (or one of another history) is
            // never cleared to become one.
            if try !ChangelogRestore.storeIsEmpty(database), try ChangelogCopy.standbyPosition(of: database) == nil {
                throw ConfigurationError(
                    variable: configuration.platform.variable("STANDBY"),
                    problem: "\(configuration.databasePath) holds a store that is not a standby's; a standby starts from an empty data directory")
            }
            standby = try ChangeCapture(database: database, excluding: RuntimeSchema.unloggedTables)
        } else if keepsChangelog {
            let capture = try ChangeCapture(database: database, excluding: RuntimeSchema.unloggedTables)
            let topic = configuration.platform.changelog(of: configuration.service)
            // First, so that an older producer of this store (a dead or stalled instance) is
            // fenced, and the transaction it left open aborted, before the changelog is read.
            let producer = try ChangelogRestore.producer(configuration)
            changelogProducer = producer
            let tail = try ChangelogRestore.tail(topic: topic, configuration: configuration)
            // A store of another cluster is refused before anything is restored into it.
            try applier.claimCluster(tail.clusterID)
            var copy = try ChangelogCopy.read(from: database)
            // A restore names the new copy and marks its history as logged in its own
            // transaction: a crash leaves the store as it was, or restored and named.
            let beginCopy = { (database: Database, _: Int64) throws in
                try ChangelogRestore.markLoggedSinceEmpty(database, true)
                copy = try ChangelogCopy.begin(in: database, base: tail.lastWriter)
            }
            if let position = try ChangelogCopy.standbyPosition(of: database) {
                // A standby's store takes over: it holds the changelog up to `position`, and
                // catches up with the rest.
                let caughtUp = try ChangelogRestore.restore(
                    into: database, capture: capture, topic: topic, configuration: configuration, logger: logger, from: position, finish: beginCopy)
                // With nothing to catch up with, the restore named no copy.
                if copy.name == nil { try database.transaction { try beginCopy(database, caughtUp.nextOffset) } }
                logger.info("a standby's store takes over", ["from": String(position), "caughtUpTo": String(caughtUp.nextOffset), "rows": String(caughtUp.rows)])
            } else if try ChangelogRestore.storeIsEmpty(database) {
                // A store that has applied nothing (a new host, a lost data directory) starts
                // from what the changelog holds, and goes on from the offsets it restores.
                _ = try ChangelogRestore.restore(
                    into: database, capture: capture, topic: topic, configuration: configuration, logger: logger, finish: beginCopy)
            } else if try !ChangelogRestore.isLoggedSinceEmpty(database) {
                throw ConfigurationError(
                    variable: configuration.platform.variable("CHANGELOG"),
                    problem: "\(configuration.databasePath) has applied records without a changelog: one started now would lack them, "
                        + "and a store restored from it would be wrong. Keep the changelog off for this store, or start the service "
                        + "with an empty data directory, which applies the input topics again from their beginning (outputs keep their ids)")
            } else {
                switch copy.verdict(last: tail.lastWriter) {
                case .resume:
                    // A store from before copies were named gets its name now.
                    if copy.name == nil { try database.transaction { try beginCopy(database, 0) } }
                case .older:
                    // The changelog went on without this copy (another copy was restored from it
                    // and applied more while this host was away, or this file is a snapshot of
                    // an earlier state): resumed, it would log a second history over the other's.
                    logger.warning("the store is older than its changelog", [
                        "topic": topic, "thisCopy": copy.name ?? "unnamed", "thisCopysBatch": String(copy.sequence),
                        "changelogLastWrittenBy": tail.lastWriter.text, "then": "restoring the store anew from the changelog",
                    ])
                    _ = try ChangelogRestore.restore(
                        into: database, capture: capture, topic: topic, configuration: configuration, logger: logger,
                        clearingFirst: true, finish: beginCopy)
                case .refused(let reason):
                    throw ConfigurationError(
                        variable: configuration.platform.variable("CHANGELOG"),
                        problem: "\(configuration.databasePath): \(reason). Start the service with an empty data directory (it applies the "
                            + "input topics again from their beginning, and restores nothing), or keep the changelog off for this store")
                }
            }
            let name = copy.name!
            // What a dead predecessor left unfinished in the changelog never counts: the
            // restart record says how many rows that is (none where the broker hides
            // unfinished transactions, as Apache Kafka does), so that a restore rolls back
            // those alone, never finished batches whose end records compaction removed.
            try ChangelogRestore.send(
                ChangelogRestore.restartKey,
                value: ChangelogRestore.restartValue(copy: name, unfinishedRows: tail.unfinishedRows, sequence: copy.sequence),
                to: topic, through: producer)
            applier.changelog = (capture, topic, name)
            applier.changelogSequence = copy.sequence
        } else if replay == nil, try ChangelogCopy.standbyPosition(of: database) != nil {
            // Turning the changelog off here would end the history the active instance writes.
            throw ConfigurationError(
                variable: configuration.platform.variable("CHANGELOG"),
                problem: "\(configuration.databasePath) is a standby's copy of the changelog: start it with the changelog on "
                    + "(and \(configuration.platform.variable("STANDBY"))=off to take over), or give the service an empty data directory")
        } else if replay == nil, try ChangelogRestore.isLoggedSinceEmpty(database) {
            // The store stops keeping its changelog: what the changelog holds must never be
            // restored from again, since the store goes on without it.
            let topic = configuration.platform.changelog(of: configuration.service)
            try ChangelogRestore.send(ChangelogRestore.endedKey, to: topic, through: ChangelogRestore.producer(configuration))
            try database.transaction { try ChangelogRestore.markLoggedSinceEmpty(database, false) }
            logger.warning("the store no longer keeps a changelog", ["topic": topic, "then": "a store restored from it would start anew"])
        }
        status.update { [count = applier.partitionCount] in $0.partitionCount = count }
        // A record this service failed on at the last start (trap, fault or error) counts a
        // strike; at two in a row it is dead-lettered when it comes (`poison-record`).
        let notePath = configuration.databasePath + ".crash"
        let note = CrashNote.take(at: notePath)
        crashNote = try CrashNote(path: notePath)
        applier.crashNote = crashNote
        if let strike = try applier.recordStrike(note) {
            logger.warning("the last start failed on an input record", [
                "partition": strike.partition.description, "offset": String(strike.offset), "cause": strike.cause,
                "startsInARow": String(strike.strikes),
                "then": strike.strikes >= 2 ? "it is dead-lettered as poison-record" : "trying it once more",
            ])
        }
        if processor.storesPersonalData {
            // An erasure committed just before the last stop may still be in the log.
            erasurePending = true
        }
        // Checkpoints happen on a connection of their own, not inside the loop's commits.
        try database.execute("PRAGMA wal_autocheckpoint = 0")
        let walLimit = configuration.walLimitBytes
        // A log SQLite starts over is cut back to the limit, which is what `boundWriteAheadLog` watches.
        if walLimit > 0 { try database.execute("PRAGMA journal_size_limit = \(walLimit)") }
        checkpointer = try WALCheckpointer(
            path: configuration.databasePath, intervalMilliseconds: 200, hurryAboveBytes: walLimit > 0 ? walLimit / 2 : nil, logger: logger)
        timerCensus = try TimerCensus(
            path: configuration.databasePath, mode: configuration.timerMode, intervalMilliseconds: 2_000, logger: logger
        ) { [status] timers in status.update { $0.timers = timers } }
        merger = EventTimeMerger(
            topics: processor.inputTopics, sortedTopics: processor.sortedInputTopics,
            serviceTopics: processor.serviceInputTopics, idleMilliseconds: configuration.taskIdleMilliseconds,
            awaitedProducers: configuration.awaitedProducers(declared: processor.upstreamProducers))
        merger.rebuilding = replay != nil
        // No gaps: a batch the producer gives up on after retries is a fatal error (the service
        // stops and republishes its outbox in order at the next start) rather than a hole that
        // later rows, a progress mark behind a command, would be delivered past.
        if replay != nil {
            relay = OutboxRelay(discardingWith: logger)
        } else {
            let producer = try KafkaProducer(ProducerConfiguration(
                bootstrapServers: configuration.bootstrapServers,
                extra: ["enable.gapless.guarantee": "true"].merging(configuration.kafkaSettings) { $1 }))
            relay = OutboxRelay(producer: producer, logger: logger)
            if let changelogProducer, let topic = applier.changelog?.topic { relay.sendChangelog(to: topic, through: changelogProducer) }
        }
    }

    /// Runs until a stop is requested; then finishes the batch in hand, flushes the outbox
    /// and leaves the group.
    public func run() throws {
        if let standby {
            try keepStandingBy(capture: standby)
            return
        }
        let processor = applier.processor
        let republished = try relay.republishUnsent(from: applier.database)
        logger.info("starting", [
            "bootstrap": configuration.bootstrapServers, "database": configuration.databasePath,
            "group": configuration.groupID, "topics": processor.inputTopics.joined(separator: ","),
            "timers": configuration.timerMode.rawValue, "republished": String(republished),
            "waitsFor": merger.awaitedProducers.values.reduce(into: Set<String>()) { $0.formUnion($1) }.sorted().joined(separator: ","),
        ])
        var consumerConfiguration = ConsumerConfiguration(
            bootstrapServers: configuration.bootstrapServers, groupID: configuration.groupID, extra: configuration.kafkaSettings)
        consumerConfiguration.sessionTimeoutMilliseconds = configuration.sessionTimeoutMilliseconds
        // A lost offset is the loop's to report, never librdkafka's to skip over.
        consumerConfiguration.offsetResetPolicy = "error"
        consumer = try KafkaConsumer(consumerConfiguration, listener: self)
        try startHTTP()
        guard try claimCluster() else { return }
        status.update { $0.connected = true }
        applier.partitionCount = try coPartitionedCount(of: processor.inputTopics + processor.progressTopics)
        status.update { [count = applier.partitionCount] in $0.partitionCount = count }
        if let replay { try checkReplayable(replay) }
        if !processor.broadcastTopics.isEmpty { try catchUpWithBroadcastTopics(processor.broadcastTopics) }
        try consumer.subscribe(processor.inputTopics)

        var lastReport = monotonicMilliseconds()
        var lastCommit = lastReport
        var lastStatus = lastReport
        let subscribedAt = lastReport
        // The last turn's batch ended at its size limit with records still buffered: the next
        // turn takes what the consumer has without waiting, since the merge has work already.
        var moreToApply = false
        // Each turn's poll is decoded on this thread while the turn applies what the merge
        // already holds; the turn ends by handing the poll to the merge, so no decoding
        // outlives it (a rebalance, inside the next poll, finds none under way).
        let decodeAhead = configuration.decodeAhead
            ? HandOffThread(name: "decode-ahead") { serve in CrashNote.withAlternateSignalStack(serve) } : nil
        defer { decodeAhead?.stop() }
        let aheadResults = DecodeResults()
        // The fault setting's trap: decoding a record that contains it crashes the process.
        let decodingTrap = configuration.faultCrashOn.map { (marker: Array($0.utf8), variable: configuration.platform.variable("FAULT_CRASH_ON")) }
        while !stop.isRequested {
            try applyBroadcastRecords(timeoutMilliseconds: 0)
            // Held by another instance's tasks: their owner commits their next frontier any moment.
            let heldByOthers = merger.isHeldByOtherTasks
            let polled = poll(maxRecords: configuration.maxBatchRecords, timeoutMilliseconds: moreToApply ? 0 : heldByOthers ? 2 : 20)
            if let startupError { throw startupError }
            let plan = recordsToDecode(polled)
            var decodingAhead = false
            if let decodeAhead, plan.contains(true) {
                decodeAhead.handOver { [crashNote] in
                    aheadResults.value = Self.decode(polled, plan: plan, processor: processor, crashNote: crashNote, slot: .decoding, trap: decodingTrap)
                }
                decodingAhead = true
                // Until they are buffered, their partitions count as behind their ends: a
                // partition the batch drains is never taken for read to its end.
                for event in polled {
                    if case .record(let record) = event { merger.expectRecords(record.topicPartition, below: record.offset + 1) }
                }
            } else {
                take(polled, decoded: Self.decode(polled, plan: plan, processor: processor, crashNote: crashNote, slot: .applying, trap: decodingTrap))
            }
            try relay.poll()
            refreshEnds()
            try refreshOtherTasksBound()
            // Broadcast records the broker has and this instance has not read hold the tasks; a
            // record or timers carried over from the last batch go before anything else.
            let first = broadcast?.isBehind == true || applier.hasWorkLeftOver ? nil : merger.next(now: monotonicMilliseconds())
            var wallClock: EventTime?
            if configuration.timerMode == .wallClock {
                let now = EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
                if try applier.hasTimersDue(tasks: merger.assignedTasks, by: now) { wallClock = now }
            }
            moreToApply = false
            var batchRan = true
            if first != nil || applier.hasWorkLeftOver || !relay.rowsToDelete.isEmpty || wallClock != nil {
                let applied = try applyBatch(startingWith: first?.item, wallClock: wallClock)
                moreToApply = applier.hasWorkLeftOver || (applied >= configuration.maxBatchRecords && merger.bufferedCount > 0)
            } else if monotonicMilliseconds() - lastMarkCheck >= 50 {
                // Nothing to apply, but the promise may have grown (a partition read to its end),
                // or records read past (progress marks) may have moved the offsets to store.
                lastMarkCheck = monotonicMilliseconds()
                let promised = try !processor.progressTopics.isEmpty && !marksToPublish(applier.currentClocks()).isEmpty
                let readPast = merger.committableOffsets.contains { committedOffsets[$0.key] != $0.value }
                if promised || readPast { try applyBatch(startingWith: nil, wallClock: nil) } else { batchRan = false }
            } else if merger.otherTasksBound != nil, try !frontiersToCommit(applier.currentClocks()).isEmpty {
                // Other instances wait for this one's frontiers (records fetched, say).
                try applyBatch(startingWith: nil, wallClock: nil)
            } else {
                batchRan = false
            }
            if decodingAhead, let decodeAhead {
                decodeAhead.wait()
                // Records buffered now are applied next turn, without waiting on the consumer.
                if take(polled, decoded: aheadResults.value) { moreToApply = true }
                aheadResults.value = []
            }
            resumePartitions()
            // A batch bounds the log after its commit; idle, the loop's checkpoint delays no
            // record, and the background checkpointer stands aside for it once asked.
            if erasurePending || (!batchRan && checkpointer.writerAsked) { try boundWriteAheadLog() }
            if let replay, replayIsDone(replay, now: monotonicMilliseconds()) { break }
            let now = monotonicMilliseconds()
            if announcementDue { try announce(tasks: merger.assignedTasks) }
            if now - lastStatus >= 500 {
                refreshStatus(now: now)
                lastStatus = now
            }
            if now - lastCommit >= 2_000 {
                consumer.commitAdvisory(committedOffsets)
                lastCommit = now
            }
            if now - lastReport >= 10_000 {
                logger.info("progress", [
                    "applied": String(totals.applied), "duplicates": String(totals.duplicates),
                    "deadLettered": String(totals.deadLettered), "timersFired": String(totals.timersFired),
                    "late": String(totals.late),
                    "buffered": String(merger.bufferedCount), "outboxInFlight": String(relay.inFlightCount),
                    "echoesPending": String(merger.pendingEchoes),
                    "heldByOtherInstancesMs": merger.heldByOtherTasks(now: now).map { String($0) } ?? "0",
                    "heldBy": merger.heldPartitions(now: now)
                        .sorted { $0.partition.description < $1.partition.description }
                        .map { "\($0.partition)(\($0.inGrace ? "grace" : "unread records") \($0.milliseconds) ms)" }.joined(separator: ","),
                    "waitingFor": merger.progressWaits(now: now)
                        .sorted { $0.partition.description < $1.partition.description }
                        .map { "\($0.producer) on \($0.partition) (\($0.milliseconds) ms)" }.joined(separator: ","),
                ])
                let overdue = merger.overdueEchoes(now: now, after: 30_000)
                if let oldest = overdue.first {
                    logger.warning("commands sent to this service have not come back", [
                        "count": String(overdue.count), "oldest": oldest.id, "partition": oldest.partition.description,
                        "seconds": String(oldest.milliseconds / 1000),
                    ])
                }
                if !everAssigned {
                    logger.warning("no partitions assigned yet", [
                        "seconds": String((now - subscribedAt) / 1000), "group": configuration.groupID,
                        "hint": "the group may be refusing this member (a session timeout outside the broker's bounds, "
                            + "an unreachable coordinator), or other instances own every task",
                    ])
                }
                lastReport = now
            }
        }
        if advertisedAddress != nil { try? announce(tasks: []) }
        logger.info("stopping: flushing the outbox")
        let drained = try relay.drain(timeoutMilliseconds: 30_000)
        if !relay.rowsToDelete.isEmpty { try applyBatch(startingWith: nil, wallClock: nil) }
        consumer.commitAdvisory(committedOffsets)
        consumer.close()
        broadcast?.close()
        checkpointer.stop()
        timerCensus.stop()
        httpServer?.stop()
        logger.info("stopped", ["applied": String(totals.applied), "outboxDrained": String(drained)])
    }

    /// A standby's loop: reads the changelog on from where the store stands, every half second,
    /// until asked to stop. A store that is not a standby's yet (empty, or a copy that wrote)
    /// is replaced by a full restore first. Each pass is one transaction that also keeps the
    /// offset the store has come to, so a standby stopped at any point goes on from there.
    private func keepStandingBy(capture: ChangeCapture) throws {
        let topic = configuration.platform.changelog(of: configuration.service)
        let database = applier.database
        var position = try ChangelogCopy.standbyPosition(of: database)
        logger.info("standing by", ["topic": topic, "from": position.map(String.init) ?? "the beginning"])
        // One reader for every pass: a pass with nothing new costs two offset requests.
        let reader = try ChangelogRestore.changelogConsumer(configuration)
        defer { reader.close() }
        var rows = 0
        var lastReport = monotonicMilliseconds()
        while !stop.isRequested {
            let pass: (rows: Int, nextOffset: Int64)
            do {
                pass = try ChangelogRestore.restore(
                    into: database, capture: capture, topic: topic, configuration: configuration, logger: logger,
                    from: position ?? 0, clearingFirst: position == nil, announce: position == nil, reading: reader
                ) { database, nextOffset in
                    try ChangelogRestore.markLoggedSinceEmpty(database, true)
                    try ChangelogCopy.standBy(at: nextOffset, in: database)
                }
            } catch let error as KafkaError {
                // A broker that is slow or restarting: the pass rolled back; try again.
                logger.warning("a standby pass failed; trying again", ["error": error.description])
                for _ in 0..<20 where !stop.isRequested { usleep(50_000) }
                continue
            }
            position = pass.nextOffset
            rows += pass.rows
            if monotonicMilliseconds() - lastReport >= 10_000 {
                logger.info("standby caught up", ["topic": topic, "nextOffset": String(pass.nextOffset), "rowsSinceLastReport": String(rows)])
                rows = 0
                lastReport = monotonicMilliseconds()
            }
            for _ in 0..<10 where !stop.isRequested { usleep(50_000) }
        }
        logger.info("stopped standing by", ["topic": topic, "nextOffset": position.map(String.init) ?? "0"])
    }

    /// Waits for the cluster to answer (saying so in the log while it does not) and checks that
    /// the store belongs to it. False when a stop was requested first.
    private func claimCluster() throws -> Bool {
        while !stop.isRequested {
            if let clusterID = consumer.clusterID(timeoutMilliseconds: 5_000) {
                try applier.claimCluster(clusterID)
                logger.info("connected", ["cluster": clusterID])
                return true
            }
            logger.error("cannot reach the Kafka cluster; retrying", ["bootstrap": configuration.bootstrapServers])
        }
        return false
    }

    /// The partition count the input topics share, from the cluster. Topics with different
    /// counts would put one member on different tasks: refuse to start, naming them.
    private func coPartitionedCount(of topics: [String]) throws -> Int32 {
        let counts = try consumer.partitionCounts(of: topics)
        guard let count = counts.values.first, counts.values.allSatisfy({ $0 == count }) else {
            throw ConfigurationError(
                variable: "topics",
                problem: "the input topics are not co-partitioned: "
                    + counts.sorted { $0.key < $1.key }.map { "\($0.key) has \($0.value)" }.joined(separator: ", ")
                    + "; every input topic of a service needs the same partition count")
        }
        logger.info("input topics co-partitioned", ["partitions": String(count)])
        return count
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
                throw ConfigurationError(variable: configuration.platform.variable("BOOTSTRAP_SERVERS"), problem: "could not read \(topics.joined(separator: ", ")) to its end within 30 s")
            }
            try applyBroadcastRecords(timeoutMilliseconds: 100)
        }
        logger.info("broadcast topics read", ["topics": topics.joined(separator: ",")])
    }

    /// Applies the broadcast records that have arrived, in a batch of their own.
    private func applyBroadcastRecords(timeoutMilliseconds: Int32) throws {
        guard let broadcast else { return }
        var records = broadcast.poll(maxRecords: 500, timeoutMilliseconds: timeoutMilliseconds)
        // A rebuild applies only the definitions the store in use had read.
        if let replay { records.removeAll { !replay.includes($0.offset, of: $0.topicPartition) } }
        guard !records.isEmpty else { return }
        let outcome = try applier.applyBroadcast(records)
        try relay.publish(outcome.outbox)
    }

    /// Applies one batch: `first` and then whatever the merge releases, up to the batch size,
    /// with the echoes the batch sends itself holding back what sorts after them. Returns the
    /// records it pulled from the merge.
    @discardableResult
    private func applyBatch(startingWith first: PolledRecord<Processor.Body>?, wallClock: EventTime?) throws -> Int {
        let delivered = relay.rowsToDelete
        var pending = first
        var pulled = 0
        let limit = configuration.maxBatchRecords
        let now = monotonicMilliseconds()
        let progressTopics = applier.processor.progressTopics
        var published: [ProgressMark] = []
        var frontiers: [Int32: TaskFrontier] = [:]
        // Echoes the merge was told of while the batch ran (a rebuild may have merged their copy since).
        var expectedInBatch: Set<String> = []
        let outcome = try applier.apply(
            nextRecord: { newEchoes in
                for echo in newEchoes {
                    merger.expectEcho(echo.key, on: echo.partition, now: now)
                    expectedInBatch.insert(echo.key.id)
                }
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
            deliveredOutbox: delivered, wallClock: wallClock, tasks: merger.assignedTasks,
            beforeCommit: { batch, clocks in
                try self.applier.storeMarks(self.merger.takeChangedMarks())
                frontiers = try self.frontiersToCommit(clocks, echoes: batch.echoes)
                try self.applier.storeFrontiers(frontiers)
                published = try self.marksToPublish(clocks, echoes: batch.echoes)
                for mark in published {
                    for topic in progressTopics { try batch.emit(mark, to: topic) }
                }
            })
        for mark in published { publishedMarks[mark.task] = mark }
        committedFrontiers.merge(frontiers) { $1 }
        relay.deleted(delivered.count)
        committedOffsets.merge(merger.committableOffsets) { $1 }
        for echo in outcome.echoes where !expectedInBatch.contains(echo.key.id) { merger.expectEcho(echo.key, on: echo.partition, now: now) }
        if let marker = configuration.faultKillAfterCommit.map({ Array($0.utf8) }),
           outcome.outbox.contains(where: { $0.value.map { $0.contains(marker) } ?? false }) {
            logger.warning("\(configuration.platform.variable("FAULT_KILL_AFTER_COMMIT")): killing the process after commit, before publishing")
            kill(getpid(), SIGKILL)
        }
        let records = outcome.applied + outcome.duplicates + outcome.deadLettered
        let seconds = Double(monotonicMilliseconds() - now) / 1000
        // Observed outside the status lock: a batch may hold many records.
        var latencies = ServiceStatus.Histogram(bounds: ServiceStatus.Histogram.recordLatencyBounds)
        let committedAt = Int64(Date().timeIntervalSince1970 * 1000)
        for sent in outcome.recordTimestamps { latencies.observe(Double(max(0, committedAt - sent)) / 1000) }
        status.update { snapshot in
            snapshot.recordLatencySeconds.add(latencies)
            snapshot.applied += outcome.applied
            snapshot.duplicates += outcome.duplicates
            snapshot.deadLettered += outcome.deadLettered
            snapshot.late += outcome.late
            snapshot.timersFired += outcome.timersFired
            for (reason, count) in outcome.deadLettersByReason { snapshot.deadLettersByReason[reason, default: 0] += count }
            snapshot.batches += 1
            if records > 0 { snapshot.batchRecords.observe(Double(records)) }
            snapshot.commitSeconds.observe(seconds)
        }
        totals.applied += outcome.applied
        totals.duplicates += outcome.duplicates
        totals.deadLettered += outcome.deadLettered
        totals.skippedBehindOffset += outcome.skippedBehindOffset
        totals.late += outcome.late
        totals.timersFired += outcome.timersFired
        if outcome.erasedPersonalData { erasurePending = true }
        try relay.publish(outcome.outbox)
        try boundWriteAheadLog()
        return pulled
    }

    /// With other instances owning some of the tasks: refreshes the merge's bound from the
    /// frontiers they committed and the commands on their way (nil when this instance owns
    /// every task, or rebuilds a store).
    private func refreshOtherTasksBound() throws {
        let owned = merger.assignedTasks
        guard replay == nil, !owned.isEmpty, owned.count < Int(applier.partitionCount) else {
            merger.otherTasksBound = nil
            otherInstancesPromises = []
            return
        }
        let (bound, promises, stored) = try applier.otherTasksBound(owned: Set(owned))
        merger.otherTasksBound = bound
        otherInstancesPromises = promises
        // A row another writer changed (an owner of the task before a rebalance, late) is
        // committed again, at most every 100 ms: two instances that both believe they own a
        // task until the group settles it would otherwise take turns rewriting it.
        let now = monotonicMilliseconds()
        if now - lastFrontierRepair >= 100, committedFrontiers.contains(where: { stored[$0.key] != $0.value }) {
            lastFrontierRepair = now
            committedFrontiers = committedFrontiers.filter { stored[$0.key] == $0.value }
        }
    }

    /// The frontiers of this instance's tasks that differ from those last committed, while it
    /// shares the tasks with other instances.
    private func frontiersToCommit(_ clocks: TaskClocks, echoes: [(key: MergeKey, partition: TopicPartition)] = []) throws -> [Int32: TaskFrontier] {
        guard merger.otherTasksBound != nil else { return [:] }
        // The promises only matter to a service that publishes progress marks.
        let promises = applier.processor.progressTopics.isEmpty ? [:] : try ownPromises(clocks, echoes: echoes)
        var changed: [Int32: TaskFrontier] = [:]
        let carried = applier.carriedRecord.map { (task: $0.record.partition, key: MergeKey(of: $0.decoded, record: $0.record)) }
        for task in merger.assignedTasks {
            var key = merger.frontier(of: task)
            // A record carried over to the next batch left the merge, not the task.
            if let carried, carried.task == task { key = min(key, carried.key) }
            let frontier = TaskFrontier(key: key, promise: promises[task] ?? .none)
            if committedFrontiers[task] != frontier { changed[task] = frontier }
        }
        return changed
    }

    /// What the merge still holds for each owned task, with the commands the batch in hand sent
    /// itself (not yet known to the merge).
    private func pendingWork(echoes: [(key: MergeKey, partition: TopicPartition)]) -> [Int32: PendingWork] {
        var pending = merger.pendingWork()
        // A record carried over to the next batch left the merge, not the task.
        if let carried = applier.carriedRecord, var work = pending[carried.record.partition] {
            let time = MergeKey(of: carried.decoded, record: carried.record).time
            work.earliestBuffered = min(work.earliestBuffered ?? .max, time)
            work.isIdle = false
            pending[carried.record.partition] = work
        }
        // So do timers due that the budget left for the next batch.
        for task in applier.tasksWithTimersLeft { pending[task]?.isIdle = false }
        for echo in echoes {
            guard var work = pending[echo.partition.partition] else { continue }
            work.earliestEcho = min(work.earliestEcho ?? .max, echo.key.time)
            work.isIdle = false
            pending[echo.partition.partition] = work
        }
        return pending
    }

    /// The task clocks the marks need, for these tasks.
    private func clockTimes(_ clocks: TaskClocks, tasks: Dictionary<Int32, PendingWork>.Keys) throws -> (streamTimes: [Int32: Int64], timers: [Int32: Int64]) {
        var streamTimes: [Int32: Int64] = [:]
        var timers: [Int32: Int64] = [:]
        for task in tasks {
            streamTimes[task] = try clocks.streamTime(task)
            timers[task] = try clocks.nextTimerDue(task)
        }
        return (streamTimes, timers)
    }

    /// What each owned task can promise by itself, for the marks of other instances.
    private func ownPromises(_ clocks: TaskClocks, echoes: [(key: MergeKey, partition: TopicPartition)]) throws -> [Int32: TaskPromise] {
        let pending = pendingWork(echoes: echoes)
        let (streamTimes, timers) = try clockTimes(clocks, tasks: pending.keys)
        return pending.reduce(into: [:]) { promises, entry in
            promises[entry.key] = ProgressMark.promise(
                of: entry.value, streamTime: streamTimes[entry.key], nextTimer: timers[entry.key],
                timersFireWithoutInput: configuration.timerMode == .wallClock)
        }
    }

    /// The progress marks that differ from those last published: what this instance can promise
    /// now for each of its tasks, from its merge and the task clocks (`echoes`: commands the batch
    /// in hand sent itself, not yet known to the merge).
    private func marksToPublish(_ clocks: TaskClocks, echoes: [(key: MergeKey, partition: TopicPartition)] = []) throws -> [ProgressMark] {
        guard !applier.processor.progressTopics.isEmpty else { return [] }
        var pending = pendingWork(echoes: echoes)
        // Commands from tasks of other instances may come no earlier than their bound (tasks
        // that are independent send none).
        if !applier.processor.tasksAreIndependent, let bound = merger.otherTasksBound, bound != .highest {
            for task in pending.keys {
                if bound == .lowest {
                    pending[task]!.upstream = .none
                } else if case .some(let upstream) = pending[task]!.upstream {
                    pending[task]!.upstream = .some(min(upstream ?? .max, bound.time))
                }
            }
        }
        let (streamTimes, timers) = try clockTimes(clocks, tasks: pending.keys)
        return ProgressMark.marks(
            producer: applier.processor.name, pending: pending, streamTimes: streamTimes, nextTimers: timers,
            timersFireWithoutInput: configuration.timerMode == .wallClock,
            tasksAreIndependent: applier.processor.tasksAreIndependent,
            otherInstances: merger.otherTasksBound == nil ? [] : otherInstancesPromises)
            .filter { publishedMarks[$0.task] != $0 }
    }

    /// A progress mark read from an input partition, checked like a command where commands are
    /// signed; the reason when it is not a valid one.
    private func readMark(_ record: ConsumedRecord) -> Result<ProgressMark, Rejection> {
        do throws(Rejection) {
            let event: CloudEvent
            do { event = try CloudEvent.decode(record.value ?? []) } catch { throw Rejection(code: error.code, detail: error.detail) }
            if applier.processor.commandTopics.contains(record.topic), let keys = applier.commandKeys, let rejection = keys.verify(event) {
                throw rejection
            }
            return .success(try ProgressMark.decode(event, partition: record.partition))
        } catch {
            return .failure(error)
        }
    }

    /// Starts the HTTP API when `HTTP_ADDRESS` is set, and writes where it listens to
    /// `<data dir>/<service>.http` for the CLI.
    private func startHTTP() throws {
        guard let address = configuration.httpAddress else { return }
        let processor = UncheckedSendable(applier.processor)
        let (service, servers, settings) = (configuration.service, configuration.bootstrapServers, configuration.kafkaSettings)
        let platform = applier.processor.platform
        let endpoints = ServiceEndpoints(
            status: status, databasePath: configuration.databasePath, token: configuration.httpToken,
            tokenVariable: configuration.platform.variable("HTTP_TOKEN"),
            memberView: { member, database, asOf in try processor.value.memberView(member, in: database, asOf: asOf) },
            memberResource: { member, resource, database in try processor.value.memberResource(member, resource, in: database) },
            owner: { task in
                try? InstanceDirectory.owner(of: task, service: service, platform: platform, bootstrapServers: servers, kafkaSettings: settings)
            })
        let server = try HTTPServer(address: address, variable: configuration.platform.variable("HTTP_ADDRESS")) { endpoints.handle($0) }
        advertisedAddress = configuration.httpAdvertisedAddress ?? server.boundAddress
        httpServer = server
        try? (server.boundAddress + "\n").write(
            toFile: "\(configuration.dataDirectory)/\(configuration.service).http", atomically: true, encoding: .utf8)
        logger.info("http listening", ["address": server.boundAddress, "token": configuration.httpToken == nil ? "none" : "set"])
    }

    /// Tells the other instances which tasks this one serves, at which address.
    private func announce(tasks: [Int32]) throws {
        announcementDue = false
        guard let advertisedAddress else { return }
        let record = InstanceDirectory.announcement(service: configuration.service, address: advertisedAddress, tasks: tasks)
        try relay.sendUntracked(topic: applier.processor.platform.instances, key: record.key, value: record.value)
    }

    /// Brings what `/ready` and `/metrics` report up to date.
    private func refreshStatus(now: Int64) {
        let committed = committedOffsets
        var ends: [TopicPartition: Int64] = [:]
        for partition in status.snapshot.partitions.keys {
            if let marks = consumer.cachedWatermarks(of: partition) { ends[partition] = marks.high }
        }
        let streamTimes = Dictionary(merger.assignedTasks.compactMap { task in applier.knownStreamTime(task).map { (task, $0) } }) { $1 }
        let inFlight = relay.inFlightCount
        let oldest = relay.oldestInFlightMilliseconds(now: now)
        let extra = applier.processor.metricLines()
        let reached = reachedEnd
        let waits = merger.progressWaits(now: now)
        status.update { snapshot in
            snapshot.progressWaits = waits
            for (partition, var state) in snapshot.partitions {
                if let offset = committed[partition] { state.committed = offset }
                if let end = ends[partition] { state.end = end }
                state.reachedEnd = reached.contains(partition)
                state.streamTime = streamTimes[partition.partition]
                snapshot.partitions[partition] = state
            }
            snapshot.outboxInFlight = inFlight
            snapshot.outboxOldestMilliseconds = oldest
            snapshot.extraMetrics = extra
        }
    }

    /// Keeps the write-ahead log within `WAL_LIMIT_MB`. The checkpointer's passive checkpoints
    /// never block the loop, but under a steady stream of commits they never catch up either, and
    /// SQLite starts the log over only after a checkpoint that did. So past the limit the loop
    /// checkpoints itself, between batches: a passive checkpoint too, which, with no commit of the
    /// only writer in between, copies all there is (unless a reader holds an older snapshot: then
    /// it tries again after the next batch or when idle). It first asks the background checkpointer
    /// to catch up and stand aside (``WALCheckpointer``): when that one kept the checkpoint lock,
    /// this checkpoint answered busy batch after batch through a bulk load and the log grew to ten
    /// times the limit, all of which the first checkpoint that got through then copied with every
    /// record waiting. Once asked, the loop tries when idle too, so that a load that ends leaves
    /// nothing for the next record to wait on. The next commit starts the log over and SQLite cuts
    /// the file back to the limit (`journal_size_limit`). Truncating the file to nothing every time
    /// cost the loop far more (a stop of 50–110 ms every second or two at 5,000 events/s; the file
    /// system returns the blocks and takes them again).
    private func boundWriteAheadLog() throws {
        if erasurePending {
            // The erasure's checkpoint takes the place of the limit's: the background turns go on.
            checkpointer.resume()
            // Tried again a second after a reader held the log; never the WAL limit's waiting checkpoint meanwhile.
            guard monotonicMilliseconds() - lastErasureAttempt >= 1_000 else { return }
            // The log still holds the pages as they were before the erasure: copy it into the
            // database (whose freed space `secure_delete` zeroes) and cut it to nothing. Without
            // waiting for readers (an HTTP lookup): when one is there, try again a second later.
            lastErasureAttempt = monotonicMilliseconds()
            try applier.database.execute("PRAGMA busy_timeout = 0")
            defer { try? applier.database.execute("PRAGMA busy_timeout = \(DatabaseConfiguration(path: "").busyTimeoutMilliseconds)") }
            let busy = (try? applier.database.prepare("PRAGMA wal_checkpoint(TRUNCATE)").queryOne { $0.int64(0) }) ?? 1
            if busy == 0 { erasurePending = false } else { logger.debug("erasure checkpoint busy, retrying in a second") }
            return
        }
        guard configuration.walLimitBytes > 0 else { return }
        var info = stat()
        guard stat(configuration.databasePath + "-wal", &info) == 0, Int64(info.st_size) > configuration.walLimitBytes else {
            checkpointer.resume()
            return
        }
        // After the background checkpointer caught up and stands aside (a batch or two), or
        // after a second of waiting for it.
        guard checkpointer.writerMayCheckpoint() else { return }
        let result = try applier.database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { ($0.int64(0), $0.int64(1), $0.int64(2)) }
        guard let (busy, logFrames, copied) = result, busy == 0 else { return }
        if copied < logFrames {
            logger.debug("WAL over its limit; a reader holds part of it, retrying after the next batch or when idle")
        } else {
            checkpointer.resume()
        }
    }

    /// What the decode-ahead thread made of a poll, handed back to the loop's thread.
    private final class DecodeResults: @unchecked Sendable {
        var value: [Result<Decoded<Processor.Body>, Rejection>?] = []
    }

    /// Takes up to `maxRecords` events from the consumer, waiting at most
    /// `timeoutMilliseconds` for the first. A partition whose records are gone from the
    /// broker stops the loop (`startupError`); other client errors are only logged.
    private func poll(maxRecords: Int, timeoutMilliseconds: Int32) -> [ConsumerEvent] {
        var events: [ConsumerEvent] = []
        var timeout = timeoutMilliseconds
        revokedWhilePolling.removeAll()
        for _ in 0..<maxRecords {
            guard let event = consumer.poll(timeoutMilliseconds: timeout) else { break }
            timeout = 0
            if !revokedWhilePolling.isEmpty {
                // The merge dropped what it held of them, and so go the events polled before
                // the revocation, not handed to it yet: the next owner reads them again.
                events.removeAll { $0.partition.map(revokedWhilePolling.contains) ?? false }
                revokedWhilePolling.removeAll()
            }
            guard case .error(let error, let partition, let offset) = event else {
                events.append(event)
                continue
            }
            if error.code == KafkaError.offsetOutOfRange, let partition {
                startupError = inputLost(partition, readingAt: offset)
                logger.error("input lost", ["error": "\(startupError!)"])
                stop.request()
                break
            }
            logger.warning("consumer error", ["error": error.description])
        }
        return events
    }

    /// Which of `events` are records for the service to decode: not a progress mark, not the
    /// poison record (decoding it is what failed), and within a rebuild's plan.
    private func recordsToDecode(_ events: [ConsumerEvent]) -> [Bool] {
        events.map { event in
            guard case .record(let record) = event else { return false }
            if let replay, !replay.includes(record.offset, of: record.topicPartition) { return false }
            return applier.poisonRejection(for: record) == nil && !ProgressMark.isCandidate(record)
        }
    }

    /// The records of `events` that `plan` marks, decoded (nil for the others). Touches
    /// nothing but its arguments and the processor's decoding, which reads only immutable
    /// settings, so it may run on a thread beside the loop's (`DECODE_AHEAD`).
    private static func decode(
        _ events: [ConsumerEvent], plan: [Bool], processor: Processor, crashNote: CrashNote, slot: CrashNote.Slot,
        trap: (marker: [UInt8], variable: String)?
    ) -> [Result<Decoded<Processor.Body>, Rejection>?] {
        zip(events, plan).map { event, decodes -> Result<Decoded<Processor.Body>, Rejection>? in
            guard decodes, case .record(let record) = event else { return nil }
            // Under the crash note's slot for the thread decoding it.
            crashNote.working(on: record, in: slot)
            defer { crashNote.idle(in: slot) }
            if let trap, let value = record.value, value.contains(trap.marker) {
                fatalError("\(trap.variable): a trap injected on \(record.topicPartition)@\(record.offset)")
            }
            do throws(Rejection) { return .success(try processor.decode(record)) } catch { return .failure(error) }
        }
    }

    /// Hands polled events to the merge in the order polled: records (with what `decoded`
    /// made of them, or read as progress marks) and ends of partitions. Returns whether a
    /// record was buffered.
    @discardableResult
    private func take(_ events: [ConsumerEvent], decoded: [Result<Decoded<Processor.Body>, Rejection>?]) -> Bool {
        precondition(decoded.count == events.count, "an outcome of decoding for every event polled")
        var buffered = false
        for (event, decodedRecord) in zip(events, decoded) {
            switch event {
            case .record(let record):
                if let replay, !replay.includes(record.offset, of: record.topicPartition) {
                    // Beyond what the store in use has applied: not part of the rebuild. Partitions
                    // with producers to wait for are read on for their progress marks; the others
                    // end where the plan does (`capRead`), as if nothing came after.
                    let awaited = merger.awaitedProducers[record.topic]?.isEmpty == false
                    if !awaited { continue }
                    if !ProgressMark.isCandidate(record) {
                        merger.readPast(record.offset, from: record.topicPartition)
                        continue
                    }
                }
                // Of the records within a rebuild's plan, `recordsToDecode` left undecoded only
                // the poison record and progress marks.
                let decoded: Result<Decoded<Processor.Body>, Rejection>
                if let decodedRecord {
                    decoded = decodedRecord
                } else if let poison = applier.poisonRejection(for: record) {
                    decoded = .failure(poison)
                } else {
                    switch readMark(record) {
                    case .success(let mark):
                        merger.noteProgress(mark, offset: record.offset, from: record.topicPartition)
                        continue
                    case .failure(let rejection):
                        decoded = .failure(rejection)
                    }
                }
                let partition = record.topicPartition
                let key = MergeKey(of: decoded, record: record)
                merger.add(
                    PolledRecord(record: record, decoded: decoded), key: key, offset: record.offset, from: partition,
                    heldUntilSent: replay != nil && isOwnCommand(record, decoded))
                buffered = true
                // Sorted partitions are never paused: an echo the merge waits for may be in them;
                // nor one read on for a producer's progress mark the merge waits for, until a mark
                // read promises it (see `resumePartitions`).
                if merger.bufferedCount(partition) >= pauseThreshold, !paused.contains(partition),
                   !merger.sortedTopics.contains(partition.topic), !merger.waitsForProgress(on: partition),
                   !(merger.carriesProgress(partition) && merger.isHeldByOtherTasks) {
                    consumer.pause([partition])
                    paused.insert(partition)
                }
            case .endOfPartition(let partition, let offset):
                merger.markCaughtUp(partition, at: offset)
                reachedEnd.insert(partition)
            case .error:
                break
            }
        }
        return buffered
    }

    /// Tells the merge where the broker last said each empty partition ends, so a partition
    /// with records fetched but not yet polled holds the merge.
    private func refreshEnds() {
        for partition in merger.emptyPartitions {
            if let marks = consumer.cachedWatermarks(of: partition) { merger.updateEnd(partition, to: marks.high) }
        }
    }

    /// The error for a partition whose records from `offset` on are gone from the broker.
    private func inputLost(_ partition: TopicPartition, readingAt offset: Int64) -> Error {
        let marks = (try? consumer.logBounds(of: [partition]))?[partition]
        return InputLostError(partition: partition, offset: offset, logStart: marks?.low, logEnd: marks?.high)
    }

    /// Resumes paused partitions whose buffers have drained.
    private func resumePartitions() {
        // A partition whose producer's progress mark the merge waits for is read on however
        // much it holds: the mark comes after the records it holds back, and a paused partition
        // would never be read to it (the merge, waiting, would never drain it either). Once a
        // mark read promises what the merge waits for, it may be paused again: a producer far
        // ahead is then held in Kafka rather than in this process's memory.
        // While other instances' tasks hold the merge, it does not look at promises at all, and
        // a mark on a paused partition may be what holds this task's frontier, and so theirs:
        // partitions carrying marks are read on until the hold ends.
        let heldByOthers = merger.isHeldByOtherTasks
        let resumable = paused.filter {
            merger.bufferedCount($0) < pauseThreshold / 2 || merger.waitsForProgress(on: $0) || (heldByOthers && merger.carriesProgress($0))
        }
        if !resumable.isEmpty {
            consumer.resume(Array(resumable))
            paused.subtract(resumable)
        }
    }

    // MARK: Replay

    /// Refuses a rebuild on a broker that cannot hold what the store in use has read: another
    /// cluster, or one whose partitions end before the store's offsets.
    private func checkReplayable(_ plan: ReplayPlan) throws {
        if let expected = plan.clusterID, let actual = consumer.clusterID(timeoutMilliseconds: 5_000), expected != actual {
            throw ConfigurationError(
                variable: configuration.platform.variable("BOOTSTRAP_SERVERS"),
                problem: "the store was built from Kafka cluster \(expected), but the broker is cluster \(actual): rebuild against the service's own broker")
        }
        let partitions = Array(plan.offsets.keys) + Array(plan.appliedAbove.keys)
        let bounds = try consumer.logBounds(of: Array(Set(partitions)))
        for partition in Set(partitions).sorted(by: { $0.description < $1.description }) {
            guard let high = bounds[partition]?.high, plan.end(of: partition) <= high else {
                throw ConfigurationError(
                    variable: configuration.platform.variable("REPLAY_OF"),
                    problem: "the store has read \(partition) to \(plan.end(of: partition)), but the broker holds \(bounds[partition].map { String($0.high) } ?? "no such partition"): "
                        + "rebuild against the service's own broker")
            }
        }
    }

    /// Whether a record is a command this service sent itself (on one of its sorted input
    /// topics, from its own source): a rebuild holds it until it sends it again.
    private func isOwnCommand(_ record: ConsumedRecord, _ decoded: Result<Decoded<Processor.Body>, Rejection>) -> Bool {
        guard case .success = decoded, merger.sortedTopics.contains(record.topic), let value = record.value,
              let event = try? CloudEvent.decode(value) else { return false }
        return event.source == applier.processor.platform.source(of: applier.processor.name)
    }

    /// Whether the rebuild has applied every record of its plan; says how far it is every two
    /// seconds. A rebuild that has read everything and applies nothing more for ten seconds
    /// also ends (saying what it holds): the comparison then shows what is missing.
    private func replayIsDone(_ plan: ReplayPlan, now: Int64) -> Bool {
        guard everAssigned, applier.partitionCount > 0 else { return false }
        var read: Int64 = 0
        var total: Int64 = 0
        var complete = merger.assignedTasks.count == Int(applier.partitionCount)
        for topic in applier.processor.inputTopics {
            for task in 0..<applier.partitionCount {
                let partition = TopicPartition(topic: topic, partition: task)
                let end = plan.end(of: partition)
                let position = merger.position(of: partition) ?? 0
                read += min(position, end)
                total += end
                if position < end { complete = false }
            }
        }
        let done = totals.applied + totals.duplicates + totals.deadLettered + totals.timersFired
        if read != replayProgress.read || done != replayProgress.done {
            replayProgress = ReplayProgress(read: read, done: done, changedAt: now, reportedAt: replayProgress.reportedAt)
        }
        let finished = complete && merger.bufferedCount == 0 && merger.heldCount == 0 && !applier.hasWorkLeftOver
            && relay.rowsToDelete.isEmpty
        // Long enough for the grace of every empty partition, and then some.
        let stalled = !finished && complete && now - replayProgress.changedAt >= max(30_000, 3 * configuration.taskIdleMilliseconds)
        if finished || stalled || now - replayProgress.reportedAt >= 2_000 {
            replayProgress.reportedAt = now
            let share = total == 0 ? 100 : Int(read * 100 / total)
            ReplayOutput.say("replaying \(applier.processor.name): read \(share)% (\(read) of \(total) records), "
                + "applied \(totals.applied), timers fired \(totals.timersFired), dead-lettered \(totals.deadLettered)")
        }
        if stalled {
            rebuildIsIncomplete = true
            ReplayOutput.say("the rebuild applies nothing more: \(merger.bufferedCount) records still wait, "
                + "\(merger.heldCount) commands it never sent, \(merger.pendingEchoes) it sent and never read; waiting for: "
                + merger.progressWaits(now: now).map { "\($0.producer) on \($0.partition)" }.joined(separator: ", ")
                + "; earliest waiting: \(merger.earliestBuffered.map { "\($0.id) at \(EventTime(millis: $0.time))" } ?? "none")"
                + "; not sent: \(merger.heldIDs(limit: 3).joined(separator: ", "))"
                + "; not read: \(merger.overdueEchoes(now: now, after: -1).prefix(3).map(\.id).joined(separator: ", "))")
        }
        return finished || stalled
    }

    // MARK: RebalanceListener

    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        do {
            let offsets = try applier.storedOffsets(partitions)
            // An offset past the end means the state belongs to another cluster (say, an
            // earlier embedded broker) or the broker lost data; one below the log start, or a
            // partition never read whose beginning is gone, means records were deleted unread.
            // Either way: refuse rather than skip records.
            let bounds = try consumer.logBounds(of: partitions)
            for partition in partitions.sorted(by: { $0.description < $1.description }) {
                let marks = bounds[partition]!
                let offset = offsets[partition] ?? 0
                if offset > marks.high || offset < marks.low {
                    throw InputLostError(partition: partition, offset: offset, logStart: marks.low, logEnd: marks.high)
                }
            }
            applier.forget(tasks: partitions.map(\.partition))
            // Every owned task's frontier is committed anew after a rebalance.
            committedFrontiers = [:]
            merger.assign(partitions, positions: offsets, marks: try applier.storedMarks(partitions))
            if let replay {
                for partition in partitions where merger.awaitedProducers[partition.topic]?.isEmpty ?? true {
                    merger.capRead(partition, at: replay.end(of: partition))
                }
            }
            for echo in try applier.storedEchoes(partitions) { merger.expectEcho(echo.key, on: echo.partition, now: monotonicMilliseconds()) }
            // Rows another instance committed but did not publish (an echo awaited here among them).
            let republished = try relay.republishUnsent(from: applier.database)
            if republished > 0 { logger.info("republished unsent outbox rows", ["rows": String(republished)]) }
            everAssigned = true
            announcementDue = true
            status.update { snapshot in
                snapshot.rebalances += 1
                for partition in partitions {
                    snapshot.partitions[partition] = ServiceStatus.Partition(
                        committed: offsets[partition] ?? 0, end: nil, reachedEnd: false, streamTime: nil)
                }
            }
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
        revokedWhilePolling.formUnion(partitions)
        reachedEnd.subtract(partitions)
        announcementDue = true
        status.update { snapshot in
            snapshot.rebalances += 1
            for partition in partitions { snapshot.partitions[partition] = nil }
        }
        merger.revoke(partitions)
        applier.forget(tasks: partitions.map(\.partition))
        for partition in partitions { publishedMarks[partition.partition] = nil }
        committedFrontiers = [:]
        // The next owner commits these tasks' frontiers; until it does, other instances wait.
        if replay == nil {
            do {
                try applier.forgetFrontiers(of: Array(Set(partitions.map(\.partition))).sorted())
            } catch {
                logger.warning("could not mark the frontiers of revoked tasks as unknown", ["error": "\(error)"])
            }
        }
        // librdkafka keeps an application's pause through a rebalance: a partition assigned
        // back would never be fetched again.
        let wasPaused = partitions.filter { paused.contains($0) }
        if !wasPaused.isEmpty { consumer.resume(wasPaused) }
        paused.subtract(partitions)
        for partition in partitions { committedOffsets[partition] = nil }
        logger.info("partitions revoked", ["partitions": partitions.map(\.description).sorted().joined(separator: ",")])
    }
}

/// Records a service must read are not in the broker: deleted by retention before the
/// service read them, or the store's offsets belong to another cluster.
public struct InputLostError: Error, CustomStringConvertible {
    public var partition: TopicPartition
    /// The next offset the service must read.
    public var offset: Int64
    /// The partition's first and next offsets, when the broker answered.
    public var logStart: Int64?
    public var logEnd: Int64?

    public var description: String {
        guard let logStart, let logEnd else {
            return "\(partition): cannot read from offset \(offset), which the broker no longer holds; stopping rather than skip records"
        }
        if offset > logEnd {
            return "\(partition): the stored offset \(offset) is past the end of the partition (\(logEnd)): the store belongs to "
                + "another Kafka cluster or the broker lost data; stopping rather than skip records. Start with a fresh data directory "
                + "only if that is what you mean"
        }
        return "\(partition): records \(offset)..<\(logStart) were deleted (retention) before the service read them; the partition "
            + "now holds \(logStart)..<\(logEnd). Stopping rather than skip them: republish what was lost, or restore the store, "
            + "before starting again"
    }
}

/// How far a rebuild (the platform's replay command) has come, for its progress lines.
struct ReplayProgress {
    var read: Int64 = 0
    var done = 0
    var changedAt: Int64 = monotonicMilliseconds()
    var reportedAt: Int64 = 0
}

/// Lines for the person running a rebuild, on standard output (the log is on standard error).
public enum ReplayOutput {
    public static func say(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }
}

/// Milliseconds of a monotonic clock, for waits and reports only.
func monotonicMilliseconds() -> Int64 {
    Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
}

extension ConsumerEvent {
    /// The partition the event is of (nil: a client error of none).
    fileprivate var partition: TopicPartition? {
        switch self {
        case .record(let record): record.topicPartition
        case .endOfPartition(let partition, _): partition
        case .error(_, let partition, _): partition
        }
    }
}
