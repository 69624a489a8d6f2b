import Foundation
import Messaging
import Synchronization

/// What the loop knows about itself, for the HTTP endpoints: written by the loop's thread,
/// read by the server's. Everything here is operational, never an input to a rule.
public final class ServiceStatus: Sendable {
    /// One partition as the loop sees it.
    public struct Partition: Sendable {
        /// The next offset the store will read.
        public var committed: Int64
        /// The partition's end, as the broker last said (nil: not known yet).
        public var end: Int64?
        /// Whether the loop has read to the end at least once since it was assigned.
        public var reachedEnd: Bool
        /// The task's stream time (nil: nothing applied yet).
        public var streamTime: Int64?

        public var lag: Int64? { end.map { max(0, $0 - committed) } }
    }

    /// A cumulative histogram in the Prometheus sense.
    public struct Histogram: Sendable {
        public let bounds: [Double]
        public var counts: [Int]
        public var sum: Double = 0
        public var count = 0

        public init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count)
        }

        public mutating func observe(_ value: Double) {
            for index in bounds.indices where value <= bounds[index] { counts[index] += 1 }
            sum += value
            count += 1
        }

        /// Adds what `other`, a histogram with the same bounds, observed.
        public mutating func add(_ other: Histogram) {
            precondition(other.bounds == bounds, "histograms with different bounds")
            for index in counts.indices { counts[index] += other.counts[index] }
            sum += other.sum
            count += other.count
        }

        /// The bounds of ``Snapshot/recordLatencySeconds``, in seconds.
        public static let recordLatencyBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60]
    }

    public struct Snapshot: Sendable {
        public var service: String
        public var connected = false
        /// Partition count of the input topics, to tell which task owns a member.
        public var partitionCount: Int32 = 0
        public var partitions: [TopicPartition: Partition] = [:]
        public var applied = 0
        public var duplicates = 0
        public var deadLettered = 0
        public var deadLettersByReason: [String: Int] = [:]
        public var late = 0
        public var timersFired = 0
        public var batches = 0
        public var rebalances = 0
        public var outboxInFlight = 0
        /// Milliseconds the oldest unacknowledged outbox row has waited.
        public var outboxOldestMilliseconds: Int64 = 0
        public var batchRecords = Histogram(bounds: [1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000])
        public var commitSeconds = Histogram(bounds: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        /// From each record's Kafka timestamp (when its writer sent it) to the commit of the
        /// batch that took it: Kafka's delivery, the wait in this instance, and the batch.
        public var recordLatencySeconds = Histogram(bounds: Histogram.recordLatencyBounds)
        /// Timers per task: set, and due but not fired.
        public var timers: [Int32: (pending: Int64, due: Int64)] = [:]
        /// Warm copies kept of other instances' tasks (`STANDBY_REPLICAS`), by task: the
        /// changelog records each had not read when its last pass began.
        public var warmCopyLag: [Int32: Int64] = [:]
        /// Service-specific metric lines (Prometheus text), from the processor.
        public var extraMetrics: [String] = []
        /// Tasks waiting for a producer's progress: on which partition, for whom, since how long (ms).
        public var progressWaits: [(partition: TopicPartition, producer: String, milliseconds: Int64)] = []
    }

    private let state: Mutex<Snapshot>
    /// What every metric name starts with (``Platform/metricPrefix``).
    public let metricPrefix: String

    public init(service: String, metricPrefix: String) {
        state = Mutex(Snapshot(service: service))
        self.metricPrefix = metricPrefix
    }

    /// Changes the snapshot under the lock.
    public func update(_ change: (inout Snapshot) -> Void) {
        state.withLock { change(&$0) }
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Ready: connected, partitions assigned and each read to its end once, and the outbox
    /// flowing (nothing waiting on the broker for over 30 s). The reasons when not.
    public func readiness() -> (ready: Bool, reasons: [String]) {
        let snapshot = self.snapshot
        var reasons: [String] = []
        if !snapshot.connected { reasons.append("the Kafka cluster has not answered") }
        if snapshot.partitions.isEmpty { reasons.append("no partitions assigned") }
        let behind = snapshot.partitions.filter { !$0.value.reachedEnd }.map(\.key.description).sorted()
        if !behind.isEmpty { reasons.append("not yet read to the end: \(behind.joined(separator: ", "))") }
        for wait in snapshot.progressWaits where wait.milliseconds > 30_000 {
            reasons.append("waiting \(wait.milliseconds / 1000) s for the progress of \(wait.producer) on \(wait.partition): is it running?")
        }
        if snapshot.outboxOldestMilliseconds > 30_000 {
            reasons.append("outbox rows unacknowledged for \(snapshot.outboxOldestMilliseconds / 1000) s")
        }
        return (reasons.isEmpty, reasons)
    }

    /// The snapshot in the Prometheus text format (version 0.0.4).
    public func prometheusText() -> String {
        let s = snapshot
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            lines.append("# HELP \(metricPrefix)\(name) \(help)")
            lines.append("# TYPE \(metricPrefix)\(name) \(type)")
            for sample in samples { lines.append("\(metricPrefix)\(name)\(sample.labels) \(sample.value)") }
        }
        let service = "service=\"\(s.service)\""
        metric("records_applied_total", "counter", "Input records applied.", [("{\(service)}", "\(s.applied)")])
        metric("records_duplicate_total", "counter", "Input records recognised as duplicates.", [("{\(service)}", "\(s.duplicates)")])
        metric("records_late_total", "counter", "Records applied after their task's stream time had passed them.", [("{\(service)}", "\(s.late)")])
        metric("dead_letters_total", "counter", "Records dead-lettered, by reason.",
               s.deadLettersByReason.sorted { $0.key < $1.key }.map { ("{\(service),reason=\"\(escape($0.key))\"}", "\($0.value)") })
        metric("timers_fired_total", "counter", "Timers fired.", [("{\(service)}", "\(s.timersFired)")])
        metric("batches_total", "counter", "Batches committed.", [("{\(service)}", "\(s.batches)")])
        metric("rebalances_total", "counter", "Partition assignments and revocations.", [("{\(service)}", "\(s.rebalances)")])
        metric("outbox_in_flight", "gauge", "Outbox rows sent and not yet acknowledged.", [("{\(service)}", "\(s.outboxInFlight)")])
        metric("outbox_oldest_seconds", "gauge", "Age of the oldest unacknowledged outbox row.",
               [("{\(service)}", String(format: "%.3f", Double(s.outboxOldestMilliseconds) / 1000))])
        let partitions = s.partitions.sorted { $0.key.description < $1.key.description }
        func labels(_ partition: TopicPartition) -> String { "{\(service),topic=\"\(partition.topic)\",partition=\"\(partition.partition)\"}" }
        metric("partition_lag_records", "gauge", "Records of the partition not yet applied (end minus stored offset).",
               partitions.compactMap { entry in entry.value.lag.map { (labels(entry.key), "\($0)") } })
        metric("partition_offset", "gauge", "The next offset the store will read.", partitions.map { (labels($0.key), "\($0.value.committed)") })
        var tasks: [Int32: Int64] = [:]
        for (partition, state) in s.partitions { if let time = state.streamTime { tasks[partition.partition] = time } }
        metric("task_stream_time_seconds", "gauge", "Stream time of each task (latest event time applied), as a Unix time.",
               tasks.sorted { $0.key < $1.key }.map { ("{\(service),task=\"\($0.key)\"}", String(format: "%.3f", Double($0.value) / 1000)) })
        let timers = s.timers.sorted { $0.key < $1.key }
        metric("timers_pending", "gauge", "Timers set and not yet fired, per task.", timers.map { ("{\(service),task=\"\($0.key)\"}", "\($0.value.pending)") })
        metric("timers_due", "gauge", "Timers due (by stream time, or the clock in wall-clock mode) and not yet fired, per task.",
               timers.map { ("{\(service),task=\"\($0.key)\"}", "\($0.value.due)") })
        metric("progress_wait_seconds", "gauge", "How long a task has waited for a producing service's progress.",
               s.progressWaits.sorted { ($0.partition.description, $0.producer) < ($1.partition.description, $1.producer) }.map {
                   ("{\(service),producer=\"\($0.producer)\",topic=\"\($0.partition.topic)\",partition=\"\($0.partition.partition)\"}",
                    String(format: "%.3f", Double($0.milliseconds) / 1000))
               })
        let copies = s.warmCopyLag.sorted { $0.key < $1.key }
        metric("warm_copies", "gauge", "Warm copies this instance keeps of tasks other instances own.", [("{\(service)}", "\(copies.count)")])
        metric("warm_copy_lag_records", "gauge", "Changelog records a warm copy had not read when its last pass began, per task.",
               copies.map { ("{\(service),task=\"\($0.key)\"}", "\($0.value)") })
        histogram("batch_records", "Records per committed batch.", s.batchRecords, service, &lines)
        histogram("commit_seconds", "Time to apply and commit a batch.", s.commitSeconds, service, &lines)
        histogram(
            "record_latency_seconds", "Time from a record's Kafka timestamp to the commit of the batch that took it.",
            s.recordLatencySeconds, service, &lines)
        lines.append(contentsOf: s.extraMetrics)
        return lines.joined(separator: "\n") + "\n"
    }

    private func histogram(_ name: String, _ help: String, _ histogram: Histogram, _ service: String, _ lines: inout [String]) {
        lines.append("# HELP \(metricPrefix)\(name) \(help)")
        lines.append("# TYPE \(metricPrefix)\(name) histogram")
        for (bound, count) in zip(histogram.bounds, histogram.counts) {
            lines.append("\(metricPrefix)\(name)_bucket{\(service),le=\"\(formatBound(bound))\"} \(count)")
        }
        lines.append("\(metricPrefix)\(name)_bucket{\(service),le=\"+Inf\"} \(histogram.count)")
        lines.append("\(metricPrefix)\(name)_sum{\(service)} \(histogram.sum)")
        lines.append("\(metricPrefix)\(name)_count{\(service)} \(histogram.count)")
    }

    private func formatBound(_ bound: Double) -> String {
        bound == bound.rounded() ? String(Int(bound)) : String(bound)
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
func escape(_ value: String) -> String {
    value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
}

/// A value handed to another thread under a rule the compiler cannot check (documented where
/// it is used).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
