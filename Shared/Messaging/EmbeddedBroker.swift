import CRdKafka

/// An in-process Kafka cluster for development and tests: librdkafka's mock cluster, which
/// speaks the real Kafka protocol on loopback ports (consumer groups and the idempotent
/// producer included) and keeps everything in memory.
public final class EmbeddedBroker: @unchecked Sendable {
    // Safe to share: the mock cluster runs on its own librdkafka threads; this wrapper only
    // holds the handles and calls thread-safe functions on them.
    private let handle: OpaquePointer
    private let cluster: OpaquePointer

    /// The address clients connect to, e.g. `127.0.0.1:41234`.
    public let bootstrapServers: String

    /// Starts a cluster of `brokers` brokers and creates `topics` on it.
    public init(brokers: Int32 = 1, topics: [TopicSpec] = Topics.all) throws {
        let conf = try makeConfiguration([("log_level", "3")])
        handle = try makeClient(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(handle, brokers) else {
            rd_kafka_destroy(handle)
            throw KafkaError(message: "cannot start the embedded broker")
        }
        self.cluster = cluster
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        for topic in topics {
            try createTopic(topic.name, partitions: topic.partitions)
        }
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }

    /// Creates a topic (the mock cluster has no CreateTopics API).
    public func createTopic(_ name: String, partitions: Int32) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, 1)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "cannot create topic \(name)")
        }
    }

    /// Takes a broker down or brings it back, for failure tests.
    public func setBroker(_ id: Int32, up: Bool) {
        if up { rd_kafka_mock_broker_set_up(cluster, id) } else { rd_kafka_mock_broker_set_down(cluster, id) }
    }
}
