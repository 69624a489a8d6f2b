import LoyaltyDomain
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

    public static func < (lhs: MergeKey, rhs: MergeKey) -> Bool {
        if lhs.time != rhs.time { return lhs.time < rhs.time }
        if lhs.rank != rhs.rank { return lhs.rank < rhs.rank }
        return lhs.id < rhs.id
    }
}

/// Applies the records of every assigned partition in one event-time order, the way Kafka
/// Streams synchronises the partitions of a task, across all of this instance's tasks:
///
/// - The earliest head record goes first, but only once every partition either has a record
///   buffered, has been read to its end, or has kept the merge waiting longer than the idle time.
/// - Partitions of *sorted* topics (where several writers interleave, like a service's command
///   topic) are kept sorted by key rather than in arrival order.
/// - *Echoes*: a command this instance sent to one of its own partitions holds back every
///   record that sorts after it until it has come back, so a derived command is applied at
///   its event time, not whenever it happens to arrive.
///
/// Pure bookkeeping: it never touches Kafka; the loop feeds it and drains it.
public struct EventTimeMerger<Item> {
    /// The input topics.
    public let topics: [String]
    /// Topics whose partitions are buffered sorted by key.
    public let sortedTopics: Set<String>
    /// How long the merge waits for an empty partition that may still hold older records.
    public let idleMilliseconds: Int64

    /// Lanes in an array (indexed through `laneIndex`) so the hot loop reads them in place.
    private var lanes: [Lane] = []
    private var laneIndex: [TopicPartition: Int] = [:]
    private var echoes: [String: (key: MergeKey, partition: TopicPartition)] = [:]
    private var blockedSince: Int64?

    struct Entry {
        var key: MergeKey
        var offset: Int64
        var item: Item
    }

    /// One partition's buffer.
    struct Lane {
        var fifo = FIFO<Entry>()
        var sorted = Heap<Entry> { $0.key < $1.key }
        var isSorted: Bool
        let partition: TopicPartition
        /// Everything the partition held has been read (what is buffered is the rest of it).
        var caughtUp = false
        /// Offsets buffered and not yet handed out, for the committable offset.
        var pendingOffsets = Heap<Int64> { $0 < $1 }
        var releasedOffsets: Set<Int64> = []
        var nextOffsetToRead: Int64?

        var count: Int { isSorted ? sorted.count : fifo.count }
        var headKey: MergeKey? { isSorted ? sorted.first?.key : fifo.first?.key }

        mutating func append(_ entry: Entry) {
            if isSorted { sorted.insert(entry) } else { fifo.append(entry) }
            pendingOffsets.insert(entry.offset)
            nextOffsetToRead = max(nextOffsetToRead ?? 0, entry.offset + 1)
        }

        mutating func removeHead() -> Entry {
            let entry = isSorted ? sorted.removeFirst() : fifo.removeFirst()
            releasedOffsets.insert(entry.offset)
            while let lowest = pendingOffsets.first, releasedOffsets.contains(lowest) {
                releasedOffsets.remove(pendingOffsets.removeFirst())
            }
            return entry
        }

        /// The offset below which every record has been handed out.
        var committableOffset: Int64? { pendingOffsets.first ?? nextOffsetToRead }
    }

    public init(topics: [String], sortedTopics: Set<String> = [], idleMilliseconds: Int64) {
        self.topics = topics
        self.sortedTopics = sortedTopics
        self.idleMilliseconds = idleMilliseconds
    }

    /// Tasks (partition numbers) with at least one assigned partition.
    public var assignedTasks: [Int32] { Set(laneIndex.keys.map(\.partition)).sorted() }

    /// Records buffered across all partitions.
    public var bufferedCount: Int { lanes.reduce(0) { $0 + $1.count } }

    /// Records buffered for one partition.
    public func bufferedCount(_ partition: TopicPartition) -> Int { laneIndex[partition].map { lanes[$0].count } ?? 0 }

    /// Commands sent to this instance's own partitions that have not come back yet.
    public var pendingEchoes: Int { echoes.count }

    /// Starts buffering these partitions (empty, not caught up).
    public mutating func assign(_ partitions: [TopicPartition]) {
        for partition in partitions {
            let lane = Lane(isSorted: sortedTopics.contains(partition.topic), partition: partition)
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
        lanes.removeAll { revoked.contains($0.partition) }
        laneIndex = Dictionary(uniqueKeysWithValues: lanes.enumerated().map { ($1.partition, $0) })
        echoes = echoes.filter { !revoked.contains($0.value.partition) }
    }

    /// Buffers a record of an assigned partition; records of other partitions are ignored.
    /// A record that is an expected echo releases the records waiting for it.
    public mutating func add(_ item: Item, key: MergeKey, offset: Int64, from partition: TopicPartition) {
        guard let index = laneIndex[partition] else { return }
        lanes[index].append(Entry(key: key, offset: offset, item: item))
        lanes[index].caughtUp = false
        if let echo = echoes[key.id], echo.partition == partition { echoes[key.id] = nil }
    }

    /// Expects a command sent to an assigned partition to come back there; records that sort
    /// after it wait for it. Commands to partitions of other instances are not waited for.
    public mutating func expectEcho(_ key: MergeKey, on partition: TopicPartition) {
        guard laneIndex[partition] != nil else { return }
        echoes[key.id] = (key, partition)
    }

    /// Notes that the partition has been read to its end: once its buffer drains, the merge
    /// need not wait for it. A record arriving later clears the mark.
    public mutating func markCaughtUp(_ partition: TopicPartition) {
        guard let index = laneIndex[partition] else { return }
        lanes[index].caughtUp = true
    }

    /// The offset to store for each partition: every record below it has been handed out.
    public var committableOffsets: [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        for lane in lanes { if let offset = lane.committableOffset { offsets[lane.partition] = offset } }
        return offsets
    }

    /// The next record to apply, or nil when everything is empty or waiting.
    /// `now` is a monotonic clock in milliseconds (only for the idle time, never for a rule).
    public mutating func next(now: Int64) -> (item: Item, partition: TopicPartition)? {
        var best: Int?
        var waitingForData = false
        for index in lanes.indices {
            if let head = lanes[index].headKey {
                if best == nil || head < lanes[best!].headKey! { best = index }
            } else if !lanes[index].caughtUp {
                waitingForData = true
            }
        }
        guard let chosen = best else {
            blockedSince = nil
            return nil
        }
        let chosenKey = lanes[chosen].headKey!
        // A command this instance sent that sorts earlier is still on its way.
        if !echoes.isEmpty, echoes.values.contains(where: { $0.key < chosenKey }) { return nil }
        if waitingForData {
            let since = blockedSince ?? now
            blockedSince = since
            if now - since < idleMilliseconds { return nil }
        } else {
            blockedSince = nil
        }
        let entry = lanes[chosen].removeHead()
        return (entry.item, lanes[chosen].partition)
    }
}

/// A first-in first-out queue on an array with a moving head, compacted as it drains.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }

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

/// A binary min-heap ordered by `areInIncreasingOrder`.
struct Heap<Element> {
    private var storage: [Element] = []
    private let areInIncreasingOrder: (Element, Element) -> Bool

    init(_ areInIncreasingOrder: @escaping (Element, Element) -> Bool) {
        self.areInIncreasingOrder = areInIncreasingOrder
    }

    var count: Int { storage.count }
    var first: Element? { storage.first }

    mutating func insert(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard areInIncreasingOrder(storage[child], storage[parent]) else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() -> Element {
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
