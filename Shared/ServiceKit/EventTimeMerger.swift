import LoyaltyDomain
import Messaging

/// Where a buffered record sorts within its task: event time, then the type's rank at equal
/// times (DOMAIN.md, "Order"), then arrival.
public struct MergeKey: Comparable, Sendable {
    public var time: Int64
    public var rank: Int
    public var arrival: UInt64

    public static func < (lhs: MergeKey, rhs: MergeKey) -> Bool {
        if lhs.time != rhs.time { return lhs.time < rhs.time }
        if lhs.rank != rhs.rank { return lhs.rank < rhs.rank }
        return lhs.arrival < rhs.arrival
    }
}

/// Applies the records of one task (partition p of every input topic) in event-time order,
/// the way Kafka Streams synchronises its partitions: the earliest head record goes first,
/// but only once every partition of the task either has a record buffered, has been read to
/// its end, or has kept the task waiting longer than the idle time.
///
/// Pure bookkeeping: it never touches Kafka; the loop feeds it and drains it.
public struct EventTimeMerger<Item> {
    struct Buffer {
        var items = FIFO<(key: MergeKey, item: Item)>()
        /// Everything the partition held has been read (what is buffered is the rest of it).
        var caughtUp = false
    }

    /// The input topics; partition p of each forms task p.
    public let topics: [String]
    /// How long a task waits for an empty partition that may still hold older records.
    public let idleMilliseconds: Int64
    private var buffers: [TopicPartition: Buffer] = [:]
    private var tasks: [Int32: TaskState] = [:]
    private var arrivals: UInt64 = 0
    private var nextTaskCursor = 0

    struct TaskState {
        var blockedSince: Int64?
    }

    public init(topics: [String], idleMilliseconds: Int64) {
        self.topics = topics
        self.idleMilliseconds = idleMilliseconds
    }

    /// Tasks with at least one assigned partition.
    public var assignedTasks: [Int32] { tasks.keys.sorted() }

    /// Records buffered across all partitions.
    public var bufferedCount: Int { buffers.values.reduce(0) { $0 + $1.items.count } }

    /// Records buffered for one partition.
    public func bufferedCount(_ partition: TopicPartition) -> Int { buffers[partition]?.items.count ?? 0 }

    /// Starts buffering these partitions (empty, not caught up).
    public mutating func assign(_ partitions: [TopicPartition]) {
        for partition in partitions {
            buffers[partition] = Buffer()
            if tasks[partition.partition] == nil { tasks[partition.partition] = TaskState() }
        }
    }

    /// Drops these partitions and whatever was buffered for them (the next owner re-reads it).
    public mutating func revoke(_ partitions: [TopicPartition]) {
        for partition in partitions { buffers[partition] = nil }
        let remaining = Set(buffers.keys.map(\.partition))
        for task in tasks.keys where !remaining.contains(task) { tasks[task] = nil }
    }

    /// Buffers a record of an assigned partition; records of other partitions are ignored.
    public mutating func add(_ item: Item, time: Int64, rank: Int, from partition: TopicPartition) {
        guard buffers[partition] != nil else { return }
        arrivals &+= 1
        buffers[partition]!.items.append((MergeKey(time: time, rank: rank, arrival: arrivals), item))
        buffers[partition]!.caughtUp = false
    }

    /// Notes that the partition has been read to its end: once its buffer drains, the task
    /// need not wait for it. A record arriving later clears the mark.
    public mutating func markCaughtUp(_ partition: TopicPartition) {
        guard buffers[partition] != nil else { return }
        buffers[partition]!.caughtUp = true
    }

    /// The next record to apply, or nil when every task is empty or waiting.
    /// `now` is a monotonic clock in milliseconds (only for the idle time, never for a rule).
    public mutating func next(now: Int64) -> (item: Item, partition: TopicPartition)? {
        let taskIDs = tasks.keys.sorted()
        guard !taskIDs.isEmpty else { return nil }
        for step in 0..<taskIDs.count {
            let task = taskIDs[(nextTaskCursor + step) % taskIDs.count]
            if let found = nextInTask(task, now: now) {
                nextTaskCursor = (nextTaskCursor + step) % taskIDs.count
                return found
            }
        }
        return nil
    }

    private mutating func nextInTask(_ task: Int32, now: Int64) -> (item: Item, partition: TopicPartition)? {
        var best: (key: MergeKey, partition: TopicPartition)?
        var waitingForData = false
        for topic in topics {
            let partition = TopicPartition(topic: topic, partition: task)
            guard let buffer = buffers[partition] else { continue }
            if let head = buffer.items.first {
                if best == nil || head.key < best!.key { best = (head.key, partition) }
            } else if !buffer.caughtUp {
                waitingForData = true
            }
        }
        guard let chosen = best else {
            tasks[task]?.blockedSince = nil
            return nil
        }
        if waitingForData {
            let since = tasks[task]?.blockedSince ?? now
            tasks[task]?.blockedSince = since
            if now - since < idleMilliseconds { return nil }
        } else {
            tasks[task]?.blockedSince = nil
        }
        let item = buffers[chosen.partition]!.items.removeFirst().item
        return (item, chosen.partition)
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
