import Basics
import CRdKafka
import Foundation

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
    /// How many brokers the cluster has (ids 1 to this).
    public let brokerCount: Int32

    /// Starts a cluster of `brokers` brokers and creates `topics` on it.
    public init(brokers: Int32 = 1, topics: [TopicSpec]) throws {
        let conf = try makeConfiguration([("log_level", "3")])
        handle = try makeClient(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(handle, brokers) else {
            rd_kafka_destroy(handle)
            throw KafkaError(message: "cannot start the embedded broker")
        }
        self.cluster = cluster
        brokerCount = brokers
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

    /// Starts a fault now, on every broker.
    public func inject(_ fault: BrokerFault) {
        switch fault {
        case .latency(let milliseconds):
            rd_kafka_mock_broker_set_rtt(cluster, -1, Int32(milliseconds))
        case .requestLatency(let request, let milliseconds, let count):
            for broker in 1...brokerCount {
                for _ in 0..<count {
                    _ = mock_push_request_error_rtt_shim(cluster, broker, request.rawValue, RD_KAFKA_RESP_ERR_NO_ERROR, Int32(milliseconds))
                }
            }
        case .down:
            rd_kafka_mock_broker_set_down(cluster, -1)
        case .requestErrors(let request, let error, let count):
            let errors = [rd_kafka_resp_err_t](repeating: rd_kafka_resp_err_t(rawValue: error), count: count)
            rd_kafka_mock_push_request_errors_array(cluster, request.rawValue, count, errors)
        case .topicError(let topic, let error):
            rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: error))
        }
    }

    /// Ends a lasting fault (latency, down, topic error); faults counted in requests end by themselves.
    public func end(_ fault: BrokerFault) {
        switch fault {
        case .latency: rd_kafka_mock_broker_set_rtt(cluster, -1, 0)
        case .down: rd_kafka_mock_broker_set_up(cluster, -1)
        case .topicError(let topic, _): rd_kafka_mock_topic_set_error(cluster, topic, RD_KAFKA_RESP_ERR_NO_ERROR)
        case .requestLatency, .requestErrors: break
        }
    }

    /// Runs faults on their schedule, counted from now, on a thread of their own; `report` is
    /// told of each start and end. Returns at once.
    public func schedule(_ faults: [ScheduledFault], report: @escaping @Sendable (String) -> Void = { _ in }) {
        var steps: [(at: Int64, start: Bool, fault: ScheduledFault)] = []
        for fault in faults {
            steps.append((fault.afterMilliseconds, true, fault))
            if let duration = fault.forMilliseconds { steps.append((fault.afterMilliseconds + duration, false, fault)) }
        }
        steps.sort { $0.at < $1.at }
        let plan = steps
        let origin = DispatchTime.now().uptimeNanoseconds
        let thread = Thread { [self] in
            for step in plan {
                let due = origin + UInt64(step.at) * 1_000_000
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(useconds_t(min((due - now) / 1000, UInt64(UInt32.max)))) }
                if step.start { inject(step.fault.fault) } else { end(step.fault.fault) }
                report("\(step.start ? "fault started" : "fault ended"): \(step.fault.fault)")
            }
        }
        thread.name = "broker-faults"
        thread.start()
    }
}
