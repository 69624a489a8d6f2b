import Basics
import Messaging

/// What one task of a service that sends commands to its own tasks promises another, once
/// its tasks keep stores of their own (architecture.md, step 9): published on that task's
/// partition of the service's command topic, after the commands it sent there, so a task that
/// reads a mark has read every command the sender sent it before.
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
/// longer chains carries a figure per further link (`deeper`: the lowest `readFromPeers` of
/// the others as read, and so on; ``StreamProcessor/longestCommandChain``). A command sorts above the record that
/// causes it (same time, a higher rank), which keeps two tasks from each waiting for the
/// other at equal keys.
///
/// A sender's figures may rise and fall again (a task that had read everything says it holds
/// no one, then reads new input), so a receiver must be able to tell a newer mark from an
/// older one read again: each carries the sender's `number`. And the figures of the task a
/// command went to say nothing of that command until it has read it: the sender asks for an
/// answer (`asksForAnswer`), and until a mark of the receiver acknowledges the one that asked,
/// the sender holds its own records that a reply to the command would sort before
/// (``PeerHold``).
public struct PeerMark: Sendable, Equatable {
    /// Which of a sender's marks is newer: its owner's epoch, then its count within it.
    public struct Number: Comparable, Sendable, Hashable {
        /// Grows each time the task is taken on (``PeerMarkBook/tookOver(atLeast:)``).
        public var epoch: Int64
        /// The marks published in the epoch, this one included.
        public var count: Int64

        public init(epoch: Int64, count: Int64) {
            self.epoch = epoch
            self.count = count
        }

        /// Before every mark: nothing read yet.
        public static let none = Number(epoch: 0, count: 0)

        public static func < (lhs: Number, rhs: Number) -> Bool { (lhs.epoch, lhs.count) < (rhs.epoch, rhs.count) }
    }

    /// The task that promises.
    public var task: Int32
    /// Which of the sender's marks this is: higher is newer.
    public var number: Number
    /// Nothing the task sends from now on, of its own pending input, sorts below this.
    public var own: MergeKey
    /// The lowest `own` of the other tasks, as the task last read them (`MergeKey.lowest`
    /// until it has read a mark of each).
    public var readFromPeers: MergeKey
    /// The task whose partition this copy goes to: read anywhere else, it is refused.
    public var to: Int32
    /// Further levels, for a service whose chains of commands are longer than two: the first
    /// is the lowest `readFromPeers` of the other tasks as this task last read them, each next
    /// one the lowest of the one before (empty for chains of two).
    public var deeper: [MergeKey]
    /// The `number` of the last mark of `to` the sender had read (`Number.none`: none).
    public var acknowledges: Number
    /// The sender sent `to` commands since its previous mark: `to` answers with a mark that
    /// acknowledges this one.
    public var asksForAnswer: Bool

    public init(
        task: Int32, number: Number, own: MergeKey, readFromPeers: MergeKey, deeper: [MergeKey] = [], to: Int32,
        acknowledges: Number = .none, asksForAnswer: Bool = false
    ) {
        self.task = task
        self.number = number
        self.own = own
        self.readFromPeers = readFromPeers
        self.deeper = deeper
        self.to = to
        self.acknowledges = acknowledges
        self.asksForAnswer = asksForAnswer
    }

    /// A task's `own` figure, from the earliest of its pending inputs that may send a command
    /// (nil: none, and none to come until new input arrives): what that input sends sorts at
    /// its time and above its rank. `MergeKey.lowest` stays lowest (nothing known yet).
    public static func own(earliestSender: MergeKey?) -> MergeKey {
        guard let key = earliestSender else { return .highest }
        guard key != .lowest, key != .highest else { return key }
        return MergeKey(time: key.time, rank: key.rank + 1, id: "")
    }

    /// The lowest of the figures: how far this task holds every other.
    var bound: MergeKey { min(own, readFromPeers, deeper.min() ?? .highest) }

    /// The figure of `level` (0: `own`, 1: `readFromPeers`, then `deeper`); a level the mark
    /// does not carry is its lowest figure.
    func figure(_ level: Int) -> MergeKey {
        switch level {
        case 0: own
        case 1: readFromPeers
        default: level - 2 < deeper.count ? deeper[level - 2] : bound
        }
    }
}

/// Commands a task sent a peer before its mark `number`: until the peer acknowledges that
/// mark, what the peer sends back because of them (a bounce) may still come, and it sorts
/// from `key` (the earliest command's time, a rank above it) on.
public struct PeerHold: Sendable, Equatable {
    /// The task the commands went to.
    public var task: Int32
    /// The sender's mark that followed them, which the peer is asked to acknowledge.
    public var number: PeerMark.Number
    /// Nothing a reply sends sorts below this.
    public var key: MergeKey

    public init(task: Int32, number: PeerMark.Number, key: MergeKey) {
        self.task = task
        self.number = number
        self.key = key
    }
}

/// One task's side of the peer marks: the marks it has read on its partition, the commands
/// whose answers it waits for, and what it last published. Pure bookkeeping: the task's loop
/// feeds it the marks in the order read and asks it what to publish after each batch.
public struct PeerMarkBook: Sendable, Equatable {
    /// The two figures a task last published (to every peer alike).
    public struct Figures: Sendable, Equatable {
        public var own: MergeKey
        public var readFromPeers: MergeKey
        public var deeper: [MergeKey]

        public init(own: MergeKey, readFromPeers: MergeKey, deeper: [MergeKey] = []) {
            self.own = own
            self.readFromPeers = readFromPeers
            self.deeper = deeper
        }
    }

    /// The task that reads.
    public let task: Int32
    /// The service's tasks, this one among them.
    public let tasks: Range<Int32>
    /// How many figures of a mark the task waits on: the service's longest chain of commands
    /// (a command caused by a command …), or 1 when every command a command causes goes back
    /// to the task that sent the cause, which its hold covers (``StreamProcessor/peerMarkLevels``).
    public let levels: Int
    /// The last mark read of each other task.
    public private(set) var latest: [Int32: PeerMark] = [:]
    /// Peers that asked for an answer this task has not published yet.
    public private(set) var answersOwed: Set<Int32> = []
    /// Commands sent whose receivers have not acknowledged the mark after them.
    public private(set) var holds: [PeerHold] = []
    /// The `number` of this task's last published mark (its epoch's count 0: none in this
    /// epoch yet).
    public private(set) var number: PeerMark.Number = .none
    /// The figures last published; nil: none since the task was taken on here.
    public private(set) var published: Figures?

    public init(task: Int32, tasks: Range<Int32>, levels: Int = 2) {
        self.task = task
        self.tasks = tasks
        self.levels = max(1, levels)
    }

    /// A book as a store kept it.
    public init(
        task: Int32, tasks: Range<Int32>, levels: Int = 2, latest: [PeerMark], answersOwed: Set<Int32>, holds: [PeerHold],
        number: PeerMark.Number, published: Figures?
    ) {
        self.init(task: task, tasks: tasks, levels: levels)
        for mark in latest where mark.task != task && tasks.contains(mark.task) { self.latest[mark.task] = mark }
        self.answersOwed = answersOwed
        self.holds = holds
        self.number = number
        self.published = published
    }

    /// The marks read, one per peer, for the store.
    public var marks: [PeerMark] { latest.values.sorted { $0.task < $1.task } }

    /// Notes a mark read on the partition. It replaces the sender's earlier one, unless it is
    /// not newer (a mark read again, or republished late): marks of one sender may only move
    /// it forwards. A mark that acknowledges what this task asked releases its holds on that
    /// peer. A task's own marks, those of tasks outside the service's and those for another
    /// task change nothing.
    public mutating func read(_ mark: PeerMark) {
        guard mark.task != task, mark.to == task, tasks.contains(mark.task) else { return }
        if let last = latest[mark.task], mark.number <= last.number { return }
        // Its request for an answer is kept as an answer owed, until this task publishes.
        var kept = mark
        kept.asksForAnswer = false
        latest[mark.task] = kept
        if mark.asksForAnswer { answersOwed.insert(mark.task) }
        holds.removeAll { $0.task == mark.task && $0.number <= mark.acknowledges }
    }

    /// The lowest `own` of the other tasks as read here (`MergeKey.lowest` while one has sent
    /// nothing): this task's `readFromPeers`. With one level it holds no one (`.highest`), so
    /// a peer's promise moving does not set off a mark from every task that read it.
    public var readFromPeers: MergeKey { levels == 1 ? .highest : lowest(\.own) }

    /// This task's figures beyond `readFromPeers`: each the lowest of the level below it over
    /// the other tasks as read here.
    public var deeper: [MergeKey] { (2..<max(2, levels)).map { level in lowest { $0.figure(level - 1) } } }

    /// Records sorting below this may be applied as far as the other tasks go: nothing they
    /// may still send this task sorts below it, whether because of their own input or in
    /// answer to this task's commands. With one level, their own input alone: what a command
    /// on its way to another task causes goes back to its sender, not here.
    public var bound: MergeKey { min(levels == 1 ? lowest(\.own) : lowest(\.bound), holds.map(\.key).min() ?? .highest) }

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

    /// The marks this task publishes now, one for each other task, and the book once they
    /// are; nil when there is nothing new to say: its figures are those last published, it
    /// sent no peer a command and owes none an answer. `earliestSender`: the earliest of its
    /// pending inputs that may send a command (see ``PeerMark/own(earliestSender:)``);
    /// `commandsSent`: the earliest command it sent each other task since its last mark.
    public func publishing(earliestSender: MergeKey?, commandsSent: [Int32: MergeKey] = [:]) -> (marks: [PeerMark], book: PeerMarkBook)? {
        let figures = Figures(own: PeerMark.own(earliestSender: earliestSender), readFromPeers: readFromPeers, deeper: deeper)
        let sentToPeers = commandsSent.filter { $0.key != task && tasks.contains($0.key) }
        guard figures != published || !sentToPeers.isEmpty || !answersOwed.isEmpty else { return nil }
        var next = self
        next.number.count += 1
        next.published = figures
        next.answersOwed = []
        for (peer, key) in sentToPeers.sorted(by: { $0.key < $1.key }) {
            next.holds.append(PeerHold(task: peer, number: next.number, key: PeerMark.own(earliestSender: key)))
        }
        let marks = tasks.filter { $0 != task }.map { peer in
            PeerMark(
                task: task, number: next.number, own: figures.own, readFromPeers: figures.readFromPeers, deeper: figures.deeper, to: peer,
                acknowledges: latest[peer]?.number ?? .none, asksForAnswer: sentToPeers[peer] != nil)
        }
        return (marks, next)
    }

    /// The task was taken on here (at a start, or from another instance): what it publishes
    /// next opens a new epoch, and goes out whatever it says. The epoch is past the store's
    /// last one and at least `epoch`: a store restored from a changelog may be a few batches
    /// behind what its last owner published, so the caller gives where the changelog ended
    /// when this owner took it (after the last owner's restart record, which it wrote before
    /// it published anything); a new store on another host, without a changelog, starts its
    /// epochs over, so the caller gives a floor that has grown since the last owner's.
    public mutating func tookOver(atLeast epoch: Int64 = 0) {
        number = PeerMark.Number(epoch: max(number.epoch + 1, epoch), count: 0)
        published = nil
    }
}
extension PeerMark {
    /// The CloudEvents type of a peer mark.
    public static let eventType = "stream.peer-progress"

    /// The mark as a CloudEvent (signed by the batch, as every record on a command topic).
    /// Each figure is `{"time", "rank"}`, or `"idle"` for a task that holds no one and
    /// `"unknown"` for one that has not heard from every peer yet; `deeper` only when there
    /// are deeper figures. The event's time is the lowest figure's, or 0.
    public func event(source: String) -> CloudEvent {
        let lower = bound
        var data: JSONObject = [
            "task": .int(Int64(task)), "number": Self.value(number), "to": .int(Int64(to)), "own": Self.value(own),
            "readFromPeers": Self.value(readFromPeers), "acknowledges": Self.value(acknowledges), "asksForAnswer": .bool(asksForAnswer),
        ]
        if !deeper.isEmpty { data["deeper"] = .array(deeper.map(Self.value)) }
        return CloudEvent(
            id: "peer-progress/\(task)/\(number.epoch).\(number.count)/\(to)", source: source, type: Self.eventType,
            time: EventTime(millis: lower == .lowest || lower == .highest ? 0 : lower.time), subject: nil, data: .object(data))
    }

    private static let typeMarker = Array("\"\(eventType)\"".utf8)

    /// Whether a record looks like a peer mark: no key, and the type in its bytes.
    public static func isCandidate(_ record: ConsumedRecord) -> Bool {
        guard record.key == nil, let value = record.value else { return false }
        return value.contains(typeMarker)
    }

    /// The mark an event carries, or why it is not a valid one. A mark of or for a task
    /// outside the service's `tasks` is refused: no such task exists.
    public static func decode(_ event: CloudEvent, tasks: Range<Int32>) throws(Rejection) -> PeerMark {
        let data = event.data
        guard event.type == eventType, let task = data["task"]?.int64Value, let to = data["to"]?.int64Value,
              let number = data["number"].flatMap(Self.number), number.count > 0, let acknowledges = data["acknowledges"].flatMap(Self.number),
              let asks = data["asksForAnswer"]?.boolValue, let own = data["own"].flatMap(key),
              let read = data["readFromPeers"].flatMap(key)
        else {
            throw Rejection(
                code: .invalidProgressMark,
                detail: "a \(eventType) record needs data.task, data.to, data.number (its count 1 or more), data.acknowledges, "
                    + "data.asksForAnswer, data.own and data.readFromPeers")
        }
        for (role, number) in [("of", task), ("for", to)] {
            guard let value = Int32(exactly: number), tasks.contains(value) else {
                throw Rejection(code: .invalidProgressMark, detail: "a peer mark \(role) task \(number), which this service does not have")
            }
        }
        var deeper: [MergeKey] = []
        if let levels = data["deeper"] {
            guard let figures = levels.arrayValue?.compactMap(key), figures.count == levels.arrayValue?.count else {
                throw Rejection(code: .invalidProgressMark, detail: "data.deeper of a peer mark is a list of figures")
            }
            deeper = figures
        }
        return PeerMark(
            task: Int32(task), number: number, own: own, readFromPeers: read, deeper: deeper, to: Int32(to), acknowledges: acknowledges,
            asksForAnswer: asks)
    }

    private static func value(_ number: Number) -> JSONValue {
        .object(["epoch": .int(number.epoch), "count": .int(number.count)])
    }

    /// A number as `value` writes it, neither part below 0; nil for anything else.
    private static func number(_ value: JSONValue) -> Number? {
        guard let epoch = value.objectValue?["epoch"]?.int64Value, let count = value.objectValue?["count"]?.int64Value,
              epoch >= 0, count >= 0 else { return nil }
        return Number(epoch: epoch, count: count)
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
