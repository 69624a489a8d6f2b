import CRdKafka
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of a consumer-group consumer.
public struct ConsumerConfiguration: Sendable {
    public var bootstrapServers: String
    public var groupID: String
    /// How long the group waits for a silent member before reassigning its partitions.
    public var sessionTimeoutMilliseconds: Int = 6_000
    /// Where to read from when the offset to read is gone (below the log start or past the
    /// end): `earliest`, or `error` to be told (a `.error` event for the partition) and decide.
    public var offsetResetPolicy = "earliest"
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
            ("auto.offset.reset", offsetResetPolicy),
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
    /// A client error; librdkafka retries most of them by itself. `partition` and `offset`
    /// are set for errors of one partition (an offset out of range, say).
    case error(KafkaError, partition: TopicPartition?, offset: Int64)
}

/// Decides where assigned partitions start and learns of revoked ones. Both are called
/// synchronously inside `poll`, or inside `close` as the consumer leaves its group, on the
/// thread that calls them, as librdkafka requires.
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
    /// Topic names by librdkafka's topic handle: a record's topic is then a shared string
    /// rather than one allocated per record.
    private var topicNames: [OpaquePointer: String] = [:]

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

    /// Reads these assigned partitions again from these offsets (nil: from the beginning):
    /// what was fetched of them and not yet polled is dropped.
    public func seek(_ offsets: [TopicPartition: Int64?]) throws {
        guard !offsets.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (partition, offset) in offsets.sorted(by: { $0.key.description < $1.key.description }) {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)?.pointee.offset = offset ?? Int64(RD_KAFKA_OFFSET_BEGINNING)
        }
        if let error = rd_kafka_seek_partitions(handle, list, 10_000) {
            defer { rd_kafka_error_destroy(error) }
            throw KafkaError(rd_kafka_error_code(error), context: "seek failed: \(String(cString: rd_kafka_error_string(error)))")
        }
        for index in 0..<Int(list.pointee.cnt) where list.pointee.elems[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let element = list.pointee.elems[index]
            throw KafkaError(element.err, context: "seek of \(String(cString: element.topic))[\(element.partition)] to \(element.offset) failed")
        }
    }

    /// Waits up to `timeoutMilliseconds` for the next record or event; serves rebalances.
    public func poll(timeoutMilliseconds: Int32) -> ConsumerEvent? {
        guard let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let m = message.pointee
        let topic = m.rkt.map(topicName) ?? ""
        switch m.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            // Copy out: librdkafka owns these buffers until the message is destroyed.
            let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
            let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) }
            var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(message, &type)
            return .record(ConsumedRecord(
                topic: topic, partition: m.partition, offset: m.offset, key: key, value: value,
                timestamp: timestamp >= 0 && type != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? timestamp : nil,
                timestampType: type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? .logAppendTime : .createTime))
        case RD_KAFKA_RESP_ERR__PARTITION_EOF:
            return .endOfPartition(TopicPartition(topic: topic, partition: m.partition), offset: m.offset)
        default:
            let partition = topic.isEmpty || m.partition < 0 ? nil : TopicPartition(topic: topic, partition: m.partition)
            let detail = m.payload.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: m.len), as: UTF8.self) }
            return .error(KafkaError(m.err, context: detail ?? "consumer"), partition: partition, offset: m.offset)
        }
    }

    private func topicName(_ topic: OpaquePointer) -> String {
        let current = rd_kafka_topic_name(topic)!
        // Compared, not trusted: a handle freed with its topic may come back for another.
        if let name = topicNames[topic], name.withCString({ strcmp($0, current) == 0 }) {
            return name
        }
        let name = String(cString: current)
        topicNames[topic] = name
        return name
    }

    /// Stops fetching these partitions until `resume`. Records fetched and not yet polled are
    /// dropped, and fetching resumes after the last record polled: nothing is skipped. The pause
    /// outlives a rebalance that assigns a partition back: resume it before it is revoked.
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

    /// The first and next offsets of each partition, asked of the broker in two requests
    /// (blocks up to the timeout for each).
    public func logBounds(of partitions: [TopicPartition], timeoutMilliseconds: Int32 = 10_000) throws -> [TopicPartition: (low: Int64, high: Int64)] {
        func ask(_ which: Int64) throws -> [TopicPartition: Int64] {
            guard !partitions.isEmpty else { return [:] }
            let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for partition in partitions {
                rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)?.pointee.offset = which
            }
            let err = rd_kafka_offsets_for_times(handle, list, timeoutMilliseconds)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "cannot read the bounds of \(partitions.count) partitions") }
            var result: [TopicPartition: Int64] = [:]
            for index in 0..<Int(list.pointee.cnt) {
                let element = list.pointee.elems[index]
                let partition = TopicPartition(topic: String(cString: element.topic), partition: element.partition)
                if element.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(element.err, context: "cannot read the bounds of \(partition)") }
                result[partition] = element.offset
            }
            return result
        }
        // ListOffsets' special timestamps: -2 the log start, -1 the end.
        let lows = try ask(Int64(RD_KAFKA_OFFSET_BEGINNING))
        let highs = try ask(Int64(RD_KAFKA_OFFSET_END))
        var bounds: [TopicPartition: (low: Int64, high: Int64)] = [:]
        for partition in partitions {
            guard let low = lows[partition], let high = highs[partition] else {
                throw KafkaError(message: "the broker did not report the bounds of \(partition)")
            }
            bounds[partition] = (low, high)
        }
        return bounds
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

    /// The partition count of each of these topics, from the cluster's metadata. Throws when
    /// a topic does not exist or reports an error.
    public func partitionCounts(of topics: [String], timeoutMilliseconds: Int32 = 10_000) throws -> [String: Int32] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 1, nil, &metadata, timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, context: "cannot read the cluster's metadata") }
        defer { rd_kafka_metadata_destroy(metadata) }
        var counts: [String: Int32] = [:]
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            let name = String(cString: topic.topic)
            guard topics.contains(name) else { continue }
            if topic.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(topic.err, context: "topic \(name)") }
            counts[name] = topic.partition_cnt
        }
        for topic in topics where counts[topic] == nil {
            throw KafkaError(message: "topic \(topic) does not exist in the cluster (create it; compose/create-topics.sh lists them)")
        }
        return counts
    }

    /// The id of the Kafka cluster the consumer is connected to, or nil if the broker did not
    /// answer within the timeout.
    public func clusterID(timeoutMilliseconds: Int32 = 10_000) -> String? {
        guard let text = rd_kafka_clusterid(handle, timeoutMilliseconds) else { return nil }
        defer { rd_kafka_mem_free(handle, text) }
        return String(cString: text)
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
