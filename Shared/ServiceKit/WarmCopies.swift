import Foundation
import Messaging
import Storage

/// A copy of a store kept from its changelog without applying anything itself: the one store
/// or a task's on a standby instance (`STANDBY`), or a task's warm copy on an active instance
/// (`STANDBY_REPLICAS`).
struct StandbyCopy {
    let task: Int32?
    let database: Database
    let capture: ChangeCapture
    /// The store's lock while the copy is open (the one store's is the loop's).
    let lock: FileUseLock?

    /// A copy of the store `database` holds, capturing the changes of every table the
    /// changelog carries (rows in older shapes through `upgrades`).
    init(task: Int32?, database: Database, lock: FileUseLock?, upgrades: [LoggedRowUpgrade]) throws {
        self.task = task
        self.database = database
        capture = try RuntimeSchema.changelogCapture(of: database, upgrades: upgrades)
        self.lock = lock
    }

    /// One pass: reads the copy's changelog partition on from `position` (nil: the copy is
    /// none yet, and is replaced by a whole restore) to where it ends now, in one transaction
    /// that also keeps the place the copy has come to.
    func readOn(
        from position: Int64?, topic: String, configuration: ServiceConfiguration, logger: Logger, reader: KafkaConsumer,
        cancelled: () -> Bool = { false }
    ) throws -> (rows: Int, nextOffset: Int64, end: Int64) {
        try ChangelogRestore.restore(
            into: database, capture: capture, topic: topic, configuration: configuration, logger: logger,
            partition: task, from: position ?? 0, clearingFirst: position == nil, announce: position == nil, reading: reader,
            // One question a pass: the standby's and warm copies' loops ask again themselves.
            patienceMilliseconds: 0, cancelled: cancelled
        ) { database, nextOffset in
            try ChangelogRestore.markLoggedSinceEmpty(database, true)
            try ChangelogCopy.standBy(at: nextOffset, in: database)
        }
    }
}

/// The warm copies an active instance keeps of tasks that other instances own
/// (`STANDBY_REPLICAS`), on a thread of their own beside the loop. The instance directory
/// says which tasks: the copies of each task live on the instances after its owner
/// (``InstanceDirectory/Standings/standbyTasks(of:replicas:)``), so instances agree without
/// talking. Each copy is read on from its task's changelog partition every half second,
/// one transaction a copy and pass that also keeps where the copy stands
/// (``ChangelogCopy/standBy(at:caughtUpAt:in:)``); a task's store that is no copy yet (empty,
/// or left behind when the task moved away), or a copy left unread too long
/// (``ChangelogCopy/freshnessMilliseconds``), is first restored whole, in the background.
///
/// A task's file is the loop's or the copier's, never both's: before the loop opens a task's
/// store it ``take(_:)``s the task, which cancels a pass on it and closes the copy; the loop's
/// store then finds the copy's place and catches up from there instead of restoring from
/// offset 0 (`a standby's store takes over`). Once the loop has closed a task's store it
/// ``give(_:)``s the task back. (No other process opens these files: an instance keeping warm
/// copies holds its data directory alone, `ExactlyOnceLoop`.)
final class WarmCopies: @unchecked Sendable {
    /// The name this instance announces itself under: the directory's key for it.
    let instance: String
    private let service: String
    private let replicas: Int
    private let configuration: ServiceConfiguration
    private let logger: Logger
    /// Opens a task's store as a copy (the loop's settings, its cluster claimed).
    private let openCopy: (Int32) throws -> StandbyCopy
    /// Where `/metrics` finds each copy's lag.
    private let status: ServiceStatus

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var copies: [Int32: StandbyCopy] = [:]
    /// When each open copy last read its changelog to the end (machine clock), kept in its
    /// store when it is closed.
    private var caughtUpAt: [Int32: Int64] = [:]
    private var heldByLoop: Set<Int32> = []
    private var busy: Int32?
    private var stopping = false
    private var finished = true

    /// `instance`: the key this instance's announcements carry (`<service>@<name>`).
    init(
        instance: String, replicas: Int, configuration: ServiceConfiguration, logger: Logger, status: ServiceStatus,
        openCopy: @escaping (Int32) throws -> StandbyCopy
    ) {
        self.instance = instance
        self.service = configuration.service
        self.replicas = replicas
        self.configuration = configuration
        self.logger = logger
        self.status = status
        self.openCopy = openCopy
    }

    /// Starts the copier's thread.
    func start() {
        condition.lock()
        finished = false
        condition.unlock()
        let thread = Thread { [self] in
            nameCurrentThread("warm-copies")
            run()
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Stops the thread (a pass under way is given up), and closes every copy.
    func stop() {
        condition.lock()
        stopping = true
        while !finished { condition.wait() }
        closeCopies(Array(copies.keys))
        condition.unlock()
        status.update { $0.warmCopyLag = [:] }
    }

    /// The loop is about to open `tasks`' stores: gives up a pass on them under way, and
    /// returns once their copies are closed. They stay the loop's until given back.
    func take(_ tasks: [Int32]) {
        condition.lock()
        heldByLoop.formUnion(tasks)
        while let busy, tasks.contains(busy) { condition.wait() }
        closeCopies(tasks)
        condition.unlock()
        forgetLag(of: tasks)
    }

    /// The loop has closed `tasks`' stores: they may be copies again.
    func give(_ tasks: [Int32]) {
        condition.lock()
        heldByLoop.subtract(tasks)
        condition.unlock()
    }

    /// The tasks copied now, for logs and tests.
    var copiedTasks: [Int32] {
        condition.lock()
        defer { condition.unlock() }
        return copies.keys.sorted()
    }

    /// Closes the copies of `tasks`, keeping in each when it last read its changelog to the
    /// end. The caller holds `condition`, and no pass runs on them.
    private func closeCopies(_ tasks: [Int32]) {
        for task in tasks {
            guard let copy = copies.removeValue(forKey: task) else { continue }
            if let time = caughtUpAt.removeValue(forKey: task) { try? ChangelogCopy.markCaughtUp(at: time, in: copy.database) }
            copy.database.close()
        }
    }

    private func forgetLag(of tasks: [Int32]) {
        status.update { snapshot in for task in tasks { snapshot.warmCopyLag[task] = nil } }
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    /// Whether a pass on `task` is to be given up: the loop takes the task, or the copier stops.
    private func isWantedElsewhere(_ task: Int32) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping || heldByLoop.contains(task)
    }

    /// Waits up to `milliseconds`, in slices, unless a stop is asked for.
    private func pause(_ milliseconds: Int) {
        for _ in 0..<(milliseconds / 50) where !isStopping { usleep(50_000) }
    }

    private func run() {
        let topic = configuration.platform.changelog(of: service)
        var standings = InstanceDirectory.Standings(service: service)
        var directory: KafkaConsumer?
        var reader: KafkaConsumer?
        defer {
            directory?.close()
            reader?.close()
        }
        var placement: Set<Int32> = []
        /// Tasks whose copy failed, and when to try again; a copy refused at its place starts anew.
        var retryAt: [Int32: Int64] = [:]
        var startAnew: Set<Int32> = []
        var rows = 0
        var lastReport = monotonicMilliseconds()
        while !isStopping {
            do {
                if directory == nil {
                    directory = try InstanceDirectory.reader(
                        platform: configuration.platform, bootstrapServers: configuration.bootstrapServers, kafkaSettings: configuration.kafkaSettings)
                    // The first placement from the whole directory, not from the first records to arrive.
                    InstanceDirectory.readToEnd(directory!, seconds: 5) { standings.read(key: $0.key, value: $0.value) }
                }
                if reader == nil { reader = try ChangelogRestore.changelogConsumer(configuration) }
            } catch {
                directory?.close()
                directory = nil
                let transient = error is KafkaError
                logger.warning("warm copies cannot read the instance directory or the changelog; trying again", [
                    "error": "\(error)", "then": transient ? "in a second" : "in 30 s",
                ])
                pause(transient ? 1_000 : 30_000)
                continue
            }
            while let event = directory!.poll(timeoutMilliseconds: 0) {
                if case .record(let record) = event { standings.read(key: record.key, value: record.value) }
            }
            let placed = standings.standbyTasks(of: instance, replicas: replicas)
            if placed != placement {
                placement = placed
                logger.info("warm copies placed", [
                    "tasks": placed.sorted().map(String.init).joined(separator: ","), "replicas": String(replicas), "instance": instance,
                ])
            }
            condition.lock()
            let wanted = placement.subtracting(heldByLoop)
            // A copy no longer placed here stays on disk, and is read on from its place if it
            // comes back soon enough, or taken over by the loop if its task is given here.
            let dropped = copies.keys.filter { !wanted.contains($0) }
            closeCopies(dropped)
            condition.unlock()
            forgetLag(of: dropped)
            let now = monotonicMilliseconds()
            for task in wanted.sorted() where !isStopping && (retryAt[task] ?? 0) <= now {
                condition.lock()
                guard !heldByLoop.contains(task) else {
                    condition.unlock()
                    continue
                }
                busy = task
                var copy = copies[task]
                condition.unlock()
                do {
                    if copy == nil { copy = try openChecked(task) }
                    let position = startAnew.contains(task) ? nil : try ChangelogCopy.freshStandbyPosition(of: copy!.database)
                    let pass = try copy!.readOn(
                        from: position, topic: topic, configuration: configuration, logger: logger, reader: reader!,
                        cancelled: { self.isWantedElsewhere(task) })
                    startAnew.remove(task)
                    retryAt[task] = nil
                    rows += pass.rows
                    let lag = max(0, pass.end - (position ?? 0))
                    status.update { $0.warmCopyLag[task] = lag }
                    condition.lock()
                    copies[task] = copy
                    caughtUpAt[task] = wallClockMilliseconds()
                    condition.unlock()
                } catch {
                    // The pass rolled back. Given up for the loop: nothing to say. A broker that
                    // is slow or restarting is tried again soon; a copy the changelog refuses at
                    // its place starts anew later; a store that may not become a copy (or one
                    // of another cluster) is left as it is and looked at again later.
                    let cancelled = error is ChangelogRestore.Cancelled
                    let transient = error is KafkaError
                    let refused = error is ChangelogRestore.Refused
                    if refused { startAnew.insert(task) }
                    if !cancelled {
                        retryAt[task] = monotonicMilliseconds() + (transient ? 1_000 : 30_000)
                        logger.warning("a warm copy's pass failed; trying again", [
                            "task": String(task), "error": "\(error)",
                            "then": transient ? "in a second" : refused ? "restoring it anew in 30 s" : "in 30 s",
                        ])
                    }
                    condition.lock()
                    // Opened for this pass and not kept: closed without a new caught-up time.
                    if copies[task] == nil { copy?.database.close() } else { closeCopies([task]) }
                    condition.unlock()
                    forgetLag(of: [task])
                }
                condition.lock()
                busy = nil
                condition.broadcast()
                condition.unlock()
            }
            if monotonicMilliseconds() - lastReport >= 10_000 {
                logger.info("warm copies caught up", ["tasks": copiedTasks.map(String.init).joined(separator: ","), "rowsSinceLastReport": String(rows)])
                rows = 0
                lastReport = monotonicMilliseconds()
            }
            pause(500)
        }
    }

    /// A store that may not become a copy: it applied records without a changelog.
    struct NotACopy: Error, CustomStringConvertible {
        var description: String
    }

    /// Opens a task's store as a copy. A store whose history is not all in the changelog (it
    /// applied records with the changelog off) is never cleared to become one.
    private func openChecked(_ task: Int32) throws -> StandbyCopy {
        let copy = try openCopy(task)
        let database = copy.database
        if try !ChangelogRestore.storeIsEmpty(database), try ChangelogCopy.standbyPosition(of: database) == nil,
           try !ChangelogRestore.isLoggedSinceEmpty(database) {
            database.close()
            throw NotACopy(description: "the store of task \(task) applied records without a changelog: it is not cleared to become a warm copy")
        }
        return copy
    }
}
