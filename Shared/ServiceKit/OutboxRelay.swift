import Messaging
import Storage

/// Step 3 of the exactly-once loop: publishes committed outbox rows with the idempotent
/// producer and remembers which ones Kafka acknowledged, so the next transaction deletes
/// them. A row whose delivery failed is sent again; rows left from an earlier run are
/// republished at start (downstream de-duplicates by event id).
public final class OutboxRelay {
    /// nil: a relay that publishes nothing (``init(discardingWith:)``).
    private let producer: KafkaProducer?
    private let logger: Logger
    /// Rows sent and not yet acknowledged, by sequence number.
    private var inFlight: [UInt64: OutboxRow] = [:]
    /// When each row in flight was first sent (monotonic milliseconds), for readiness.
    private var sentAt: [UInt64: Int64] = [:]
    /// Acknowledged rows still present in the outbox table.
    private var acknowledged: [UInt64] = []

    public init(producer: KafkaProducer, logger: Logger) {
        self.producer = producer
        self.logger = logger
    }

    /// A relay for a store rebuilt from history (a replay): what it would publish was
    /// published the first time, so each committed row counts as delivered at once and is
    /// deleted by the next transaction.
    public init(discardingWith logger: Logger) {
        producer = nil
        self.logger = logger
    }

    /// Rows sent and not yet acknowledged.
    public var inFlightCount: Int { inFlight.count }

    /// How long the oldest row in flight has waited for its acknowledgement.
    public func oldestInFlightMilliseconds(now: Int64) -> Int64 {
        sentAt.values.min().map { now - $0 } ?? 0
    }

    /// Sends every row of the outbox table this relay has not sent itself, oldest first: at
    /// start, and when partitions are assigned (an instance sharing the database may have
    /// died between committing rows and publishing them).
    public func republishUnsent(from database: Database) throws -> Int {
        let known = Set(inFlight.keys).union(acknowledged)
        let rows = try database.prepare("SELECT seq, topic, key, value, partition FROM outbox ORDER BY seq").query { row in
            OutboxRow(
                seq: row.int64(0), topic: row.string(1),
                key: row.isNull(2) ? nil : row.blob(2), value: row.isNull(3) ? nil : row.blob(3),
                partition: row.isNull(4) ? nil : Int32(row.int64(4)))
        }.filter { !known.contains(UInt64(bitPattern: $0.seq)) }
        try publish(rows)
        return rows.count
    }

    /// Sends an operational record that is no part of any state (an instance's announcement):
    /// not tracked, not retried.
    public func sendUntracked(topic: String, key: [UInt8]?, value: [UInt8]?) throws {
        try producer?.send(topic: topic, key: key, value: value, tag: 0)
    }

    /// Sends committed rows.
    public func publish(_ rows: [OutboxRow]) throws {
        guard let producer else {
            acknowledged += rows.map { UInt64(bitPattern: $0.seq) }
            return
        }
        for row in rows {
            let tag = UInt64(bitPattern: row.seq)
            inFlight[tag] = row
            sentAt[tag] = monotonicMilliseconds()
            try producer.send(topic: row.topic, key: row.key, value: row.value, partition: row.partition, tag: tag)
        }
    }

    /// Serves delivery reports; failed rows are sent again.
    public func poll(timeoutMilliseconds: Int32 = 0) throws {
        guard let producer else { return }
        producer.poll(timeoutMilliseconds: timeoutMilliseconds)
        for report in producer.takeDeliveryReports() {
            guard let row = inFlight[report.tag] else { continue }
            if let error = report.error {
                logger.warning("delivery failed, sending again", ["seq": String(row.seq), "topic": row.topic, "error": error.description])
                try producer.send(topic: row.topic, key: row.key, value: row.value, partition: row.partition, tag: report.tag)
            } else {
                inFlight[report.tag] = nil
                sentAt[report.tag] = nil
                acknowledged.append(report.tag)
            }
        }
        for error in producer.takeErrors() {
            logger.warning("producer error", ["error": error.description])
        }
        if let fatal = producer.fatalError {
            throw fatal
        }
    }

    /// The acknowledged rows to delete in the next transaction; call `deleted` once it commits.
    public var rowsToDelete: [UInt64] { acknowledged }

    /// Forgets rows whose deletion committed.
    public func deleted(_ count: Int) {
        acknowledged.removeFirst(min(count, acknowledged.count))
    }

    /// Waits until every sent row is acknowledged, at most `timeoutMilliseconds`.
    public func drain(timeoutMilliseconds: Int) throws -> Bool {
        var waited = 0
        while !inFlight.isEmpty && waited < timeoutMilliseconds {
            try poll(timeoutMilliseconds: 50)
            waited += 50
        }
        return inFlight.isEmpty
    }
}
