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
    /// A partition of an input topic, as the merge sees it.
    private final class Lane {
        let partition: TopicPartition
        let sorted: Bool
        var entries: [(key: MergeKey, polled: PolledRecord<Processor.Body>)] = []
        /// The offsets of `entries`, in the same order (read without copying the records).
        var offsets: [Int64] = []
        var head = 0
        var nextOffset: Int64 = 0

        init(partition: TopicPartition, sorted: Bool) {
            self.partition = partition
            self.sorted = sorted
        }

        var headKey: MergeKey? { head < entries.count ? entries[head].key : nil }

        func add(_ key: MergeKey, _ polled: PolledRecord<Processor.Body>, afterLoading loading: Bool) {
            guard sorted, !loading else {
                entries.append((key, polled))
                offsets.append(polled.record.offset)
                return
            }
            // A command sent mid-run goes where its key sorts among those not applied yet.
            var low = head
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle].key < key { low = middle + 1 } else { high = middle }
            }
            entries.insert((key, polled), at: low)
            offsets.insert(polled.record.offset, at: low)
        }

        func take() -> PolledRecord<Processor.Body> {
            defer { head += 1 }
            return entries[head].polled
        }
    }

    let applier: BatchApplier<Processor>
    let partitionCount: Int32
    /// Records per transaction; the results do not depend on it (see `loyalty replay`).
    let batchRecords: Int
    private var lanes: [TopicPartition: Lane] = [:]
    private var order: [Lane] = []
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
            let lane = Lane(partition: place, sorted: processor.sortedInputTopics.contains(topic))
            lanes[place] = lane
            order.append(lane)
            return lane
        }()
        let record = ConsumedRecord(topic: topic, partition: number, offset: lane.nextOffset, key: key, value: value)
        lane.nextOffset += 1
        if ProgressMark.isCandidate(record) { return }
        let decoded: Result<Decoded<Processor.Body>, Rejection>
        do { decoded = .success(try processor.decode(record)) } catch { decoded = .failure(error) }
        let mergeKey: MergeKey
        switch decoded {
        case .success(let input): mergeKey = MergeKey(time: input.time.millis, rank: input.rank, id: input.eventID)
        case .failure: mergeKey = MergeKey(time: .min, rank: .min, id: record.eventID ?? "\(place)@\(record.offset)")
        }
        lane.add(mergeKey, PolledRecord(record: record, decoded: decoded), afterLoading: loading)
        total += 1
    }

    /// Applies everything added, and every command the service sends itself on the way;
    /// `progress` is called after each batch.
    func run(progress: (ServiceSimulation) -> Void = { _ in }) throws {
        if loading {
            loading = false
            for lane in order where lane.sorted {
                lane.entries.sort { $0.key < $1.key }
                lane.offsets = lane.entries.map(\.polled.record.offset)
            }
            // Definitions are read whole before the first task record, as the loop does.
            if !broadcast.isEmpty {
                collect(try applier.applyBroadcast(broadcast).outbox)
                broadcast = []
            }
        }
        while order.contains(where: { $0.headKey != nil }) {
            var inBatch = 0
            let outcome = try applier.apply(
                nextRecord: { newEchoes in
                    // A command to itself ends the batch: what sorts after it waits until it is in its partition.
                    guard newEchoes.isEmpty, inBatch < batchRecords, let lane = earliestLane() else { return nil }
                    inBatch += 1
                    return lane.take()
                },
                committableOffsets: { self.committableOffsets() })
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
        for lane in order {
            let waiting = lane.offsets[lane.head...]
            offsets[lane.partition] = (lane.sorted ? waiting.min() : waiting.first) ?? lane.nextOffset
        }
        return offsets
    }

    /// The lane whose head record goes next.
    private func earliestLane() -> Lane? {
        var best: Lane?
        var bestKey: MergeKey?
        for lane in order {
            guard let key = lane.headKey else { continue }
            if bestKey == nil || key < bestKey! {
                best = lane
                bestKey = key
            }
        }
        return best
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
