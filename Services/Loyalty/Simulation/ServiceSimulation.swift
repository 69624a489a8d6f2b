import LoyaltyDomain
import Messaging
import ServiceKit
import Storage

/// One service's processor run over a whole history in this process: no Kafka, the store in a
/// temporary database. Records are applied through the service's own `BatchApplier`, in the
/// order its loop's merge gives them once every record is at hand: the earliest head of all
/// partitions first, each partition in the order it was written (sorted by key where the
/// service sorts it), and a command the service sends itself joining its partition once its
/// batch commits.
final class ServiceSimulation<Processor: StreamProcessor> {
    /// A partition of an input topic, as the merge sees it. A partition in arrival order keeps
    /// its records as they were written (their bytes in the spool, for what another service
    /// published) and reads and decodes each when it becomes the head; a sorted one decodes
    /// each on arrival for its key, to sort, keeps the key and the record, and decodes it again
    /// when it is taken (a decoded record holds its bytes and body: points' commands, held so,
    /// were a tenth of a run's peak). Applied records are let go as the run goes on, so that
    /// memory holds what is still to apply rather than all that was.
    private final class Lane {
        typealias Entry = (key: MergeKey, polled: PolledRecord<Processor.Body>)
        /// A record not applied yet: its bytes in `record`, or at `spooled` in the spool.
        struct Waiting {
            var record: ConsumedRecord
            var spooled: RecordSpool.Place?
        }
        let partition: TopicPartition
        let sorted: Bool
        private let decode: (ConsumedRecord) -> Entry
        private let spool: RecordSpool?
        /// In arrival order: the records not applied yet from `head` on, and the head decoded.
        private var records: [Waiting] = []
        private var decodedHead: Entry?
        /// Sorted: the records by key from `head` on, with their offsets (read without copying).
        private var entries: [(key: MergeKey, waiting: Waiting)] = []
        private var offsets: [Int64] = []
        private var head = 0
        var nextOffset: Int64 = 0

        init(partition: TopicPartition, sorted: Bool, spool: RecordSpool?, decode: @escaping (ConsumedRecord) -> Entry) {
            self.partition = partition
            self.sorted = sorted
            self.spool = spool
            self.decode = decode
        }

        var headKey: MergeKey? {
            if sorted { return head < entries.count ? entries[head].key : nil }
            if decodedHead == nil, head < records.count { decodedHead = decode(read(records[head])) }
            return decodedHead?.key
        }

        /// The record with its bytes (none if the spool cannot give them: its failure then
        /// stops the run after the batch).
        private func read(_ waiting: Waiting) -> ConsumedRecord {
            guard let place = waiting.spooled, let spool else { return waiting.record }
            var record = waiting.record
            record.value = spool.read(place)
            return record
        }

        /// Adds a record; while `loading`, a sorted partition appends and sorts once at the end.
        func add(_ waiting: Waiting, loading: Bool) {
            guard sorted else { return records.append(waiting) }
            let entry = (key: decode(read(waiting)).key, waiting: waiting)
            guard !loading else {
                entries.append(entry)
                offsets.append(waiting.record.offset)
                return
            }
            // A command sent mid-run goes where its key sorts among those not applied yet.
            var low = head
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle].key < entry.key { low = middle + 1 } else { high = middle }
            }
            entries.insert(entry, at: low)
            offsets.insert(waiting.record.offset, at: low)
        }

        /// Sorts what was added while loading.
        func sortLoaded() {
            guard sorted else { return }
            entries.sort { $0.key < $1.key }
            offsets = entries.map(\.waiting.record.offset)
        }

        func take() -> PolledRecord<Processor.Body> {
            let polled: PolledRecord<Processor.Body>
            if sorted {
                polled = decode(read(entries[head].waiting)).polled
            } else {
                polled = (decodedHead ?? decode(read(records[head]))).polled
                decodedHead = nil
            }
            head += 1
            letGoOfApplied()
            return polled
        }

        /// The offset below which every record of the partition has been applied.
        var committableOffset: Int64 {
            sorted ? offsets[head...].min() ?? nextOffset : (head < records.count ? records[head].record.offset : nextOffset)
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
    /// Where the bytes of records added by ``add(topic:key:spooled:partition:)`` are.
    let spool: RecordSpool?
    /// Records per transaction. The event topics (the ledger, rewards, messages) do not depend
    /// on it; the latest-value topics (balances, tier status, campaign results) publish a
    /// member's or campaign's state once per batch that changed it, so larger batches publish
    /// fewer of them, with the same latest values. A batch's costs (each member's state
    /// written once, its snapshot encoded) are spread over more records: 10,000 ran a year of
    /// 1,000 members about a third faster than 1,000, for some 20 MiB more at the peak.
    let batchRecords: Int
    private var lanes: [TopicPartition: Lane] = [:]
    private var order: [Lane] = []
    /// The lanes with a head, by head key and then by place in `order` (the order a scan of
    /// the lanes would pick them in): a record is taken in O(log lanes) rather than by reading
    /// every lane's head (notifications reads some fifty partitions). Rebuilt when a command
    /// the service sent itself joins a lane, which may move that lane's head.
    private var heads = Heap<(key: MergeKey, index: Int)> { $0.key < $1.key || ($0.key == $1.key && $0.index < $1.index) }
    private var headsCurrent = false
    private var broadcast: [ConsumedRecord] = []
    private var loading = true
    /// How many records the service published (progress marks left out).
    private(set) var publishedCount = 0
    /// Records handed to the service, and how many there are in all (for progress lines).
    private(set) var taken = 0
    private(set) var total = 0
    /// Timers the service fired (in stream time, as the records passed their due times).
    private(set) var timersFired = 0

    init(processor: Processor, database: Database, inboxHorizonDays: Int, futureMargin: Int64,
         commandKeys: CommandKeys, partitionCount: Int32 = Topics.partitionCount, batchRecords: Int = 10_000, spool: RecordSpool? = nil) throws {
        applier = try BatchApplier(
            database: database, processor: processor, timerMode: .streamTime, partitionCount: partitionCount,
            inboxHorizon: inboxHorizonDays > 0 ? Int64(inboxHorizonDays) * 86_400_000 : nil,
            // What a batch publishes is handed on as it commits; nothing is published later,
            // no record is sent again and no timer waits for a restart: neither box nor the
            // timers is stored.
            outboxInMemoryOnly: true, inboxInMemoryOnly: true, timersInMemoryOnly: true)
        applier.futureMargin = futureMargin
        applier.commandKeys = commandKeys
        self.partitionCount = partitionCount
        self.batchRecords = batchRecords
        self.spool = spool
    }

    var processor: Processor { applier.processor }

    /// Fires, before each record, the timers of every task due before it that has a record
    /// still to read (``BatchApplier/taskHasRecordToCome``): for a service whose tasks share
    /// a figure that a keeper decides in the order of its triggers' times.
    func firesEveryTasksTimersInEventTime() {
        applier.taskHasRecordToCome = { [unowned self] task in
            order.contains { $0.partition.partition == task && $0.headKey != nil }
        }
    }

    /// Adds a record as its producer wrote it: to the partition of its key (or the one named).
    /// Records of topics the service does not read are ignored, and so are progress marks.
    func add(topic: String, key: [UInt8]?, value: [UInt8]?, partition: Int32? = nil) {
        add(topic: topic, key: key, value: value, spooled: nil, partition: partition)
    }

    /// Adds a record whose bytes are at `place` in the spool (nil: a tombstone), read when the
    /// record is applied.
    func add(topic: String, key: [UInt8]?, spooled place: RecordSpool.Place?, partition: Int32? = nil) {
        add(topic: topic, key: key, value: nil, spooled: place, partition: partition)
    }

    private func add(topic: String, key: [UInt8]?, value: [UInt8]?, spooled: RecordSpool.Place?, partition: Int32?) {
        let processor = applier.processor
        if processor.broadcastTopics.contains(topic) {
            // Read whole before the first task record (see `run`), so read from the spool now.
            let bytes = value ?? spooled.flatMap { spool?.read($0) }
            broadcast.append(ConsumedRecord(topic: topic, partition: 0, offset: Int64(broadcast.count), key: key, value: bytes))
            return
        }
        guard processor.inputTopics.contains(topic) else { return }
        let number = partition ?? key.map { Murmur2Partitioner.partition(of: $0, partitions: partitionCount) } ?? 0
        let place = TopicPartition(topic: topic, partition: number)
        let lane = lanes[place] ?? {
            let lane = Lane(partition: place, sorted: processor.sortedInputTopics.contains(topic), spool: spool) { record in
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
        // A spooled record is never a mark: marks are not published on (see `collect`).
        if ProgressMark.isCandidate(record) { return }
        lane.add(Lane.Waiting(record: record, spooled: spooled), loading: loading)
        headsCurrent = false
        total += 1
    }

    /// Applies everything added, and every command the service sends itself on the way;
    /// `publish` gets what the service publishes (progress marks left out) in the order its
    /// outbox holds it, as each batch commits; `progress` is called after each batch.
    func run(publish: (OutboxRow) throws -> Void, progress: (ServiceSimulation) -> Void = { _ in }) throws {
        if loading {
            loading = false
            for lane in order { lane.sortLoaded() }
            // Definitions are read whole before the first task record, as the loop does.
            if !broadcast.isEmpty {
                try collect(try applier.applyBroadcast(broadcast).outbox, publish: publish)
                broadcast = []
            }
        }
        while order.contains(where: { $0.headKey != nil }) {
            var inBatch = 0
            let outcome = try applier.apply(
                nextRecord: { newEchoes in
                    // A command to itself ends the batch: what sorts after it waits until it is in its partition.
                    guard newEchoes.isEmpty, inBatch < batchRecords, let polled = takeEarliest() else { return nil }
                    inBatch += 1
                    return polled
                },
                committableOffsets: { self.committableOffsets() })
            if let failure = spool?.failure { throw failure }
            taken += inBatch
            timersFired += outcome.timersFired
            try collect(outcome.outbox, publish: publish)
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

    /// Takes the record that goes next: the earliest head of all lanes, the first lane in
    /// `order` among equal heads.
    private func takeEarliest() -> PolledRecord<Processor.Body>? {
        if !headsCurrent {
            heads.removeAll()
            for (index, lane) in order.enumerated() {
                if let key = lane.headKey { heads.insert((key, index)) }
            }
            headsCurrent = true
        }
        guard heads.count > 0 else { return nil }
        let index = heads.removeFirst().index
        let lane = order[index]
        let polled = lane.take()
        if let key = lane.headKey { heads.insert((key, index)) }
        return polled
    }

    /// Hands on what a batch published; commands to the service's own topics rejoin its input.
    private func collect(_ rows: [OutboxRow], publish: (OutboxRow) throws -> Void) throws {
        let inputs = Set(applier.processor.inputTopics)
        for row in rows {
            let record = ConsumedRecord(topic: row.topic, partition: row.partition ?? 0, offset: 0, key: row.key, value: row.value)
            if ProgressMark.isCandidate(record) { continue }
            publishedCount += 1
            try publish(row)
            if inputs.contains(row.topic) {
                add(topic: row.topic, key: row.key, value: row.value, partition: row.partition)
            }
        }
    }
}
