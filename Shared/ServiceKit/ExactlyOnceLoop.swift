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
    /// Decodes every record; in the `service` layout it applies them too.
    private let processor: Processor
    /// Makes the processor of each task's unit in the `task` layout, so that units apply on
    /// threads of their own; nil: ``processor`` serves every unit, one after another.
    private let makeProcessor: (() -> Processor)?
    /// How many threads apply the units (`THREADS` in the `task` layout with a processor
    /// per task; otherwise 1, the loop's own). Task *p* is applied on thread *p* mod this:
    /// with one, the loop's own; with more, ``turnWorkers``.
    private let threadCount: Int
    /// The task threads while the loop runs (none with one thread): a rebalance waits for
    /// their turn (``waitForTurnUnderWay()``).
    private var turnWorkers: [HandOffThread] = []
    /// The results of the turn the task threads are on, until ``finishTurns(_:on:)`` takes them.
    private var turnUnderWay: [ShareResult]?
    /// The units the owned tasks are applied in: in the `service` store layout one, of every
    /// task, for the loop's whole life; in the `task` layout one per task, opened as the task is
    /// assigned and closed once it is revoked and its outbox is delivered.
    private var units: [TaskUnit<Processor>] = []
    /// The `service` layout's one unit: the only layout with broadcast topics, standbys and rebuilds.
    private var serviceUnit: TaskUnit<Processor> { units[0] }
    /// The crash notes of the last start (one per thread that failed), until the stores of the
    /// tasks they name are opened (the `task` layout; the `service` layout counts its strike at once).
    private var strikeNotes: [CrashNote.Note] = []
    /// Until the first assignment is taken on (the `task` layout): a store opened counts the
    /// last start's strike if the note names its task, and otherwise forgets its own (they
    /// are of an earlier start: not two in a row).
    private var strikesToSettle = false
    /// The cluster the stores belong to, once the broker said.
    private var clusterID: String?
    /// The partition count of the input topics, once the broker said.
    private var partitionCount: Int32 = 0
    /// Sends the instance's announcements where no unit lives for the loop's whole life.
    private var announcer: OutboxRelay?
    /// Checks the signatures of progress marks on command topics.
    private let commandKeys: CommandKeys?
    private let logger: Logger
    private let stop: StopSignal
    private var consumer: KafkaConsumer!
    private var broadcast: BroadcastReader?
    /// The `task` layout: every broadcast record read since the start, in the order read. Each
    /// owned task's store applies them from where its own offsets stand, so a store opened or
    /// assigned later catches up from here.
    private var broadcastRecords: [ConsumedRecord] = []
    private let crashNote: CrashNote
    /// Tells the platform's tools (a broker reset, say) that the database is open here (the
    /// `service` layout; in the `task` layout each unit holds its store's).
    private let useLock: FileUseLock?
    /// A standby's stores (`STANDBY`): `run` keeps each a copy of the changelog, or of its
    /// task's partition of it (every task's store in the `task` layout).
    private var standbyCopies: [StandbyCopy] = []
    /// Warm copies of tasks other instances own (`STANDBY_REPLICAS` in the `task` layout),
    /// kept beside the loop once it is connected.
    private var warmCopies: WarmCopies?
    /// The `task` layout's hold on the data directory: shared by instances that share it, and
    /// held alone by one that keeps warm copies (whose copies are files other instances there
    /// would open as their task stores).
    private let directoryLock: FileUseLock?
    /// The name this instance announces itself under when it serves no HTTP but keeps warm
    /// copies (the others must count it among the live instances).
    private var instanceName: String?
    private var paused: Set<TopicPartition> = []
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
    /// they are all applied. `makeProcessor`: makes a processor like `processor`, one for each
    /// task's unit in the `task` layout, which lets the units apply on `THREADS` threads.
    public init(
        configuration: ServiceConfiguration, processor: Processor, makeProcessor: (() -> Processor)? = nil,
        logger: Logger, stop: StopSignal, replay: ReplayPlan? = nil
    ) throws {
        self.configuration = configuration
        self.processor = processor
        self.makeProcessor = configuration.storePerTask ? makeProcessor : nil
        threadCount = configuration.storePerTask && makeProcessor != nil ? configuration.threads : 1
        self.replay = replay
        self.logger = logger
        self.stop = stop
        status = ServiceStatus(service: configuration.service, metricPrefix: configuration.platform.metricPrefix)
        commandKeys = try configuration.commandKeys()
        // A record this service failed on at the last start (trap, fault or error) counts a
        // strike; at two in a row it is dead-lettered when it comes (`poison-record`). The
        // note is taken once the store (or the layout) is known to be this instance's.
        let notePath = configuration.databasePath + ".crash"
        if configuration.storePerTask {
            try Self.checkStoresPerTask(configuration: configuration, processor: processor, rebuilding: replay != nil)
            let directory = (configuration.databasePath as NSString).deletingLastPathComponent
            if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            // Each task's store is opened as the task is assigned, and counts the note's strike then.
            directoryLock = try Self.claimDataDirectory(configuration)
            strikeNotes = CrashNote.take(at: notePath)
            strikesToSettle = true
            crashNote = try CrashNote(path: notePath)
            useLock = nil
            if configuration.standby { standbyCopies = try Self.openStandbyCopies(configuration: configuration, processor: processor) }
            return
        }
        try Self.checkNoStoresOfTheOtherLayout(configuration)
        directoryLock = nil
        // A changelog is one store's, written by one instance in commit order: that instance
        // holds the file alone, and any other is refused, whichever starts first.
        let keepsChangelog = configuration.changelog && replay == nil
        let (applier, lock) = try Self.openStore(
            at: configuration.databasePath, configuration: configuration, processor: processor, exclusive: keepsChangelog)
        useLock = lock
        let database = applier.database
        var changelogProducer: KafkaProducer?
        if keepsChangelog && configuration.standby {
            // A standby writes nothing to Kafka (no producer, so it fences nobody): it checks
            // the cluster, and `run` keeps its store a copy of the changelog.
            let tail = try ChangelogRestore.tail(topic: configuration.platform.changelog(of: configuration.service), configuration: configuration)
            try applier.claimCluster(tail.clusterID)
            standbyCopies = [try Self.standbyCopy(
                of: database, at: configuration.databasePath, task: nil, lock: nil, configuration: configuration, upgrades: processor.loggedRowUpgrades)]
        } else if replay == nil {
            changelogProducer = try Self.startChangelog(of: applier, at: configuration.databasePath, task: nil, configuration: configuration, logger: logger)
        }
        status.update { [count = applier.partitionCount] in $0.partitionCount = count }
        // One thread applies the one store: a note of its, or of the thread that decodes.
        let note = CrashNote.take(at: notePath).first
        crashNote = try CrashNote(path: notePath)
        applier.crashNote = crashNote
        if let strike = try applier.recordStrike(note) { logStrike(strike) }
        units = [try TaskUnit(
            task: nil, databasePath: configuration.databasePath, configuration: configuration, applier: applier, storeLock: nil,
            changelogProducer: changelogProducer, rebuilding: replay != nil, logger: logger
        ) { [status] timers in status.update { $0.timers = timers } }]
    }

    /// Marks the data directory as used by this instance of the service in the `task` layout:
    /// instances may share it (they share its task stores), unless one keeps warm copies
    /// (`STANDBY_REPLICAS`), which are files the others would open as their task stores, so
    /// that one holds it alone. Refused, naming the setting, when the other kind holds it.
    private static func claimDataDirectory(_ configuration: ServiceConfiguration) throws -> FileUseLock {
        // The caller has made the directory.
        let path = configuration.storePathBase + ".instances-lock"
        let directory = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let alone = configuration.standbyReplicas > 0
        do {
            return try FileUseLock(path: path, exclusive: alone)
        } catch {
            throw ConfigurationError(
                variable: configuration.platform.variable("STANDBY_REPLICAS"),
                problem: alone
                    ? "another instance of \(configuration.service) uses the data directory \(directory.isEmpty ? "." : directory): an instance "
                        + "keeping warm copies needs a data directory of its own (instances sharing one share its task stores, "
                        + "which its copies would overwrite)"
                    : "an instance of \(configuration.service) keeping warm copies holds the data directory \(directory.isEmpty ? "." : directory) "
                        + "alone: give this instance a data directory of its own, or share one only among instances without warm copies")
        }
    }

    /// A standby's copy of the store at `path`. A standby begins empty: a store that served
    /// (or one of another history) is never cleared to become one.
    private static func standbyCopy(
        of database: Database, at path: String, task: Int32?, lock: FileUseLock?, configuration: ServiceConfiguration, upgrades: [LoggedRowUpgrade]
    ) throws -> StandbyCopy {
        if try !ChangelogRestore.storeIsEmpty(database), try ChangelogCopy.standbyPosition(of: database) == nil {
            throw ConfigurationError(
                variable: configuration.platform.variable("STANDBY"),
                problem: "\(path) holds a store that is not a standby's; a standby starts from an empty data directory")
        }
        return try StandbyCopy(task: task, database: database, lock: lock, upgrades: upgrades)
    }

    /// A standby in the `task` layout keeps a copy of every task's store, each from its task's
    /// partition of the changelog, so that whichever tasks it is given when it takes over are
    /// warm. It holds the files alone, writes nothing to Kafka and joins no group.
    private static func openStandbyCopies(configuration: ServiceConfiguration, processor: Processor) throws -> [StandbyCopy] {
        let topic = configuration.platform.changelog(of: configuration.service)
        let reader = try ChangelogRestore.changelogConsumer(configuration)
        defer { reader.close() }
        let clusterID = try ChangelogRestore.clusterID(of: reader, reading: topic)
        let count = try ChangelogRestore.partitionCount(of: topic, asking: reader)
        guard count > 0 else {
            throw ChangelogRestore.Refused(description: "the changelog \(topic) does not exist: a standby copies what the active instances write there")
        }
        return try (0..<count).map { task in
            let path = configuration.databasePath(ofTask: task)
            let (applier, lock) = try openStore(at: path, configuration: configuration, processor: processor, exclusive: true)
            try applier.claimCluster(clusterID)
            return try standbyCopy(
                of: applier.database, at: path, task: task, lock: lock, configuration: configuration, upgrades: processor.loggedRowUpgrades)
        }
    }

    /// Opens (or creates) the store at `path` with the settings every store of the service
    /// has, and the lock that tells the platform's tools it is in use (`exclusive`: while it
    /// keeps a changelog).
    private static func openStore(
        at path: String, configuration: ServiceConfiguration, processor: Processor, exclusive: Bool
    ) throws -> (BatchApplier<Processor>, FileUseLock) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let database = try Database(DatabaseConfiguration(
            path: path, synchronous: configuration.synchronous, cacheSizeKiB: configuration.cacheMiB * 1024))
        let lock: FileUseLock
        do {
            lock = try FileUseLock(path: path, exclusive: exclusive)
        } catch {
            throw ConfigurationError(variable: configuration.platform.variable("CHANGELOG"), problem: "\(error)")
        }
        let applier = try BatchApplier(
            database: database, processor: processor, timerMode: configuration.timerMode,
            inboxHorizon: configuration.inboxHorizonDays > 0 ? Int64(configuration.inboxHorizonDays) * 86_400_000 : nil)
        applier.futureMargin = configuration.futureMarginMilliseconds
        // A batch's timers stay about as many as its records: its outbox stays as small.
        applier.timerBudget = max(2 * configuration.maxBatchRecords, 1_000)
        applier.commandKeys = try configuration.commandKeys()
        applier.applyingTrap = configuration.faultCrashApplyingOn.map { (Array($0.utf8), configuration.platform.variable("FAULT_CRASH_APPLYING_ON")) }
        // Personal data the service erases is overwritten in the file, not merely unlinked:
        // from the first statement on, a restore's clearing included.
        if processor.storesPersonalData { try database.execute("PRAGMA secure_delete = ON") }
        return (applier, lock)
    }

    /// Starts the changelog of the store `applier` holds at `path` (`CHANGELOG`; `task`: the
    /// task's store in the `task` layout, which writes its task's partition of the changelog
    /// with a producer of its own): fences the store's older producer, restores the store
    /// from the changelog if it has applied nothing or the changelog went on without it, and
    /// writes the restart record. With the changelog off, a store that kept one ends its
    /// history. Returns the producer of the changelog, if the store keeps one.
    private static func startChangelog(
        of applier: BatchApplier<Processor>, at path: String, task: Int32?, configuration: ServiceConfiguration, logger: Logger
    ) throws -> KafkaProducer? {
        let database = applier.database
        let topic = configuration.platform.changelog(of: configuration.service)
        let partition = task ?? 0
        guard configuration.changelog else {
            if try ChangelogCopy.standbyPosition(of: database) != nil {
                // Turning the changelog off here would end the history the active instance writes.
                throw ConfigurationError(
                    variable: configuration.platform.variable("CHANGELOG"),
                    problem: "\(path) is a standby's copy of the changelog: start it with the changelog on "
                        + "(and \(configuration.platform.variable("STANDBY"))=off to take over), or give the service an empty data directory")
            }
            if try ChangelogRestore.isLoggedSinceEmpty(database) {
                // The store stops keeping its changelog: what the changelog holds must never be
                // restored from again, since the store goes on without it.
                try ChangelogRestore.send(
                    ChangelogRestore.endedKey, to: topic, partition: partition, through: ChangelogRestore.producer(configuration, task: task))
                try database.transaction { try ChangelogRestore.markLoggedSinceEmpty(database, false) }
                logger.warning("the store no longer keeps a changelog", ["topic": topic, "then": "a store restored from it would start anew"])
            }
            return nil
        }
        let capture = try RuntimeSchema.changelogCapture(of: database, upgrades: applier.processor.loggedRowUpgrades)
        // First, so that an older producer of this store (a dead or stalled instance) is
        // fenced, and the transaction it left open aborted, before the changelog is read.
        let producer = try ChangelogRestore.producer(configuration, task: task)
        let tail = try ChangelogRestore.tail(topic: topic, partition: partition, configuration: configuration)
        // A store of another cluster is refused before anything is restored into it.
        try applier.claimCluster(tail.clusterID)
        var copy = try ChangelogCopy.read(from: database)
        // A restore names the new copy and marks its history as logged in its own
        // transaction: a crash leaves the store as it was, or restored and named.
        let beginCopy = { (database: Database, _: Int64) throws in
            try ChangelogRestore.markLoggedSinceEmpty(database, true)
            copy = try ChangelogCopy.begin(in: database, base: tail.lastWriter)
        }
        /// Restores the store whole from the changelog, its rows cleared first if it has any.
        func restoreWhole(clearingFirst: Bool) throws {
            _ = try ChangelogRestore.restore(
                into: database, capture: capture, topic: topic, configuration: configuration, logger: logger, partition: task,
                clearingFirst: clearingFirst, finish: beginCopy)
        }
        let standingBy = try ChangelogCopy.standbyPosition(of: database)
        let position = try ChangelogCopy.freshStandbyPosition(of: database)
        if standingBy != nil && position == nil {
            // A standby's store left unread so long that compaction may have removed
            // deletions it never read: replaced whole rather than read on.
            logger.warning("a standby's store was left unread too long to be read on", [
                "topic": topic, "partition": String(partition), "then": "restoring the store anew from the changelog",
            ])
            try restoreWhole(clearingFirst: true)
        } else if let position {
            // A standby's store takes over: it holds the changelog up to `position`, and
            // catches up with the rest.
            let started = monotonicMilliseconds()
            let caughtUp = try ChangelogRestore.restore(
                into: database, capture: capture, topic: topic, configuration: configuration, logger: logger, partition: task, from: position, finish: beginCopy)
            // With nothing to catch up with, the restore named no copy.
            if copy.name == nil { try database.transaction { try beginCopy(database, caughtUp.nextOffset) } }
            logger.info("a standby's store takes over", [
                "partition": String(partition), "from": String(position), "caughtUpTo": String(caughtUp.nextOffset), "rows": String(caughtUp.rows),
                "seconds": String(format: "%.3f", Double(monotonicMilliseconds() - started) / 1000),
            ])
        } else if try ChangelogRestore.storeIsEmpty(database) {
            // A store that has applied nothing (a new host, a lost data directory) starts
            // from what the changelog holds, and goes on from the offsets it restores.
            try restoreWhole(clearingFirst: false)
        } else if try !ChangelogRestore.isLoggedSinceEmpty(database) {
            throw ConfigurationError(
                variable: configuration.platform.variable("CHANGELOG"),
                problem: "\(path) has applied records without a changelog: one started now would lack them, "
                    + "and a store restored from it would be wrong. Keep the changelog off for this store, or start the service "
                    + "with an empty data directory, which applies the input topics again from their beginning (outputs keep their ids)")
        } else {
            switch copy.verdict(last: tail.lastWriter) {
            case .resume:
                // A store from before copies were named gets its name now.
                if copy.name == nil { try database.transaction { try beginCopy(database, 0) } }
                logger.info("the store goes on with its changelog", [
                    "topic": topic, "partition": String(partition), "thisCopy": copy.name ?? "unnamed",
                    "thisCopysBatch": String(copy.sequence), "changelogLastWrittenBy": tail.lastWriter.text,
                ])
            case .older:
                // The changelog went on without this copy (another copy was restored from it
                // and applied more while this host was away, or this file is a snapshot of
                // an earlier state): resumed, it would log a second history over the other's.
                logger.warning("the store is older than its changelog", [
                    "topic": topic, "partition": String(partition), "thisCopy": copy.name ?? "unnamed", "thisCopysBatch": String(copy.sequence),
                    "changelogLastWrittenBy": tail.lastWriter.text, "then": "restoring the store anew from the changelog",
                ])
                try restoreWhole(clearingFirst: true)
            case .refused(let reason):
                throw ConfigurationError(
                    variable: configuration.platform.variable("CHANGELOG"),
                    problem: "\(path): \(reason). Start the service with an empty data directory (it applies the "
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
            to: topic, partition: partition, through: producer)
        applier.changelog = (capture, topic, name, partition)
        applier.changelogSequence = copy.sequence
        applier.changelogEndAtTakeOver = tail.end
        return producer
    }

    /// A store per task holds one task's rows alone: refused for a service that keeps figures
    /// spanning its tasks, whose commands to its own tasks its peer marks cannot cover, or in a
    /// rebuild. Broadcast topics are applied to every task's store.
    private static func checkStoresPerTask(configuration: ServiceConfiguration, processor: Processor, rebuilding: Bool) throws {
        let problem: String? =
            processor.figuresSpanTasks ? "\(configuration.service) keeps figures that span its tasks, which a store per task would split"
            : !processor.tasksAreIndependent && processor.selfCommandTopics.count != 1
                ? "\(configuration.service) sends commands to its own tasks on \(processor.selfCommandTopics.count) signed command topics; "
                    + "their peer marks need exactly one, which every command shares"
            : !processor.tasksAreIndependent && !processor.sortedInputTopics.contains(processor.selfCommandTopics[0])
                ? "\(configuration.service)'s command topic \(processor.selfCommandTopics[0]) is not one of its sorted input topics, "
                    + "which are never paused (its peer marks may not wait behind other records)"
            : rebuilding ? "a rebuild makes one store" : nil
        if let problem {
            throw ConfigurationError(
                variable: configuration.platform.variable("STORE_LAYOUT"),
                problem: "a store per task does not work here yet: \(problem); use \(configuration.platform.variable("STORE_LAYOUT"))=service")
        }
        try checkNoStoresOfTheOtherLayout(configuration)
    }

    /// A layout never starts beside the stores of the other: its tasks would start afresh from
    /// their first offsets, and the other's state would go unread.
    private static func checkNoStoresOfTheOtherLayout(_ configuration: ServiceConfiguration) throws {
        let other: [String]
        if configuration.storePerTask {
            other = FileManager.default.fileExists(atPath: configuration.databasePath) ? [configuration.databasePath] : []
        } else {
            let directory = (configuration.databasePath as NSString).deletingLastPathComponent
            let prefix = ((configuration.databasePath(ofTask: 0) as NSString).lastPathComponent as NSString)
                .replacingOccurrences(of: ".task-0.sqlite", with: ".task-")
            other = ((try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory)) ?? [])
                .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".sqlite") }.sorted()
        }
        guard let first = other.first else { return }
        let variable = configuration.platform.variable("STORE_LAYOUT")
        throw ConfigurationError(
            variable: variable,
            problem: "\(first) holds this service's state in the \(configuration.storePerTask ? "service" : "task") layout: "
                + "started beside it, the \(configuration.storePerTask ? "task" : "service") layout would apply every task again from its "
                + "first offset. Set \(variable)=\(configuration.storePerTask ? "service" : "task") again, or remove those files to rebuild "
                + "the state from the input topics")
    }

    /// Opens the store of `task` (the `task` layout) and the unit that applies it.
    private func openUnit(ofTask task: Int32) throws -> TaskUnit<Processor> {
        let path = configuration.databasePath(ofTask: task)
        let (applier, lock) = try Self.openStore(
            at: path, configuration: configuration, processor: makeProcessor?() ?? processor, exclusive: false)
        if let clusterID { try applier.claimCluster(clusterID) }
        // Restored from the task's partition of the changelog first, if the store is new here
        // (another host had the task) or the changelog went on without it.
        let changelogProducer = try Self.startChangelog(of: applier, at: path, task: task, configuration: configuration, logger: logger)
        applier.partitionCount = partitionCount
        applier.ownTask = task
        applier.crashNote = crashNote
        applier.crashSlot = .applying(onThread: thread(of: task))
        // A crash note names a record of each thread that failed: a strike is counted in the
        // store of each named record's task, and every other store opened at this start forgets
        // its own, as the one store of the `service` layout does when the note names another
        // record. (Tasks failing in the same turn on two threads each count a strike.)
        if strikesToSettle, !strikeNotes.isEmpty {
            // A broadcast record is applied in every task's store: its strike counts in each.
            let broadcastTopics = Set(processor.broadcastTopics)
            if let note = strikeNotes.first(where: { broadcastTopics.contains($0.partition.topic) || $0.partition.partition == task }) {
                if let strike = try applier.recordStrike(note) { logStrike(strike) }
            } else {
                try applier.forgetStrikes()
            }
        } else if let strike = try applier.recordStrike(nil) {
            logStrike(strike)
        }
        logger.info("task store opened", ["task": String(task), "database": path])
        return try TaskUnit(
            task: task, databasePath: path, configuration: configuration, applier: applier, storeLock: lock,
            changelogProducer: changelogProducer, rebuilding: false, logger: logger
        ) { [status] timers in status.update { $0.timers[task] = timers[task] } }
    }

    /// Opens the stores of `tasks` at once, a thread each: a store's changelog producer, the
    /// read of its changelog's tail and its restore wait mostly on the broker, so a host that
    /// takes many tasks over (a lost host's) is ready in about the time of the slowest rather
    /// than of all of them in turn. Returns the units opened, in the order of `tasks`, and the
    /// first task's failure if any failed.
    private func openUnits(ofTasks tasks: [Int32]) -> (opened: [TaskUnit<Processor>], failure: (any Error)?) {
        let results = OpenedUnits<Processor>()
        // Unchecked: opening a task touches its own store, producer and consumers, and of the
        // loop only what is read-only meanwhile or locked (settings, logger, status).
        let opener = UncheckedTaskOpener { task in results.set(task, Result { try self.openUnit(ofTask: task) }) }
        if tasks.count == 1 { opener.open(tasks[0]) } else { DispatchQueue.concurrentPerform(iterations: tasks.count) { opener.open(tasks[$0]) } }
        var opened: [TaskUnit<Processor>] = []
        var failure: (any Error)?
        for task in tasks {
            switch results.take(task) {
            case .success(let unit): opened.append(unit)
            case .failure(let error): failure = failure ?? error
            }
        }
        return (opened, failure)
    }

    /// The thread that applies `task`: with one, the loop's own; with more, one of the task
    /// threads (``turnWorkers``).
    private func thread(of task: Int32) -> Int { Int(task) % threadCount }

    /// The unit that applies `task`, if this instance owns it (or still publishes for it).
    private func unit(of task: Int32) -> TaskUnit<Processor>? {
        configuration.storePerTask ? units.first { $0.task == task } : units.first
    }

    private func logStrike(_ strike: (partition: TopicPartition, offset: Int64, cause: String, strikes: Int64)) {
        logger.warning("the last start failed on an input record", [
            "partition": strike.partition.description, "offset": String(strike.offset), "cause": strike.cause,
            "startsInARow": String(strike.strikes),
            "then": strike.strikes >= 2 ? "it is dead-lettered as poison-record" : "trying it once more",
        ])
    }

    /// The input offsets the units last committed.
    private var committedOffsets: [TopicPartition: Int64] {
        units.reduce(into: [:]) { offsets, unit in offsets.merge(unit.committedOffsets) { $1 } }
    }

    /// Runs until a stop is requested; then finishes the batch in hand, flushes the outbox
    /// and leaves the group.
    public func run() throws {
        if !standbyCopies.isEmpty {
            defer {
                for copy in standbyCopies where copy.task != nil { copy.database.close() }
                standbyCopies = []
            }
            try keepStandingBy()
            return
        }
        let processor = self.processor
        var republished = 0
        for unit in units { republished += try unit.relay.republishUnsent(from: unit.applier.database) }
        let awaited = configuration.awaitedProducers(declared: processor.upstreamProducers)
        logger.info("starting", [
            "bootstrap": configuration.bootstrapServers,
            "database": configuration.storePerTask ? configuration.databasePath(ofTask: 0).replacingOccurrences(of: ".task-0.", with: ".task-<task>.") : configuration.databasePath,
            "group": configuration.groupID, "topics": processor.inputTopics.joined(separator: ","),
            "timers": configuration.timerMode.rawValue, "republished": String(republished),
            "waitsFor": awaited.values.reduce(into: Set<String>()) { $0.formUnion($1) }.sorted().joined(separator: ","),
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
        partitionCount = try coPartitionedCount(of: processor.inputTopics + processor.progressTopics)
        for unit in units { unit.applier.partitionCount = partitionCount }
        status.update { [partitionCount] in $0.partitionCount = partitionCount }
        if configuration.storePerTask && configuration.standbyReplicas > 0 && replay == nil { startWarmCopies() }
        defer { warmCopies?.stop() }
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
        // With threads of their own for the tasks (`THREADS` above 1), this thread applies no
        // task's records (only broadcast records and the batch at a stop, with those threads
        // idle): it polls and decodes the next turn's records while they apply this turn's,
        // so no applying thread waits on the consumer. With one, it applies, and each turn's poll
        // is decoded on a thread beside it meanwhile. Either way a turn ends by handing the
        // poll to the merge, so no decoding outlives it, and a rebalance inside a poll first
        // waits for the turn under way (``waitForTurnUnderWay()``).
        let workers = (threadCount > 1 ? 0..<threadCount : 0..<0).map { index in
            HandOffThread(name: "apply-\(index)") { serve in CrashNote.withAlternateSignalStack(serve) }
        }
        turnWorkers = workers
        defer {
            for worker in workers { worker.stop() }
            turnWorkers = []
        }
        let decodeAhead = configuration.decodeAhead && workers.isEmpty
            ? HandOffThread(name: "decode-ahead") { serve in CrashNote.withAlternateSignalStack(serve) } : nil
        defer { decodeAhead?.stop() }
        let aheadResults = DecodeResults()
        // The fault setting's trap: decoding a record that contains it crashes the process.
        let decodingTrap = configuration.faultCrashOn.map { (marker: Array($0.utf8), variable: configuration.platform.variable("FAULT_CRASH_ON")) }
        while !stop.isRequested {
            try applyBroadcastRecords(timeoutMilliseconds: 0)
            // Held by another instance's tasks: their owner commits their next frontier any moment.
            let heldByOthers = units.contains { $0.merger.isHeldByOtherTasks }
            // The task threads apply what the merges hold while this one polls.
            if !workers.isEmpty { refreshEnds(everyPartition: true) }
            let turnUnderWay = workers.isEmpty ? nil : startTurns(on: workers)
            let polled = poll(maxRecords: configuration.maxBatchRecords * max(1, units.count), timeoutMilliseconds: moreToApply ? 0 : heldByOthers ? 2 : 20)
            if let startupError {
                // A task's failure in the turn is logged, not lost (it may be the cause).
                if let turnUnderWay, case .failure(let error) = Result(catching: { try finishTurns(turnUnderWay, on: workers) }),
                   "\(error)" != "\(startupError)" {
                    logger.error("a task failed in the turn that ended with the loop", ["error": "\(error)"])
                }
                throw startupError
            }
            let plan = recordsToDecode(polled)
            var batchRan: [ObjectIdentifier: Bool] = [:]
            /// Adds a turn's units to the totals, and notes which ran and whether work is left.
            func tally(_ turns: [(TaskUnit<Processor>, UnitTurn)]) {
                moreToApply = false
                for (unit, turn) in turns {
                    count(turn.outcome)
                    batchRan[ObjectIdentifier(unit)] = turn.ran
                    if turn.moreToApply { moreToApply = true }
                }
            }
            if let turnUnderWay {
                let decoded = plan.contains(true)
                    ? Self.decode(polled, plan: plan, processor: processor, crashNote: crashNote, slot: .decoding, trap: decodingTrap)
                    : Array(repeating: nil, count: polled.count)
                tally(try finishTurns(turnUnderWay, on: workers))
                if take(polled, decoded: decoded) { moreToApply = true }
                for unit in units { try unit.pollRelay() }
                try announcer?.poll()
            } else {
                var decodingAhead = false
                if let decodeAhead, plan.contains(true) {
                    decodeAhead.handOver { [crashNote] in
                        aheadResults.value = Self.decode(polled, plan: plan, processor: processor, crashNote: crashNote, slot: .decoding, trap: decodingTrap)
                    }
                    decodingAhead = true
                    // Until they are buffered, their partitions count as behind their ends: a
                    // partition the batch drains is never taken for read to its end.
                    for event in polled {
                        if case .record(let record) = event {
                            unit(of: record.partition)?.merger.expectRecords(record.topicPartition, below: record.offset + 1)
                        }
                    }
                } else {
                    take(polled, decoded: Self.decode(polled, plan: plan, processor: processor, crashNote: crashNote, slot: .applying, trap: decodingTrap))
                }
                for unit in units { try unit.pollRelay() }
                try announcer?.poll()
                refreshEnds()
                tally(try units.map { ($0, try applyTurn(in: $0)) })
                if decodingAhead, let decodeAhead {
                    decodeAhead.wait()
                    // Records buffered now are applied next turn, without waiting on the consumer.
                    if take(polled, decoded: aheadResults.value) { moreToApply = true }
                    aheadResults.value = []
                }
            }
            resumePartitions()
            for unit in units { try unit.checkpointIfDue(batchRan: batchRan[ObjectIdentifier(unit)] ?? false) }
            closeSettledUnits()
            try retakeTasksHandedOver(now: monotonicMilliseconds())
            if let replay, replayIsDone(replay, now: monotonicMilliseconds()) { break }
            let now = monotonicMilliseconds()
            if announcementDue { try announce(tasks: assignedTasks) }
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
                    "buffered": String(units.reduce(0) { $0 + $1.merger.bufferedCount }),
                    "outboxInFlight": String(units.reduce(0) { $0 + $1.relay.inFlightCount }),
                    "echoesPending": String(units.reduce(0) { $0 + $1.merger.pendingEchoes }),
                    "heldByOtherInstancesMs": units.compactMap { $0.merger.heldByOtherTasks(now: now) }.max().map { String($0) } ?? "0",
                    "heldBy": units.flatMap { $0.merger.heldPartitions(now: now) }
                        .sorted { $0.partition.description < $1.partition.description }
                        .map { "\($0.partition)(\($0.inGrace ? "grace" : "unread records") \($0.milliseconds) ms)" }.joined(separator: ","),
                    "waitingFor": units.flatMap { $0.merger.progressWaits(now: now) }
                        .sorted { $0.partition.description < $1.partition.description }
                        .map { "\($0.producer) on \($0.partition) (\($0.milliseconds) ms)" }.joined(separator: ","),
                ])
                let overdue = units.flatMap { $0.merger.overdueEchoes(now: now, after: 30_000) }.sorted { $0.milliseconds > $1.milliseconds }
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
        if advertisedAddress != nil || instanceName != nil { try? announce(tasks: []) }
        logger.info("stopping: flushing the outbox")
        // One 30-second wait for all of the units together.
        let drainDeadline = monotonicMilliseconds() + 30_000
        var drained = true
        for unit in units {
            let left = Int(max(0, drainDeadline - monotonicMilliseconds()))
            if try !unit.relay.drain(timeoutMilliseconds: left) { drained = false }
            if !unit.relay.rowsToDelete.isEmpty { count(try applyBatch(in: unit, startingWith: nil, wallClock: nil).outcome) }
        }
        _ = try announcer?.drain(timeoutMilliseconds: 5_000)
        consumer.commitAdvisory(committedOffsets)
        consumer.close()
        broadcast?.close()
        for unit in units { unit.close() }
        httpServer?.stop()
        logger.info("stopped", ["applied": String(totals.applied), "outboxDrained": String(drained)])
    }

    /// The tasks this instance owns.
    private var assignedTasks: [Int32] { units.flatMap { $0.merger.assignedTasks }.sorted() }

    /// Closes the units of revoked tasks (the `task` layout) once their outbox is delivered
    /// and its rows deleted.
    private func closeSettledUnits() {
        guard configuration.storePerTask else { return }
        let settled = units.filter { $0.merger.assignedTasks.isEmpty && $0.isSettled }
        guard !settled.isEmpty else { return }
        for unit in settled {
            unit.close()
            if let task = unit.task {
                warmCopies?.give([task])
                status.update { $0.timers[task] = nil }
            }
            logger.info("task store closed", ["task": unit.task.map(String.init) ?? "all"])
        }
        units.removeAll { unit in settled.contains { $0 === unit } }
    }

    /// A standby's loop: reads the changelog on from where each copy stands (a task's, from its
    /// task's partition), every half second, until asked to stop. A store that is not a
    /// standby's yet (empty, or a copy that wrote) is replaced by a full restore first. Each
    /// pass is one transaction per copy that also keeps the offset the copy has come to, so a
    /// standby stopped at any point goes on from there.
    private func keepStandingBy() throws {
        let topic = configuration.platform.changelog(of: configuration.service)
        // A copy left unread too long is restored whole (``ChangelogCopy/freshnessMilliseconds``).
        var positions = try standbyCopies.map { try ChangelogCopy.freshStandbyPosition(of: $0.database) }
        // When each copy last read its changelog to the end, kept in its store when it stops.
        var caughtUpAt: [Int64?] = standbyCopies.map { _ in nil }
        defer {
            for (copy, time) in zip(standbyCopies, caughtUpAt) { if let time { try? ChangelogCopy.markCaughtUp(at: time, in: copy.database) } }
        }
        logger.info("standing by", [
            "topic": topic, "tasks": standbyCopies.map { $0.task.map(String.init) ?? "all" }.joined(separator: ","),
            "from": positions.map { $0.map(String.init) ?? "the beginning" }.joined(separator: ","),
        ])
        // One reader for every pass: a pass with nothing new costs two offset requests a copy.
        let reader = try ChangelogRestore.changelogConsumer(configuration)
        defer { reader.close() }
        var rows = 0
        var lastReport = monotonicMilliseconds()
        while !stop.isRequested {
            for (index, copy) in standbyCopies.enumerated() where !stop.isRequested {
                let pass: (rows: Int, nextOffset: Int64, end: Int64)
                do {
                    pass = try copy.readOn(from: positions[index], topic: topic, configuration: configuration, logger: logger, reader: reader)
                } catch let error as KafkaError {
                    // A broker that is slow or restarting: the pass rolled back; try again.
                    logger.warning("a standby pass failed; trying again", ["error": error.description])
                    for _ in 0..<20 where !stop.isRequested { usleep(50_000) }
                    continue
                }
                positions[index] = pass.nextOffset
                caughtUpAt[index] = wallClockMilliseconds()
                rows += pass.rows
            }
            if monotonicMilliseconds() - lastReport >= 10_000 {
                logger.info("standby caught up", [
                    "topic": topic, "nextOffset": positions.map { $0.map(String.init) ?? "0" }.joined(separator: ","),
                    "rowsSinceLastReport": String(rows),
                ])
                rows = 0
                lastReport = monotonicMilliseconds()
            }
            for _ in 0..<10 where !stop.isRequested { usleep(50_000) }
        }
        logger.info("stopped standing by", ["topic": topic, "nextOffset": positions.map { $0.map(String.init) ?? "0" }.joined(separator: ",")])
    }

    /// Waits for the cluster to answer (saying so in the log while it does not) and checks that
    /// the store belongs to it. False when a stop was requested first.
    private func claimCluster() throws -> Bool {
        while !stop.isRequested {
            if let clusterID = consumer.clusterID(timeoutMilliseconds: 5_000) {
                self.clusterID = clusterID
                for unit in units { try unit.applier.claimCluster(clusterID) }
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
        // One store reads them from its offsets; task stores from where each stands (all from the start).
        let applier = configuration.storePerTask ? nil : serviceUnit.applier
        let reader = try BroadcastReader(configuration: configuration, topics: topics, logger: logger) { partitions in
            try applier?.storedOffsets(partitions) ?? [:]
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
        guard configuration.storePerTask else {
            let outcome = try serviceUnit.applier.applyBroadcast(records)
            return try serviceUnit.relay.publish(outcome.outbox)
        }
        broadcastRecords += records
        for unit in units where !unit.merger.assignedTasks.isEmpty { try applyBroadcast(records, in: unit) }
    }

    /// Applies to a task's store, in a batch of their own, those of `records` it has not
    /// applied yet (its stored offsets say which).
    private func applyBroadcast(_ records: [ConsumedRecord], in unit: TaskUnit<Processor>) throws {
        guard !records.isEmpty else { return }
        let stored = try unit.applier.storedOffsets(Array(Set(records.map(\.topicPartition))))
        let unread = records.filter { $0.offset >= stored[$0.topicPartition] ?? 0 }
        guard !unread.isEmpty, !unit.handedOver, let outcome = try unit.whileOwned({ try unit.applier.applyBroadcast(unread) }) else { return }
        try unit.relay.publish(outcome.outbox)
    }

    /// Applies one batch in `unit` (``TaskUnit/commitBatch(startingWith:wallClock:)``), adds it
    /// to the status, and publishes it. Returns what it applied (for ``count(_:)``, on the
    /// loop's thread) and the records it pulled from the merge.
    private func applyBatch(
        in unit: TaskUnit<Processor>, startingWith first: PolledRecord<Processor.Body>?, wallClock: EventTime?
    ) throws -> (outcome: BatchOutcome, pulled: Int) {
        let now = monotonicMilliseconds()
        let (outcome, pulled) = try unit.commitBatch(startingWith: first, wallClock: wallClock)
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
        try unit.publish(outcome)
        return (outcome, pulled)
    }

    /// Adds a batch to ``totals``.
    private func count(_ outcome: BatchOutcome) {
        totals.applied += outcome.applied
        totals.duplicates += outcome.duplicates
        totals.deadLettered += outcome.deadLettered
        totals.skippedBehindOffset += outcome.skippedBehindOffset
        totals.late += outcome.late
        totals.timersFired += outcome.timersFired
    }

    /// What one unit did in a turn.
    private struct UnitTurn {
        /// A batch was committed (or an empty one was due).
        var ran = false
        /// The unit has records or timers left that the next turn should not wait for.
        var moreToApply = false
        var outcome = BatchOutcome()
    }

    /// Hands every unit with its task's thread (task *p*'s unit on thread *p* mod
    /// ``threadCount``) a turn, and returns at once; ``finishTurns(_:on:)`` waits for them.
    /// Units share nothing but the status, which has a lock of its own, and the broadcast
    /// reader, which they only ask whether it is behind (its positions move between turns);
    /// the totals are added up by the caller, once the turn is over.
    private func startTurns(on workers: [HandOffThread]) -> [ShareResult] {
        var shares = Array(repeating: [TaskUnit<Processor>](), count: workers.count)
        for unit in units { shares[thread(of: unit.task ?? 0)].append(unit) }
        let results = shares.map { _ in ShareResult() }
        for (index, worker) in workers.enumerated() where !shares[index].isEmpty {
            let share = shares[index], result = results[index]
            worker.handOver { result.value = Result { try share.map { ($0, try self.applyTurn(in: $0)) } } }
        }
        turnUnderWay = results
        return results
    }

    /// Waits for the turns ``startTurns(on:)`` handed over and returns what each unit did.
    private func finishTurns(_ results: [ShareResult], on workers: [HandOffThread]) throws -> [(TaskUnit<Processor>, UnitTurn)] {
        for worker in workers { worker.wait() }
        turnUnderWay = nil
        // The first thread's error stops the service; any other is logged, not lost.
        let errors = results.compactMap(\.failure)
        for error in errors.dropFirst() { logger.error("another task failed in the same turn", ["error": "\(error)"]) }
        if let first = errors.first { throw first }
        return try results.flatMap { try $0.value.get() }
    }

    /// Waits for the task threads' turn, if one is under way: a rebalance, called back inside
    /// a poll that runs beside the turn, opens and closes units and drops what their merges
    /// hold, which it must never do to a unit applying a batch. Returns false when a task
    /// failed in that turn: the loop then stops with that failure, and the rebalance does
    /// nothing more (no store is opened, fenced or restored on the way out).
    private func waitForTurnUnderWay() -> Bool {
        for worker in turnWorkers { worker.wait() }
        guard let failure = turnUnderWay?.lazy.compactMap(\.failure).first else { return true }
        if startupError == nil { startupError = failure }
        stop.request()
        return false
    }

    /// A share's turns, or the error that ended them; written by the thread that ran them.
    private final class ShareResult: @unchecked Sendable {
        var value: Result<[(TaskUnit<Processor>, UnitTurn)], Error> = .success([])
        /// The error that ended the share's turns, if one did.
        var failure: Error? { if case .failure(let error) = value { error } else { nil } }
    }

    /// One unit's turn: a batch if the merge releases a record, work is left over or timers
    /// are due by the clock (wall-clock mode), or an empty one when promises, offsets or
    /// frontiers are due.
    private func applyTurn(in unit: TaskUnit<Processor>) throws -> UnitTurn {
        // A task's store taken over by an instance sharing it: its revocation is on the way.
        guard !(configuration.storePerTask && unit.handedOver) else { return UnitTurn(ran: false) }
        var turn = UnitTurn(ran: true)
        try unit.refreshOtherTasksBound()
        // Broadcast records the broker has and this instance has not read hold the tasks; a
        // record or timers carried over from the last batch go before anything else.
        let first = broadcast?.isBehind == true || unit.applier.hasWorkLeftOver ? nil : unit.merger.next(now: monotonicMilliseconds())
        var wallClock: EventTime?
        if configuration.timerMode == .wallClock {
            let now = EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
            if try unit.applier.hasTimersDue(tasks: unit.merger.assignedTasks, by: now) { wallClock = now }
        }
        if first != nil || unit.hasWorkLeftOver || wallClock != nil {
            let (outcome, pulled) = try applyBatch(in: unit, startingWith: first?.item, wallClock: wallClock)
            turn.outcome = outcome
            turn.moreToApply = unit.applier.hasWorkLeftOver || (pulled >= configuration.maxBatchRecords && unit.merger.bufferedCount > 0)
        } else if try unit.needsEmptyBatch(now: monotonicMilliseconds()) {
            turn.outcome = try applyBatch(in: unit, startingWith: nil, wallClock: nil).outcome
        } else {
            turn.ran = false
        }
        return turn
    }

    /// A progress mark read from an input partition, checked like a command where commands are
    /// signed; the reason when it is not a valid one.
    private func readMark(_ record: ConsumedRecord) -> Result<ProgressMark, Rejection> {
        do throws(Rejection) {
            return .success(try ProgressMark.decode(try markEvent(record), partition: record.partition))
        } catch {
            return .failure(error)
        }
    }

    /// The event of a mark read on an input partition, its signature checked where commands
    /// are signed.
    private func markEvent(_ record: ConsumedRecord) throws(Rejection) -> CloudEvent {
        let event: CloudEvent
        do { event = try CloudEvent.decode(record.value ?? []) } catch { throw Rejection(code: error.code, detail: error.detail) }
        if processor.commandTopics.contains(record.topic), let keys = commandKeys, let rejection = keys.verify(event) {
            throw rejection
        }
        return event
    }

    /// Another task's peer mark read on one of this task's command partitions, signed; the
    /// reason when it is not a valid one, or comes where no task waits for peers.
    private func readPeerMark(_ record: ConsumedRecord, unit: TaskUnit<Processor>) -> Result<PeerMark, Rejection> {
        do throws(Rejection) {
            guard let book = unit.peerBook, processor.commandTopics.contains(record.topic) else {
                throw Rejection(code: .invalidProgressMark, detail: "a peer mark on \(record.topicPartition), where no task of a store of its own waits for its peers")
            }
            let mark = try PeerMark.decode(try markEvent(record), tasks: book.tasks)
            guard mark.task != book.task else {
                throw Rejection(code: .invalidProgressMark, detail: "a peer mark of task \(mark.task) on its own partition \(record.topicPartition)")
            }
            guard mark.to == record.partition else {
                throw Rejection(code: .invalidProgressMark, detail: "a peer mark for task \(mark.to) on \(record.topicPartition)")
            }
            return .success(mark)
        } catch {
            return .failure(error)
        }
    }

    /// Starts the HTTP API when `HTTP_ADDRESS` is set, and writes where it listens to
    /// `<data dir>/<service>.http` for the CLI.
    private func startHTTP() throws {
        guard let address = configuration.httpAddress else { return }
        let processor = UncheckedSendable(self.processor)
        let (service, servers, settings) = (configuration.service, configuration.bootstrapServers, configuration.kafkaSettings)
        let platform = self.processor.platform
        let endpoints = ServiceEndpoints(
            status: status,
            databasePath: { [configuration] task in configuration.storePerTask ? configuration.databasePath(ofTask: task) : configuration.databasePath },
            token: configuration.httpToken,
            tokenVariable: configuration.platform.variable("HTTP_TOKEN"),
            memberView: { member, database, asOf in try processor.value.serializedMemberView(member, in: database, asOf: asOf) },
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

    /// Starts keeping warm copies of the tasks the instance directory places here. An instance
    /// without HTTP, or bound to every interface without an advertised address, announces
    /// itself under a name of its own for it.
    private func startWarmCopies() {
        // An address every instance binds alike (0.0.0.0:8080 in a container) names none of them.
        if advertisedAddress.map({ $0.hasPrefix("0.0.0.0:") }) ?? true { instanceName = "instance-\(UUID().uuidString.lowercased())" }
        let instance = "\(configuration.service)@\(instanceName ?? advertisedAddress!)"
        let (configuration, clusterID) = (self.configuration, self.clusterID)
        let processor = self.processor
        let makeProcessor = self.makeProcessor
        let copies = WarmCopies(instance: instance, replicas: configuration.standbyReplicas, configuration: configuration, logger: logger, status: status) { task in
            let path = configuration.databasePath(ofTask: task)
            let (applier, lock) = try Self.openStore(at: path, configuration: configuration, processor: makeProcessor?() ?? processor, exclusive: false)
            if let clusterID { try applier.claimCluster(clusterID) }
            return try StandbyCopy(task: task, database: applier.database, lock: lock, upgrades: applier.processor.loggedRowUpgrades)
        }
        warmCopies = copies
        copies.start()
        // Announced at once, so that the others place copies here before this instance owns a task.
        announcementDue = true
    }

    /// Tells the other instances which tasks this one serves, at which address.
    private func announce(tasks: [Int32]) throws {
        announcementDue = false
        guard advertisedAddress != nil || instanceName != nil else { return }
        let record = InstanceDirectory.announcement(service: configuration.service, address: advertisedAddress, instance: instanceName, tasks: tasks)
        // The `task` layout's units come and go with their tasks: its announcements have a
        // producer of their own.
        if !configuration.storePerTask {
            try serviceUnit.relay.sendUntracked(topic: processor.platform.instances, key: record.key, value: record.value)
            return
        }
        if announcer == nil {
            announcer = OutboxRelay(producer: try KafkaProducer(ProducerConfiguration(
                bootstrapServers: configuration.bootstrapServers, extra: configuration.kafkaSettings)), logger: logger)
        }
        try announcer!.sendUntracked(topic: processor.platform.instances, key: record.key, value: record.value)
    }

    /// Brings what `/ready` and `/metrics` report up to date.
    private func refreshStatus(now: Int64) {
        let committed = committedOffsets
        var ends: [TopicPartition: Int64] = [:]
        for partition in status.snapshot.partitions.keys {
            if let marks = consumer.cachedWatermarks(of: partition) { ends[partition] = marks.high }
        }
        var streamTimes: [Int32: Int64] = [:]
        for unit in units {
            for task in unit.merger.assignedTasks { streamTimes[task] = unit.applier.knownStreamTime(task) }
        }
        let inFlight = units.reduce(0) { $0 + $1.relay.inFlightCount }
        let oldest = units.map { $0.relay.oldestInFlightMilliseconds(now: now) }.max() ?? 0
        let extra = processor.metricLines()
        let reached = reachedEnd
        let waits = units.flatMap { $0.merger.progressWaits(now: now) }
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
            return unit(of: record.partition)?.applier.poisonRejection(for: record) == nil && !ProgressMark.isCandidate(record)
                && !PeerMark.isCandidate(record)
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
                // Polled before its task was revoked, in the same poll.
                guard let taskUnit = unit(of: record.partition) else { continue }
                if let replay, !replay.includes(record.offset, of: record.topicPartition) {
                    // Beyond what the store in use has applied: not part of the rebuild. Partitions
                    // with producers to wait for are read on for their progress marks; the others
                    // end where the plan does (`capRead`), as if nothing came after.
                    let awaited = taskUnit.merger.awaitedProducers[record.topic]?.isEmpty == false
                    if !awaited { continue }
                    if !ProgressMark.isCandidate(record) {
                        taskUnit.merger.readPast(record.offset, from: record.topicPartition)
                        continue
                    }
                }
                // Of the records within a rebuild's plan, `recordsToDecode` left undecoded only
                // the poison record and progress marks.
                let decoded: Result<Decoded<Processor.Body>, Rejection>
                if let decodedRecord {
                    decoded = decodedRecord
                } else if let poison = taskUnit.applier.poisonRejection(for: record) {
                    decoded = .failure(poison)
                } else if PeerMark.isCandidate(record) {
                    switch readPeerMark(record, unit: taskUnit) {
                    case .success(let mark):
                        taskUnit.notePeerMark(mark, offset: record.offset, from: record.topicPartition)
                        continue
                    case .failure(let rejection):
                        decoded = .failure(rejection)
                    }
                } else {
                    switch readMark(record) {
                    case .success(let mark):
                        taskUnit.merger.noteProgress(mark, offset: record.offset, from: record.topicPartition)
                        continue
                    case .failure(let rejection):
                        decoded = .failure(rejection)
                    }
                }
                let partition = record.topicPartition
                let key = MergeKey(of: decoded, record: record)
                taskUnit.merger.add(
                    PolledRecord(record: record, decoded: decoded), key: key, offset: record.offset, from: partition,
                    heldUntilSent: replay != nil && isOwnCommand(record, decoded))
                buffered = true
                // Sorted partitions are never paused: an echo the merge waits for may be in them;
                // nor one read on for a producer's progress mark the merge waits for, until a mark
                // read promises it (see `resumePartitions`).
                if taskUnit.merger.bufferedCount(partition) >= pauseThreshold, !paused.contains(partition),
                   !taskUnit.merger.sortedTopics.contains(partition.topic), !taskUnit.merger.waitsForProgress(on: partition),
                   !(taskUnit.merger.carriesProgress(partition) && taskUnit.merger.isHeldByOtherTasks) {
                    consumer.pause([partition])
                    paused.insert(partition)
                }
            case .endOfPartition(let partition, let offset):
                unit(of: partition.partition)?.merger.markCaughtUp(partition, at: offset)
                reachedEnd.insert(partition)
            case .error:
                break
            }
        }
        return buffered
    }

    /// Tells the merge where the broker last said each empty partition ends, so a partition
    /// with records fetched but not yet polled holds the merge.
    /// `everyPartition`: those with records buffered too, for a turn that applies while the
    /// next poll runs: a partition its batch drains then holds the merge if the consumer has
    /// fetched more of it, as the poll before the turn would have told the merge.
    private func refreshEnds(everyPartition: Bool = false) {
        for taskUnit in units {
            for partition in everyPartition ? taskUnit.merger.partitions : taskUnit.merger.emptyPartitions {
                if let marks = consumer.cachedWatermarks(of: partition) { taskUnit.merger.updateEnd(partition, to: marks.high) }
            }
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
        let resumable = paused.filter { partition in
            // A partition of a task no longer owned is resumed: the pause would outlive it.
            guard let merger = unit(of: partition.partition)?.merger else { return true }
            return merger.bufferedCount(partition) < pauseThreshold / 2 || merger.waitsForProgress(on: partition)
                || (merger.isHeldByOtherTasks && merger.carriesProgress(partition))
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
        guard case .success = decoded, serviceUnit.merger.sortedTopics.contains(record.topic), let value = record.value,
              let event = try? CloudEvent.decode(value) else { return false }
        return event.source == processor.platform.source(of: processor.name)
    }

    /// Whether the rebuild has applied every record of its plan; says how far it is every two
    /// seconds. A rebuild that has read everything and applies nothing more for ten seconds
    /// also ends (saying what it holds): the comparison then shows what is missing.
    private func replayIsDone(_ plan: ReplayPlan, now: Int64) -> Bool {
        guard everAssigned, partitionCount > 0 else { return false }
        var read: Int64 = 0
        var total: Int64 = 0
        var complete = serviceUnit.merger.assignedTasks.count == Int(partitionCount)
        for topic in processor.inputTopics {
            for task in 0..<partitionCount {
                let partition = TopicPartition(topic: topic, partition: task)
                let end = plan.end(of: partition)
                let position = serviceUnit.merger.position(of: partition) ?? 0
                read += min(position, end)
                total += end
                if position < end { complete = false }
            }
        }
        let done = totals.applied + totals.duplicates + totals.deadLettered + totals.timersFired
        if read != replayProgress.read || done != replayProgress.done {
            replayProgress = ReplayProgress(read: read, done: done, changedAt: now, reportedAt: replayProgress.reportedAt)
        }
        let finished = complete && serviceUnit.merger.bufferedCount == 0 && serviceUnit.merger.heldCount == 0 && !serviceUnit.applier.hasWorkLeftOver
            && serviceUnit.relay.rowsToDelete.isEmpty
        // Long enough for the grace of every empty partition, and then some.
        let stalled = !finished && complete && now - replayProgress.changedAt >= max(30_000, 3 * configuration.taskIdleMilliseconds)
        if finished || stalled || now - replayProgress.reportedAt >= 2_000 {
            replayProgress.reportedAt = now
            let share = total == 0 ? 100 : Int(read * 100 / total)
            ReplayOutput.say("replaying \(processor.name): read \(share)% (\(read) of \(total) records), "
                + "applied \(totals.applied), timers fired \(totals.timersFired), dead-lettered \(totals.deadLettered)")
        }
        if stalled {
            rebuildIsIncomplete = true
            ReplayOutput.say("the rebuild applies nothing more: \(serviceUnit.merger.bufferedCount) records still wait, "
                + "\(serviceUnit.merger.heldCount) commands it never sent, \(serviceUnit.merger.pendingEchoes) it sent and never read; waiting for: "
                + serviceUnit.merger.progressWaits(now: now).map { "\($0.producer) on \($0.partition)" }.joined(separator: ", ")
                + "; earliest waiting: \(serviceUnit.merger.earliestBuffered.map { "\($0.id) at \(EventTime(millis: $0.time))" } ?? "none")"
                + "; not sent: \(serviceUnit.merger.heldIDs(limit: 3).joined(separator: ", "))"
                + "; not read: \(serviceUnit.merger.overdueEchoes(now: now, after: -1).prefix(3).map(\.id).joined(separator: ", "))")
        }
        return finished || stalled
    }

    // MARK: RebalanceListener

    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        guard waitForTurnUnderWay() else { return [:] }
        do {
            let offsets = try takeOn(partitions)
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
            // Cannot trust our own offsets, or open a task's store: refuse to consume rather
            // than start from a wrong place.
            startupError = error
            logger.error("cannot take the assigned partitions on", ["error": "\(error)"])
            stop.request()
            return [:]
        }
    }

    /// Takes `partitions` on: opens the stores of their tasks (the `task` layout) and claims
    /// them, and returns the offsets to read them from, which the stores hold.
    private func takeOn(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        // Each task's partitions go to its unit: in the `task` layout, opened now if it is not
        // open still (a task revoked and assigned back before its outbox was delivered).
        var groups: [(unit: TaskUnit<Processor>, partitions: [TopicPartition])] = []
        if configuration.storePerTask {
            let byTask = Dictionary(grouping: partitions, by: \.partition)
            var toOpen: [Int32] = []
            for task in byTask.keys.sorted() {
                if let open = unit(of: task) {
                    if !open.handedOver && !configuration.changelog {
                        groups.append((open, byTask[task]!))
                        continue
                    }
                    // Handed over, or with a changelog, another instance may have had the task
                    // meanwhile and written to it: the store is opened anew, which resumes it
                    // if nobody did and restores it from the changelog otherwise.
                    open.close()
                    units.removeAll { $0 === open }
                }
                toOpen.append(task)
            }
            // A warm copy of a task given here is closed first: the store takes over from it.
            warmCopies?.take(toOpen)
            let (opened, failure) = openUnits(ofTasks: toOpen)
            units += opened
            units.sort { ($0.task ?? -1) < ($1.task ?? -1) }
            if let failure { throw failure }
            for unit in opened { groups.append((unit, byTask[unit.task!]!)) }
        } else {
            groups = [(serviceUnit, partitions)]
        }
        // The last start's note counts at the first assignment only: a task given later comes
        // from another instance, whose start it was not.
        strikesToSettle = false
        strikeNotes = []
        // A task's store is claimed before anything of it is read: a batch its last owner on
        // this host may still commit now fails rather than land behind those reads.
        if configuration.storePerTask && replay == nil {
            for group in groups { try group.unit.applier.claimTask() }
        }
        var offsets: [TopicPartition: Int64] = [:]
        for group in groups { try offsets.merge(group.unit.applier.storedOffsets(group.partitions)) { $1 } }
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
        // A task's store applies what it lacks of the broadcast topics before its first record.
        if configuration.storePerTask {
            for group in groups { try applyBroadcast(broadcastRecords, in: group.unit) }
        }
        for group in groups {
            try group.unit.assign(
                group.partitions, offsets: offsets, ends: bounds.mapValues(\.high), readUpTo: replay.map { plan in { plan.end(of: $0) } })
        }
        return offsets
    }

    /// A task of a store shared on this host that another instance claimed (``TaskTakenOver``)
    /// while the group still gives it here a while later: that claim came from an assignment
    /// already past (a slow instance's), and nobody else applies the task. It is taken on
    /// again: claimed, its state read from the store, and its partitions read again from the
    /// store's offsets. (Were the claim the newer one after all, its instance takes the task
    /// back the same way; either way only one instance commits to the store at a time.)
    private func retakeTasksHandedOver(now: Int64) throws {
        guard configuration.storePerTask else { return }
        let window = Int64(2 * configuration.sessionTimeoutMilliseconds)
        for unit in units where unit.handedOver && !unit.merger.assignedTasks.isEmpty {
            guard let since = unit.handedOverAt, now - since >= window else { continue }
            let partitions = unit.merger.partitions
            logger.warning("taking a task on again", [
                "task": unit.task.map(String.init) ?? "?", "handedOverSeconds": String((now - since) / 1000),
                "reason": "another instance claimed its store, and the group still gives it here",
            ])
            unit.revoke(partitions)
            // A failure stops the service, as one taking partitions on at an assignment does.
            let offsets = try takeOn(partitions)
            // From the beginning where the store has no offset yet, as at an assignment.
            try consumer.seek(Dictionary(uniqueKeysWithValues: partitions.map { ($0, offsets[$0]) }))
            resumeIfPaused(partitions)
            reachedEnd.subtract(partitions)
        }
    }

    public func partitionsRevoked(_ partitions: [TopicPartition]) {
        guard waitForTurnUnderWay() else { return }
        revokedWhilePolling.formUnion(partitions)
        reachedEnd.subtract(partitions)
        announcementDue = true
        status.update { snapshot in
            snapshot.rebalances += 1
            for partition in partitions { snapshot.partitions[partition] = nil }
        }
        if configuration.storePerTask {
            for (task, taskPartitions) in Dictionary(grouping: partitions, by: \.partition).sorted(by: { $0.key < $1.key }) {
                unit(of: task)?.revoke(taskPartitions)
            }
        } else {
            serviceUnit.revoke(partitions)
        }
        // librdkafka keeps an application's pause through a rebalance: a partition assigned
        // back would never be fetched again.
        resumeIfPaused(partitions)
        logger.info("partitions revoked", ["partitions": partitions.map(\.description).sorted().joined(separator: ",")])
    }

    /// Resumes those of `partitions` the loop paused, and forgets their pause.
    private func resumeIfPaused(_ partitions: [TopicPartition]) {
        let wasPaused = partitions.filter { paused.contains($0) }
        if !wasPaused.isEmpty { consumer.resume(wasPaused) }
        paused.subtract(partitions)
    }
}

/// A function that opens one task's store, called from several threads at once
/// (`ExactlyOnceLoop.openUnits`), which makes sure that is safe.
private struct UncheckedTaskOpener: @unchecked Sendable {
    let open: (Int32) -> Void
}

/// The units `ExactlyOnceLoop.openUnits` opens on several threads, or why a task's could not be.
private final class OpenedUnits<Processor: StreamProcessor>: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int32: Result<TaskUnit<Processor>, any Error>] = [:]

    func set(_ task: Int32, _ result: Result<TaskUnit<Processor>, any Error>) { lock.withLock { results[task] = result } }
    func take(_ task: Int32) -> Result<TaskUnit<Processor>, any Error> { lock.withLock { results.removeValue(forKey: task)! } }
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
