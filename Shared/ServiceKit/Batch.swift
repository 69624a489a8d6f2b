import Foundation
import Basics
import Messaging
import Storage

/// A committed outbox row, to be published by the relay (or, from an outbox kept in memory
/// only, handed on by the simulation: ``BatchApplier/outboxInMemoryOnly``).
public struct OutboxRow: Sendable, Equatable {
    public var seq: Int64
    public var topic: String
    public var key: [UInt8]?
    public var value: [UInt8]?
    /// The partition, when not the key's (a progress mark goes to a task's own partition).
    public var partition: Int32?

    public init(seq: Int64, topic: String, key: [UInt8]?, value: [UInt8]?, partition: Int32? = nil) {
        self.seq = seq
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = partition
    }
}

/// The open transaction of one batch, as a service sees it: the database, and the only ways
/// to have an effect outside it (outbox rows, timers, dead letters).
public final class Batch {
    /// The service's database, inside the batch's transaction.
    public let database: Database
    /// The task (partition number) of the input being applied.
    public internal(set) var task: Int32 = 0
    /// Stream time of that task before the input: the latest event time applied.
    public internal(set) var streamTime: EventTime = EventTime(millis: 0)
    /// How many tasks the service has (the partitions of each of its input topics).
    public internal(set) var taskCount: Int32 = 1
    /// Whether the store holds one task alone (the `task` layout): no figure that spans tasks
    /// can be kept in it.
    public var storeHoldsOneTask: Bool { echoesOnlyFor != nil }

    let service: String
    /// The platform: where dead letters go, and the name on what the runtime writes.
    let platform: Platform
    /// Topics whose records carry personal data: their dead letters carry no payload.
    var personalDataTopics: Set<String> = []
    /// Dead letters written in this batch, by reason (for metrics).
    var deadLetterReasons: [String: Int] = [:]
    /// The keys that sign events sent to these command topics.
    var signer: (keys: CommandKeys, topics: Set<String>)?
    var outbox: [OutboxRow] = []
    /// The number of the last row handed out when the outbox is kept in memory only
    /// (``BatchApplier/outboxInMemoryOnly``); nil: rows are stored, numbered by the store.
    var lastUnstoredSeq: Int64?
    /// Commands sent to the service's own input topics in this batch.
    var echoes: [(key: MergeKey, partition: TopicPartition)] = []
    /// Whether dead letters are written: in the `task` layout every task's store applies the
    /// broadcast records, and the store of task 0 alone writes their dead letters.
    var writesDeadLetters = true
    /// Whether the batch erased personal data, so no copy may outlive it in the write-ahead log.
    var erasedPersonalData = false
    /// Whether records for the service's own input topics are refused (its tasks are
    /// independent, ``StreamProcessor/tasksAreIndependent``).
    var refusesSelfCommands = false
    /// In a task's own store: the task, whose commands to itself alone are echoes to await;
    /// a command to another task is that task's to wait for, through peer marks.
    var echoesOnlyFor: Int32?
    /// In a task's own store: the topic the peer marks go on, the one its commands to other
    /// tasks must go on.
    var peerTopic: String?
    /// In a task's own store: the earliest command sent to each other task in this batch.
    var peerCommands: [Int32: MergeKey] = [:]
    /// Whether a timer is being fired (in a task's own store, its commands to other tasks
    /// are refused: ``PeerCommandRefused``).
    var firingTimer = false
    /// The key of the input being applied, if any: a command to another task must sort above
    /// it (``PeerCommandRefused``).
    var cause: MergeKey?
    /// Whether the processor said the input being applied may send another task a command
    /// (``StreamProcessor/mayCommandOtherTasks(_:)``): the peer marks promised past it if not.
    var causeMayCommand = true
    private let selfTopics: [String: Int32]
    private let rank: (String) -> Int
    private let insertEcho: Statement
    /// Earliest due time among timers set in this batch, per task.
    var scheduled: [Int32: Int64] = [:]
    private let insertOutbox: Statement
    /// The store's timers: its `timers` table's rows, or memory for a simulation.
    let timers: any TimerStore

    init(
        database: Database, service: String, platform: Platform, selfTopics: [String: Int32], rank: @escaping (String) -> Int,
        timers: any TimerStore
    ) throws {
        self.database = database
        self.service = service
        self.platform = platform
        self.selfTopics = selfTopics
        self.rank = rank
        insertEcho = try database.prepare("INSERT OR REPLACE INTO echoes(event_id, topic, task, time, rank) VALUES(?, ?, ?, ?, ?)")
        insertOutbox = try database.prepare("INSERT INTO outbox(topic, key, value, partition) VALUES(?, ?, ?, ?)")
        self.timers = timers
    }

    /// How much of a dead record's value a dead letter carries (escaped, at most about six
    /// times this): enough to read it, never more than the producer accepts.
    public static let payloadExcerptBytes = 16 * 1024
    /// The largest record the outbox takes: below librdkafka's default `message.max.bytes`
    /// (1,000,000), so that a committed row can always be published.
    public static let maximumRecordBytes = 900_000

    /// Adds a record to the outbox; it is published after the batch commits. A record the
    /// producer would refuse is refused here, before it is committed (`OutputTooLarge`). A
    /// command to the service's own tasks goes through ``emit(_:to:)``, which counts it.
    public func emit(topic: String, key: String?, value: [UInt8], partition: Int32? = nil) throws {
        if refusesSelfCommands && selfTopics[topic] != nil { throw SelfCommandRefused(service: service, topic: topic) }
        if echoesOnlyFor != nil && selfTopics[topic] != nil { throw PeerCommandRefused(service: service, reason: .uncounted(topic: topic)) }
        try append(topic: topic, key: key, value: value, partition: partition)
    }

    /// Adds a record to the outbox, unchecked.
    private func append(topic: String, key: String?, value: [UInt8], partition: Int32? = nil) throws {
        let size = value.count + (key?.utf8.count ?? 0)
        guard size <= Self.maximumRecordBytes else {
            throw OutputTooLarge(topic: topic, bytes: size, limit: Self.maximumRecordBytes)
        }
        try add(OutboxRow(seq: 0, topic: topic, key: key.map { Array($0.utf8) }, value: value, partition: partition))
    }

    /// Adds `row` to the outbox: stored in the transaction, numbered by the store, unless the
    /// outbox is kept in memory only.
    private func add(_ row: OutboxRow) throws {
        var row = row
        if let last = lastUnstoredSeq {
            row.seq = last + 1
            lastUnstoredSeq = row.seq
        } else {
            try insertOutbox.run(
                .text(row.topic), row.key.map { .blob($0) } ?? .null, row.value.map { .blob($0) } ?? .null,
                row.partition.map { .integer(Int64($0)) } ?? .null)
            row.seq = database.lastInsertRowID
        }
        outbox.append(row)
    }

    /// Adds a record with a binary key to the outbox, on `partition`; a nil value is a tombstone.
    func emit(topic: String, key: [UInt8], value: [UInt8]?, partition: Int32) throws {
        let size = key.count + (value?.count ?? 0)
        guard size <= Self.maximumRecordBytes else {
            throw OutputTooLarge(topic: topic, bytes: size, limit: Self.maximumRecordBytes)
        }
        try add(OutboxRow(seq: 0, topic: topic, key: key, value: value, partition: partition))
    }

    /// Adds a batch's row changes, packed (``ChangelogBatch``), to the outbox for the
    /// changelog `topic`'s `partition`, as one row without a key: the relay unpacks it into the records.
    func emitChangelog(topic: String, partition: Int32, changes: [RowChange], copy: String, sequence: Int64) throws {
        let packed = try ChangelogBatch.pack(changes, copy: copy, sequence: sequence, topic: topic, limit: Self.maximumRecordBytes)
        try add(OutboxRow(seq: 0, topic: topic, key: nil, value: packed, partition: partition))
    }

    /// Adds an event to the outbox, keyed by its subject. An event for one of the service's
    /// own input topics is a command to itself: it is remembered as an echo, so that records
    /// sorting after it wait until it has come back and been applied.
    public func emit(_ event: CloudEvent, to topic: String) throws {
        let event = signedFor(topic, event)
        if refusesSelfCommands && selfTopics[topic] != nil { throw SelfCommandRefused(service: service, topic: topic) }
        guard let partitions = selfTopics[topic], let subject = event.subject else {
            return try append(topic: topic, key: event.subject, value: event.encoded())
        }
        let task = Murmur2Partitioner.partition(of: Array(subject.utf8), partitions: partitions)
        let key = MergeKey(time: event.time.millis, rank: rank(event.type), id: event.id)
        // A command to another task's own store is that task's to wait for (its peer marks);
        // this task waits for its answer (``PeerHold``).
        let toAnotherTask = echoesOnlyFor.map { $0 != task } ?? false
        if toAnotherTask { try checkPeerCommand(key, topic: topic) }
        try append(topic: topic, key: subject, value: event.encoded())
        if toAnotherTask {
            peerCommands[task] = min(peerCommands[task] ?? .highest, key)
        } else {
            try insertEcho.run(.text(event.id), .text(topic), .integer(Int64(task)), .integer(key.time), .integer(Int64(key.rank)))
            echoes.append((key, TopicPartition(topic: topic, partition: task)))
        }
    }

    /// Refuses a command to another task that the peer marks would not cover: one on another
    /// topic than theirs, one a timer sends (the marks count input, not timers), or one that
    /// does not sort above its cause (the marks promise what sorts above pending input).
    private func checkPeerCommand(_ key: MergeKey, topic: String) throws {
        if topic != peerTopic { throw PeerCommandRefused(service: service, reason: .offTheMarksTopic(topic: topic, marks: peerTopic)) }
        if firingTimer { throw PeerCommandRefused(service: service, reason: .fromATimer(topic: topic)) }
        if let cause, (key.time, key.rank) <= (cause.time, cause.rank) {
            throw PeerCommandRefused(service: service, reason: .notAboveItsCause(command: key, cause: cause))
        }
        if let cause, !causeMayCommand { throw PeerCommandRefused(service: service, reason: .undeclared(command: key, cause: cause)) }
    }

    /// Publishes a progress mark on its task's partition of `topic`, after everything this
    /// batch sends there (signed when `topic` is a command topic).
    func emit(_ mark: ProgressMark, to topic: String) throws {
        try append(topic: topic, key: nil, value: signedFor(topic, mark.event(source: platform.source(of: service))).encoded(), partition: mark.task)
    }

    /// Publishes this task's peer mark on another task's partition of `topic`, after
    /// everything this batch sends there (signed when `topic` is a command topic).
    func emit(_ mark: PeerMark, to topic: String, partition: Int32) throws {
        try append(topic: topic, key: nil, value: signedFor(topic, mark.event(source: platform.source(of: service))).encoded(), partition: partition)
    }

    /// `event`, signed when `topic` is one of the service's command topics.
    private func signedFor(_ topic: String, _ event: CloudEvent) -> CloudEvent {
        guard let signer, signer.topics.contains(topic) else { return event }
        return signer.keys.sign(event)
    }

    /// Sets a timer in the current task; one with the same due time, rank, member, kind and
    /// ref is the same timer, whose payload the new one replaces.
    public func schedule(_ timer: TimerRequest) throws {
        try timers.schedule(timer, task: task)
        scheduled[task] = min(scheduled[task] ?? .max, timer.due.millis)
    }

    /// Says that this batch erased personal data: once it commits, the loop checkpoints the
    /// write-ahead log and truncates it, so the old pages are gone from disk, not only from
    /// the database (whose freed pages the store's `secure_delete` already zeroes).
    public func noteErasure() {
        erasedPersonalData = true
    }

    /// Removes the timers of a member with this kind and ref.
    public func cancelTimers(member: String, kind: String, ref: String) throws {
        try timers.cancel(member: member, kind: kind, ref: ref)
    }

    /// Removes the timers of a member with this kind, whatever their ref: one statement where
    /// a service would otherwise cancel ref by ref.
    public func cancelTimers(member: String, kind: String) throws {
        try timers.cancel(member: member, kind: kind, ref: nil)
    }

    /// Takes out of the timers the member's first one that fires before `bound` (due, then
    /// rank), for the service to fire itself: one that applies records of a member it kept
    /// aside, long after the task's stream time passed them, fires the member's timers due in
    /// between first, as the records' order needs (a timer due at a record's time fires before
    /// it: pass the record's time and `Int.max`).
    public func takeTimer(member: String, firingBefore bound: (time: Int64, rank: Int)) throws -> DueTimer? {
        try timers.take(member: member, firingBefore: bound)
    }

    /// Sends a dead letter about something the service derived (no input record of its own,
    /// e.g. a message for a member with no channel), in this transaction.
    public func deadLetter(id: String, key: String?, reason: Rejection, about details: JSONObject) throws {
        guard writesDeadLetters else { return }
        deadLetterReasons[reason.code.rawValue, default: 0] += 1
        var data = details
        data["reason"] = .string(reason.code.rawValue)
        data["detail"] = .string(reason.detail)
        data["service"] = .string(service)
        let event = CloudEvent(
            id: "dead-letter/\(service)/\(id)", source: platform.source(of: service), type: platform.deadLetterType, time: streamTime,
            subject: key, data: .object(data))
        try emit(topic: platform.deadLetters, key: key, value: event.encoded())
    }

    /// Sends a record to the dead-letter topic with a reason code, in this transaction.
    public func deadLetter(_ record: ConsumedRecord, reason: Rejection) throws {
        guard writesDeadLetters else { return }
        deadLetterReasons[reason.code.rawValue, default: 0] += 1
        var data = JSONObject()
        data["reason"] = .string(reason.code.rawValue)
        data["detail"] = .string(reason.detail)
        data["service"] = .string(service)
        data["topic"] = .string(record.topic)
        data["partition"] = .int(Int64(record.partition))
        data["offset"] = .int(record.offset)
        if let key = record.keyString { data["key"] = .string(key) }
        if let value = record.value, personalDataTopics.contains(record.topic) {
            // Contact data stays out of dead letters: the record is on its topic, at the offset
            // named here (the platform's dead-letter tools fetch it), under the writer's retention.
            data["payloadBytes"] = .int(Int64(value.count))
            data["payloadWithheld"] = "the topic carries personal data; fetch the record from its topic"
        } else if let value = record.value {
            // An excerpt at most: the whole record stays on its topic, at the offset named here.
            let excerpt = value.count > Self.payloadExcerptBytes ? Array(value.prefix(Self.payloadExcerptBytes)) : value
            if value.count > excerpt.count {
                data["payloadBytes"] = .int(Int64(value.count))
                data["payloadTruncated"] = .bool(true)
            }
            let truncated = value.count > excerpt.count
            if let text = truncated ? Self.validUTF8Prefix(excerpt) : String(validating: excerpt, as: UTF8.self) {
                data["payload"] = .string(text)
            } else {
                data["payloadBase64"] = .string(Data(excerpt).base64EncodedString())
            }
        } else {
            data["payload"] = .null
        }
        let event = CloudEvent(
            id: "dead-letter/\(service)/\(record.topic)/\(record.partition)/\(record.offset)",
            source: platform.source(of: service), type: platform.deadLetterType, time: deadLetterTime(of: record),
            subject: record.keyString, data: .object(data))
        try emit(topic: platform.deadLetters, key: record.keyString, value: event.encoded())
    }
}

extension Batch {
    /// A dead letter's time: the task's stream time; before the task has one, the record's own
    /// time when it has a readable one, else the machine clock (an operational stamp only).
    func deadLetterTime(of record: ConsumedRecord) -> EventTime {
        if streamTime.millis > 0 { return streamTime }
        if let value = record.value, let event = try? CloudEvent.decode(value), event.time.millis > 0 { return event.time }
        return EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000))
    }

    /// The bytes as text when they are UTF-8, allowing a character cut at the end.
    static func validUTF8Prefix(_ bytes: [UInt8]) -> String? {
        for cut in 0...min(3, bytes.count) {
            if let text = String(validating: bytes.dropLast(cut), as: UTF8.self) { return text }
        }
        return nil
    }
}

/// A record too large to publish: refused before its batch commits, so that no row the
/// producer cannot send ever sits in the outbox.
public struct OutputTooLarge: Error, CustomStringConvertible {
    public var topic: String
    public var bytes: Int
    public var limit: Int
    public var description: String { "a record of \(bytes) bytes for \(topic) is over the \(limit)-byte limit" }
}

/// A record a service whose tasks are independent tried to send to one of its own input
/// topics: it would reach another task, so the batch is refused before it commits.
public struct SelfCommandRefused: Error, CustomStringConvertible {
    public var service: String
    public var topic: String
    public var description: String {
        "\(service) declares its tasks independent, so it may not send records to its own input topic \(topic)"
    }
}

/// A command of a service whose tasks keep stores of their own, to another task, that the
/// peer marks would not cover, so that it could reach a task that has applied past it. The
/// batch is refused before it commits.
public struct PeerCommandRefused: Error, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// Sent on another topic than the one the marks go on.
        case offTheMarksTopic(topic: String, marks: String?)
        /// Written raw to one of the service's own input topics, not as an event through
        /// ``Batch/emit(_:to:)``, which counts it.
        case uncounted(topic: String)
        /// Sent by a timer: the marks count a task's pending input, not its timers.
        case fromATimer(topic: String)
        /// Not sorting above the record that causes it (a later time, or the same time and a
        /// higher rank): the marks promise what sorts above pending input.
        case notAboveItsCause(command: MergeKey, cause: MergeKey)
        /// Sent by a record the processor said sends none (``StreamProcessor/mayCommandOtherTasks(_:)``),
        /// which the peer marks had promised past.
        case undeclared(command: MergeKey, cause: MergeKey)
    }

    public var service: String
    public var reason: Reason
    public var description: String {
        switch reason {
        case .offTheMarksTopic(let topic, let marks):
            return "\(service) sent another task a command on \(topic); with a store per task its commands go on \(marks ?? "its one command topic"), with its peer marks"
        case .uncounted(let topic):
            return "\(service) wrote a raw record to its own input topic \(topic); with a store per task a command goes as an event through emit(_:to:), which the peer marks count"
        case .fromATimer(let topic):
            return "a timer of \(service) sent another task a command on \(topic); with a store per task only input may (its timers are not in its peer marks)"
        case .notAboveItsCause(let command, let cause):
            return "\(service) sent another task the command \(command.id) at (\(command.time), rank \(command.rank)), which does not sort above "
                + "its cause \(cause.id) at (\(cause.time), rank \(cause.rank)); with a store per task a command must rank above what causes it"
        case .undeclared(let command, let cause):
            return "\(service) sent another task the command \(command.id) while applying \(cause.id), which its processor said sends "
                + "none (mayCommandOtherTasks); with a store per task its peer marks had promised past that record"
        }
    }
}
