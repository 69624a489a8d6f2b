import LoyaltyDomain
import Messaging
import ServiceKit
import Storage

/// One service's processor run over a whole history in this process: no Kafka, the store in
/// memory. Records are applied through the service's own `BatchApplier`, in the order its
/// loop's merge gives them once every record is at hand: the earliest head of all partitions
/// first, each partition in the order it was written (sorted by key where the service sorts
/// it), and a command the service sends itself joining its partition once its batch commits.
final class ServiceSimulation<Processor: StreamProcessor> {
    /// A partition of an input topic, as the merge sees it. A partition in arrival order keeps
    /// its records as they were written and decodes each when it becomes the head; a sorted one
    /// decodes on arrival, to sort. Applied records are let go as the run goes on, so that
    /// memory holds what is still to apply rather than all that was.
    private final class Lane {
        typealias Entry = (key: MergeKey, polled: PolledRecord<Processor.Body>)
        let partition: TopicPartition
        let sorted: Bool
        /// The lane's place in the simulation's `order`: ties between heads go to the first.
        let index: Int
        private let decode: (ConsumedRecord) -> Entry
        /// In arrival order: the records not applied yet from `head` on, and the head decoded.
        private var records: [ConsumedRecord] = []
        private var decodedHead: Entry?
        /// Sorted: the entries by key from `head` on, with their offsets (read without copying).
        private var entries: [Entry] = []
        private var offsets: [Int64] = []
        private var head = 0
        var nextOffset: Int64 = 0

        init(partition: TopicPartition, sorted: Bool, index: Int, decode: @escaping (ConsumedRecord) -> Entry) {
            self.partition = partition
            self.sorted = sorted
            self.index = index
            self.decode = decode
        }

        var headKey: MergeKey? {
            if sorted { return head < entries.count ? entries[head].key : nil }
            if decodedHead == nil, head < records.count { decodedHead = decode(records[head]) }
            return decodedHead?.key
        }

        /// Adds a record; while `loading`, a sorted partition appends and sorts once at the end.
        /// True when the record is the partition's head now.
        @discardableResult
        func add(_ record: ConsumedRecord, loading: Bool) -> Bool {
            guard sorted else {
                records.append(record)
                return records.count - 1 == head
            }
            let entry = decode(record)
            guard !loading else {
                entries.append(entry)
                offsets.append(record.offset)
                return false
            }
            // A command sent mid-run goes where its key sorts among those not applied yet.
            var low = head
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle].key < entry.key { low = middle + 1 } else { high = middle }
            }
            entries.insert(entry, at: low)
            offsets.insert(record.offset, at: low)
            return low == head
        }

        /// Sorts what was added while loading.
        func sortLoaded() {
            guard sorted else { return }
            entries.sort { $0.key < $1.key }
            offsets = entries.map(\.polled.record.offset)
        }

        func take() -> PolledRecord<Processor.Body> {
            let polled: PolledRecord<Processor.Body>
            if sorted {
                polled = entries[head].polled
            } else {
                polled = (decodedHead ?? decode(records[head])).polled
                decodedHead = nil
            }
            head += 1
            letGoOfApplied()
            return polled
        }

        /// The offset below which every record of the partition has been applied.
        var committableOffset: Int64 {
            sorted ? offsets[head...].min() ?? nextOffset : (head < records.count ? records[head].offset : nextOffset)
        }

        /// Drops applied records once they are most of what is kept.
        private func letGoOfApplied() {
            guard head >= 4_096, head * 2 >= (sorted ? entries.count : records.count) else { return }
            if sorted {
                entries.removeFirst(head)
                offsets.removeFirst(head)
            } else {
                records.removeFirst(head)
            }
            head = 0
        }
    }

    let applier: BatchApplier<Processor>
    let partitionCount: Int32
    /// Records per transaction; the results do not depend on it (see `loyalty replay`).
    let batchRecords: Int
    private var lanes: [TopicPartition: Lane] = [:]
    private var order: [Lane] = []
    /// The lanes' heads by (key, place in `order`), the merge's order. An entry is stale once its
    /// lane's head moved on; every lane with a head has an entry for it.
    private var heads = LaneHeap()
    private var broadcast: [ConsumedRecord] = []
    private var loading = true
    /// Everything the service published, in the order its outbox holds it (progress marks left out).
    private(set) var published: [OutboxRow] = []
    /// Records handed to the service, and how many there are in all (for progress lines).
    private(set) var taken = 0
    private(set) var total = 0

    init(processor: Processor, database: Database, inboxHorizonDays: Int, futureMargin: Int64,
         commandKeys: CommandKeys, partitionCount: Int32 = Topics.partitionCount, batchRecords: Int = 1_000) throws {
        applier = try BatchApplier(
            database: database, processor: processor, timerMode: .streamTime, partitionCount: partitionCount,
            inboxHorizon: inboxHorizonDays > 0 ? Int64(inboxHorizonDays) * 86_400_000 : nil)
        applier.futureMargin = futureMargin
        applier.commandKeys = commandKeys
        self.partitionCount = partitionCount
        self.batchRecords = batchRecords
    }

    var processor: Processor { applier.processor }

    /// Adds a record as its producer wrote it: to the partition of its key (or the one named).
    /// Records of topics the service does not read are ignored, and so are progress marks.
    func add(topic: String, key: [UInt8]?, value: [UInt8]?, partition: Int32? = nil) {
        let processor = applier.processor
        if processor.broadcastTopics.contains(topic) {
            broadcast.append(ConsumedRecord(topic: topic, partition: 0, offset: Int64(broadcast.count), key: key, value: value))
            return
        }
        guard processor.inputTopics.contains(topic) else { return }
        let number = partition ?? key.map { Murmur2Partitioner.partition(of: $0, partitions: partitionCount) } ?? 0
        let place = TopicPartition(topic: topic, partition: number)
        let lane = lanes[place] ?? {
            let lane = Lane(partition: place, sorted: processor.sortedInputTopics.contains(topic), index: order.count) { record in
                let decoded: Result<Decoded<Processor.Body>, Rejection>
                do throws(Rejection) { decoded = .success(try processor.decode(record)) } catch { decoded = .failure(error) }
                return (MergeKey(of: decoded, record: record), PolledRecord(record: record, decoded: decoded))
            }
            lanes[place] = lane
            order.append(lane)
            return lane
        }()
        let record = ConsumedRecord(topic: topic, partition: number, offset: lane.nextOffset, key: key, value: value)
        lane.nextOffset += 1
        if ProgressMark.isCandidate(record) { return }
        let isHead = lane.add(record, loading: loading)
        total += 1
        // Mid-run, a record may become its lane's head (a command sorting first, or the first
        // record of an emptied lane).
        if !loading, isHead, let key = lane.headKey { heads.push(LaneHeap.Entry(key: key, lane: lane.index)) }
    }

    /// Applies everything added, and every command the service sends itself on the way;
    /// `progress` is called after each batch.
    func run(progress: (ServiceSimulation) -> Void = { _ in }) throws {
        if loading {
            loading = false
            for lane in order {
                lane.sortLoaded()
                if let key = lane.headKey { heads.push(LaneHeap.Entry(key: key, lane: lane.index)) }
            }
            // Definitions are read whole before the first task record, as the loop does.
            if !broadcast.isEmpty {
                collect(try applier.applyBroadcast(broadcast).outbox)
                broadcast = []
            }
        }
        // What a batch published counts as delivered in the next, as the relay's acknowledgements
        // do: the outbox is emptied as the run goes, rather than holding every output twice.
        var delivered: [UInt64] = []
        while earliestLane() != nil {
            var inBatch = 0
            let outcome = try applier.apply(
                nextRecord: { newEchoes in
                    // A command to itself ends the batch: what sorts after it waits until it is in its partition.
                    guard newEchoes.isEmpty, inBatch < batchRecords, let lane = earliestLane() else { return nil }
                    inBatch += 1
                    let polled = lane.take()
                    if let key = lane.headKey { self.heads.push(LaneHeap.Entry(key: key, lane: lane.index)) }
                    return polled
                },
                committableOffsets: { self.committableOffsets() }, deliveredOutbox: delivered)
            delivered = outcome.outbox.map { UInt64($0.seq) }
            taken += inBatch
            collect(outcome.outbox)
            progress(self)
        }
    }

    /// Per partition, the offset below which every record has been applied: a sorted partition
    /// applies out of offset order, and what it has applied above this is in the store's
    /// `applied_offsets`, as in the loop.
    private func committableOffsets() -> [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        for lane in order { offsets[lane.partition] = lane.committableOffset }
        return offsets
    }

    /// The lane whose head record goes next: the smallest head key, the first lane among equals.
    private func earliestLane() -> Lane? {
        while let top = heads.top {
            let lane = order[top.lane]
            if lane.headKey == top.key { return lane }
            heads.pop()
        }
        return nil
    }

    /// Keeps what a batch published; commands to the service's own topics rejoin its input.
    private func collect(_ rows: [OutboxRow]) {
        let inputs = Set(applier.processor.inputTopics)
        for row in rows {
            let record = ConsumedRecord(topic: row.topic, partition: row.partition ?? 0, offset: 0, key: row.key, value: row.value)
            if ProgressMark.isCandidate(record) { continue }
            published.append(row)
            if inputs.contains(row.topic) {
                add(topic: row.topic, key: row.key, value: row.value, partition: row.partition)
            }
        }
    }
}

/// A binary min-heap of lane heads, ordered by key and then by lane: the merge's choice among
/// many partitions in logarithmic time rather than a scan of them all for every record.
private struct LaneHeap {
    struct Entry {
        var key: MergeKey
        var lane: Int

        func precedes(_ other: Entry) -> Bool { key < other.key || (key == other.key && lane < other.lane) }
    }

    private var entries: [Entry] = []

    var top: Entry? { entries.first }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < entries.count, entries[left].precedes(entries[first]) { first = left }
            if right < entries.count, entries[right].precedes(entries[first]) { first = right }
            guard first != parent else { return }
            entries.swapAt(parent, first)
            parent = first
        }
    }
}
