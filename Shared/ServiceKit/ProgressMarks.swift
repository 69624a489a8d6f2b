import Basics
import Messaging

/// A producing service's promise about one task, published in-band on the partition of that
/// task of each topic it writes for another service (`StreamProcessor.progressTopics`),
/// after the records it covers: "for this task, nothing I send from now on has an event
/// time before `time`". An *idle* mark adds: "I have read my input topics to their ends, at
/// `positions`: nothing more comes from me until the shop writes more". Only input that
/// reaches the producer after it has read its topics to their end (a late record) can break
/// the promise.
///
/// A consumer applies a record of time T in a task only once every producer it waits for has
/// promised past T for that task (``admits(_:readTo:)``), so a grant is applied at its event
/// time however far behind its producer runs: the result never depends on scheduling.
public struct ProgressMark: Sendable, Equatable {
    /// The CloudEvents type of a progress mark.
    public static let eventType = "stream.progress"

    /// The producing service.
    public var producer: String
    /// The task (partition number) the promise is about.
    public var task: Int32
    /// No record sent from now on for the task has an earlier event time (milliseconds).
    public var time: Int64
    /// Within `time`, no record sent from now on sorts before (`rank`, `id`) either: a promise
    /// to the key rather than the millisecond (``key``), which a processor's own bound may
    /// need (``StreamProcessor/progressBounds(of:in:)``). Nil: none at `time` is promised.
    public var tie: (rank: Int, id: String)?
    /// The producer had read all of its input: nothing more at `time` either.
    public var idle: Bool
    /// For an idle mark, how far the producer had read each of its input topics on the task's
    /// partition (the next offset).
    public var positions: [String: Int64]

    public init(producer: String, task: Int32, time: Int64, idle: Bool, positions: [String: Int64] = [:], tie: (rank: Int, id: String)? = nil) {
        self.producer = producer
        self.task = task
        self.time = time
        self.idle = idle
        self.positions = positions
        self.tie = tie
    }

    public static func == (lhs: ProgressMark, rhs: ProgressMark) -> Bool {
        lhs.producer == rhs.producer && lhs.task == rhs.task && lhs.time == rhs.time && lhs.idle == rhs.idle
            && lhs.positions == rhs.positions && lhs.tie?.rank == rhs.tie?.rank && (lhs.tie?.id ?? "").isExactly(rhs.tie?.id ?? "")
    }

    /// The merge key nothing sent from now on sorts before.
    public var key: MergeKey { MergeKey(time: time, rank: tie?.rank ?? .min, id: tie?.id ?? "") }

    /// The mark lowered to `bound` on one topic: what the producer's processor still owes
    /// there beyond what its merge and timers say. A bound makes the mark busy: something is
    /// still to come. An idle mark promised nothing more at its time either, which the busy
    /// one keeps as a promise to the next millisecond (a record at that time, sent already,
    /// stays admitted).
    public func lowered(to bound: MergeKey?) -> ProgressMark {
        guard let bound, bound < key || idle else { return self }
        let lowest = min(bound, idle && time < .max ? MergeKey(time: time + 1, rank: .min, id: "") : key)
        return ProgressMark(
            producer: producer, task: task, time: lowest.time, idle: false,
            tie: lowest.rank == .min && lowest.id.isEmpty ? nil : (lowest.rank, lowest.id))
    }

    /// Whether a record of event time `time` may be applied as far as this producer goes, for
    /// a consumer that has read the task's partitions to `readTo` (topic → next offset): yes
    /// when the producer promised past it; and when the producer is idle, has read every topic
    /// the consumer shares with it at least as far, and so will send nothing more unless the
    /// shop writes more, whatever the time (a record of the shop's that the producer has not
    /// read yet is not covered: it waits for the producer to catch up).
    public func admits(_ time: Int64, readTo: [String: Int64]) -> Bool {
        admits(MergeKey(time: time, rank: .min, id: ""), readTo: readTo)
    }

    /// Whether a record of merge key `key` may be applied as far as this producer goes: as
    /// ``admits(_:readTo:)`` for a time, with a promise to a key (``tie``) exact within its
    /// millisecond.
    public func admits(_ key: MergeKey, readTo: [String: Int64]) -> Bool {
        if self.key > key || (time == key.time && idle) { return true }
        guard idle, !positions.isEmpty else { return false }
        return readTo.allSatisfy { topic, offset in positions[topic].map { offset <= $0 } ?? true }
    }

    /// The mark as a CloudEvent (signed by the batch when the topic is a command topic).
    public func event(source: String) -> CloudEvent {
        CloudEvent(
            id: "progress/\(producer)/\(task)/\(time)/\(idle ? "idle" : "busy")" + (tie.map { "/\($0.rank)/\($0.id)" } ?? ""),
            source: source, type: Self.eventType, time: EventTime(millis: time), subject: nil,
            data: .object(JSONObject(tieMembers + [
                JSONMember(key: "producer", value: .string(producer)), JSONMember(key: "task", value: .int(Int64(task))),
                JSONMember(key: "idle", value: .bool(idle)), JSONMember(key: "positions", value: .object(positionsObject)),
            ])))
    }

    private static let typeMarker = Array("\"\(eventType)\"".utf8)

    /// Whether a record looks like a progress mark: no key, and the type in its bytes. Only
    /// those are parsed as marks; anything else goes to the service as usual.
    public static func isCandidate(_ record: ConsumedRecord) -> Bool {
        guard record.key == nil, let value = record.value else { return false }
        return value.contains(typeMarker)
    }

    /// The mark a record carries, or why it is not a valid one.
    public static func decode(_ event: CloudEvent, partition: Int32) throws(Rejection) -> ProgressMark {
        guard event.type == eventType, let producer = event.data["producer"]?.stringValue, !producer.isEmpty,
              let task = event.data["task"]?.int64Value, let idle = event.data["idle"]?.boolValue
        else {
            throw Rejection(code: .invalidProgressMark, detail: "a \(eventType) record needs data.producer, data.task and data.idle")
        }
        guard task == Int64(partition) else {
            throw Rejection(code: .invalidProgressMark, detail: "a mark for task \(task) on partition \(partition)")
        }
        var tie: (rank: Int, id: String)?
        if event.data["rank"] != nil || event.data["id"] != nil {
            guard let rank = event.data["rank"]?.int64Value, let id = event.data["id"]?.stringValue, !idle,
                  let bounded = Int(exactly: rank), bounded > Int.min else {
                throw Rejection(code: .invalidProgressMark, detail: "a mark's data.rank and data.id go together, on a busy mark, the rank an integer")
            }
            tie = (bounded, id)
        }
        var positions: [String: Int64] = [:]
        for member in event.data["positions"]?.objectValue?.members ?? [] {
            guard let offset = member.value.int64Value, offset >= 0 else {
                throw Rejection(code: .invalidProgressMark, detail: "data.positions.\(member.key): expected an offset")
            }
            positions[member.key] = offset
        }
        return ProgressMark(producer: producer, task: partition, time: event.time.millis, idle: idle, positions: positions, tie: tie)
    }
}

extension ProgressMark {
    /// `rank` and `id` first in the data, when the mark promises a key.
    private var tieMembers: [JSONMember] {
        guard let tie else { return [] }
        return [JSONMember(key: "id", value: .string(tie.id)), JSONMember(key: "rank", value: .int(Int64(tie.rank)))]
    }

    /// `positions` as a JSON object of topic → offset, topics in order.
    var positionsObject: JSONObject {
        JSONObject(positions.sorted { $0.key < $1.key }.map { JSONMember(key: $0.key, value: .int($0.value)) })
    }

    /// `positions` as stored.
    var positionsText: String { JSONValue.object(positionsObject).jsonString }

    /// Positions stored by `positionsText`; nothing for text that is not such an object.
    static func positions(parsing text: String) -> [String: Int64] {
        guard let object = (try? JSONValue.parse(Array(text.utf8)))?.objectValue else { return [:] }
        var positions: [String: Int64] = [:]
        for member in object.members { if let offset = member.value.int64Value { positions[member.key] = offset } }
        return positions
    }
}

/// What a producer's merge still holds for one of its tasks, from which its promise follows.
public struct PendingWork: Sendable, Equatable {
    /// The earliest event time among the next records of the task's partitions (nil: none
    /// buffered). A record buffered behind a later one is late, like any out-of-order input.
    public var earliestBuffered: Int64?
    /// Some partition of the task has nothing buffered: its next record will not be earlier than
    /// the task's stream time (unless it arrives late).
    public var hasEmptyPartition: Bool
    /// Every partition of the task is empty and read to its end, and no command to it is on its way.
    public var isIdle: Bool
    /// The earliest event time among commands sent to the task and not back yet (nil: none).
    public var earliestEcho: Int64?
    /// How far each of the task's partitions has been read (topic → next offset).
    public var positions: [String: Int64]
    /// What the producers this service waits for have promised for the task: nil when one has
    /// not promised anything yet; otherwise the earliest time they may still send something at
    /// (nil inside: nothing, they are idle and caught up). What they send may move what this
    /// service sends, so its own promise goes no further.
    public var upstream: Int64??

    public init(
        earliestBuffered: Int64?, hasEmptyPartition: Bool, isIdle: Bool, earliestEcho: Int64?, positions: [String: Int64] = [:],
        upstream: Int64?? = .some(nil)
    ) {
        self.earliestBuffered = earliestBuffered
        self.hasEmptyPartition = hasEmptyPartition
        self.isIdle = isIdle
        self.earliestEcho = earliestEcho
        self.positions = positions
        self.upstream = upstream
    }
}

/// What one task can promise by itself, before the other tasks lower it (see
/// ``ProgressMark/marks(producer:pending:streamTimes:nextTimers:timersFireWithoutInput:tasksAreIndependent:otherInstances:)``).
public enum TaskPromise: Sendable, Equatable {
    /// Nothing yet: it has applied nothing and a partition is empty, or a producer it waits for
    /// is silent. No task of the service can promise anything while one of them is so.
    case none
    /// It may still send something at this time or later.
    case busy(Int64)
    /// It has read everything and waits for nothing: from its stream time on, nothing more comes
    /// unless new input is written.
    case idle(Int64)
}

extension ProgressMark {
    /// A task's own promise from what its merge and store know: the earliest time anything it
    /// still has to apply could carry (buffered records, the stream time for an empty
    /// partition, commands on their way, the next timer, what the producers it waits for may
    /// still send). A task is idle when it has read everything, has nothing on its way and
    /// waits for no one; with `timersFireWithoutInput` (wall-clock timers) a task with a timer
    /// set is not idle either.
    public static func promise(
        of work: PendingWork, streamTime: Int64?, nextTimer: Int64?, timersFireWithoutInput: Bool = false
    ) -> TaskPromise {
        var isIdle = work.isIdle
        if isIdle, work.upstream != .some(nil) || (timersFireWithoutInput && nextTimer != nil) { isIdle = false }
        if isIdle { return .idle(streamTime ?? 0) }
        guard case .some(let upstream) = work.upstream else { return .none }
        var bound = Int64.max
        if let time = work.earliestBuffered { bound = min(bound, time) }
        if let time = work.earliestEcho { bound = min(bound, time) }
        if let due = nextTimer { bound = min(bound, due) }
        if let upstream { bound = min(bound, upstream) }
        if work.hasEmptyPartition {
            guard let streamTime else { return .none }
            bound = min(bound, streamTime)
        }
        return .busy(bound)
    }

    /// The marks a producer can publish for its tasks: per task, its own promise lowered to
    /// that of every other task that is not idle, since a task may send commands to another;
    /// the tasks of other instances sharing the store count like its own (`otherInstances`:
    /// their promises as their owners last committed them). A busy task without a promise has
    /// no mark, and neither has any task while another has none; an idle task that never
    /// applied anything promises from time 0, which its positions make good. With
    /// `tasksAreIndependent` (no task sends anything to another) each task's mark is its own
    /// promise. Pure: the loop hands in what its merge and store know.
    public static func marks(
        producer: String, pending: [Int32: PendingWork], streamTimes: [Int32: Int64], nextTimers: [Int32: Int64],
        timersFireWithoutInput: Bool = false, tasksAreIndependent: Bool = false, otherInstances: [TaskPromise] = []
    ) -> [ProgressMark] {
        var promises: [Int32: TaskPromise] = [:]
        for (task, work) in pending {
            promises[task] = promise(
                of: work, streamTime: streamTimes[task], nextTimer: nextTimers[task], timersFireWithoutInput: timersFireWithoutInput)
        }
        // Tasks that send each other nothing promise for themselves alone: no other task, here
        // or in another instance, lowers them.
        let others = tasksAreIndependent ? [:] : promises
        // The lowest busy promise of all tasks but one, for each: two smallest suffice.
        var othersBusy: [Int64] = []
        var othersUnknown = 0
        for promise in tasksAreIndependent ? [] : otherInstances {
            switch promise {
            case .none: othersUnknown += 1
            case .busy(let time): othersBusy.append(time)
            case .idle: break
            }
        }
        let remoteBound = othersBusy.min()
        var marks: [ProgressMark] = []
        for task in pending.keys.sorted() {
            let time: Int64
            switch promises[task]! {
            case .none: continue
            case .busy(let own), .idle(let own): time = own
            }
            guard othersUnknown == 0 else { continue }
            var lowered = min(time, remoteBound ?? .max)
            var complete = true
            var othersIdle = remoteBound == nil
            for (other, promise) in others where other != task {
                switch promise {
                case .none: complete = false
                case .busy(let bound):
                    lowered = min(lowered, bound)
                    othersIdle = false
                case .idle: break
                }
            }
            guard complete else { continue }
            let idle: Bool
            if case .idle = promises[task]! { idle = othersIdle } else { idle = false }
            marks.append(ProgressMark(producer: producer, task: task, time: lowered, idle: idle, positions: idle ? pending[task]!.positions : [:]))
        }
        return marks
    }
}
