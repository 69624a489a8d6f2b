import CRdKafka
import Foundation

/// A Kafka protocol request type, by the name the protocol gives it (its ApiKey).
public enum KafkaRequest: Int16, Sendable, CaseIterable, CustomStringConvertible {
    case produce = 0, fetch = 1, listOffsets = 2, metadata = 3, offsetCommit = 8, offsetFetch = 9
    case findCoordinator = 10, joinGroup = 11, heartbeat = 12, leaveGroup = 13, syncGroup = 14
    case initProducerId = 22

    /// The protocol's name: `Produce`, `Fetch`, `OffsetCommit`, …
    public var description: String {
        switch self {
        case .produce: "Produce"
        case .fetch: "Fetch"
        case .listOffsets: "ListOffsets"
        case .metadata: "Metadata"
        case .offsetCommit: "OffsetCommit"
        case .offsetFetch: "OffsetFetch"
        case .findCoordinator: "FindCoordinator"
        case .joinGroup: "JoinGroup"
        case .heartbeat: "Heartbeat"
        case .leaveGroup: "LeaveGroup"
        case .syncGroup: "SyncGroup"
        case .initProducerId: "InitProducerId"
        }
    }

    /// The request type named `name` (case-insensitive).
    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.description.lowercased() == name.lowercased() }) else { return nil }
        self = found
    }
}

/// Something the embedded broker can be made to do wrong, for failure tests.
public enum BrokerFault: Sendable, Equatable, CustomStringConvertible {
    /// Every response of every broker is delayed this long.
    case latency(milliseconds: Int)
    /// The next `count` requests of this type are delayed this long.
    case requestLatency(KafkaRequest, milliseconds: Int, count: Int)
    /// The brokers close their connections and refuse new ones.
    case down
    /// The next `count` requests of this type fail with this librdkafka error code.
    case requestErrors(KafkaRequest, error: Int32, count: Int)
    /// Metadata requests for the topic answer this error code.
    case topicError(topic: String, error: Int32)

    public var description: String {
        switch self {
        case .latency(let ms): "latency=\(ms)"
        case .requestLatency(let request, let ms, let count): "latency=\(request):\(ms),count=\(count)"
        case .down: "down"
        case .requestErrors(let request, let error, let count): "errors=\(request):\(kafkaErrorName(error)),count=\(count)"
        case .topicError(let topic, let error): "topic-error=\(topic):\(kafkaErrorName(error))"
        }
    }
}

/// A fault with when it starts and how long it lasts, in milliseconds from when it is given to
/// the broker. Written as text, for a broker command's fault flags and control file:
///
///     latency=2500[,after=S][,for=S]                   every response delayed 2.5 s
///     latency=Fetch:2500,count=20[,after=S]            the next 20 fetches delayed 2.5 s
///     down[,after=S][,for=S]                           the broker down (and up again after S)
///     errors=Produce:NOT_LEADER_FOR_PARTITION,count=5  the next 5 produce requests fail
///     topic-error=shop.orders:LEADER_NOT_AVAILABLE[,for=S]
///
/// `for` ends a lasting fault (latency, down, topic error); without it the fault stays.
/// Error codes are librdkafka's names (without `RD_KAFKA_RESP_ERR_`) or numbers.
public struct ScheduledFault: Sendable, Equatable, CustomStringConvertible {
    public var fault: BrokerFault
    public var afterMilliseconds: Int64
    public var forMilliseconds: Int64?

    public init(_ fault: BrokerFault, afterMilliseconds: Int64 = 0, forMilliseconds: Int64? = nil) {
        self.fault = fault
        self.afterMilliseconds = afterMilliseconds
        self.forMilliseconds = forMilliseconds
    }

    public var description: String {
        var text = fault.description
        if afterMilliseconds > 0 { text += ",after=\(Double(afterMilliseconds) / 1000)" }
        if let forMilliseconds { text += ",for=\(Double(forMilliseconds) / 1000)" }
        return text
    }

    /// Parses the text form; the error names the part that is wrong.
    public init(parsing text: String) throws(KafkaError) {
        var parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, !parts[0].isEmpty else { throw KafkaError(message: "empty fault") }
        let head = parts.removeFirst()
        var options: [String: String] = [:]
        for part in parts {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, ["after", "for", "count"].contains(pair[0]) else {
                throw KafkaError(message: "fault \(text): unknown option \(part) (after=S, for=S, count=N)")
            }
            options[pair[0]] = pair[1]
        }
        func seconds(_ name: String) throws(KafkaError) -> Int64? {
            guard let value = options[name] else { return nil }
            guard let number = Double(value), number >= 0, number <= 86_400 else {
                throw KafkaError(message: "fault \(text): \(name) takes seconds from 0 to 86400, got \(value)")
            }
            return Int64((number * 1000).rounded())
        }
        func count() throws(KafkaError) -> Int {
            let value = options["count"] ?? "1"
            guard let number = Int(value), (1...100_000).contains(number) else {
                throw KafkaError(message: "fault \(text): count takes 1 to 100000, got \(value)")
            }
            return number
        }
        func milliseconds(_ value: String) throws(KafkaError) -> Int {
            guard let number = Int(value), (0...600_000).contains(number) else {
                throw KafkaError(message: "fault \(text): latency takes milliseconds from 0 to 600000, got \(value)")
            }
            return number
        }
        func request(_ name: String) throws(KafkaError) -> KafkaRequest {
            guard let request = KafkaRequest(name: name) else {
                throw KafkaError(message: "fault \(text): unknown request type \(name) (\(KafkaRequest.allCases.map(\.description).joined(separator: ", ")))")
            }
            return request
        }
        let pair = head.split(separator: "=", maxSplits: 1).map(String.init)
        let fault: BrokerFault
        switch (pair[0], pair.count) {
        case ("down", 1):
            fault = .down
        case ("latency", 2):
            let target = pair[1].split(separator: ":", maxSplits: 1).map(String.init)
            if target.count == 2 {
                fault = .requestLatency(try request(target[0]), milliseconds: try milliseconds(target[1]), count: try count())
            } else {
                fault = .latency(milliseconds: try milliseconds(target[0]))
            }
        case ("errors", 2):
            let target = pair[1].split(separator: ":", maxSplits: 1).map(String.init)
            guard target.count == 2 else { throw KafkaError(message: "fault \(text): errors=REQUEST:ERROR") }
            fault = .requestErrors(try request(target[0]), error: try kafkaErrorCode(named: target[1]), count: try count())
        case ("topic-error", 2):
            let target = pair[1].split(separator: ":", maxSplits: 1).map(String.init)
            guard target.count == 2, !target[0].isEmpty else { throw KafkaError(message: "fault \(text): topic-error=TOPIC:ERROR") }
            fault = .topicError(topic: target[0], error: try kafkaErrorCode(named: target[1]))
        default:
            throw KafkaError(message: "unknown fault \(head) (latency, down, errors, topic-error)")
        }
        self.init(fault, afterMilliseconds: try seconds("after") ?? 0, forMilliseconds: try seconds("for"))
        if forMilliseconds != nil, case .requestErrors = fault {
            throw KafkaError(message: "fault \(text): errors last for a count of requests, not a time")
        }
        if forMilliseconds != nil, case .requestLatency = fault {
            throw KafkaError(message: "fault \(text): per-request latency lasts for a count of requests, not a time")
        }
    }
}

/// librdkafka's name of an error code, without its `RD_KAFKA_RESP_ERR_` prefix.
public func kafkaErrorName(_ code: Int32) -> String {
    String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
}

/// The code of the librdkafka error called `name` (as `kafkaErrorName` gives it, any case), or
/// a number.
public func kafkaErrorCode(named name: String) throws(KafkaError) -> Int32 {
    if let number = Int32(name) { return number }
    var descriptions: UnsafePointer<rd_kafka_err_desc>?
    var count = 0
    rd_kafka_get_err_descs(&descriptions, &count)
    if let descriptions {
        for index in 0..<count {
            guard let entry = descriptions[index].name else { continue }
            if String(cString: entry).lowercased() == name.lowercased() { return descriptions[index].code.rawValue }
        }
    }
    throw KafkaError(message: "unknown Kafka error \(name) (for example NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, or a number)")
}
