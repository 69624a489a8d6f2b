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
    /// The changelog topic and the transactional producer its rows go through (nil: none).
    private var changelog: (topic: String, producer: KafkaProducer)?
    /// Changelog rows committed and not sent yet, oldest first.
    private var held: [OutboxRow] = []
    /// Sequence numbers of the other rows, in the (ascending) order they were first sent;
    /// those before `outputsHead` are acknowledged.
    private var outputsSent: [Int64] = []
    private var outputsHead = 0

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

    /// Rows sent and not yet acknowledged, and changelog rows waiting to be sent.
    public var inFlightCount: Int { inFlight.count + held.count }

    /// How long the oldest row in flight has waited for its acknowledgement.
    public func oldestInFlightMilliseconds(now: Int64) -> Int64 {
        sentAt.values.min().map { now - $0 } ?? 0
    }

    /// Sends every row of the outbox table this relay has not sent itself, oldest first: at
    /// start, and when partitions are assigned (an instance sharing the database may have
    /// died between committing rows and publishing them).
    public func republishUnsent(from database: Database) throws -> Int {
        let known = Set(inFlight.keys).union(acknowledged).union(held.map { UInt64(bitPattern: $0.seq) })
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
            if row.topic == changelog?.topic {
                held.append(row)
            } else {
                try send(row, with: producer)
            }
        }
        try sendHeldChangelog()
    }

    private func send(_ row: OutboxRow, with producer: KafkaProducer) throws {
        let tag = UInt64(bitPattern: row.seq)
        if let changelog, row.topic != changelog.topic { outputsSent.append(row.seq) }
        inFlight[tag] = row
        sentAt[tag] = monotonicMilliseconds()
        try producer.send(topic: row.topic, key: row.key, value: row.value, partition: row.partition, tag: tag)
    }

    /// Sends the store's row changes through `producer` (configured with a `transactional.id`
    /// and started with ``KafkaProducer/initTransactions(timeoutMilliseconds:)``) instead of the
    /// relay's own producer.
    public func sendChangelog(to topic: String, through producer: KafkaProducer) {
        changelog = (topic, producer)
    }

    /// Sends, in one Kafka transaction, the changelog rows that no unacknowledged output
    /// precedes, and counts them acknowledged once it commits. A store restored from the
    /// changelog then never stands past an output Kafka does not have (an output delivered
    /// before the changelog rows behind it is merely sent again after a restore, with its id,
    /// and dropped by its consumers as a repeat), and holds all of a batch's changes or none.
    /// Rows go in commit order, so the last record of a key is its row's latest state.
    private func sendHeldChangelog() throws {
        guard let changelog, !held.isEmpty else { return }
        while outputsHead < outputsSent.count, inFlight[UInt64(bitPattern: outputsSent[outputsHead])] == nil { outputsHead += 1 }
        if outputsHead > 4_096 && outputsHead * 2 > outputsSent.count {
            outputsSent.removeFirst(outputsHead)
            outputsHead = 0
        }
        let firstOutput = outputsHead < outputsSent.count ? outputsSent[outputsHead] : nil
        let ready = held.prefix { firstOutput == nil || $0.seq < firstOutput! }
        guard !ready.isEmpty else { return }
        // A row without a key is a batch's changes packed; one with a key is a single record
        // (rows written before they were packed). Unpacked before the transaction begins, so
        // a damaged row stops the relay with its reason and leaves no transaction open.
        let unpacked = try ready.map { row in
            row.key == nil ? try ChangelogBatch.records(of: row.value ?? []) : [(key: row.key!, value: row.value)]
        }
        // Short waits: the loop thread waits here, and the group drops a member that does
        // not poll for `max.poll.interval.ms`. Whatever does not commit is sent again later.
        defer {
            _ = changelog.producer.takeDeliveryReports()
            for error in changelog.producer.takeErrors() { logger.warning("changelog producer error", ["error": error.description]) }
        }
        do {
            try changelog.producer.beginTransaction()
            for (row, records) in zip(ready, unpacked) {
                for record in records {
                    try changelog.producer.send(topic: row.topic, key: record.key, value: record.value, partition: row.partition, tag: UInt64(bitPattern: row.seq))
                }
            }
            var attempts = 0
            while true {
                do {
                    try changelog.producer.commitTransaction(timeoutMilliseconds: 10_000)
                    break
                } catch let error as KafkaTransactionError where error.isRetriable && attempts < 5 {
                    attempts += 1
                    logger.warning("changelog commit not confirmed yet, asking again", ["error": error.description])
                }
            }
        } catch let error as KafkaTransactionError where !error.isFatal {
            // Nothing of it is visible to readers; the rows are sent again in the next one.
            logger.warning("changelog transaction failed, sending it again", ["error": error.description])
            try changelog.producer.abortTransaction(timeoutMilliseconds: 10_000)
            return
        } catch {
            // A newer producer of the store (the same `transactional.id`) started: another
            // instance took the store's changelog over. This one may write it no more.
            if let fatal = changelog.producer.fatalError { throw ChangelogTakenOver(topic: changelog.topic, error: fatal) }
            throw error
        }
        acknowledged += ready.map { UInt64(bitPattern: $0.seq) }
        held.removeFirst(ready.count)
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
        try sendHeldChangelog()
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
        while (!inFlight.isEmpty || !held.isEmpty) && waited < timeoutMilliseconds {
            try poll(timeoutMilliseconds: 50)
            waited += 50
        }
        return inFlight.isEmpty && held.isEmpty
    }
}

/// The changelog's producer was fenced: another instance started a producer of the same store
/// (a task assigned there), and this relay can send the store's changes no more.
public struct ChangelogTakenOver: Error, CustomStringConvertible {
    public var topic: String
    public var error: KafkaError
    public var description: String { "another instance took over the store's changelog \(topic): \(error)" }
}
