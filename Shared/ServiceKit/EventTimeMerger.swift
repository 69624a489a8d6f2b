import Basics
import Messaging

/// Where a buffered record sorts: event time, then the type's rank at equal times
/// (DOMAIN.md, "Order"), then the event id, so the order never depends on arrival.
public struct MergeKey: Comparable, Sendable, Hashable {
    public var time: Int64
    public var rank: Int
    public var id: String

    public init(time: Int64, rank: Int, id: String) {
        self.time = time
        self.rank = rank
        self.id = id
    }

    /// Below every record: a frontier that is not known holds everything after it.
    public static let lowest = MergeKey(time: .min, rank: .min, id: "")
    /// Above every record: a task with nothing left to apply.
    public static let highest = MergeKey(time: .max, rank: .max, id: "")

    /// Ids compare by their bytes where `String` finds them equal: two lookalike ids are two
    /// records, in the same order whatever order they arrived in.
    public static func < (lhs: MergeKey, rhs: MergeKey) -> Bool {
        if lhs.time != rhs.time { return lhs.time < rhs.time }
        if lhs.rank != rhs.rank { return lhs.rank < rhs.rank }
        return lhs.id.exactlyPrecedes(rhs.id)
    }

    public static func == (lhs: MergeKey, rhs: MergeKey) -> Bool {
        lhs.time == rhs.time && lhs.rank == rhs.rank && lhs.id.isExactly(rhs.id)
    }

    /// The key of a record as decoded. Rejected records go first and straight to dead letters,
    /// keyed by their event id when there is one, so a rejected echo still releases what waits
    /// for it. Inlinable, so that a caller that knows the body's type (the simulation's
    /// lanes) does not look its types up at run time for every record.
    @inlinable
    public init<Body>(of decoded: Result<Decoded<Body>, Rejection>, record: ConsumedRecord) {
        switch decoded {
        case .success(let input): self.init(time: input.time.millis, rank: input.rank, id: input.eventID)
        case .failure: self.init(time: .min, rank: .min, id: record.eventID ?? "\(record.topicPartition)@\(record.offset)")
        }
    }
}

/// Applies the records of every assigned partition in one event-time order, the way Kafka
/// Streams synchronises the partitions of a task (KIP-695), across all of this instance's tasks:
///
/// - The earliest head record goes first, but only once every other partition either has a
///   record buffered or has been read to its end. A partition whose read position is behind
///   the end the broker last reported (or whose end is not known yet) holds the merge for as
///   long as it takes: records that exist are never passed over, however slow their fetch.
/// - A partition read to its end holds the merge for the *grace* (`idleMilliseconds`) after it
///   was found empty, for records its writers have not written yet, then is passed over until
///   it has data again. Partitions of topics written by services (`serviceTopics`: commands,
///   the ledger) have no grace: echoes synchronise them.
/// - Partitions of *sorted* topics (where several writers interleave, like a service's command
///   topic) are kept sorted by key rather than in arrival order.
/// - *Echoes*: a command this instance sent to one of its own partitions holds back every
///   record that sorts after it until it has come back, so a derived command is applied at
///   its event time, not whenever it happens to arrive.
/// - *Progress*: a partition of a topic other services write for this one holds back every
///   record of its task until each producer the service waits for has promised, with a
///   ``ProgressMark`` read on that partition, to send nothing earlier (`admits`). A mark
///   counts once everything before it on the partition has been read.
/// - *Other instances*: when instances share the store, records wait until every task another
///   instance owns has applied everything that sorts before them (`otherTasksBound`, from the
///   frontiers those instances commit; ``frontier(of:)``), so a command such a task sends
///   here is applied at its event time, as if one instance ran every task.
///
/// Pure bookkeeping: it never touches Kafka; the loop feeds it and drains it.
public struct EventTimeMerger<Item> {
    /// The input topics.
    public let topics: [String]
    /// Topics whose partitions are buffered sorted by key.
    public let sortedTopics: Set<String>
    /// Topics written by services rather than shops: a partition read to its end never waits
    /// for the grace.
    public let serviceTopics: Set<String>
    /// The grace: how long a partition read to its end holds the merge once found empty.
    public let idleMilliseconds: Int64
    /// Per topic, the producers whose progress marks a task waits for.
    public let awaitedProducers: [String: Set<String>]
    /// Rebuilding a store from history (a replay): commands sent are remembered, so a
    /// copy read later is never held (see `add`).
    public var rebuilding = false

    /// Lanes in an array (indexed through `laneIndex`) so the hot loop reads them in place.
    /// Every lane is a ``Lane`` (see ``bufferedLane(_:)``), kept as its non-generic base for the scans.
    private var lanes: [MergeLane] = []

    /// The lane at `index` with its buffer.
    private func bufferedLane(_ index: Int) -> Lane { unsafeDowncast(lanes[index], to: Lane.self) }
    private var laneIndex: [TopicPartition: Int] = [:]
    /// The commands awaited back, by their ids' bytes (as the inbox tells records apart).
    private var echoes: [ExactText: (key: MergeKey, partition: TopicPartition, since: Int64)] = [:]
    /// Records held until this instance sends them itself (``add(_:key:offset:from:heldUntilSent:)``),
    /// every copy read (an outbox republished after a crash puts a second one on the topic).
    private var held: [ExactText: [(entry: Entry, partition: TopicPartition)]] = [:]
    /// While rebuilding a store: the commands this instance has sent, so a copy read after
    /// that is merged at once (and found a duplicate, as it was the first time).
    private var sent: Set<ExactText> = []
    /// A task's own store whose sorted partitions its peers write, and cover by their marks
    /// (``PeerMarkBook``): until such a partition has been read as far as it went when it was
    /// assigned, nothing of its task is handed out. A task taken on again may have to read
    /// again there what it had read and answered for before (an answer to its own command
    /// among it), which no peer covers any more, since its book was stored as of the marks
    /// read after it; and its peers write in no common order, so that may sort before
    /// anything held (as ``frontier(of:unreadCountsNothingOn:onlyWhatReachesOtherTasks:)`` promises nothing).
    public var peersWriteSortedPartitions = false
    /// With instances sharing the store: the merge key up to which records may be handed out as
    /// far as the tasks of other instances go, that is the lowest frontier among those tasks and
    /// the commands on their way (nil: this instance owns every task). A record sorting after it
    /// may yet be preceded by a command one of those tasks sends.
    public var otherTasksBound: MergeKey? {
        didSet { if otherTasksBound == nil { heldByOtherTasksSince = nil } }
    }
    /// When the bound started holding the merge (for reports and a quicker poll).
    private var heldByOtherTasksSince: Int64?

    /// Which records may send another task a command when applied (nil: every record): a
    /// task's peer marks promise past the others (``frontier(of:unreadCountsNothingOn:onlyWhatReachesOtherTasks:)``).
    public var reachesOtherTasks: ((Item) -> Bool)?

    struct Entry {
        var key: MergeKey
        var offset: Int64
        var item: Item
        var reachesOtherTasks = true
    }

    /// A partition's buffer of items, in arrival order or sorted by key.
    final class Lane: MergeLane {
        private var fifo = FIFO<Entry>()
        private var sorted = Heap<Entry> { $0.key < $1.key }

        func append(_ entry: Entry) {
            buffer(entry)
            noteRead(entry.offset, pending: true)
        }

        /// Puts an entry in the buffer (its offset already noted).
        func buffer(_ entry: Entry) {
            if entry.reachesOtherTasks { reachingCount += 1 }
            if isSorted {
                sorted.insert(entry)
                if headKey.map({ entry.key < $0 }) ?? true { headKey = entry.key }
            } else {
                fifo.append(entry)
                if headKey == nil { headKey = entry.key }
            }
            count += 1
        }

        func removeHead() -> Entry {
            let entry = isSorted ? sorted.removeFirst() : fifo.removeFirst()
            headKey = isSorted ? sorted.firstKey() : fifo.firstKey()
            count -= 1
            if entry.reachesOtherTasks { reachingCount -= 1 }
            releasedOffsets.insert(entry.offset)
            while let lowest = pendingOffsets.first, releasedOffsets.contains(lowest) {
                releasedOffsets.remove(pendingOffsets.removeFirst())
            }
            return entry
        }

        /// The earliest key among buffered entries that may send another task a command, and
        /// the latest key buffered. A scan, made once a batch for a peer mark, and only of
        /// lanes that hold such entries or are behind their end.
        func reachingBounds() -> (earliestReaching: MergeKey?, latest: MergeKey?) {
            var earliest: MergeKey?
            var latest: MergeKey?
            func visit(_ entry: Entry) {
                if entry.reachesOtherTasks, earliest.map({ entry.key < $0 }) ?? true { earliest = entry.key }
                if latest.map({ $0 < entry.key }) ?? true { latest = entry.key }
            }
            if isSorted { sorted.forEach(visit) } else { fifo.forEach(visit) }
            return (earliest, latest)
        }
    }

    public init(
        topics: [String], sortedTopics: Set<String> = [], serviceTopics: Set<String> = [], idleMilliseconds: Int64,
        awaitedProducers: [String: Set<String>] = [:]
    ) {
        self.topics = topics
        self.sortedTopics = sortedTopics
        self.serviceTopics = serviceTopics.union(sortedTopics)
        self.idleMilliseconds = idleMilliseconds
        self.awaitedProducers = awaitedProducers.filter { !$0.value.isEmpty }
    }

    /// Tasks (partition numbers) with at least one assigned partition.
    public var assignedTasks: [Int32] { Set(laneIndex.keys.map(\.partition)).sorted() }

    /// Records buffered across all partitions.
    public var bufferedCount: Int { lanes.reduce(0) { $0 + $1.count } }

    /// Records buffered for one partition.
    public func bufferedCount(_ partition: TopicPartition) -> Int { laneIndex[partition].map { lanes[$0].count } ?? 0 }

    /// Commands sent to this instance's own partitions that have not come back yet.
    public var pendingEchoes: Int { echoes.count }

    /// Partitions with nothing buffered: the ones whose end is worth asking about.
    public var emptyPartitions: [TopicPartition] { lanes.filter { $0.count == 0 }.map(\.partition) }
    /// Every partition assigned.
    public var partitions: [TopicPartition] { lanes.map(\.partition) }

    /// Partitions that held the merge the last time it was asked for a record, and for how long
    /// they have, in milliseconds: behind their end (a stalled input), or read to their end
    /// and within the grace. For the progress log.
    public func heldPartitions(now: Int64) -> [(partition: TopicPartition, milliseconds: Int64, inGrace: Bool)] {
        lanes.compactMap { lane in
            if let since = lane.heldSince { return (lane.partition, now - since, false) }
            if let since = lane.idleSince, lane.count == 0, now - since < idleMilliseconds { return (lane.partition, now - since, true) }
            return nil
        }
    }

    /// Whether the merge, the last time it was asked for a record, waited for a producer's
    /// progress mark on `partition`, and the marks read since do not promise what it waits for,
    /// from every producer the partition carries: the partition has to be read on to find them.
    /// (A promise kept only by an idle producer's positions counts as still awaited: the
    /// partition is then read on, as before any mark.)
    public func waitsForProgress(on partition: TopicPartition) -> Bool {
        guard let lane = laneIndex[partition].map({ lanes[$0] }), let held = lane.progressHeld else { return false }
        return lane.awaited.contains { !lane.promisesPast($0, held.key) }
    }

    /// Whether `partition` carries progress marks of producers its task waits for.
    public func carriesProgress(_ partition: TopicPartition) -> Bool {
        laneIndex[partition].map { !lanes[$0].awaited.isEmpty } ?? false
    }

    /// Partitions whose task waited for a producer's progress the last time the merge was asked
    /// for a record: which producer, and for how long (milliseconds). For the progress log and
    /// `/ready`: a producer that is down holds its consumers back, and this says so.
    public func progressWaits(now: Int64) -> [(partition: TopicPartition, producer: String, milliseconds: Int64)] {
        lanes.compactMap { lane in lane.progressHeld.map { (lane.partition, $0.producer, now - $0.since) } }
    }

    /// How long the tasks of other instances have held the merge, in milliseconds (nil: they do
    /// not hold it).
    public func heldByOtherTasks(now: Int64) -> Int64? { heldByOtherTasksSince.map { now - $0 } }

    /// Whether the tasks of other instances held the merge the last time it was asked.
    public var isHeldByOtherTasks: Bool { heldByOtherTasksSince != nil }

    /// The task's frontier: the merge key below which it has nothing left to apply, as far as
    /// this merge knows. The earliest record buffered for it, or the earliest time a producer it
    /// waits for may still send at; `lowest` while a partition of it is behind its end (records
    /// exist that are not read yet) or a producer has not promised anything; `highest` when it
    /// has read everything. A partition read to its end counts for nothing, within its grace or
    /// not: the grace waits for records not written yet, which arrive when they arrive, for one
    /// instance as for several. A command the task sends is caused by a record it
    /// applies, so it is sent from the frontier on (its key may be earlier: a timer's or a
    /// parked record's, released by that record; it is then applied as soon as it arrives, as it
    /// would be with one instance). Commands on their way to the task are not counted here: they
    /// are in the store's `echoes`, which the bound reads with the frontiers.
    /// `unreadCountsNothingOn`: topics whose records not read yet are covered otherwise (the
    /// commands other tasks send a task of its own store: their senders' peer marks cover them),
    /// once the partition has been read as far as it went when it was assigned here (what a
    /// last owner read and answered for, its senders no longer cover).
    ///
    /// `onlyWhatReachesOtherTasks`: buffered records that send no other task a command
    /// (``reachesOtherTasks``) count for nothing, those not read yet from the latest buffered.
    /// What a task's peer marks promise, which lets tasks whose records seldom reach each other
    /// run far apart.
    public func frontier(of task: Int32, unreadCountsNothingOn covered: Set<String> = [], onlyWhatReachesOtherTasks: Bool = false) -> MergeKey {
        var frontier = MergeKey.highest
        for (index, lane) in lanes.enumerated() where lane.partition.partition == task {
            let isCovered = covered.contains(lane.partition.topic)
            // Covered by others only once read as far as the partition went when it was
            // assigned here: a task taken on from another owner may have to read again what
            // that owner had read and answered for, which no sender covers any more. Its
            // senders write it in no common order, so what it has not read may sort before
            // anything it holds.
            if isCovered && !lane.hasReadToItsFirstEnd { return .lowest }
            let unreadCounts = !lane.isReadToEnd && !isCovered
            if onlyWhatReachesOtherTasks, lane.count > 0 {
                guard lane.reachingCount > 0 || unreadCounts else { continue }
                let (earliest, latest) = bufferedLane(index).reachingBounds()
                // Records not read yet come after what is buffered.
                if let bound = earliest ?? (unreadCounts ? latest : nil) { frontier = min(frontier, bound) }
                continue
            }
            if let head = lane.headKey {
                frontier = min(frontier, head)
            } else if unreadCounts {
                return .lowest
            }
        }
        guard !awaitedProducers.isEmpty else { return frontier }
        switch upstreamPromise(task: task, readTo: Self.readPositions(of: task, in: lanes)) {
        case .none: return .lowest
        case .some(nil): return frontier
        case .some(let time?): return min(frontier, MergeKey(time: time, rank: .min, id: ""))
        }
    }

    /// Notes a producer's progress mark read on an assigned partition at `offset`. Marks of
    /// producers this service does not wait for move the read position only.
    public mutating func noteProgress(_ mark: ProgressMark, offset: Int64, from partition: TopicPartition) {
        guard let index = laneIndex[partition] else { return }
        lanes[index].position = max(lanes[index].position ?? 0, offset + 1)
        if let end = lanes[index].knownEnd, end < lanes[index].position! { lanes[index].knownEnd = nil }
        guard lanes[index].awaited.contains(mark.producer) else { return }
        lanes[index].marks[mark.producer] = (mark, offset)
        lanes[index].marksChanged = true
    }

    /// The marks of partitions whose marks changed since the last call, for the store.
    public mutating func takeChangedMarks() -> [(partition: TopicPartition, mark: ProgressMark, offset: Int64)] {
        var changed: [(partition: TopicPartition, mark: ProgressMark, offset: Int64)] = []
        for index in lanes.indices where lanes[index].marksChanged {
            lanes[index].marksChanged = false
            for (_, entry) in lanes[index].marks.sorted(by: { $0.key < $1.key }) {
                changed.append((lanes[index].partition, entry.mark, entry.offset))
            }
        }
        return changed
    }

    /// Per task, what is still to be applied, for this instance's own progress marks.
    public func pendingWork() -> [Int32: PendingWork] {
        var work: [Int32: PendingWork] = [:]
        for lane in lanes {
            let task = lane.partition.partition
            var entry = work[task] ?? PendingWork(earliestBuffered: nil, hasEmptyPartition: false, isIdle: true, earliestEcho: nil)
            entry.positions[lane.partition.topic] = lane.position ?? 0
            if let head = lane.headKey?.time {
                entry.earliestBuffered = min(entry.earliestBuffered ?? .max, head)
                entry.isIdle = false
            } else {
                entry.hasEmptyPartition = true
                if !lane.isReadToEnd { entry.isIdle = false }
            }
            work[task] = entry
        }
        for echo in echoes.values {
            guard var entry = work[echo.partition.partition] else { continue }
            entry.earliestEcho = min(entry.earliestEcho ?? .max, echo.key.time)
            entry.isIdle = false
            work[echo.partition.partition] = entry
        }
        if !awaitedProducers.isEmpty {
            for task in work.keys { work[task]!.upstream = upstreamPromise(task: task, readTo: work[task]!.positions) }
        }
        return work
    }

    /// How far each partition of the task has been read (topic → next offset).
    private static func readPositions(of task: Int32, in lanes: [MergeLane]) -> [String: Int64] {
        var positions: [String: Int64] = [:]
        for lane in lanes where lane.partition.partition == task { positions[lane.partition.topic] = lane.position ?? 0 }
        return positions
    }

    /// What the producers the task waits for have promised (see `PendingWork.upstream`), for a
    /// task read to `readTo`.
    func upstreamPromise(task: Int32, readTo: [String: Int64]) -> Int64?? {
        var earliest: Int64?
        for lane in lanes where lane.partition.partition == task {
            for producer in lane.awaited {
                guard let (mark, offset) = lane.marks[producer], let position = lane.position, position > offset else { return .none }
                if mark.admits(.max, readTo: readTo) { continue }
                earliest = min(earliest ?? .max, mark.time)
            }
        }
        return .some(earliest)
    }

    /// Starts buffering these partitions (empty, end unknown), each read from its offset in
    /// `positions` when known. `ends`: where the broker said each partition ended when it was
    /// assigned (asked then, not the client's cached watermark, which may be one left from an
    /// earlier assignment here): the first end, which a covered partition must be read to
    /// (``frontier(of:unreadCountsNothingOn:onlyWhatReachesOtherTasks:)``). Without one, the
    /// first end reported after the assignment counts.
    public mutating func assign(
        _ partitions: [TopicPartition], positions: [TopicPartition: Int64] = [:],
        marks: [TopicPartition: [(mark: ProgressMark, offset: Int64)]] = [:], ends: [TopicPartition: Int64] = [:]
    ) {
        for partition in partitions {
            let lane = Lane(
                isSorted: sortedTopics.contains(partition.topic), hasGrace: !serviceTopics.contains(partition.topic),
                partition: partition)
            lane.position = positions[partition]
            lane.firstEnd = ends[partition]
            lane.awaited = awaitedProducers[partition.topic] ?? []
            for entry in marks[partition] ?? [] where lane.awaited.contains(entry.mark.producer) {
                lane.marks[entry.mark.producer] = entry
            }
            if let index = laneIndex[partition] {
                lanes[index] = lane
            } else {
                laneIndex[partition] = lanes.count
                lanes.append(lane)
            }
        }
    }

    /// Drops these partitions, what was buffered for them and the echoes expected on them
    /// (the next owner re-reads them).
    public mutating func revoke(_ partitions: [TopicPartition]) {
        let revoked = Set(partitions)
        heldByOtherTasksSince = nil
        lanes.removeAll { revoked.contains($0.partition) }
        laneIndex = Dictionary(uniqueKeysWithValues: lanes.enumerated().map { ($1.partition, $0) })
        echoes = echoes.filter { !revoked.contains($0.value.partition) }
        held = held.compactMapValues { copies in
            let kept = copies.filter { !revoked.contains($0.partition) }
            return kept.isEmpty ? nil : kept
        }
    }

    /// Buffers a record of an assigned partition; records of other partitions are ignored.
    /// A record that is an expected echo releases the records waiting for it.
    ///
    /// `heldUntilSent`: a command this service sent itself in an earlier life, read again while
    /// its store is rebuilt from the topics (a replay). Unless this instance has sent
    /// it already, it is kept out of the merge until it does (``expectEcho(_:on:now:)``), so it
    /// is applied where it was the first time, never before the record that caused it.
    public mutating func add(_ item: Item, key: MergeKey, offset: Int64, from partition: TopicPartition, heldUntilSent: Bool = false) {
        guard let index = laneIndex[partition] else { return }
        let entry = Entry(key: key, offset: offset, item: item, reachesOtherTasks: reachesOtherTasks?(item) ?? true)
        let id = ExactText(key.id)
        if let echo = echoes[id], echo.partition == partition {
            echoes[id] = nil
        } else if heldUntilSent && !sent.contains(id) {
            lanes[index].noteRead(offset, pending: true)
            held[id, default: []].append((entry, partition))
            return
        }
        bufferedLane(index).append(entry)
    }

    /// Reads `partition` no further than `offset` while rebuilding a store: its end counts as
    /// there, whatever the broker reports, and the caller drops the records beyond.
    public mutating func capRead(_ partition: TopicPartition, at offset: Int64) {
        guard let index = laneIndex[partition] else { return }
        lanes[index].readCap = offset
        if let end = lanes[index].knownEnd { lanes[index].knownEnd = min(end, offset) }
        if let end = lanes[index].firstEnd { lanes[index].firstEnd = min(end, offset) }
    }

    /// Notes a record of an assigned partition that is read past without being merged (one
    /// beyond what a rebuilt store is to apply): the position moves, nothing is buffered.
    public mutating func readPast(_ offset: Int64, from partition: TopicPartition) {
        guard let index = laneIndex[partition] else { return }
        lanes[index].noteRead(offset, pending: false)
    }

    /// The earliest command awaited back on one of `task`'s partitions (``expectEcho(_:on:now:)``), if any.
    public func earliestEcho(of task: Int32) -> MergeKey? {
        echoes.values.filter { $0.partition.partition == task }.map(\.key).min()
    }

    /// Records held until this instance sends them (see `add`).
    public var heldCount: Int { held.values.reduce(0) { $0 + $1.count } }

    /// The ids of some held records, lowest first (for reports).
    public func heldIDs(limit: Int) -> [String] { held.values.compactMap(\.first?.entry.key).sorted().prefix(limit).map(\.id) }

    /// The key of the earliest record buffered, if any (for reports).
    public var earliestBuffered: MergeKey? { lanes.compactMap(\.headKey).min() }

    /// The next offset the consumer hands out for a partition, when known.
    public func position(of partition: TopicPartition) -> Int64? {
        laneIndex[partition].flatMap { lanes[$0].position }
    }

    /// Expects a command sent to an assigned partition to come back there; records that sort
    /// after it wait for it. A command to a partition of another instance lowers
    /// `otherTasksBound` to it, when instances share the store.
    /// `now` (the monotonic clock) dates the wait, for `overdueEchoes`. A copy already read
    /// and held (see `add`) joins the merge instead.
    public mutating func expectEcho(_ key: MergeKey, on partition: TopicPartition, now: Int64 = 0) {
        guard let index = laneIndex[partition] else {
            // A command to a task of another instance: what sorts after it waits until that task
            // has applied it (the store's echoes say so once this batch commits).
            if let bound = otherTasksBound { otherTasksBound = min(bound, key) }
            return
        }
        let id = ExactText(key.id)
        if let copies = held.removeValue(forKey: id) {
            sent.insert(id)
            for copy in copies where copy.partition == partition {
                bufferedLane(index).buffer(copy.entry)
            }
            return
        }
        if rebuilding { sent.insert(id) }
        echoes[id] = (key, partition, echoes[id]?.since ?? now)
    }

    /// Echoes awaited for longer than `milliseconds`, oldest first: a command that does not
    /// come back (a topic the producer cannot reach, say) holds the merge, and the log says so.
    public func overdueEchoes(now: Int64, after milliseconds: Int64) -> [(id: String, partition: TopicPartition, milliseconds: Int64)] {
        echoes.filter { now - $0.value.since > milliseconds }
            .map { ($0.key.text, $0.value.partition, now - $0.value.since) }
            .sorted { ($0.milliseconds, $0.id) > ($1.milliseconds, $1.id) }
    }

    /// Notes that the consumer has read the partition to its end, `offset` (the consumer's
    /// end-of-partition event); nil: to the position of the last record buffered.
    public mutating func markCaughtUp(_ partition: TopicPartition, at offset: Int64? = nil) {
        guard let index = laneIndex[partition] else { return }
        var end = offset ?? lanes[index].position ?? 0
        if let cap = lanes[index].readCap { end = min(end, cap) }
        lanes[index].position = max(lanes[index].position ?? end, end)
        lanes[index].knownEnd = end
        if lanes[index].firstEnd == nil { lanes[index].firstEnd = end }
    }

    /// Notes the partition's end as the broker last reported it (a fetch response's high
    /// watermark). An end below the position, or below the end at the assignment, is stale
    /// (the client's cache may hold one from an earlier assignment) and ignored.
    public mutating func updateEnd(_ partition: TopicPartition, to end: Int64) {
        guard let index = laneIndex[partition], end >= 0 else { return }
        let end = lanes[index].readCap.map { min($0, end) } ?? end
        if let position = lanes[index].position, end < position { return }
        if let firstEnd = lanes[index].firstEnd, end < firstEnd { return }
        lanes[index].knownEnd = end
        if lanes[index].firstEnd == nil { lanes[index].firstEnd = end }
    }

    /// Notes that records below `end` have been polled and are on their way to the merge
    /// (decoded beside the loop): until they are buffered, the partition counts as behind its
    /// end, as for records fetched and not yet polled. Never lowers a known end, and leaves
    /// an unknown one unknown (which holds the merge already).
    public mutating func expectRecords(_ partition: TopicPartition, below end: Int64) {
        guard let index = laneIndex[partition], let known = lanes[index].knownEnd else { return }
        let end = lanes[index].readCap.map { min($0, end) } ?? end
        lanes[index].knownEnd = max(known, end)
    }

    /// The offset to store for each partition: every record below it has been handed out.
    public var committableOffsets: [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        for lane in lanes { if let offset = lane.committableOffset { offsets[lane.partition] = offset } }
        return offsets
    }

    /// The next record to apply, or nil when everything is empty or waiting.
    /// `now` is a monotonic clock in milliseconds (only for the grace and reports, never for a rule).
    public mutating func next(now: Int64) -> (item: Item, partition: TopicPartition)? {
        // Held by other instances' tasks only as long as each call finds it so.
        let heldSince = heldByOtherTasksSince
        heldByOtherTasksSince = nil
        var best: Int?
        var bestKey = MergeKey.highest
        for (index, lane) in lanes.enumerated() {
            guard let head = lane.headKey else { continue }
            if best == nil || head < bestKey {
                best = index
                bestKey = head
            }
        }
        guard let chosen = best else {
            if !awaitedProducers.isEmpty { for index in lanes.indices { lanes[index].progressHeld = nil } }
            return nil
        }
        let chosenKey = bestKey
        // A task of another instance may still send something earlier.
        if let bound = otherTasksBound, bound < chosenKey {
            heldByOtherTasksSince = heldSince ?? now
            return nil
        }
        // A command this instance sent that sorts earlier is still on its way.
        if !echoes.isEmpty, echoes.values.contains(where: { $0.key < chosenKey }) { return nil }
        if peersWriteSortedPartitions {
            let task = lanes[chosen].partition.partition
            if lanes.contains(where: { $0.isSorted && $0.partition.partition == task && !$0.hasReadToItsFirstEnd }) { return nil }
        }
        var waiting = false
        if !awaitedProducers.isEmpty {
            // A producer that has not promised past the record's time may still send something earlier.
            let task = lanes[chosen].partition.partition
            var positions: [String: Int64]?
            let readTo = { [lanes] () -> [String: Int64] in
                if let positions { return positions }
                positions = Self.readPositions(of: task, in: lanes)
                return positions!
            }
            for index in lanes.indices where !lanes[index].awaited.isEmpty {
                guard lanes[index].partition.partition == task, let producer = lanes[index].unmetProducer(at: chosenKey, readTo: readTo) else {
                    lanes[index].progressHeld = nil
                    continue
                }
                if lanes[index].progressHeld?.producer != producer {
                    lanes[index].progressHeld = (producer, now, chosenKey)
                } else {
                    lanes[index].progressHeld!.key = chosenKey
                }
                waiting = true
            }
            if waiting { return nil }
        }
        for lane in lanes where lane.count == 0 {
            if !lane.isReadToEnd {
                // Records exist (or may): wait for them, however long the fetch takes.
                if lane.heldSince == nil { lane.heldSince = now }
                waiting = true
            } else {
                lane.heldSince = nil
                guard lane.hasGrace, idleMilliseconds > 0 else { continue }
                let since = lane.idleSince ?? now
                lane.idleSince = since
                if now - since < idleMilliseconds { waiting = true }
            }
        }
        if waiting { return nil }
        let entry = bufferedLane(chosen).removeHead()
        return (entry.item, lanes[chosen].partition)
    }
}

/// A first-in first-out queue on an array with a moving head, compacted as it drains.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }

    /// The first entry's key, read in place: copying the whole entry out, generic as it is,
    /// would retain and release everything it holds.
    func firstKey<Item>() -> MergeKey? where Element == EventTimeMerger<Item>.Entry { isEmpty ? nil : storage[head].key }

    mutating func append(_ element: Element) { storage.append(element) }

    /// Visits the entries, first to last.
    func forEach(_ body: (Element) -> Void) {
        for index in head..<storage.count { body(storage[index]) }
    }

    mutating func removeFirst() -> Element {
        let element = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024 && head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }
}

/// A binary min-heap ordered by `areInIncreasingOrder`: the merge's sorted partitions, and
/// whoever else picks the least of many heads (the simulation's lanes).
public struct Heap<Element> {
    // Inlinable, so that a module picking heads with it (the simulation) gets it specialised
    // to its element rather than calling through generic witnesses for every swap.
    @usableFromInline var storage: [Element] = []
    @usableFromInline let areInIncreasingOrder: (Element, Element) -> Bool

    /// An empty heap whose first element is the least by `areInIncreasingOrder`.
    @inlinable
    public init(_ areInIncreasingOrder: @escaping (Element, Element) -> Bool) {
        self.areInIncreasingOrder = areInIncreasingOrder
    }

    /// How many elements it holds.
    @inlinable
    public var count: Int { storage.count }
    /// The least element, if any.
    @inlinable
    public var first: Element? { storage.first }

    /// The first entry's key, read in place (see ``FIFO/firstKey()``).
    func firstKey<Item>() -> MergeKey? where Element == EventTimeMerger<Item>.Entry { storage.isEmpty ? nil : storage[0].key }

    /// Adds `element` in O(log n).
    @inlinable
    public mutating func insert(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard areInIncreasingOrder(storage[child], storage[parent]) else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    /// Visits the elements, in no particular order.
    @inlinable
    public func forEach(_ body: (Element) -> Void) {
        for element in storage { body(element) }
    }

    /// Empties the heap, keeping its storage for what is inserted next.
    @inlinable
    public mutating func removeAll() { storage.removeAll(keepingCapacity: true) }

    /// Removes and returns the least element in O(log n); the heap must not be empty.
    @inlinable
    public mutating func removeFirst() -> Element {
        let top = storage[0]
        let last = storage.removeLast()
        if !storage.isEmpty {
            storage[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < storage.count && areInIncreasingOrder(storage[left], storage[smallest]) { smallest = left }
                if right < storage.count && areInIncreasingOrder(storage[right], storage[smallest]) { smallest = right }
                if smallest == parent { break }
                storage.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}

/// One partition of the merge: where it is read to, its head, what holds it. A class: the
/// hot loop reads lanes many times a record, and the merge, generic over its items, would copy
/// a struct lane (every buffer in it) on each read. So the merge itself is not to be copied: a
/// copy would share its lanes. Not generic: the merge scans every lane for every record, and a
/// generic lane's every property read goes through a metadata lookup; the buffer, which holds
/// the generic items, is in the subclass ``EventTimeMerger/Lane``.
class MergeLane {
    var isSorted: Bool
    var hasGrace: Bool
    let partition: TopicPartition
    /// The next offset the consumer will hand out (nil: not known yet).
    var position: Int64?
    /// The partition's end (high watermark) as the broker last reported it (nil: unknown).
    var knownEnd: Int64?
    /// The first end reported since the partition was assigned here.
    var firstEnd: Int64?
    /// Whether the partition has been read as far as it went when it was assigned here.
    var hasReadToItsFirstEnd: Bool {
        guard let firstEnd, let position else { return false }
        return position >= firstEnd
    }
    /// When the lane, read to its end and empty, started holding the merge for the grace.
    var idleSince: Int64?
    /// When the lane, behind its end and empty, started holding the merge (for reports).
    var heldSince: Int64?
    /// Offsets buffered and not yet handed out, for the committable offset.
    var pendingOffsets = Heap<Int64> { $0 < $1 }
    var releasedOffsets: Set<Int64> = []
    /// Producers whose progress marks this partition's task waits for.
    var awaited: Set<String> = [] {
        didSet { awaitedInOrder = awaited.sorted() }
    }
    private(set) var awaitedInOrder: [String] = []
    /// The latest mark of each producer, with the offset it was read at.
    var marks: [String: (mark: ProgressMark, offset: Int64)] = [:]
    /// Marks changed since the store last took them.
    var marksChanged = false
    /// When a producer's promise started holding the merge, whose (for reports), and the
    /// merge key it has to promise past.
    var progressHeld: (producer: String, since: Int64, key: MergeKey)?
    /// While rebuilding a store: the offset it reads this partition to, however far the
    /// partition goes on.
    var readCap: Int64?

    /// Entries buffered: kept as the buffer changes, for the same reason as `headKey` (the
    /// buffers are generic, so asking them costs a metadata lookup).
    fileprivate(set) var count = 0
    /// Of those, entries that may send another task a command.
    fileprivate(set) var reachingCount = 0
    /// The key of the record handed out next: kept as the buffer changes, because the merge
    /// reads it for every lane on every record.
    fileprivate(set) var headKey: MergeKey?

    /// Everything the partition held when the broker last reported its end has been read.
    var isReadToEnd: Bool {
        guard let position, let knownEnd else { return false }
        return position >= knownEnd
    }

    init(isSorted: Bool, hasGrace: Bool, partition: TopicPartition) {
        self.isSorted = isSorted
        self.hasGrace = hasGrace
        self.partition = partition
    }

    /// Moves the position past a record read at `offset`, still to be handed out when `pending`.
    func noteRead(_ offset: Int64, pending: Bool) {
        if pending { pendingOffsets.insert(offset) }
        position = max(position ?? 0, offset + 1)
        // An end below what was just read is stale: the end is unknown until reported again.
        if let end = knownEnd, end < position! { knownEnd = nil }
        idleSince = nil
        heldSince = nil
    }

    /// The offset below which every record has been handed out.
    var committableOffset: Int64? { pendingOffsets.first ?? position }

    /// The first awaited producer whose promise does not reach `key` yet: no mark, one
    /// whose records before it may still be unread, or one that does not admit the key for
    /// a task read to `readTo`.
    /// (`readTo` is asked only when a mark's key alone does not decide.)
    func unmetProducer(at key: MergeKey, readTo: () -> [String: Int64]) -> String? {
        for producer in awaitedInOrder where !promisesPast(producer, key) {
            guard let (mark, offset) = marks[producer], let position, position > offset else { return producer }
            if !mark.admits(key, readTo: readTo()) { return producer }
        }
        return nil
    }

    /// Whether `producer`'s latest mark, read with everything before it, promises past
    /// `key` by its key alone (an idle producer's positions aside): past its time, or within
    /// it past the key a mark that promises one names (``ProgressMark/tie``).
    func promisesPast(_ producer: String, _ key: MergeKey) -> Bool {
        guard let (mark, offset) = marks[producer], let position, position > offset else { return false }
        return mark.key > key || (mark.time == key.time && mark.idle)
    }
}
