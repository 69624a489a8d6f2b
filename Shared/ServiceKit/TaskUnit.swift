import Foundation
import Basics
import Messaging
import Storage

/// The tasks one store serves, and everything that works on them between two polls: the merge
/// of their partitions, the batch applied to the store, the outbox relay that publishes it, the
/// write-ahead log's checkpoints, the timer census, the progress marks and frontiers they
/// promise, and a pending erasure's checkpoint.
///
/// The loop polls the consumer, decodes, and hands each record to the unit of its task; the
/// unit does the rest. In the `service` store layout one unit holds every task the instance
/// owns, in the one store of the service; in the `task` layout each task has a unit and a
/// store of its own (architecture.md, "The first slice, step by step").
final class TaskUnit<Processor: StreamProcessor> {
    /// The task whose store this is; nil: the store of every task (the `service` layout).
    let task: Int32?
    /// Where the store is.
    let databasePath: String
    let applier: BatchApplier<Processor>
    var merger: EventTimeMerger<PolledRecord<Processor.Body>>
    let relay: OutboxRelay
    private let checkpointer: WALCheckpointer
    private let timerCensus: TimerCensus
    /// Held while the store is open, so the platform's tools know it is in use.
    private let storeLock: FileUseLock?
    private let configuration: ServiceConfiguration
    private let logger: Logger
    /// Rebuilding a store from history (the platform's replay command): no frontiers are shared.
    private let rebuilding: Bool
    /// The input offsets the last commit stored, per partition.
    private(set) var committedOffsets: [TopicPartition: Int64] = [:]
    /// A batch erased personal data and the write-ahead log has not been truncated since.
    private var erasurePending = false
    private var lastErasureAttempt: Int64 = 0
    /// The progress marks last published (``ProgressMark``), by progress topic and task.
    private var publishedMarks: [String: [Int32: ProgressMark]] = [:]
    /// The frontiers last committed for the tasks this instance owns, while it shares the
    /// store's tasks with other instances (``EventTimeMerger/frontier(of:)``).
    private var committedFrontiers: [Int32: TaskFrontier] = [:]
    /// The promises of the tasks other instances own, as last read with their frontiers.
    private var otherInstancesPromises: [TaskPromise] = []
    /// In a task's own store of a service whose tasks send each other commands: the marks of
    /// the other tasks read on this task's partitions, which hold its merge (architecture.md,
    /// step 9); nil otherwise.
    private(set) var peerBook: PeerMarkBook?
    /// The peer marks read since the last commit (to store with the offsets past them).
    private var peerMarksChanged = false
    private var lastFrontierRepair: Int64 = 0
    private var lastMarkCheck: Int64 = 0

    /// `changelogProducer`: the producer of the store's changelog, when it keeps one.
    /// `timers`: told the census of pending and due timers every two seconds.
    init(
        task: Int32?, databasePath: String, configuration: ServiceConfiguration, applier: BatchApplier<Processor>,
        storeLock: FileUseLock?, changelogProducer: KafkaProducer?, rebuilding: Bool, logger: Logger,
        timers: @escaping @Sendable ([Int32: (pending: Int64, due: Int64)]) -> Void
    ) throws {
        self.task = task
        self.databasePath = databasePath
        self.configuration = configuration
        self.applier = applier
        self.storeLock = storeLock
        self.rebuilding = rebuilding
        self.logger = logger
        let processor = applier.processor
        if processor.storesPersonalData {
            // An erasure committed just before the last stop may still be in the log.
            erasurePending = true
        }
        let database = applier.database
        // Checkpoints happen on a connection of their own, not inside the loop's commits.
        try database.execute("PRAGMA wal_autocheckpoint = 0")
        let walLimit = configuration.walLimitBytes
        // A log SQLite starts over is cut back to the limit, which is what `boundWriteAheadLog` watches.
        if walLimit > 0 { try database.execute("PRAGMA journal_size_limit = \(walLimit)") }
        checkpointer = try WALCheckpointer(
            path: databasePath, intervalMilliseconds: 200, hurryAboveBytes: walLimit > 0 ? walLimit / 2 : nil, logger: logger)
        timerCensus = try TimerCensus(
            path: databasePath, mode: configuration.timerMode, intervalMilliseconds: 2_000, logger: logger, report: timers)
        merger = EventTimeMerger(
            topics: processor.inputTopics, sortedTopics: processor.sortedInputTopics,
            serviceTopics: processor.serviceInputTopics, idleMilliseconds: configuration.taskIdleMilliseconds,
            awaitedProducers: configuration.awaitedProducers(declared: processor.upstreamProducers))
        merger.rebuilding = rebuilding
        if configuration.storePerTask, let task, !processor.tasksAreIndependent {
            peerBook = try applier.storedPeerBook(task: task, tasks: 0..<applier.partitionCount)
            merger.peersWriteSortedPartitions = true
            // Its peer marks promise past the records that reach no other task.
            merger.reachesOtherTasks = { polled in
                guard case .success(let input) = polled.decoded, input.isRelevant else { return false }
                return processor.mayCommandOtherTasks(input)
            }
        }
        // No gaps: a batch the producer gives up on after retries is a fatal error (the service
        // stops and republishes its outbox in order at the next start) rather than a hole that
        // later rows, a progress mark behind a command, would be delivered past.
        if rebuilding {
            relay = OutboxRelay(discardingWith: logger)
        } else {
            let producer = try KafkaProducer(ProducerConfiguration(
                bootstrapServers: configuration.bootstrapServers,
                extra: ["enable.gapless.guarantee": "true"].merging(configuration.kafkaSettings) { $1 }))
            relay = OutboxRelay(producer: producer, logger: logger)
            if let changelogProducer, let topic = applier.changelog?.topic { relay.sendChangelog(to: topic, through: changelogProducer) }
        }
    }

    /// Whether anything waits to be committed without a record: timers or a record carried
    /// over from the last batch, or outbox rows delivered and not yet deleted.
    var hasWorkLeftOver: Bool { !handedOver && (applier.hasWorkLeftOver || !relay.rowsToDelete.isEmpty) }

    /// Whether an empty batch is due: the promise may have grown (a partition read to its end),
    /// records read past (progress marks) may have moved the offsets to store, or other
    /// instances wait for this one's frontiers (records fetched, say). Looked at every 50 ms
    /// for the first two.
    func needsEmptyBatch(now: Int64) throws -> Bool {
        if now - lastMarkCheck >= 50 {
            lastMarkCheck = now
            let promised = try !applier.processor.progressTopics.isEmpty && !marksToPublish(applier.currentClocks()).isEmpty
            let readPast = merger.committableOffsets.contains { committedOffsets[$0.key] != $0.value }
            return promised || readPast || peerMarksChanged || peerMarksToPublish() != nil
        }
        return try task == nil && merger.otherTasksBound != nil && !frontiersToCommit(applier.currentClocks()).isEmpty
    }

    /// Commits one batch: `first` and then whatever the merge releases, up to the batch size,
    /// with the echoes the batch sends itself holding back what sorts after them; with it the
    /// progress marks and frontiers it changed, the input offsets, and the deletion of the
    /// outbox rows delivered since the last batch. Returns what it applied and the records it
    /// pulled from the merge; ``publish(_:)`` sends what it wrote.
    func commitBatch(startingWith first: PolledRecord<Processor.Body>?, wallClock: EventTime?) throws -> (outcome: BatchOutcome, pulled: Int) {
        let delivered = relay.rowsToDelete
        var pending = first
        var pulled = 0
        let limit = configuration.maxBatchRecords
        let now = monotonicMilliseconds()
        var published: [(topic: String, mark: ProgressMark)] = []
        var bookPublished: PeerMarkBook?
        var frontiers: [Int32: TaskFrontier] = [:]
        // Echoes the merge was told of while the batch ran (a rebuild may have merged their copy since).
        var expectedInBatch: Set<ExactText> = []
        guard let outcome = try whileOwned({ try applier.apply(
            nextRecord: { newEchoes in
                for echo in newEchoes {
                    merger.expectEcho(echo.key, on: echo.partition, now: now)
                    expectedInBatch.insert(ExactText(echo.key.id))
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
                for (topic, mark) in published { try batch.emit(mark, to: topic) }
                if let book = self.peerBook {
                    if let (marks, next) = self.peerMarksToPublish(echoes: batch.echoes, commandsSent: batch.peerCommands),
                       let topic = self.applier.peerTopic {
                        for mark in marks { try batch.emit(mark, to: topic, partition: mark.to) }
                        bookPublished = next
                        try self.applier.storePeerBook(next)
                    } else if self.peerMarksChanged, self.merger.assignedTasks.contains(book.task) {
                        // Never by a revoked unit finishing its outbox: the task's next owner keeps the book.
                        try self.applier.storePeerBook(book)
                    }
                }
            }) }) else { return (BatchOutcome(), pulled) }
        for (topic, mark) in published { publishedMarks[topic, default: [:]][mark.task] = mark }
        if let bookPublished {
            peerBook = bookPublished
            // Holds on the peers it just sent commands to.
            merger.otherTasksBound = bookPublished.bound
        }
        peerMarksChanged = false
        committedFrontiers.merge(frontiers) { $1 }
        relay.deleted(delivered.count)
        committedOffsets.merge(merger.committableOffsets) { $1 }
        for echo in outcome.echoes where !expectedInBatch.contains(ExactText(echo.key.id)) { merger.expectEcho(echo.key, on: echo.partition, now: now) }
        return (outcome, pulled)
    }

    /// Publishes what a committed batch wrote to the outbox, and keeps the write-ahead log
    /// within its limit (truncating it after an erasure).
    func publish(_ outcome: BatchOutcome) throws {
        if let marker = configuration.faultKillAfterCommit.map({ Array($0.utf8) }),
           outcome.outbox.contains(where: { $0.value.map { $0.contains(marker) } ?? false }) {
            logger.warning("\(configuration.platform.variable("FAULT_KILL_AFTER_COMMIT")): killing the process after commit, before publishing")
            kill(getpid(), SIGKILL)
        }
        if outcome.erasedPersonalData { erasurePending = true }
        try handingOver { try relay.publish(outcome.outbox) }
        try boundWriteAheadLog()
    }

    /// Between batches: a pending erasure's checkpoint, or, with no batch this turn, the
    /// checkpoint the background checkpointer was asked to stand aside for.
    func checkpointIfDue(batchRan: Bool) throws {
        // A batch bounds the log after its commit; idle, the loop's checkpoint delays no
        // record, and the background checkpointer stands aside for it once asked.
        if erasurePending || (!batchRan && checkpointer.writerAsked) { try boundWriteAheadLog() }
    }

    /// Whether nothing of the unit is left to publish or to commit, and no erased data is left
    /// in the write-ahead log: a unit whose task was revoked is closed once it is.
    var isSettled: Bool { handedOver || (relay.inFlightCount == 0 && !hasWorkLeftOver && !erasurePending) }

    /// Another instance took the task over while this one still sent or applied it: the unit
    /// sends and commits nothing more. Either the task was revoked here and its changelog
    /// taken over before this one had sent all of it (the new owner restored the store from
    /// what the changelog held and applies the rest again, with the same ids), or an instance
    /// sharing the store's file was given the task and claimed it before this one heard of
    /// its revocation (the new owner goes on from what the store holds, and sends again what
    /// this one committed and may not have sent).
    private(set) var handedOver = false
    /// When the unit was handed over while its task was still assigned here (monotonic milliseconds).
    private(set) var handedOverAt: Int64?

    /// Runs `work`, which commits to the store; nil, and the unit handed over, if another
    /// instance claimed the store's task meanwhile (``TaskTakenOver``).
    func whileOwned<T>(_ work: () throws -> T) throws -> T? {
        do {
            return try work()
        } catch let error as TaskTakenOver {
            handedOver = true
            handedOverAt = monotonicMilliseconds()
            logger.info("task handed over", [
                "task": task.map(String.init) ?? "all", "reason": error.description,
                "then": "the instance it was given to goes on from the store",
            ])
            return nil
        }
    }

    /// Serves the relay's delivery reports and sends what waits (``OutboxRelay/poll(timeoutMilliseconds:)``).
    func pollRelay(timeoutMilliseconds: Int32 = 0) throws {
        guard !handedOver else { return }
        try handingOver { try relay.poll(timeoutMilliseconds: timeoutMilliseconds) }
    }

    /// Runs `work`, which sends through the relay; a revoked task's changelog taken over
    /// meanwhile hands the unit over rather than failing (an owned one's still fails: this
    /// instance was dropped from the group without knowing).
    private func handingOver(_ work: () throws -> Void) throws {
        do {
            try work()
        } catch let error as ChangelogTakenOver where merger.assignedTasks.isEmpty {
            handedOver = true
            logger.info("task handed over", [
                "task": task.map(String.init) ?? "all", "reason": error.description,
                "then": "the new owner applies again what its changelog lacked",
            ])
        }
    }

    /// Stops the background checkpointer and the timer census.
    func close() {
        checkpointer.stop()
        timerCensus.stop()
    }

    // MARK: Assignment

    /// Takes on `partitions`, read from `offsets` (and the marks and echoes the store holds
    /// for them). `ends`: where the broker said they ended at the assignment. `readUpTo`: where
    /// a rebuild stops reading a partition, if it does.
    func assign(
        _ partitions: [TopicPartition], offsets: [TopicPartition: Int64], ends: [TopicPartition: Int64],
        readUpTo: ((TopicPartition) -> Int64)?
    ) throws {
        applier.forget(tasks: partitions.map(\.partition))
        // Every owned task's frontier is committed anew after a rebalance.
        committedFrontiers = [:]
        merger.assign(partitions, positions: offsets, marks: try applier.storedMarks(partitions), ends: ends)
        if let readUpTo {
            for partition in partitions where merger.awaitedProducers[partition.topic]?.isEmpty ?? true {
                merger.capRead(partition, at: readUpTo(partition))
            }
        }
        for echo in try applier.storedEchoes(partitions) { merger.expectEcho(echo.key, on: echo.partition, now: monotonicMilliseconds()) }
        if peerBook != nil {
            // Published again, in an epoch past what its last owners published (see tookOver).
            // With a changelog, the new epoch is past where it ended. Without one, a task that
            // moves to another host starts a new store there, whose own epochs start over: the
            // machine clock's milliseconds (bookkeeping, no rule's decision) keep the new
            // owner's past the last's as long as the hosts' clocks agree better than the time
            // between two take-overs.
            let floor = applier.changelogEndAtTakeOver ?? Int64(Date().timeIntervalSince1970 * 1000)
            // From the store: a unit assigned back while still open may hold an older book than
            // what another instance on this host wrote meanwhile (its holds among it).
            peerBook = try applier.storedPeerBook(task: peerBook!.task, tasks: 0..<applier.partitionCount)
            peerBook!.tookOver(atLeast: floor)
            merger.otherTasksBound = peerBook!.bound
        }
        // Rows another instance committed but did not publish (an echo awaited here among them).
        let republished = try relay.republishUnsent(from: applier.database)
        if republished > 0 { logger.info("republished unsent outbox rows", ["rows": String(republished)]) }
    }

    /// Gives up `partitions`: what the merge holds of them, their marks and frontiers.
    func revoke(_ partitions: [TopicPartition]) {
        merger.revoke(partitions)
        applier.forget(tasks: partitions.map(\.partition))
        for partition in partitions {
            for topic in publishedMarks.keys { publishedMarks[topic]![partition.partition] = nil }
        }
        committedFrontiers = [:]
        // The next owner commits these tasks' frontiers; until it does, other instances wait.
        if !rebuilding, task == nil {
            do {
                try applier.forgetFrontiers(of: Array(Set(partitions.map(\.partition))).sorted())
            } catch {
                logger.warning("could not mark the frontiers of revoked tasks as unknown", ["error": "\(error)"])
            }
        }
        for partition in partitions { committedOffsets[partition] = nil }
    }

    // MARK: Frontiers and progress marks

    /// With other instances owning some of the tasks: refreshes the merge's bound from the
    /// frontiers they committed and the commands on their way (nil when this instance owns
    /// every task, or rebuilds a store).
    func refreshOtherTasksBound() throws {
        if let peerBook {
            merger.otherTasksBound = peerBook.bound
            return
        }
        let owned = merger.assignedTasks
        // A task's own store holds no other task's frontier; its tasks are independent, and
        // need none (`ExactlyOnceLoop`, the `task` layout).
        guard !rebuilding, task == nil, !owned.isEmpty, owned.count < Int(applier.partitionCount) else {
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
        guard task == nil, merger.otherTasksBound != nil else { return [:] }
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

    /// Notes another task's peer mark read on this task's `partition` at `offset`.
    func notePeerMark(_ mark: PeerMark, offset: Int64, from partition: TopicPartition) {
        merger.readPast(offset, from: partition)
        guard peerBook != nil else { return }
        peerBook!.read(mark)
        peerMarksChanged = true
        merger.otherTasksBound = peerBook!.bound
    }

    /// This task's peer marks to publish, and its book once they are (nil: nothing new to
    /// say, ``PeerMarkBook/publishing(earliestSender:commandsSent:)``). Its own promise is the
    /// earliest of what its merge holds or awaits (`frontier(of:)`: buffered records that may
    /// send another task a command, a partition behind its end, the producers it waits for),
    /// such a record carried over to the next batch and the commands it sent itself
    /// (`echoes`: the batch in hand's, not yet known to the merge). Its timers are not
    /// counted: they may send other tasks no command (``PeerCommandRefused``).
    /// `commandsSent`: the batch's commands to other tasks.
    private func peerMarksToPublish(
        echoes: [(key: MergeKey, partition: TopicPartition)] = [], commandsSent: [Int32: MergeKey] = [:]
    ) -> (marks: [PeerMark], book: PeerMarkBook)? {
        // A task revoked here (its unit waits to be closed) has no lanes, so its frontier would
        // say it holds no one: it promises nothing for its next owner, who publishes anew.
        guard let book = peerBook, merger.assignedTasks.contains(book.task) else { return nil }
        // What other tasks sent it and it has not read yet is theirs to cover (their own
        // figures, as this task read them last, hold it): counted here, a lane that other
        // tasks' marks keep a little behind its end would hold every task for ever, each
        // mark putting the next task's lane behind again.
        var earliest = merger.frontier(
            of: book.task, unreadCountsNothingOn: applier.peerTopic.map { [$0] } ?? [], onlyWhatReachesOtherTasks: true)
        if let carried = applier.carriedRecord, merger.reachesOtherTasks?(carried) ?? true {
            earliest = min(earliest, MergeKey(of: carried.decoded, record: carried.record))
        }
        if let echo = merger.earliestEcho(of: book.task) { earliest = min(earliest, echo) }
        for echo in echoes where echo.partition.partition == book.task { earliest = min(earliest, echo.key) }
        return book.publishing(earliestSender: earliest, commandsSent: commandsSent)
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

    /// The progress marks that differ from those last published, by progress topic: what this
    /// instance can promise now for each of its tasks, from its merge and the task clocks
    /// (`echoes`: commands the batch in hand sent itself, not yet known to the merge), lowered on
    /// each topic to what the processor says it still owes there.
    private func marksToPublish(_ clocks: TaskClocks, echoes: [(key: MergeKey, partition: TopicPartition)] = []) throws -> [(topic: String, mark: ProgressMark)] {
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
        let marks = ProgressMark.marks(
            producer: applier.processor.name, pending: pending, streamTimes: streamTimes, nextTimers: timers,
            timersFireWithoutInput: configuration.timerMode == .wallClock,
            tasksAreIndependent: applier.processor.tasksAreIndependent,
            otherInstances: merger.otherTasksBound == nil ? [] : otherInstancesPromises)
        let bounds = try applier.processor.progressBounds(of: marks.map(\.task), in: applier.database)
        return applier.processor.progressTopics.flatMap { topic in
            marks.map { (topic: topic, mark: $0.lowered(to: bounds[$0.task]?[topic])) }
                .filter { publishedMarks[topic]?[$0.mark.task] != $0.mark }
        }
    }

    // MARK: The write-ahead log

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
        guard stat(databasePath + "-wal", &info) == 0, Int64(info.st_size) > configuration.walLimitBytes else {
            checkpointer.resume()
            return
        }
        // After the background checkpointer caught up and stands aside (a batch or two), or
        // after a second of waiting for it. A writer faster than the turns would write on
        // meanwhile: past twice the limit it writes nothing more until it has checkpointed.
        if !checkpointer.writerMayCheckpoint() {
            guard Int64(info.st_size) > 2 * configuration.walLimitBytes else { return }
            while !checkpointer.writerMayCheckpoint() { usleep(1_000) }
        }
        let result = try applier.database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { ($0.int64(0), $0.int64(1), $0.int64(2)) }
        guard let (busy, logFrames, copied) = result, busy == 0 else { return }
        if copied < logFrames {
            logger.debug("WAL over its limit; a reader holds part of it, retrying after the next batch or when idle")
        } else {
            checkpointer.resume()
        }
    }
}
