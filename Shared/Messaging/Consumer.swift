import CRdKafka
import Synchronization

/// Settings of a consumer-group consumer.
public struct ConsumerConfiguration: Sendable {
    public var bootstrapServers: String
    public var groupID: String
    /// How long the group waits for a silent member before reassigning its partitions.
    public var sessionTimeoutMilliseconds: Int = 6_000
    /// Extra librdkafka settings, applied last.
    public var extra: [String: String] = [:]

    public init(bootstrapServers: String, groupID: String, extra: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
        self.extra = extra
    }

    var settings: [(String, String)] {
        var settings: [(String, String)] = [
            ("bootstrap.servers", bootstrapServers),
            ("group.id", groupID),
            // Offsets live in the service's database; Kafka-side commits are advisory only.
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // One instance owns partition p of every input topic: a whole task.
            ("partition.assignment.strategy", "range"),
            // End-of-partition events tell the event-time merge that a partition is caught up.
            ("enable.partition.eof", "true"),
            ("session.timeout.ms", String(sessionTimeoutMilliseconds)),
            ("heartbeat.interval.ms", String(max(100, sessionTimeoutMilliseconds / 6))),
            // Also the rebalance timeout: how long a rebalance waits for members to rejoin. The
            // loop polls between short batches, so a minute is ample.
            ("max.poll.interval.ms", "60000"),
            // Short: a command a service sends itself holds its merge back until it is read again.
            ("fetch.wait.max.ms", "10"),
            ("topic.metadata.refresh.interval.ms", "10000"),
        ]
        settings.append(contentsOf: extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return settings
    }
}

/// What `poll` found.
public enum ConsumerEvent: Sendable {
    /// A record.
    case record(ConsumedRecord)
    /// The consumer has read everything the partition held when it fetched.
    case endOfPartition(TopicPartition, offset: Int64)
    /// A client error; librdkafka retries most of them by itself.
    case error(KafkaError)
}

/// Decides where assigned partitions start and learns of revoked ones. Both are called
/// synchronously inside `poll`, on the polling thread, as librdkafka requires.
public protocol RebalanceListener: AnyObject {
    /// Returns the offset to start each newly assigned partition at; a missing entry
    /// starts at the beginning of the partition.
    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64]
    /// The partitions are taken away; nothing more will be read from them.
    func partitionsRevoked(_ partitions: [TopicPartition])
}

/// A consumer-group consumer that starts partitions at offsets its listener gives it.
public final class KafkaConsumer: @unchecked Sendable {
    // Safe to move between threads, not to use from two at once: every call but `wakeUp`
    // goes through the one thread that polls (librdkafka requires the rebalance callback
    // to act inside poll). `wakeUp` only touches librdkafka's thread-safe queue.
    private let handle: OpaquePointer
    private let context: Unmanaged<ConsumerContext>
    private var closed = false

    public init(_ configuration: ConsumerConfiguration, listener: RebalanceListener) throws {
        let conf = try makeConfiguration(configuration.settings)
        let context = Unmanaged.passRetained(ConsumerContext(listener: listener))
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { handle, err, partitions, opaque in
            guard let handle, let opaque else { return }
            let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
            context.rebalance(handle: handle, err: err, partitions: partitions)
        }
        do {
            handle = try makeClient(RD_KAFKA_CONSUMER, conf)
        } catch {
            context.release()
            throw error
        }
        self.context = context
        rd_kafka_poll_set_consumer(handle)
    }

    deinit {
        close()
        rd_kafka_destroy(handle)
        context.release()
    }

    /// Joins the group for these topics.
    public func subscribe(_ topics: [String]) throws {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "subscribe failed") }
    }

    /// Reads these partitions from these offsets without joining the group (no rebalances;
    /// nil offset: from the beginning). For topics every instance reads whole.
    public func assign(_ partitions: [TopicPartition: Int64?]) throws {
        let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (partition, offset) in partitions.sorted(by: { $0.key.description < $1.key.description }) {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)?.pointee.offset = offset ?? Int64(RD_KAFKA_OFFSET_BEGINNING)
        }
        let err = rd_kafka_assign(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "assign failed") }
    }

    /// Waits up to `timeoutMilliseconds` for the next record or event; serves rebalances.
    public func poll(timeoutMilliseconds: Int32) -> ConsumerEvent? {
        guard let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let m = message.pointee
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        switch m.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            // Copy out: librdkafka owns these buffers until the message is destroyed.
            let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
            let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) }
            return .record(ConsumedRecord(topic: topic, partition: m.partition, offset: m.offset, key: key, value: value))
        case RD_KAFKA_RESP_ERR__PARTITION_EOF:
            return .endOfPartition(TopicPartition(topic: topic, partition: m.partition), offset: m.offset)
        default:
            return .error(KafkaError(m.err, context: "consumer"))
        }
    }

    /// Stops fetching these partitions until `resume`; already fetched records still arrive.
    public func pause(_ partitions: [TopicPartition]) {
        withPartitionList(partitions) { rd_kafka_pause_partitions(handle, $0) }
    }

    /// Resumes fetching paused partitions.
    public func resume(_ partitions: [TopicPartition]) {
        withPartitionList(partitions) { rd_kafka_resume_partitions(handle, $0) }
    }

    /// Commits offsets to Kafka asynchronously. Advisory only (lag monitoring): the offsets
    /// that count are kept in the service's database.
    public func commitAdvisory(_ offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (partition, offset) in offsets {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)?.pointee.offset = offset
        }
        _ = rd_kafka_commit(handle, list, 1)
    }

    /// The partition's low and high watermarks, asked of the broker (blocks up to the timeout).
    public func watermarks(of partition: TopicPartition, timeoutMilliseconds: Int32 = 5_000) throws -> (low: Int64, high: Int64) {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "cannot read the end of \(partition)") }
        return (low, high)
    }

    /// The partition's low and high watermarks as the last fetch response reported them,
    /// without asking the broker (nil: not known yet). Cheap: a lookup in librdkafka's cache.
    public func cachedWatermarks(of partition: TopicPartition) -> (low: Int64, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(handle, partition.topic, partition.partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return (low, high)
    }

    /// Leaves the group (revoking partitions through the listener) and stops the consumer.
    public func close() {
        guard !closed else { return }
        closed = true
        rd_kafka_consumer_close(handle)
    }

    private func withPartitionList(_ partitions: [TopicPartition], _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> rd_kafka_resp_err_t) {
        guard !partitions.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in partitions {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)
        }
        _ = body(list)
    }
}

/// Reached from the rebalance callback through librdkafka's opaque pointer.
final class ConsumerContext: @unchecked Sendable {
    // Only touched on the polling thread (inside rd_kafka_consumer_poll).
    weak var listener: RebalanceListener?

    init(listener: RebalanceListener) { self.listener = listener }

    func rebalance(handle: OpaquePointer, err: rd_kafka_resp_err_t, partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        var names: [TopicPartition] = []
        if let partitions {
            for index in 0..<Int(partitions.pointee.cnt) {
                let element = partitions.pointee.elems[index]
                names.append(TopicPartition(topic: String(cString: element.topic), partition: element.partition))
            }
        }
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            let offsets = listener?.partitionsAssigned(names) ?? [:]
            if let partitions {
                for index in 0..<Int(partitions.pointee.cnt) {
                    partitions.pointee.elems[index].offset = offsets[names[index]] ?? Int64(RD_KAFKA_OFFSET_BEGINNING)
                }
            }
            rd_kafka_assign(handle, partitions)
        default:
            listener?.partitionsRevoked(names)
            rd_kafka_assign(handle, nil)
        }
    }
}
