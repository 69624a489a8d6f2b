import CRdKafka

/// An error reported by librdkafka or by this layer's use of it.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// librdkafka's error code (`rd_kafka_resp_err_t`), or -1 for errors of this layer.
    public var code: Int32
    /// What went wrong, in words.
    public var message: String

    public init(code: Int32 = -1, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, context: String) {
        self.code = err.rawValue
        self.message = "\(context): \(String(cString: rd_kafka_err2str(err)))"
    }

    public var description: String { "kafka error \(code): \(message)" }

    /// Whether the cluster did not answer rather than refused: a request timed out (in
    /// librdkafka or at the broker), no broker could be reached, or a partition has no leader
    /// for now (a broker slow or restarting). Asking again later may succeed.
    public var isUnanswered: Bool {
        [
            RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ].contains { $0.rawValue == code }
    }

    /// librdkafka's code for an offset outside the partition's log (with `auto.offset.reset=error`).
    public static let offsetOutOfRange = RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET.rawValue
}

/// Applies key/value settings to a fresh librdkafka configuration object.
/// On failure the configuration is destroyed and the offending setting named.
func makeConfiguration(_ settings: [(String, String)]) throws -> OpaquePointer {
    guard let conf = rd_kafka_conf_new() else {
        throw KafkaError(message: "rd_kafka_conf_new failed")
    }
    var errorText = [CChar](repeating: 0, count: 512)
    for (key, value) in settings {
        let result = rd_kafka_conf_set(conf, key, value, &errorText, errorText.count)
        if result != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            let detail = errorText.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw KafkaError(message: "invalid setting \(key)=\(value): \(detail)")
        }
    }
    KafkaLog.attach(to: conf)
    return conf
}

/// Creates a client handle; librdkafka takes ownership of `conf` on success only.
func makeClient(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws -> OpaquePointer {
    var errorText = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
        rd_kafka_conf_destroy(conf)
        let detail = errorText.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw KafkaError(message: "rd_kafka_new failed: \(detail)")
    }
    return handle
}
