import CRdKafka
import Synchronization

/// The outcome of one produced record, tied to it by the tag given to `send`.
public struct DeliveryReport: Sendable {
    /// The caller's tag for the record (for the outbox: its row sequence number).
    public var tag: UInt64
    /// nil when the broker acknowledged the record.
    public var error: KafkaError?
    public var partition: Int32
    public var offset: Int64
}

/// Settings of the producer.
public struct ProducerConfiguration: Sendable {
    public var bootstrapServers: String
    /// Extra librdkafka settings, applied last.
    public var extra: [String: String] = [:]

    public init(bootstrapServers: String, extra: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.extra = extra
    }

    var settings: [(String, String)] {
        var settings: [(String, String)] = [
            ("bootstrap.servers", bootstrapServers),
            // Exactly-once toward the broker: no duplicates or reordering from retries.
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // The Java client's partitioner, so every producer puts a member on the same partition.
            ("partitioner", "murmur2_random"),
            // The outbox hands over whole batches at once; waiting longer would only add latency.
            ("linger.ms", "1"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "500000"),
            ("compression.type", "none"),
        ]
        settings.append(contentsOf: extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return settings
    }
}

/// An idempotent producer whose delivery reports name the record they are about.
///
/// Delivery reports are collected while `poll` (or `flush`) runs and handed out by
/// `takeDeliveryReports`, so the caller decides on which thread it acts on them.
public final class KafkaProducer: @unchecked Sendable {
    // Safe to share: librdkafka's producer handle is thread-safe; `topics` and `reports`
    // are guarded by mutexes.
    fileprivate let handle: OpaquePointer
    private let context: Unmanaged<ProducerContext>
    private let topics = Mutex<[String: OpaquePointer]>([:])

    public init(_ configuration: ProducerConfiguration) throws {
        let conf = try makeConfiguration(configuration.settings)
        let context = Unmanaged.passRetained(ProducerContext())
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            let tag = UInt64(UInt(bitPattern: message.pointee._private))
            let err = message.pointee.err
            let report = DeliveryReport(
                tag: tag,
                error: err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, context: "delivery failed"),
                partition: message.pointee.partition, offset: message.pointee.offset)
            context.reports.withLock { $0.append(report) }
        }
        rd_kafka_conf_set_error_cb(conf) { _, err, reason, opaque in
            guard let opaque else { return }
            let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            let text = reason.map { String(cString: $0) } ?? ""
            context.errors.withLock { $0.append(KafkaError(code: err, message: text)) }
        }
        do {
            handle = try makeClient(RD_KAFKA_PRODUCER, conf)
        } catch {
            context.release()
            throw error
        }
        self.context = context
    }

    deinit {
        topics.withLock { topics in
            for (_, topic) in topics { rd_kafka_topic_destroy(topic) }
        }
        rd_kafka_destroy(handle)
        context.release()
    }

    private func topicHandle(_ name: String) throws -> OpaquePointer {
        try topics.withLock { topics in
            if let topic = topics[name] { return topic }
            guard let topic = rd_kafka_topic_new(handle, name, nil) else {
                throw KafkaError(rd_kafka_last_error(), context: "cannot open topic \(name)")
            }
            topics[name] = topic
            return topic
        }
    }

    /// Queues one record; its delivery report will carry `tag`. When the local queue is full
    /// this serves delivery reports until there is room, so it never drops a record. The
    /// partition is the key's (murmur2) unless `partition` names one.
    public func send(topic: String, key: [UInt8]?, value: [UInt8]?, partition: Int32? = nil, tag: UInt64 = 0) throws {
        let topicHandle = try topicHandle(topic)
        let opaque = UnsafeMutableRawPointer(bitPattern: UInt(tag))
        while true {
            let result: Int32 = withOptionalBytes(value) { valuePointer, valueCount in
                withOptionalBytes(key) { keyPointer, keyCount in
                    rd_kafka_produce(
                        topicHandle, partition ?? RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                        valuePointer, valueCount, keyPointer, keyCount, opaque)
                }
            }
            if result == 0 { return }
            let err = rd_kafka_last_error()
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                rd_kafka_poll(handle, 10)
                continue
            }
            throw KafkaError(err, context: "produce to \(topic) failed")
        }
    }

    /// Serves delivery reports and errors, waiting at most `timeoutMilliseconds`.
    public func poll(timeoutMilliseconds: Int32 = 0) {
        rd_kafka_poll(handle, timeoutMilliseconds)
    }

    /// Waits until every queued record is delivered or failed, at most `timeoutMilliseconds`.
    /// Returns false when records are still outstanding.
    @discardableResult
    public func flush(timeoutMilliseconds: Int32) -> Bool {
        rd_kafka_flush(handle, timeoutMilliseconds) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Records queued or in flight and not yet reported.
    public var outstanding: Int { Int(rd_kafka_outq_len(handle)) }

    /// Delivery reports collected since the last call.
    public func takeDeliveryReports() -> [DeliveryReport] {
        context.value.reports.withLock { reports in
            defer { reports.removeAll(keepingCapacity: true) }
            return reports
        }
    }

    /// Client errors collected since the last call (most are transient and retried by librdkafka).
    public func takeErrors() -> [KafkaError] {
        context.value.errors.withLock { errors in
            defer { errors.removeAll() }
            return errors
        }
    }

    /// A fatal error (for example the idempotent producer's sequence was lost), if one was raised.
    public var fatalError: KafkaError? {
        var text = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &text, text.count)
        if err == RD_KAFKA_RESP_ERR_NO_ERROR { return nil }
        return KafkaError(code: err.rawValue, message: text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }
}

/// A failed step of a transaction, with what librdkafka says may be done about it.
public struct KafkaTransactionError: Error, Sendable, CustomStringConvertible {
    public var error: KafkaError
    /// The producer can no longer be used (fenced by a newer one with its `transactional.id`).
    public var isFatal: Bool
    /// The transaction must be aborted; then a new one may start.
    public var requiresAbort: Bool
    /// The same call may be made again (a commit that timed out, say).
    public var isRetriable: Bool
    public var description: String { "\(error)\(isFatal ? " (fatal)" : requiresAbort ? " (the transaction must be aborted)" : "")" }
}

extension KafkaProducer {
    /// The first call of a producer configured with a `transactional.id`: it fences every
    /// older producer with that id and completes or aborts the transaction it left open.
    public func initTransactions(timeoutMilliseconds: Int32) throws {
        try check(rd_kafka_init_transactions(handle, timeoutMilliseconds), "cannot start the transactional producer")
    }

    /// Starts a transaction: what is sent until its commit becomes visible to readers
    /// (`read_committed`) all at once, or not at all.
    public func beginTransaction() throws {
        try check(rd_kafka_begin_transaction(handle), "cannot begin a transaction")
    }

    /// Delivers everything sent in the transaction and commits it, waiting at most
    /// `timeoutMilliseconds`.
    public func commitTransaction(timeoutMilliseconds: Int32) throws {
        try check(rd_kafka_commit_transaction(handle, timeoutMilliseconds), "cannot commit the transaction")
    }

    /// Aborts the transaction: nothing sent in it becomes visible.
    public func abortTransaction(timeoutMilliseconds: Int32) throws {
        try check(rd_kafka_abort_transaction(handle, timeoutMilliseconds), "cannot abort the transaction")
    }

    private func check(_ error: OpaquePointer?, _ context: String) throws {
        guard let error else { return }
        defer { rd_kafka_error_destroy(error) }
        let code = rd_kafka_error_code(error)
        throw KafkaTransactionError(
            error: KafkaError(code: code.rawValue, message: "\(context): \(String(cString: rd_kafka_error_string(error)))"),
            isFatal: rd_kafka_error_is_fatal(error) != 0, requiresAbort: rd_kafka_error_txn_requires_abort(error) != 0,
            isRetriable: rd_kafka_error_is_retriable(error) != 0)
    }
}

/// What the C callbacks write into; reached through librdkafka's opaque pointer.
final class ProducerContext: Sendable {
    let reports = Mutex<[DeliveryReport]>([])
    let errors = Mutex<[KafkaError]>([])
}

extension Unmanaged where Instance == ProducerContext {
    var value: ProducerContext { takeUnretainedValue() }
}

/// Calls `body` with a pointer and length for optional bytes (NULL, 0 for nil).
@inline(__always)
func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { buffer in
        body(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count)
    }
}
