import Foundation
import Basics
import Messaging
import Storage

/// A polled record with its decoding outcome.
public struct PolledRecord<Body> {
    public var record: ConsumedRecord
    public var decoded: Result<Decoded<Body>, Rejection>

    public init(record: ConsumedRecord, decoded: Result<Decoded<Body>, Rejection>) {
        self.record = record
        self.decoded = decoded
    }
}

/// A record whose application failed (a storage error): the batch rolls back, and the error
/// names the record, so that a failure that recurs at every start can be traced to it.
public struct ApplyFailure: Error, CustomStringConvertible {
    public var eventID: String
    public var partition: TopicPartition
    public var offset: Int64
    public var underlying: Error

    public var description: String { "applying \(eventID) (\(partition)@\(offset)): \(underlying)" }
}

/// Another instance on the host was given the task of a store shared with it and claimed it
/// (``BatchApplier/claimTask()``): this one's batch rolled back, and it applies the task no more.
public struct TaskTakenOver: Error, CustomStringConvertible {
    public var task: Int32?
    public var store: String

    public var description: String { "another instance took task \(task.map(String.init) ?? "?") over in \(store)" }
}

/// What one batch did, for metrics.
public struct BatchOutcome: Sendable {
    public var applied = 0
    public var duplicates = 0
    public var deadLettered = 0
    public var skippedBehindOffset = 0
    /// Records applied although their task's stream time had passed their event time.
    public var late = 0
    public var timersFired = 0
    public var outbox: [OutboxRow] = []
    /// Dead letters by reason.
    public var deadLettersByReason: [String: Int] = [:]
    /// Commands sent to the service's own input topics, to wait for.
    public var echoes: [(key: MergeKey, partition: TopicPartition)] = []
    /// Whether the batch erased personal data (``Batch/noteErasure()``).
    public var erasedPersonalData = false
    /// The Kafka timestamps of the records the batch took (applied, repeated, refused or read
    /// past), for the latency metric; never for a rule. Records already applied, or carried
    /// over to the next batch, are not among them.
    public var recordTimestamps: [Int64] = []

    /// Adds what a following batch did.
    mutating func absorb(_ next: BatchOutcome) {
        applied += next.applied
        duplicates += next.duplicates
        deadLettered += next.deadLettered
        skippedBehindOffset += next.skippedBehindOffset
        late += next.late
        timersFired += next.timersFired
        outbox += next.outbox
        deadLettersByReason.merge(next.deadLettersByReason, uniquingKeysWith: +)
        echoes += next.echoes
        erasedPersonalData = erasedPersonalData || next.erasedPersonalData
        recordTimestamps += next.recordTimestamps
    }
}

/// A batch's view of its tasks' clocks, inside its transaction.
public struct TaskClocks {
    /// The task's stream time as the batch leaves it (nil: nothing applied yet).
    public let streamTime: (Int32) throws -> Int64?
    /// The due time of the task's next timer (nil: none). Never later than the real one.
    public let nextTimerDue: (Int32) throws -> Int64?
}

/// Steps 2 of the exactly-once loop, without Kafka: applies a batch of records in one
/// `BEGIN IMMEDIATE` transaction holding inbox and outbox (unless kept in memory only,
/// ``inboxInMemoryOnly`` and ``outboxInMemoryOnly``), state, timers and offsets.
/// A crash anywhere leaves either all of the batch or none of it.
public final class BatchApplier<Processor: StreamProcessor> {
    public let database: Database
    public let processor: Processor
    public let timerMode: TimerMode

    /// At most this many timers fire in one batch (nil: no bound). When a record's task has
    /// more timers due before it than the batch has room for, the record waits for the next
    /// batch (``carriedRecord``): a day on which every member's timer comes due is spread over
    /// batches rather than made one transaction, and one outbox in memory, of it all.
    public var timerBudget: Int?
    /// A record taken from the merge that waits for its task's timers (see ``timerBudget``):
    /// the next batch starts with it, and pulls nothing else until it is applied.
    public private(set) var carriedRecord: PolledRecord<Processor.Body>?
    /// The record the running batch has set aside for the next (``BatchProgress/carries``),
    /// kept here so that the batch's progress has no type made of the processor's: a value of
    /// such a type costs a lookup of its type at run time wherever the applier's code, not
    /// specialised, touches it (some 300 instructions, four times a record). One batch at a
    /// time: `apply` is not re-entrant (its transaction cannot nest).
    private var carriedByBatch: PolledRecord<Processor.Body>?
    /// Tasks whose timers, due by their stream time, the budget left unfired: the next batch
    /// fires them first, as an unbounded one would have at its end.
    public private(set) var tasksWithTimersLeft: Set<Int32> = []
    /// A record or timers wait for the next batch (``timerBudget``), which should follow at once.
    public var hasWorkLeftOver: Bool { carriedRecord != nil || !tasksWithTimersLeft.isEmpty }

    /// Whether the outbox is kept in memory only: each batch's rows are handed out in its
    /// outcome (``BatchOutcome/outbox``) and never stored. For a simulation, which publishes
    /// nothing later and keeps nothing past its run; a service must store its outbox, or what
    /// a batch decided would be lost with the process between the commit and the publication.
    public let outboxInMemoryOnly: Bool
    /// The number of the last row handed out by an outbox kept in memory only.
    private var lastUnstoredSeq: Int64 = 0
    /// Whether the inbox is kept in memory only: the same duplicates found and the same
    /// pruning, with no rows written. For a simulation, whose store ends with its run; a
    /// service must store its inbox, or a record sent again after a restart would be applied
    /// twice.
    public var inboxInMemoryOnly: Bool { inbox is MemoryInbox }
    /// The store's inbox: its `inbox` table's rows, or memory.
    private let inbox: any InboxStore
    /// How many event ids an inbox kept in memory holds (for tests).
    var memoryInboxCount: Int? { (inbox as? MemoryInbox)?.count }
    /// Whether the timers are kept in memory only: set, cancelled, taken and fired as the
    /// `timers` table's rows would be, in the same order, with none written. For a simulation
    /// too; a service must store its timers, or those set before a restart would never fire.
    public var timersInMemoryOnly: Bool { timers is MemoryTimers }
    /// The store's timers: its `timers` table's rows, or memory.
    private let timers: any TimerStore
    /// The timers when they are kept in memory only (for tests).
    var memoryTimers: MemoryTimers? { timers as? MemoryTimers }

    /// Stream time per task, as committed.
    private var streamTimes: [Int32: Int64] = [:]

    /// How far behind its task's stream time an event may be, in milliseconds, and still be
    /// told from a duplicate: inbox rows applied longer ago than this (in stream time) are
    /// pruned, and a shop record older than this is dead-lettered (`older-than-inbox-horizon`)
    /// rather than risk applying it twice. Nil: the inbox is never pruned.
    public let inboxHorizon: Int64?
    /// Per task, the cutoff the inbox was last pruned to (not persisted: a restart prunes once
    /// more, which deletes nothing new).
    private var prunedAt: [Int32: Int64] = [:]

    /// Partition count of the input topics (co-partitioned), to place commands sent to them:
    /// the catalogue's until the loop has read the real one from the cluster.
    public var partitionCount: Int32
    /// The task of a task's own store (the `task` layout); nil for the one store of every task.
    public var ownTask: Int32?
    /// Who applies the task of this store, when instances on one host share its file: the token
    /// this applier wrote when the task was assigned here (``claimTask()``). Each batch checks
    /// it is still the store's; nil: nothing is checked.
    private var ownerToken: String?
    /// The service's command topic among its inputs, where its tasks' peer marks go and, in a
    /// task's own store, every command to another task (``StreamProcessor/selfCommandTopics``).
    public let peerTopic: String?

    /// For a store of every task fed in event-time order across them (the simulation's), nil
    /// otherwise: whether a task has a record still to read. Before a record, the timers due
    /// before its time of its own task and of every task that has one fire, in (due, rank,
    /// member, kind, ref) order across tasks, where each task's would otherwise fire only at its
    /// own next record. A running task fires them at that record, but promises nothing past them
    /// until then, so what tasks share through a keeper (campaign budgets) is decided in this
    /// order; a task with nothing more to read never fires them. A timer due at the record's
    /// very millisecond still waits for its own task's next record (the keeper orders a shop
    /// event before a timer of that instant, by rank).
    public var taskHasRecordToCome: ((_ task: Int32) -> Bool)?

    /// How far ahead of the clock it is measured against an event may be (milliseconds): in
    /// stream mode its task's stream time, or the newest of the store's other tasks or the
    /// record's broker-set timestamp (see `exceededFutureLimit`), in wall-clock mode `clock`.
    /// An event further ahead is dead-lettered with `time-out-of-range` and moves no clock.
    public var futureMargin: Int64?
    /// The machine clock, read only in wall-clock mode, for the bound above.
    public var clock: () -> EventTime = { EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000)) }

    /// Signs what the service sends to its command topics (`StreamProcessor.commandTopics`).
    public var commandKeys: CommandKeys?

    /// Told which record is being applied, so that a crash can be pinned on it.
    public var crashNote: CrashNote?
    /// The crash note's slot of the thread that applies this store's batches.
    public var crashSlot: CrashNote.Slot = .applying
    /// For failure tests only (`FAULT_CRASH_APPLYING_ON`): applying a record whose value
    /// contains this text traps, and the setting's name is in the message.
    public var applyingTrap: (marker: [UInt8], variable: String)?
    /// Where each batch's row changes go (`CHANGELOG`), what records them, and the name of this
    /// copy of the store, which each batch's end record carries, and the changelog's partition
    /// the store writes (its task's, or 0 for the one store of the `service` layout); nil: nowhere.
    public var changelog: (capture: ChangeCapture, topic: String, copy: String, partition: Int32)? {
        // A store restored from its changelog would lack the inbox it never stored.
        didSet {
            precondition(
                changelog == nil || (!inboxInMemoryOnly && !timersInMemoryOnly), "a store that keeps a changelog keeps its inbox and timers in its tables")
        }
    }
    /// The number of the last batch that logged changes, kept in `store_identity` with it.
    public var changelogSequence: Int64 = 0
    /// Where the store's changelog ended when this instance took the store on (nil: no
    /// changelog): past every record its earlier owners wrote, restart records included,
    /// which numbers this owner's peer marks past theirs (``PeerMarkBook/tookOver(atLeast:)``).
    public var changelogEndAtTakeOver: Int64?
    /// The record the service failed on at two starts in a row: dead-lettered when it comes.
    public var poisonRecord: (partition: TopicPartition, offset: Int64, cause: String)?
    /// The record failures are counted against, until a batch commits offsets past it.
    private var strikeAgainst: (partition: TopicPartition, offset: Int64)?

    /// The dead-letter reason for `record` when it is the poison record.
    public func poisonRejection(for record: ConsumedRecord) -> Rejection? {
        guard let poisonRecord, poisonRecord.partition == record.topicPartition, poisonRecord.offset == record.offset else { return nil }
        return Rejection(
            code: .poisonRecord,
            detail: "the service failed on this record at two starts in a row (\(poisonRecord.cause)); set aside so that the records behind it are applied")
    }

    /// Counts a failure on the record `note` names (nil: the last run left no note) and
    /// returns the record failures are counted against, if any; at two in a row it becomes
    /// `poisonRecord`. A note naming another record starts the count again.
    public func recordStrike(_ note: (partition: TopicPartition, offset: Int64, cause: String)?) throws
        -> (partition: TopicPartition, offset: Int64, cause: String, strikes: Int64)?
    {
        try database.transaction {
            if let note {
                let location: [SQLValue] = [.text(note.partition.topic), .integer(Int64(note.partition.partition)), .integer(note.offset)]
                let known = try database.prepare(
                    "SELECT strikes FROM crash_strikes WHERE topic = ? AND partition = ? AND record_offset = ?"
                ).queryOne(location) { $0.int64(0) } ?? 0
                try database.execute("DELETE FROM crash_strikes")
                try database.prepare("INSERT INTO crash_strikes(topic, partition, record_offset, strikes, cause) VALUES(?, ?, ?, ?, ?)")
                    .run(location + [.integer(known + 1), .text(note.cause)])
            }
            let strike = try database.prepare("SELECT topic, partition, record_offset, strikes, cause FROM crash_strikes").queryOne { row in
                (partition: TopicPartition(topic: row.string(0), partition: Int32(row.int64(1))), offset: row.int64(2), cause: row.string(4),
                 strikes: row.int64(3))
            }
            strikeAgainst = strike.map { ($0.partition, $0.offset) }
            poisonRecord = strike.flatMap { $0.strikes >= 2 ? ($0.partition, $0.offset, $0.cause) : nil }
            return strike
        }
    }

    /// Forgets the failures counted against any record: they were of an earlier start than the
    /// last, which failed on another record (kept in another store).
    public func forgetStrikes() throws {
        try database.transaction { try database.execute("DELETE FROM crash_strikes") }
        strikeAgainst = nil
        poisonRecord = nil
    }

    /// Forgets the failures counted against a record, in the transaction that stores offsets
    /// past it.
    func clearStrikes(ifPast offsets: [TopicPartition: Int64]) throws -> Bool {
        guard let strike = strikeAgainst, let next = offsets[strike.partition], next > strike.offset else { return false }
        try database.execute("DELETE FROM crash_strikes")
        return true
    }

    /// The error for a record the processor failed on. Unless the failure is the database's
    /// (a full disk is no reason to set a record aside), the crash note names the record, so
    /// that a second failure in a row dead-letters it.
    private func failure(_ error: Error, eventID: String, on record: ConsumedRecord) -> ApplyFailure {
        let failure = ApplyFailure(eventID: eventID, partition: record.topicPartition, offset: record.offset, underlying: error)
        if !(error is SQLiteError) { crashNote?.failed(on: failure.partition, offset: failure.offset, because: "\(error)", in: crashSlot) }
        return failure
    }

    public init(
        database: Database, processor: Processor, timerMode: TimerMode, partitionCount: Int32? = nil,
        inboxHorizon: Int64? = nil, outboxInMemoryOnly: Bool = false, inboxInMemoryOnly: Bool = false, timersInMemoryOnly: Bool = false
    ) throws {
        self.database = database
        self.outboxInMemoryOnly = outboxInMemoryOnly
        inbox = inboxInMemoryOnly ? MemoryInbox(prunes: inboxHorizon != nil) : TableInbox(database: database)
        timers = timersInMemoryOnly ? MemoryTimers() : TableTimers(database: database)
        self.processor = processor
        self.timerMode = timerMode
        self.inboxHorizon = inboxHorizon
        self.partitionCount = partitionCount ?? processor.platform.partitionCount
        peerTopic = processor.selfCommandTopics.first
        _ = try database.migrate(RuntimeSchema.migrations + processor.migrations)
    }

    /// The progress marks stored for these partitions, with the offsets they were read at.
    public func storedMarks(_ partitions: [TopicPartition]) throws -> [TopicPartition: [(mark: ProgressMark, offset: Int64)]] {
        let select = try database.prepare(
            "SELECT producer, time, idle, record_offset, positions, tie_rank, tie_id FROM upstream_progress WHERE topic = ? AND partition = ? ORDER BY producer")
        var result: [TopicPartition: [(mark: ProgressMark, offset: Int64)]] = [:]
        for partition in partitions {
            let marks = try select.query(.text(partition.topic), .integer(Int64(partition.partition))) { row in
                (mark: ProgressMark(
                    producer: row.string(0), task: partition.partition, time: row.int64(1), idle: row.int64(2) != 0,
                    positions: ProgressMark.positions(parsing: row.string(4)),
                    tie: row.isNull(5) ? nil : (Int(row.int64(5)), row.string(6))),
                 offset: row.int64(3))
            }
            if !marks.isEmpty { result[partition] = marks }
        }
        return result
    }

    /// Stores progress marks read from upstream producers, in the batch's transaction.
    public func storeMarks(_ marks: [(partition: TopicPartition, mark: ProgressMark, offset: Int64)]) throws {
        guard !marks.isEmpty else { return }
        let save = try database.prepare(
            "INSERT OR REPLACE INTO upstream_progress(topic, partition, producer, time, idle, positions, record_offset, tie_rank, tie_id) "
                + "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for entry in marks {
            try save.run(
                .text(entry.partition.topic), .integer(Int64(entry.partition.partition)), .text(entry.mark.producer),
                .integer(entry.mark.time), .integer(entry.mark.idle ? 1 : 0), .text(entry.mark.positionsText), .integer(entry.offset),
                entry.mark.tie.map { .integer(Int64($0.rank)) } ?? .null, entry.mark.tie.map { .text($0.id) } ?? .null)
        }
    }

    /// Task `task`'s side of the peer marks as its store keeps it (``PeerMarkBook``), with as
    /// many figures as the processor's chains of commands have links.
    public func storedPeerBook(task: Int32, tasks: Range<Int32>) throws -> PeerMarkBook {
        func key(_ row: Statement, _ column: Int32) -> MergeKey { MergeKey(time: row.int64(column), rank: Int(row.int64(column + 1)), id: "") }
        func deeper(_ text: String) -> [MergeKey] {
            text.split(separator: ",").compactMap { pair in
                let parts = pair.split(separator: ":")
                guard parts.count == 2, let time = Int64(parts[0]), let rank = Int(parts[1]) else { return nil }
                return MergeKey(time: time, rank: rank, id: "")
            }
        }
        func number(_ row: Statement, _ column: Int32) -> PeerMark.Number { PeerMark.Number(epoch: row.int64(column), count: row.int64(column + 1)) }
        var owed: Set<Int32> = []
        let latest = try database.prepare(
            "SELECT task, epoch, count, own_time, own_rank, read_time, read_rank, acknowledges_epoch, acknowledges_count, answer_owed, "
                + "deeper FROM peer_marks ORDER BY task"
        ).query { row in
            if row.int64(9) != 0 { owed.insert(Int32(row.int64(0))) }
            return PeerMark(
                task: Int32(row.int64(0)), number: number(row, 1), own: key(row, 3), readFromPeers: key(row, 5), deeper: deeper(row.string(10)),
                to: task, acknowledges: number(row, 7))
        }
        let holds = try database.prepare("SELECT task, epoch, count, time, rank FROM peer_holds ORDER BY task, epoch, count").query { row in
            PeerHold(task: Int32(row.int64(0)), number: number(row, 1), key: key(row, 3))
        }
        let published = try database.prepare(
            "SELECT epoch, count, own_time IS NOT NULL, own_time, own_rank, read_time, read_rank, deeper FROM peer_mark_published WHERE task = ?"
        ).queryOne(.integer(Int64(task))) { row in
            (number: number(row, 0), figures: row.int64(2) == 0 ? nil
                : PeerMarkBook.Figures(own: key(row, 3), readFromPeers: key(row, 5), deeper: row.isNull(7) ? [] : deeper(row.string(7))))
        }
        return PeerMarkBook(
            task: task, tasks: tasks, levels: processor.peerMarkLevels, latest: latest, answersOwed: owed, holds: holds, number: published?.number ?? .none,
            published: published?.figures)
    }

    /// Keeps a task's side of the peer marks, in the batch's transaction with the offsets read
    /// past the marks and the marks it publishes.
    public func storePeerBook(_ book: PeerMarkBook) throws {
        func text(_ deeper: [MergeKey]) -> String { deeper.map { "\($0.time):\($0.rank)" }.joined(separator: ",") }
        try database.execute("DELETE FROM peer_marks")
        try database.execute("DELETE FROM peer_holds")
        let saveMark = try database.prepare(
            "INSERT INTO peer_marks(task, epoch, count, own_time, own_rank, read_time, read_rank, acknowledges_epoch, acknowledges_count, "
                + "answer_owed, deeper) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for mark in book.marks {
            try saveMark.run(
                .integer(Int64(mark.task)), .integer(mark.number.epoch), .integer(mark.number.count), .integer(mark.own.time),
                .integer(Int64(mark.own.rank)), .integer(mark.readFromPeers.time), .integer(Int64(mark.readFromPeers.rank)),
                .integer(mark.acknowledges.epoch), .integer(mark.acknowledges.count), .integer(book.answersOwed.contains(mark.task) ? 1 : 0),
                .text(text(mark.deeper)))
        }
        let saveHold = try database.prepare("INSERT OR REPLACE INTO peer_holds(task, epoch, count, time, rank) VALUES(?, ?, ?, ?, ?)")
        for hold in book.holds {
            try saveHold.run(
                .integer(Int64(hold.task)), .integer(hold.number.epoch), .integer(hold.number.count), .integer(hold.key.time),
                .integer(Int64(hold.key.rank)))
        }
        let figures = book.published
        try database.prepare(
            "INSERT OR REPLACE INTO peer_mark_published(task, epoch, count, own_time, own_rank, read_time, read_rank, deeper) "
                + "VALUES(?, ?, ?, ?, ?, ?, ?, ?)"
        ).run(
            .integer(Int64(book.task)), .integer(book.number.epoch), .integer(book.number.count), figures.map { .integer($0.own.time) } ?? .null,
            figures.map { .integer(Int64($0.own.rank)) } ?? .null, figures.map { .integer($0.readFromPeers.time) } ?? .null,
            figures.map { .integer(Int64($0.readFromPeers.rank)) } ?? .null, figures.map { .text(text($0.deeper)) } ?? .null)
    }

    /// The stored next offsets of these partitions (nil: never read).
    public func storedOffsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        let select = try database.prepare("SELECT next_offset FROM offsets WHERE topic = ? AND partition = ?")
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            if let offset = try select.queryOne(.text(partition.topic), .integer(Int64(partition.partition)), row: { $0.int64(0) }) {
                result[partition] = offset
            }
        }
        return result
    }

    /// Takes the store's task over from any instance that had it: from now on a batch of
    /// theirs fails with ``TaskTakenOver`` and commits nothing. Called when the task is
    /// assigned, before the task's offsets, peer book and echoes are read: the group may give
    /// the task to this instance while its last owner, slow, still commits a batch, which
    /// would otherwise land after those reads (a hold on a peer that the new owner's book
    /// lacks, and a later record applied before that peer's answer).
    public func claimTask() throws {
        let token = UUID().uuidString
        try database.transaction {
            try database.prepare("INSERT OR REPLACE INTO store_identity(name, value) VALUES('task-owner', ?)").run(.text(token))
        }
        ownerToken = token
    }

    /// Inside a transaction: fails if another instance claimed the task since this one did.
    private func checkTaskOwner() throws {
        guard let ownerToken else { return }
        let owner = try database.prepare("SELECT value FROM store_identity WHERE name = 'task-owner'").queryOne { $0.string(0) }
        guard owner == ownerToken else { throw TaskTakenOver(task: ownTask, store: database.configuration.path) }
    }

    /// The id of the Kafka cluster this store's offsets belong to, recorded on first use; a
    /// store built from another cluster is refused, since its offsets mean nothing there.
    public func claimCluster(_ clusterID: String) throws {
        try database.transaction {
            let known = try database.prepare("SELECT value FROM store_identity WHERE name = 'kafka-cluster-id'")
                .queryOne(row: { $0.string(0) })
            if let known, known != clusterID {
                throw ConfigurationError(
                    variable: processor.platform.variable("DATABASE"),
                    problem: "\(database.configuration.path) was built from Kafka cluster \(known), but the broker is cluster \(clusterID): "
                        + "its offsets mean nothing here. Point the service at its own cluster, or give it a fresh data directory")
            }
            if known == nil {
                try database.prepare("INSERT INTO store_identity(name, value) VALUES('kafka-cluster-id', ?)").run(.text(clusterID))
            }
        }
    }

    /// For an instance that owns the tasks `owned` of a store it shares with others: the merge
    /// key up to which it may apply records (``EventTimeMerger/otherTasksBound``). The lowest of
    /// the frontiers the other tasks' owners last committed (`lowest` for a task none has
    /// committed yet) and of the commands on their way to any task, read in one statement, so
    /// that a command sent after a frontier was committed is counted. Also the promises of the
    /// other tasks (`none` for a task without a row), and the frontiers stored for the owned
    /// tasks, which the instance checks are its own (`stored`).
    public func otherTasksBound(owned: Set<Int32>) throws -> (bound: MergeKey, promises: [TaskPromise], stored: [Int32: TaskFrontier]) {
        let rows = try database.prepare(
            "SELECT task, time, rank, event_id, promise, promise_idle FROM task_frontier UNION ALL "
                + "SELECT -1, time, rank, event_id, NULL, 0 FROM echoes "
                + "WHERE (time, rank) = (SELECT time, rank FROM echoes ORDER BY time, rank LIMIT 1)"
        ).query { row -> (task: Int32, frontier: TaskFrontier) in
            let key = row.isNull(1) ? MergeKey.lowest : MergeKey(time: row.int64(1), rank: row.int(2), id: row.string(3))
            let promise: TaskPromise = row.isNull(4) ? .none : row.int64(5) != 0 ? .idle(row.int64(4)) : .busy(row.int64(4))
            return (Int32(row.int64(0)), TaskFrontier(key: key, promise: promise))
        }
        var bound = MergeKey.highest
        var promises: [Int32: TaskPromise] = [:]
        var stored: [Int32: TaskFrontier] = [:]
        for (task, frontier) in rows {
            if task >= 0 && owned.contains(task) {
                stored[task] = frontier
                continue
            }
            bound = min(bound, frontier.key)
            if task >= 0 { promises[task] = frontier.promise }
        }
        let others = (0..<partitionCount).filter { !owned.contains($0) }
        if others.contains(where: { promises[$0] == nil }) { bound = .lowest }
        return (bound, others.map { promises[$0] ?? .none }, stored)
    }

    /// Marks the frontiers of tasks this instance no longer owns as not known, so that the other
    /// instances wait for the next owner's rather than go by what this one had read.
    public func forgetFrontiers(of tasks: [Int32]) throws {
        guard !tasks.isEmpty else { return }
        try database.transaction { try storeFrontiers(Dictionary(uniqueKeysWithValues: tasks.map { ($0, TaskFrontier.unknown) })) }
    }

    /// Stores the frontiers of the tasks this instance owns, in the batch's transaction.
    public func storeFrontiers(_ frontiers: [Int32: TaskFrontier]) throws {
        guard !frontiers.isEmpty else { return }
        let save = try database.prepare(
            "INSERT OR REPLACE INTO task_frontier(task, time, rank, event_id, promise, promise_idle) VALUES(?, ?, ?, ?, ?, ?)")
        for (task, frontier) in frontiers.sorted(by: { $0.key < $1.key }) {
            let key = frontier.key
            let promise: SQLValue
            let idle: Bool
            switch frontier.promise {
            case .none: (promise, idle) = (.null, false)
            case .busy(let time): (promise, idle) = (.integer(time), false)
            case .idle(let time): (promise, idle) = (.integer(time), true)
            }
            try save.run(
                .integer(Int64(task)), key == .lowest ? .null : .integer(key.time), .integer(Int64(key.rank)), .text(key.id),
                promise, .integer(idle ? 1 : 0))
        }
    }

    /// Commands to these partitions that were sent and not applied yet.
    public func storedEchoes(_ partitions: [TopicPartition]) throws -> [(key: MergeKey, partition: TopicPartition)] {
        let select = try database.prepare("SELECT event_id, time, rank FROM echoes WHERE topic = ? AND task = ?")
        var result: [(key: MergeKey, partition: TopicPartition)] = []
        for partition in partitions {
            result += try select.query(.text(partition.topic), .integer(Int64(partition.partition))) { row in
                (MergeKey(time: row.int64(1), rank: row.int(2), id: row.string(0)), partition)
            }
        }
        return result
    }

    /// The task clocks as committed, read from the store where not cached (outside transactions).
    public func currentClocks() -> TaskClocks {
        TaskClocks(
            streamTime: { task in
                let time = try self.storedStreamTime(task)
                return time == .min ? nil : time
            },
            nextTimerDue: { task in
                let due = try self.earliestTimerDue(task)
                return due == .max ? nil : due
            })
    }

    /// A task's stream time as last committed, when this applier has it at hand.
    public func knownStreamTime(_ task: Int32) -> Int64? {
        streamTimes[task].flatMap { $0 == .min ? nil : $0 }
    }

    /// Forgets cached state of tasks another instance may now change.
    public func forget(tasks: [Int32]) {
        for task in tasks {
            streamTimes[task] = nil
        }
        timers.forget(tasks: tasks)
        // Its offset was not stored past: whoever owns the task next reads it again.
        if let carried = carriedRecord, tasks.contains(carried.record.partition) { carriedRecord = nil }
        // Whoever owns the task next fires them before its next record.
        tasksWithTimersLeft.subtract(tasks)
    }

    /// Applies `records` (already in the order to apply them), fires due timers, deletes the
    /// outbox rows Kafka acknowledged, stores `committableOffsets` (every record below them has
    /// been handed out; by default, each record's partition up to it), and commits. In
    /// wall-clock mode, `wallClock` fires the timers of `tasks` due by then.
    public func apply(
        _ records: [PolledRecord<Processor.Body>], committableOffsets: [TopicPartition: Int64]? = nil,
        deliveredOutbox: [UInt64] = [], wallClock: EventTime? = nil, tasks: [Int32] = []
    ) throws -> BatchOutcome {
        var iterator = records.makeIterator()
        var outcome = try apply(
            nextRecord: { _ in iterator.next() }, committableOffsets: { committableOffsets },
            deliveredOutbox: deliveredOutbox, wallClock: wallClock, tasks: tasks)
        // A record waiting for its timers (``timerBudget``): batches follow until all are applied.
        while hasWorkLeftOver {
            outcome.absorb(try apply(
                nextRecord: { _ in iterator.next() }, committableOffsets: { committableOffsets }, wallClock: wallClock, tasks: tasks))
        }
        return outcome
    }

    /// The same, pulling records one at a time: before each pull, `nextRecord` is told of the
    /// commands the batch has just sent itself, so that records sorting after them are held
    /// back within this very batch (the merge's echo barrier). `committableOffsets` is asked
    /// once pulling is over.
    /// `beforeCommit` writes last, inside the transaction, seeing the task clocks as the batch
    /// leaves them (the loop's progress marks).
    public func apply(
        nextRecord: (_ newEchoes: ArraySlice<(key: MergeKey, partition: TopicPartition)>) -> PolledRecord<Processor.Body>?,
        committableOffsets: () -> [TopicPartition: Int64]?,
        deliveredOutbox: [UInt64] = [], wallClock: EventTime? = nil, tasks: [Int32] = [],
        beforeCommit: ((Batch, TaskClocks) throws -> Void)? = nil
    ) throws -> BatchOutcome {
        var progress = BatchProgress(timersLeft: timerBudget ?? .max)
        var strikeCleared = false
        let carriedIn = carriedRecord
        carriedByBatch = nil
        defer { carriedByBatch = nil }
        let timersLeftIn = tasksWithTimersLeft
        do {
            try database.transaction {
                try checkTaskOwner()
                try changelog?.capture.begin()
                let batch = try makeBatch()
                try deleteDelivered(deliveredOutbox)
                try fireTimersLeft(timersLeftIn, in: batch, &progress)
                if let carriedIn {
                    if progress.timersLeftOver.isEmpty { try take(carriedIn, in: batch, &progress) } else { carry(carriedIn, &progress) }
                }
                var echoesSeen = 0
                // A record that sent another task a command ends the batch: what follows may
                // have to wait for that task's answer (``PeerHold``), which the task's book
                // only holds once the batch is committed.
                while !progress.carries, batch.peerCommands.isEmpty, let polled = nextRecord(batch.echoes[echoesSeen...]) {
                    echoesSeen = batch.echoes.count
                    try take(polled, in: batch, &progress)
                }
                if let committable = committableOffsets() { try settle(on: committable, &progress) }
                if progress.carries, let carried = carriedByBatch { try holdOffset(at: carried.record, &progress) }
                try fireTimersLeftDue(in: batch, wallClock: wallClock, tasks: tasks, &progress)
                try processor.finish(batch)
                strikeCleared = try store(progress)
                // What waits for the next batch belongs to its task already (marks, frontiers).
                carriedRecord = progress.carries ? carriedByBatch : nil
                tasksWithTimersLeft = progress.timersLeftOver
                if let beforeCommit {
                    let pending = progress.pendingStreamTimes
                    try beforeCommit(batch, TaskClocks(
                        streamTime: { task in
                            let time = try pending[task] ?? self.storedStreamTime(task)
                            return time == .min ? nil : time
                        },
                        nextTimerDue: { task in
                            let due = min(try self.earliestTimerDue(task), batch.scheduled[task] ?? .max)
                            return due == .max ? nil : due
                        }))
                }
                try logChanges(in: batch)
                progress.outcome.outbox = handOutOutbox(of: batch)
                progress.outcome.echoes = batch.echoes
                progress.outcome.deadLettersByReason = batch.deadLetterReasons
                progress.outcome.erasedPersonalData = batch.erasedPersonalData
            }
        } catch {
            // The transaction rolled back: cached views of it are void.
            inbox.discard()
            timers.discard()
            changelog?.capture.discard()
            carriedRecord = carriedIn
            tasksWithTimersLeft = timersLeftIn
            streamTimes.removeAll()
            prunedAt.removeAll()
            processor.abandon()
            throw error
        }
        inbox.commit()
        timers.commit()
        for (task, time) in progress.pendingStreamTimes { streamTimes[task] = time }
        if strikeCleared { strikeAgainst = nil }
        carriedRecord = progress.carries ? carriedByBatch : nil
        return progress.outcome
    }

    /// Sets `polled` aside for the next batch: its task's timers are not all fired.
    private func carry(_ polled: PolledRecord<Processor.Body>, _ progress: inout BatchProgress) {
        carriedByBatch = polled
        progress.carries = true
    }

    /// What becomes of one record.
    private enum Verdict {
        /// Read past without effect (`isRelevant` false).
        case passOver
        /// Read past, its time moving the task's clock (`onlyMovesStreamTime`).
        case advanceClock(EventTime)
        /// Dead-lettered; `echo` names the command awaited back, if it was one.
        case refuse(Rejection, echo: String?)
        case apply(Decoded<Processor.Body>)
    }

    /// Step 1: the outbox rows Kafka acknowledged go, a run of consecutive rows at a time
    /// (acknowledgements come mostly in order, so a batch's rows are usually one run).
    private func deleteDelivered(_ seqs: [UInt64]) throws {
        guard !seqs.isEmpty else { return }
        let delete = try database.prepare("DELETE FROM outbox WHERE seq BETWEEN ? AND ?")
        for run in Self.runs(of: seqs) { try delete.run(.integer(run.lowerBound), .integer(run.upperBound)) }
    }

    /// The sequence numbers as runs of consecutive numbers, ascending.
    static func runs(of seqs: [UInt64]) -> [ClosedRange<Int64>] {
        var runs: [ClosedRange<Int64>] = []
        for seq in seqs.map({ Int64(bitPattern: $0) }).sorted() {
            if let last = runs.last, seq <= last.upperBound + 1 {
                runs[runs.count - 1] = last.lowerBound...max(last.upperBound, seq)
            } else {
                runs.append(seq...seq)
            }
        }
        return runs
    }

    /// Step 2, for each record: skipped if already applied, else refused, read past or applied.
    private func take(_ polled: PolledRecord<Processor.Body>, in batch: Batch, _ progress: inout BatchProgress) throws {
        let record = polled.record
        let partition = record.topicPartition
        let isSorted = processor.sortedInputTopics.contains(record.topic)
        // Only a sorted topic's records are looked up and noted by place.
        let location: [SQLValue] = isSorted ? [.text(partition.topic), .integer(Int64(partition.partition)), .integer(record.offset)] : []
        if let next = try storedOffset(partition, &progress), record.offset < next {
            progress.outcome.skippedBehindOffset += 1
            return
        }
        if isSorted, try database.prepare("SELECT 1 FROM applied_offsets WHERE topic = ? AND partition = ? AND record_offset = ?")
            .queryOne(location, row: { _ in true }) == true {
            progress.outcome.skippedBehindOffset += 1
            return
        }
        let task = record.partition
        let streamTime = try progress.pendingStreamTimes[task] ?? storedStreamTime(task)
        batch.task = task
        batch.streamTime = EventTime(millis: max(streamTime, 0))
        switch try verdict(on: polled, isSorted: isSorted, task: task, streamTime: streamTime, progress) {
        case .passOver:
            break
        case .advanceClock(let time):
            if timerMode == .streamTime,
               try !fireEveryTasksTimers(before: time.millis, batch: batch, &progress)
                || !fireTimers(task: task, upTo: max(streamTime, time.millis), batch: batch, &progress) {
                carry(polled, &progress)
                return
            }
            progress.pendingStreamTimes[task] = max(streamTime, time.millis)
        case .refuse(let rejection, let echo):
            if let echo { try forgetEcho(echo) }
            try batch.deadLetter(record, reason: rejection)
            progress.outcome.deadLettered += 1
        case .apply(let input):
            guard try applyOnce(input, from: record, task: task, streamTime: streamTime, in: batch, &progress) else {
                carry(polled, &progress)
                return
            }
            // Commands a service sends itself go to its sorted (command) topics.
            if isSorted { try forgetEcho(input.eventID) }
        }
        // Raised in place: one lookup of the partition, not two, for every record.
        progress.nextOffsets[partition, default: 0].raise(to: record.offset + 1)
        if let timestamp = record.timestamp { progress.outcome.recordTimestamps.append(timestamp) }
        if isSorted {
            try database.prepare("INSERT OR IGNORE INTO applied_offsets(topic, partition, record_offset) VALUES(?, ?, ?)").run(location)
        }
    }

    /// Whether a decoded record may be applied: not when it failed to decode, lies behind the
    /// inbox horizon (it could not be told from a duplicate) or too far ahead (it would drag
    /// the clock).
    private func verdict(on polled: PolledRecord<Processor.Body>, isSorted: Bool, task: Int32, streamTime: Int64, _ progress: BatchProgress) throws -> Verdict {
        let input: Decoded<Processor.Body>
        switch polled.decoded {
        case .failure(let rejection): return .refuse(rejection, echo: polled.record.eventID)
        case .success(let decoded): input = decoded
        }
        // Not an echo even on a sorted topic: the service's own commands go to their key's
        // partition, so a copy elsewhere must not release the one still on its way.
        if let misplaced = misplacement(of: polled.record) { return .refuse(misplaced, echo: nil) }
        guard input.isRelevant else {
            guard input.onlyMovesStreamTime,
                  try exceededFutureLimit(input.time.millis, of: polled.record, task: task, streamTime: streamTime, pending: progress.pendingStreamTimes) == nil
            else { return .passOver }
            return .advanceClock(input.time)
        }
        let echo = isSorted ? input.eventID : nil
        if input.isExternalInput, streamTime != .min, let inboxHorizon, input.time.millis < streamTime - inboxHorizon {
            // Its inbox row, if it ever had one, may be pruned. (Other services' records are never
            // refused for their lag.)
            return .refuse(Rejection(
                code: .olderThanInboxHorizon,
                detail: "event time \(input.time) is more than \(inboxHorizon / 86_400_000) days behind the stream time "
                    + "\(EventTime(millis: streamTime)): too old to tell from a duplicate"), echo: echo)
        }
        if input.movesStreamTime,
           let limit = try exceededFutureLimit(input.time.millis, of: polled.record, task: task, streamTime: streamTime, pending: progress.pendingStreamTimes) {
            return .refuse(Rejection(
                code: .timeOutOfRange,
                detail: "event time \(input.time) is more than the allowed margin ahead of \(EventTime(millis: limit - futureMargin!)) "
                    + "(\(timerMode == .streamTime ? "the newest stream time, or the record's Kafka timestamp" : "the machine clock")); "
                    + "it moves no clock"), echo: echo)
        }
        return .apply(input)
    }

    /// Why a keyed record may not be applied in the task it was read in: its key belongs to
    /// another partition (a producer with another partitioner, or one that named the
    /// partition). Its task holds none of the key's state, and once each task keeps a store of
    /// its own, applying it would split the key's state in two.
    func misplacement(of record: ConsumedRecord) -> Rejection? {
        guard let key = record.key else { return nil }
        let home = Murmur2Partitioner.partition(of: key, partitions: partitionCount)
        guard home != record.partition else { return nil }
        return Rejection(
            code: .wrongPartition,
            detail: "the key belongs on partition \(home) of \(partitionCount) (murmur2, the Java client's partitioner), "
                + "not on partition \(record.partition)")
    }

    /// The inbox first: a re-sent record counts as a duplicate and a conflicting one is
    /// dead-lettered, neither moving timers; a new one is noted in the inbox, fires the timers
    /// due before it and is handed to the processor. Returns false, having applied nothing of
    /// it, when the batch has no room for those timers (``timerBudget``).
    private func applyOnce(
        _ input: Decoded<Processor.Body>, from record: ConsumedRecord, task: Int32, streamTime: Int64, in batch: Batch,
        _ progress: inout BatchProgress
    ) throws -> Bool {
        // Dated for pruning by the stream time it was applied at, never earlier. A record that
        // moves no clock is applied whenever it arrives, so the stream time then says nothing of
        // it: dated by its own time, and not noted at all when the next pruning would delete it
        // (the processor's `hasApplied` answers for it below), so that whether its row is kept
        // depends on nothing but its time and the task's stream time, in every store that applies it.
        let dated = input.movesStreamTime ? max(input.time.millis, streamTime) : input.time.millis
        if streamTime == .min || dated >= inboxCutoff(streamTime: streamTime) ?? .min {
            if case .known(let known) = try inbox.note(input.eventID, payloadHash: input.payloadHash, task: task, time: dated) {
                if known == input.payloadHash {
                    progress.outcome.duplicates += 1
                } else {
                    try batch.deadLetter(record, reason: Rejection(
                        code: .conflictingDuplicate, detail: "event id \(input.eventID) was applied before with a different payload"))
                    progress.outcome.deadLettered += 1
                }
                return true
            }
        }
        if !input.isExternalInput, streamTime != .min, let inboxHorizon, input.time.millis < streamTime - inboxHorizon,
           try processor.hasApplied(input, in: batch) {
            // Its first copy's inbox row is pruned; the row just written, if any, remembers it again.
            progress.outcome.duplicates += 1
            return true
        }
        if timerMode == .streamTime && input.movesStreamTime,
           try !fireEveryTasksTimers(before: input.time.millis, batch: batch, &progress)
            || !fireTimers(task: task, upTo: max(streamTime, input.time.millis), batch: batch, &progress) {
            // Carried to the next batch: it is not in the inbox until it is applied.
            try inbox.forget(input.eventID)
            return false
        }
        crashNote?.working(on: record, in: crashSlot)
        defer { crashNote?.idle(in: crashSlot) }
        if let trap = applyingTrap, let value = record.value, value.contains(trap.marker) {
            fatalError("\(trap.variable): a trap injected on \(record.topicPartition)@\(record.offset)")
        }
        batch.cause = MergeKey(time: input.time.millis, rank: input.rank, id: input.eventID)
        if batch.echoesOnlyFor != nil { batch.causeMayCommand = processor.mayCommandOtherTasks(input) }
        defer { batch.cause = nil; batch.causeMayCommand = true }
        do { try processor.apply(input, in: batch) } catch {
            throw failure(error, eventID: input.eventID, on: record)
        }
        progress.outcome.applied += 1
        progress.appliedPerTask[task, default: 0] += 1
        if input.movesStreamTime && input.time.millis < streamTime { progress.outcome.late += 1 }
        if input.movesStreamTime { progress.pendingStreamTimes[task] = max(streamTime, input.time.millis) }
        return true
    }

    /// Step 3: the offsets the merge says are safe to store (every record below them was
    /// handed out), instead of each record's own, when it knows them.
    private func settle(on committable: [TopicPartition: Int64], _ progress: inout BatchProgress) throws {
        progress.nextOffsets = [:]
        for (partition, offset) in committable where offset > (try storedOffset(partition, &progress) ?? -1) {
            progress.nextOffsets[partition] = offset
        }
    }

    /// Keeps the stored offset of a carried record's partition at the record: the merge counts
    /// it handed out, but it is not applied yet, and a restart must read it again.
    private func holdOffset(at record: ConsumedRecord, _ progress: inout BatchProgress) throws {
        let partition = record.topicPartition
        guard let next = progress.nextOffsets[partition], next > record.offset else { return }
        progress.nextOffsets[partition] = record.offset > (try storedOffset(partition, &progress) ?? -1) ? record.offset : nil
    }

    /// Step 4: timers set during the batch that are already due (a late record's pending
    /// release, say) fire now rather than wait for the next record; in wall-clock mode, the
    /// timers due by the clock.
    private func fireTimersLeftDue(in batch: Batch, wallClock: EventTime?, tasks: [Int32], _ progress: inout BatchProgress) throws {
        if timerMode == .streamTime {
            var due = progress.pendingStreamTimes
            // A timer set already due by a record that moves no clock (one a service kept aside
            // itself, released by an answer) fires now, not at its task's next record, for a
            // service that asks.
            for (task, earliest) in batch.scheduled where due[task] == nil && processor.firesDueTimersAtBatchEnd {
                let time = try storedStreamTime(task)
                if time != .min && earliest <= time { due[task] = time }
            }
            // Those the budget leaves for later fire first in the next batch.
            for (task, time) in due.sorted(by: { $0.key < $1.key }) {
                batch.task = task
                batch.streamTime = EventTime(millis: time)
                if try !fireTimers(task: task, upTo: time, batch: batch, &progress) { progress.timersLeftOver.insert(task) }
            }
        } else if let wallClock {
            // Those the budget leaves for later fire in the next batch (the loop finds them due).
            for task in tasks {
                batch.task = task
                batch.streamTime = EventTime(millis: max(try progress.pendingStreamTimes[task] ?? storedStreamTime(task), 0))
                _ = try fireTimers(task: task, upTo: wallClock.millis, batch: batch, &progress)
            }
        }
    }

    /// Step 1b: the timers an earlier batch's budget left unfired, due by their task's stream
    /// time, before any record (as an unbounded batch would have fired them at its end).
    private func fireTimersLeft(_ tasks: Set<Int32>, in batch: Batch, _ progress: inout BatchProgress) throws {
        for task in tasks.sorted() {
            let time = try storedStreamTime(task)
            batch.task = task
            batch.streamTime = EventTime(millis: max(time, 0))
            if try !fireTimers(task: task, upTo: time, batch: batch, &progress) { progress.timersLeftOver.insert(task) }
        }
    }

    /// Step 5: offsets, task clocks and the inbox's pruning, in the batch's transaction.
    /// Returns whether a strike against a record was cleared (the offsets moved past it).
    private func store(_ progress: BatchProgress) throws -> Bool {
        var progress = progress
        let saveOffset = try database.prepare(
            "INSERT INTO offsets(topic, partition, next_offset) VALUES(?, ?, ?) "
                + "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset")
        let forgetApplied = try database.prepare(
            "DELETE FROM applied_offsets WHERE topic = ? AND partition = ? AND record_offset < ?")
        let strikeCleared = try clearStrikes(ifPast: progress.nextOffsets)
        for (partition, offset) in progress.nextOffsets where offset != (try storedOffset(partition, &progress)) {
            try saveOffset.run(.text(partition.topic), .integer(Int64(partition.partition)), .integer(offset))
            if processor.sortedInputTopics.contains(partition.topic) {
                try forgetApplied.run(.text(partition.topic), .integer(Int64(partition.partition)), .integer(offset))
            }
        }
        let saveClock = try database.prepare(
            "INSERT INTO task_clock(task, stream_time, applied) VALUES(?, ?, ?) "
                + "ON CONFLICT(task) DO UPDATE SET stream_time = excluded.stream_time, applied = applied + excluded.applied")
        for task in Set(progress.pendingStreamTimes.keys).union(progress.appliedPerTask.keys).sorted() {
            let time = try progress.pendingStreamTimes[task] ?? storedStreamTime(task)
            try saveClock.run(.integer(Int64(task)), .integer(time), .integer(progress.appliedPerTask[task] ?? 0))
        }
        try pruneInbox(streamTimes: progress.pendingStreamTimes)
        return strikeCleared
    }

    private func storedOffset(_ partition: TopicPartition, _ progress: inout BatchProgress) throws -> Int64? {
        if let known = progress.storedOffsets[partition] { return known }
        let offset = try storedOffsets([partition])[partition]
        progress.storedOffsets[partition] = .some(offset)
        return offset
    }

    /// A command the service sent itself has come back: it is no longer awaited.
    private func forgetEcho(_ eventID: String) throws {
        try database.prepare("DELETE FROM echoes WHERE event_id = ?").run(.text(eventID))
    }

    /// The rows `batch` added to the outbox, the last step before its commit; an outbox kept in
    /// memory only numbers the next batch's rows on from them (a commit that then fails leaves
    /// a gap, never a number given twice).
    private func handOutOutbox(of batch: Batch) -> [OutboxRow] {
        if let last = batch.lastUnstoredSeq { lastUnstoredSeq = last }
        return batch.outbox
    }

    /// The batch of a transaction: commands to the service's own input topics are echoes.
    private func makeBatch() throws -> Batch {
        let processor = self.processor
        let batch = try Batch(
            database: database, service: processor.name, platform: processor.platform,
            selfTopics: Dictionary(uniqueKeysWithValues: processor.inputTopics.map { ($0, partitionCount) }),
            rank: { processor.rank(of: $0) }, timers: timers)
        batch.taskCount = partitionCount
        if outboxInMemoryOnly { batch.lastUnstoredSeq = lastUnstoredSeq }
        batch.signer = commandKeys.map { ($0, processor.commandTopics) }
        batch.personalDataTopics = processor.personalDataTopics
        batch.refusesSelfCommands = processor.tasksAreIndependent
        batch.echoesOnlyFor = ownTask
        if ownTask != nil { batch.peerTopic = peerTopic }
        return batch
    }

    /// Applies records of broadcast topics in one transaction with their offsets. Offsets
    /// only move forward: instances sharing the database each read these topics whole.
    public func applyBroadcast(_ records: [ConsumedRecord]) throws -> BatchOutcome {
        var outcome = BatchOutcome()
        var strikeCleared = false
        do {
            try database.transaction {
                try checkTaskOwner()
                try changelog?.capture.begin()
                let processor = self.processor
                let batch = try makeBatch()
                // Every task's store applies them: one writes their dead letters.
                batch.writesDeadLetters = (ownTask ?? 0) == 0
                var nextOffsets: [TopicPartition: Int64] = [:]
                for record in records {
                    batch.task = record.partition
                    if let poison = poisonRejection(for: record) {
                        try batch.deadLetter(record, reason: poison)
                        outcome.deadLettered += 1
                    } else {
                        crashNote?.working(on: record, in: crashSlot)
                        defer { crashNote?.idle(in: crashSlot) }
                        do { try processor.applyBroadcast(record, in: batch) } catch {
                            throw failure(error, eventID: record.eventID ?? "", on: record)
                        }
                        outcome.applied += 1
                    }
                    nextOffsets[record.topicPartition, default: 0].raise(to: record.offset + 1)
                }
                try processor.finish(batch)
                let saveOffset = try database.prepare(
                    "INSERT INTO offsets(topic, partition, next_offset) VALUES(?, ?, ?) "
                        + "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)")
                strikeCleared = try clearStrikes(ifPast: nextOffsets)
                for (partition, offset) in nextOffsets {
                    try saveOffset.run(.text(partition.topic), .integer(Int64(partition.partition)), .integer(offset))
                }
                try logChanges(in: batch)
                outcome.outbox = handOutOutbox(of: batch)
                outcome.deadLettersByReason = batch.deadLetterReasons
            }
        } catch {
            timers.discard()
            changelog?.capture.discard()
            processor.abandon()
            throw error
        }
        timers.commit()
        if strikeCleared { strikeAgainst = nil }
        return outcome
    }

    /// Sends the row changes of the batch's transaction to the changelog, behind everything
    /// else the batch sends: the relay publishes a changelog row only once every row before it
    /// is acknowledged, so a store restored from the changelog never stands past an output
    /// that was not published.
    /// They go as one outbox row (``ChangelogBatch``), which the relay sends as a record per row
    /// to the store's partition (one store, one partition: their order is the commits'), closed by a
    /// batch-end record: a restore applies no batch it has not seen the end of.
    private func logChanges(in batch: Batch) throws {
        guard let changelog else { return }
        let changes = try changelog.capture.end()
        guard !changes.isEmpty else { return }
        let sequence = changelogSequence + 1
        try database.prepare("INSERT OR REPLACE INTO store_identity(name, value) VALUES(?, ?)")
            .run(.text(ChangelogCopy.sequenceRow), .text(String(sequence)))
        try batch.emitChangelog(
            topic: changelog.topic, partition: changelog.partition, changes: changes, copy: changelog.copy, sequence: sequence)
        // Ahead of the store if the transaction fails after all: a gap, never a number twice.
        changelogSequence = sequence
    }

    /// Whether any of `tasks` has a timer due at or before `time` (read outside a
    /// transaction, from the cache where it can).
    public func hasTimersDue(tasks: [Int32], by time: EventTime) throws -> Bool {
        try tasks.contains { try earliestTimerDue($0) <= time.millis }
    }

    /// The time before which a task's inbox rows are pruned at `streamTime`: the horizon
    /// before it, rounded down to a whole hour; nil without a horizon.
    private func inboxCutoff(streamTime: Int64) -> Int64? {
        inboxHorizon.map { (streamTime - $0).roundedDown(to: 3_600_000) }
    }

    /// Deletes inbox rows older than the horizon, rounded down to a whole hour, each time that
    /// hour moves on: what is left does not depend on how the inputs were batched (a store
    /// rebuilt from history prunes the same rows).
    private func pruneInbox(streamTimes: [Int32: Int64]) throws {
        guard inboxHorizon != nil else { return }
        for (task, time) in streamTimes.sorted(by: { $0.key < $1.key }) {
            guard let cutoff = inboxCutoff(streamTime: time), cutoff > prunedAt[task] ?? .min else { continue }
            try inbox.prune(task: task, before: cutoff)
            prunedAt[task] = cutoff
        }
    }

    /// The latest acceptable time when `time` is past it (see `futureMargin`); nil when `time`
    /// is acceptable. In stream mode the reference is the newest of:
    /// - the task's stream time;
    /// - the stream times of the store's other tasks, so that a partition quiet for longer
    ///   than the margin is let back in once the others have moved on (in a store of one task,
    ///   there are none);
    /// - the record's Kafka timestamp when the broker set it (`LogAppendTime`): no writer moves
    ///   it, and every read of the record sees the same, so a quiet partition's next real
    ///   record is let back in by it alone;
    /// - for the store's first record only, its Kafka timestamp even when the writer set it
    ///   (bounding a writer's mistake, as good as the writer).
    /// A store's first record without a timestamp has no bound.
    private func exceededFutureLimit(_ time: Int64, of record: ConsumedRecord, task: Int32, streamTime: Int64, pending: [Int32: Int64]) throws -> Int64? {
        guard let futureMargin else { return nil }
        if timerMode == .wallClock {
            let limit = clock().millis + futureMargin
            return time > limit ? limit : nil
        }
        if streamTime != .min && time <= streamTime + futureMargin { return nil }
        let appended = record.timestampType == .logAppendTime ? record.timestamp : nil
        if let appended, time <= appended + futureMargin { return nil }
        let stored = try database.prepare("SELECT MAX(stream_time) FROM task_clock WHERE task != ?")
            .queryOne(.integer(Int64(task)), row: { $0.isNull(0) ? nil : $0.int64(0) }) ?? nil
        var references = [stored].compactMap { $0 } + pending.filter { $0.key != task }.map(\.value)
        if streamTime != .min { references.append(streamTime) }
        if let appended { references.append(appended) }
        if references.isEmpty, let written = record.timestamp { references.append(written) }
        guard let newest = references.max() else { return nil }
        return time > newest + futureMargin ? newest + futureMargin : nil
    }

    private func storedStreamTime(_ task: Int32) throws -> Int64 {
        if let cached = streamTimes[task] { return cached }
        let time = try database.prepare("SELECT stream_time FROM task_clock WHERE task = ?")
            .queryOne(.integer(Int64(task)), row: { $0.int64(0) }) ?? Int64.min
        streamTimes[task] = time
        return time
    }

    /// The due time of the task's earliest timer, or one earlier; `Int64.max` when none is set.
    private func earliestTimerDue(_ task: Int32) throws -> Int64 {
        try timers.earliestDue(task: task) ?? .max
    }

    /// With ``taskHasRecordToCome``: fires the timers due before `limit` of the batch's current
    /// task and of every task with a record to come, the earliest of all first, including those
    /// that firing sets, as many as the batch's budget allows, each in its own task and at its
    /// task's stream time, as the task would at its next record. Returns whether none due before
    /// `limit` is left.
    private func fireEveryTasksTimers(before limit: Int64, batch: Batch, _ progress: inout BatchProgress) throws -> Bool {
        guard let taskHasRecordToCome else { return true }
        let (recordTask, recordStreamTime) = (batch.task, batch.streamTime)
        defer { (batch.task, batch.streamTime) = (recordTask, recordStreamTime) }
        // Across tasks, the table's order, then the task's number.
        func firesBefore(_ timer: DueTimer, _ other: DueTimer) -> Bool {
            let (key, otherKey) = (MemoryTimers.Key(timer), MemoryTimers.Key(other))
            return MemoryTimers.Key.fires(key, before: otherKey) || (!MemoryTimers.Key.fires(otherKey, before: key) && timer.task < other.task)
        }
        while true {
            var earliest: DueTimer?
            for task in 0..<partitionCount
            where min(try earliestTimerDue(task), batch.scheduled[task] ?? .max) < limit && (task == recordTask || taskHasRecordToCome(task)) {
                guard let timer = try timers.first(task: task, dueBefore: limit) else {
                    // Cancelled since it was counted: the task's earliest is read again.
                    batch.scheduled[task] = nil
                    continue
                }
                if earliest.map({ firesBefore(timer, $0) }) ?? true { earliest = timer }
            }
            guard let timer = earliest else { return true }
            guard progress.timersLeft > 0 else { return false }
            batch.scheduled[timer.task] = nil
            batch.task = timer.task
            batch.streamTime = EventTime(millis: max(try progress.pendingStreamTimes[timer.task] ?? storedStreamTime(timer.task), 0))
            try fire(timer, in: batch, &progress)
        }
    }

    /// Removes `timer` and has the processor fire it, against the batch's budget.
    private func fire(_ timer: DueTimer, in batch: Batch, _ progress: inout BatchProgress) throws {
        try timers.remove(timer)
        batch.firingTimer = true
        defer { batch.firingTimer = false }
        try processor.fire(timer, in: batch)
        progress.outcome.timersFired += 1
        progress.timersLeft -= 1
    }

    /// Fires the task's timers due at or before `limit`, in (due, rank, member, kind, ref)
    /// order, including timers that firing sets, as many as the batch's budget allows.
    /// Returns whether none due by `limit` is left.
    private func fireTimers(task: Int32, upTo limit: Int64, batch: Batch, _ progress: inout BatchProgress) throws -> Bool {
        while min(try earliestTimerDue(task), batch.scheduled[task] ?? .max) <= limit {
            guard progress.timersLeft > 0 else { return false }
            // A chunk is read, then each of its timers fired, even one an earlier one cancelled
            // (its removal finds nothing): a store in memory takes the same chunk.
            let chunk = min(256, progress.timersLeft)
            let due = try timers.due(task: task, upTo: limit, count: chunk)
            batch.scheduled[task] = nil
            if due.isEmpty { break }
            for timer in due { try fire(timer, in: batch, &progress) }
        }
        return true
    }
}

extension Int64 {
    /// The largest multiple of `step` at or below the value.
    func roundedDown(to step: Int64) -> Int64 {
        let remainder = self % step
        return remainder < 0 ? self - remainder - step : self - remainder
    }
}

extension Int64 {
    /// Becomes `value` if that is greater.
    mutating func raise(to value: Int64) {
        if value > self { self = value }
    }
}

/// What a batch's transaction has done so far. Not nested in the generic applier, so that it
/// is a type of its own, known before the program runs (``BatchApplier/carriedByBatch``).
private struct BatchProgress {
    var outcome = BatchOutcome()
    /// Timers the batch may still fire (``BatchApplier/timerBudget``).
    var timersLeft: Int
    /// Whether a record waits for the next batch, its task's timers not all fired.
    var carries = false
    /// Tasks whose timers due by their stream time wait for the next batch.
    var timersLeftOver: Set<Int32> = []
    /// Stream time per task as this batch moved it.
    var pendingStreamTimes: [Int32: Int64] = [:]
    var appliedPerTask: [Int32: Int64] = [:]
    /// Stored offsets, read inside the transaction: after a rebalance another instance
    /// sharing the database may have applied some of these records already.
    var storedOffsets: [TopicPartition: Int64?] = [:]
    /// The offsets to store: past each record handed out.
    var nextOffsets: [TopicPartition: Int64] = [:]
}
