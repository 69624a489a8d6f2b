import CRdKafka
import Synchronization

/// Where librdkafka's own log lines go. Without a handler they go to standard error in
/// librdkafka's plain-text format; with one (a service installs its JSON logger), every client
/// created afterwards hands its lines to it: `level` is syslog's (0 emergency … 7 debug).
public enum KafkaLog {
    public typealias Handler = @Sendable (_ level: Int32, _ facility: String, _ message: String) -> Void

    private static let current = Mutex<Handler?>(nil)

    /// Installs the handler for clients created from now on.
    public static func install(_ handler: @escaping Handler) {
        current.withLock { $0 = handler }
    }

    static var handler: Handler? { current.withLock { $0 } }

    /// Routes a configuration's log lines to the handler, if one is installed.
    static func attach(to conf: OpaquePointer) {
        guard handler != nil else { return }
        rd_kafka_conf_set_log_cb(conf) { _, level, facility, buffer in
            guard let handler = KafkaLog.handler else { return }
            handler(level, facility.map { String(cString: $0) } ?? "", buffer.map { String(cString: $0) } ?? "")
        }
    }
}

/// Checks librdkafka settings without making a client: the first one it refuses is named.
public func validateKafkaSettings(_ settings: [String: String]) throws {
    let conf = try makeConfiguration(settings.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    rd_kafka_conf_destroy(conf)
}
