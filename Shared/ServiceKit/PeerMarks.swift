import Basics
import Messaging

/// What one task of a service that sends commands to its own tasks promises the others, once
/// its tasks keep stores of their own (architecture.md, step 9): published on every other
/// task's partition of the service's command topic, after the commands it sent there, so a
/// task that reads a mark has read every command the sender sent it before.
///
/// Two figures, so that no task's promise waits on another's and none waits for ever:
/// - `own`: nothing the task sends from now on *because of its own pending input* sorts
///   below it;
/// - `readFromPeers`: the lowest `own` of the other tasks, as this task last read them on its
///   partition. A command on its way to this task that it has not read yet was sent before
///   the mark it read from the sender, so this figure still holds the sender's older promise,
///   which is below the command; once read, the command is this task's pending input, and
///   `own` holds it.
///
/// That covers a chain of two commands (a transfer's credit, bouncing back); a service with
/// longer chains would need a figure per further link. A command sorts above the record that
/// causes it (same time, a higher rank), which keeps two tasks from each waiting for the
/// other at equal keys.
public struct PeerMark: Sendable, Equatable {
    /// The task that promises.
    public var task: Int32
    /// Nothing the task sends from now on, of its own pending input, sorts below this.
    public var own: MergeKey
    /// The lowest `own` of the other tasks, as the task last read them (`MergeKey.lowest`
    /// until it has read a mark of each).
    public var readFromPeers: MergeKey

    public init(task: Int32, own: MergeKey, readFromPeers: MergeKey) {
        self.task = task
        self.own = own
        self.readFromPeers = readFromPeers
    }

    /// A task's `own` figure, from the earliest of its pending inputs that may send a command
    /// (nil: none, and none to come until new input arrives): what that input sends sorts at
    /// its time and above its rank. `MergeKey.lowest` stays lowest (nothing known yet).
    public static func own(earliestSender: MergeKey?) -> MergeKey {
        guard let key = earliestSender else { return .highest }
        guard key != .lowest, key != .highest else { return key }
        return MergeKey(time: key.time, rank: key.rank + 1, id: "")
    }

    /// The lower of the two figures: how far this task holds every other.
    var bound: MergeKey { min(own, readFromPeers) }
}

/// The peer marks one task has read on its partition of the command topic, and what they let
/// it apply. Pure bookkeeping: the task's loop feeds it the marks in the order read.
public struct PeerMarkBook: Sendable, Equatable {
    /// The task that reads.
    public let task: Int32
    /// The service's tasks, this one among them.
    public let tasks: Range<Int32>
    private var latest: [Int32: PeerMark] = [:]

    public init(task: Int32, tasks: Range<Int32>) {
        self.task = task
        self.tasks = tasks
    }

    /// The marks read, one per peer, for the store.
    public var marks: [PeerMark] { latest.values.sorted { $0.task < $1.task } }

    /// Notes a mark read on the partition: it replaces the sender's earlier one (marks of one
    /// sender arrive in the order sent). A task's own marks and those of tasks outside the
    /// service's are not peers' and change nothing.
    public mutating func read(_ mark: PeerMark) {
        guard mark.task != task, tasks.contains(mark.task) else { return }
        latest[mark.task] = mark
    }

    /// The lowest `own` of the other tasks as read here (`MergeKey.lowest` while one has sent
    /// nothing): this task's `readFromPeers`.
    public var readFromPeers: MergeKey { lowest(\.own) }

    /// Records sorting below this may be applied as far as the other tasks go: nothing they
    /// may still send this task sorts below it.
    public var bound: MergeKey { lowest(\.bound) }

    /// The lowest of a figure over the other tasks' last marks; `MergeKey.lowest` while one
    /// has sent none.
    private func lowest(_ figure: (PeerMark) -> MergeKey) -> MergeKey {
        var lowest = MergeKey.highest
        for peer in tasks where peer != task {
            guard let mark = latest[peer] else { return .lowest }
            lowest = min(lowest, figure(mark))
        }
        return lowest
    }

    /// Whether a record of `key` may be applied as far as the other tasks go.
    public func admits(_ key: MergeKey) -> Bool { key < bound }

    /// The mark this task publishes, given the earliest of its pending inputs that may send a
    /// command (see ``PeerMark/own(earliestSender:)``).
    public func mark(earliestSender: MergeKey?) -> PeerMark {
        PeerMark(task: task, own: PeerMark.own(earliestSender: earliestSender), readFromPeers: readFromPeers)
    }
}

extension PeerMark {
    /// The CloudEvents type of a peer mark.
    public static let eventType = "stream.peer-progress"

    /// The mark as a CloudEvent (signed by the batch, as every record on a command topic).
    /// Each figure is `{"time", "rank"}`, or `"idle"` for a task that holds no one and
    /// `"unknown"` for one that has not heard from every peer yet; the event's time is the
    /// lower figure's, or 0.
    public func event(source: String) -> CloudEvent {
        let lower = min(own, readFromPeers)
        return CloudEvent(
            id: "peer-progress/\(task)/\(Self.text(own))/\(Self.text(readFromPeers))", source: source, type: Self.eventType,
            time: EventTime(millis: lower == .lowest || lower == .highest ? 0 : lower.time), subject: nil,
            data: .object(["task": .int(Int64(task)), "own": Self.value(own), "readFromPeers": Self.value(readFromPeers)]))
    }

    private static let typeMarker = Array("\"\(eventType)\"".utf8)

    /// Whether a record looks like a peer mark: no key, and the type in its bytes.
    public static func isCandidate(_ record: ConsumedRecord) -> Bool {
        guard record.key == nil, let value = record.value else { return false }
        return value.contains(typeMarker)
    }

    /// The mark an event carries, or why it is not a valid one. A mark of a task outside the
    /// service's `tasks` is refused: no such task exists to wait for.
    public static func decode(_ event: CloudEvent, tasks: Range<Int32>) throws(Rejection) -> PeerMark {
        guard event.type == eventType, let task = event.data["task"]?.int64Value, let own = event.data["own"].flatMap(key),
              let read = event.data["readFromPeers"].flatMap(key)
        else {
            throw Rejection(code: .invalidProgressMark, detail: "a \(eventType) record needs data.task, data.own and data.readFromPeers")
        }
        guard let sender = Int32(exactly: task), tasks.contains(sender) else {
            throw Rejection(code: .invalidProgressMark, detail: "a peer mark of task \(task), which this service does not have")
        }
        return PeerMark(task: sender, own: own, readFromPeers: read)
    }

    private static func text(_ key: MergeKey) -> String {
        key == .highest ? "idle" : key == .lowest ? "unknown" : "\(key.time).\(key.rank)"
    }

    private static func value(_ key: MergeKey) -> JSONValue {
        key == .highest ? .string("idle") : key == .lowest ? .string("unknown")
            : .object(["time": .int(key.time), "rank": .int(Int64(key.rank))])
    }

    /// A figure as `value` writes it; nil for anything else. A mark's figures have no id.
    private static func key(_ value: JSONValue) -> MergeKey? {
        switch value.stringValue {
        case "idle"?: return .highest
        case "unknown"?: return .lowest
        case .some: return nil
        case nil:
            guard let time = value.objectValue?["time"]?.int64Value, let rank = value.objectValue?["rank"]?.int64Value,
                  let small = Int(exactly: rank) else { return nil }
            return MergeKey(time: time, rank: small, id: "")
        }
    }
}
