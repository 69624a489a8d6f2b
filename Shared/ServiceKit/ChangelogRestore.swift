import Foundation
import Messaging
import Storage

/// Rebuilds a service's store from its changelog topic: the latest state of every row the
/// service's batches committed (``ChangeCapture``), read whole and applied in one transaction,
/// so that a restore cut short leaves the store as empty as it found it.
enum ChangelogRestore {
    /// The key of the record that ends a batch's changes. No row change has a key of one byte
    /// below 3: theirs start with a table name.
    static let batchEndKey: [UInt8] = [0]
    /// The key of the record an instance keeping the changelog writes when it starts: changes
    /// before it that no batch end closed (a dead predecessor's last batch) never count.
    static let restartKey: [UInt8] = [1]
    /// The key of the record written when the store stops keeping the changelog: nothing before
    /// it may be restored, since the store went on without logging.
    static let endedKey: [UInt8] = [2]
    /// The `store_identity` row that says the store's whole history is in its changelog.
    static let loggedSinceEmptyName = "changelog"
    /// A changelog that cannot be restored from.
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// A restore given up because its caller no longer wants it (the loop takes the copy's
    /// task): rolled back, nothing changed.
    struct Cancelled: Error {}

    /// Whether the store's whole history is in its changelog: it kept one from when it was empty.
    static func isLoggedSinceEmpty(_ database: Database) throws -> Bool {
        try database.prepare("SELECT value FROM store_identity WHERE name = ?").queryOne(.text(loggedSinceEmptyName)) { $0.string(0) } == "on"
    }

    /// Records whether the store's whole history is in its changelog, in the caller's transaction.
    static func markLoggedSinceEmpty(_ database: Database, _ logged: Bool) throws {
        if logged {
            try database.prepare("INSERT OR REPLACE INTO store_identity(name, value) VALUES(?, 'on')").run(.text(loggedSinceEmptyName))
        } else {
            try database.prepare("DELETE FROM store_identity WHERE name = ?").run(.text(loggedSinceEmptyName))
        }
    }

    /// The value of a batch-end record: the batch's number of rows, and the copy that wrote it
    /// with the batch's number.
    static func batchEndValue(rows: Int, copy: String, sequence: Int64) -> [UInt8] {
        Array("\(rows) \(copy) \(sequence)".utf8)
    }

    /// A record of the changelog's own (not a row change), read back from its key and value:
    /// the one reading of what ``batchEndValue(rows:copy:sequence:)`` and
    /// ``restartValue(copy:unfinishedRows:sequence:)`` write, for the tail and the restore.
    enum Marker: Equatable {
        /// A batch's end: the copy that wrote it and the batch's number (nil in older records).
        case batchEnd(copy: String?, sequence: Int64?)
        /// A start: the copy, the unfinished rows before it and the copy's batch number (nil
        /// in older records).
        case restart(copy: String?, unfinishedRows: Int?, sequence: Int64?)
        /// A store stopped keeping the changelog.
        case ended

        /// nil for a row change.
        init?(key: [UInt8]?, value: [UInt8]?) {
            let words = String(decoding: value ?? [], as: UTF8.self).split(separator: " ").map(String.init)
            func word(_ index: Int) -> String? { index < words.count ? words[index] : nil }
            switch key {
            case batchEndKey?: self = .batchEnd(copy: word(1), sequence: word(2).flatMap { Int64($0) })
            case restartKey?: self = .restart(copy: word(0), unfinishedRows: word(1).flatMap { Int($0) }, sequence: word(2).flatMap { Int64($0) })
            case endedKey?: self = .ended
            default: return nil
            }
        }

        /// Who it says wrote the changelog last.
        var writer: LastWriter {
            switch self {
            case .batchEnd(let copy, let sequence), .restart(let copy, _, let sequence): .copy(copy, sequence: sequence)
            case .ended: .ended
            }
        }
    }

    /// The end of a changelog: who wrote its last record of its own, and how many row changes
    /// follow that record (a batch whose end never came: an instance died while sending it,
    /// and the broker shows records of unfinished transactions).
    struct Tail: Equatable {
        /// The cluster that answered.
        var clusterID: String
        var lastWriter: LastWriter
        var unfinishedRows: Int
        /// The offset past the partition's last record when it was read (0: no partition bounds).
        var end: Int64
    }

    /// The id of the cluster `consumer` reads `topic` from.
    static func clusterID(of consumer: KafkaConsumer, reading topic: String) throws -> String {
        try patiently("its id, while the changelog \(topic) was to be read") { consumer.clusterID(timeoutMilliseconds: 5_000) }
    }

    /// How long a restore keeps asking a cluster that does not answer (a broker slow or
    /// restarting) before it gives up: as long as it waits for a changelog's next records.
    static let patienceMilliseconds: Int64 = 60_000

    /// The answer to `question`, asked again while the cluster gives none (nil, or a
    /// ``KafkaError/isUnanswered`` error) until `patienceMilliseconds` have passed (a question
    /// under way then is waited for): an instance that takes a task over on a busy machine
    /// waits for the broker rather than stopping. Then the last error is thrown (``Refused``
    /// when there was none), as any other error is at once; ``Cancelled`` when `cancelled`
    /// says so between questions. With a patience of 0 it asks once.
    static func patiently<Answer>(
        _ what: String, patienceMilliseconds: Int64 = patienceMilliseconds, cancelled: () -> Bool = { false },
        _ question: () throws -> Answer?
    ) throws -> Answer {
        let deadline = monotonicMilliseconds() + patienceMilliseconds
        while true {
            var lastError: KafkaError?
            do {
                if let answer = try question() { return answer }
            } catch let error as KafkaError where error.isUnanswered {
                lastError = error
            }
            guard monotonicMilliseconds() < deadline else {
                if let lastError { throw lastError }
                throw Refused(description: "the Kafka cluster gave no answer (\(what)) for \(Double(patienceMilliseconds) / 1_000) s")
            }
            if cancelled() { throw Cancelled() }
            // An unreachable broker fails at once: no tighter loop than this.
            usleep(100_000)
        }
    }

    /// The changelog's partition count, 0 if the cluster does not have it.
    static func partitionCount(
        of topic: String, asking consumer: KafkaConsumer, patienceMilliseconds: Int64 = patienceMilliseconds, cancelled: () -> Bool = { false }
    ) throws -> Int32 {
        try patiently("the partitions of \(topic)", patienceMilliseconds: patienceMilliseconds, cancelled: cancelled) {
            try consumer.partitionCounts(of: [topic])
        }[topic] ?? 0
    }

    /// Reads the changelog backwards from its end, a window at a time, to its last record of
    /// its own. A copy of the store that did not write that record is older than its
    /// changelog: another copy was restored from it and went on, and resuming this one would
    /// write a second history over the other's. `partition`: the store's (its task's in the
    /// `task` layout; 0 for the one store of the `service` layout).
    static func tail(topic: String, partition number: Int32 = 0, configuration: ServiceConfiguration) throws -> Tail {
        let consumer = try changelogConsumer(configuration)
        defer { consumer.close() }
        let clusterID = try clusterID(of: consumer, reading: topic)
        let partition = TopicPartition(topic: topic, partition: number)
        guard try partitionCount(of: topic, asking: consumer) > number else { throw missingPartition(topic: topic, number) }
        let found = try patiently("the bounds of \(partition)") { try consumer.logBounds(of: [partition]) }[partition]
        guard let bounds = found, bounds.high > bounds.low else {
            return Tail(clusterID: clusterID, lastWriter: .nobody, unfinishedRows: 0, end: found?.high ?? 0)
        }
        var end = bounds.high
        var window: Int64 = 1_024
        var rowsInLaterWindows = 0
        while end > bounds.low {
            let start = max(bounds.low, end - window)
            try consumer.assign([partition: start])
            var last: LastWriter?
            var rowsAfterLast = 0
            var lastProgress = Date()
            reading: while true {
                guard Date().timeIntervalSince(lastProgress) < 60 else {
                    throw Refused(description: "the changelog \(topic) gave nothing for 60 s while its last records were read")
                }
                switch consumer.poll(timeoutMilliseconds: 100) {
                case .record(let record) where record.topicPartition == partition:
                    lastProgress = Date()
                    guard record.offset < end else { break reading }
                    if let marker = Marker(key: record.key, value: record.value) {
                        (last, rowsAfterLast) = (marker.writer, 0)
                    } else {
                        rowsAfterLast += 1
                    }
                    if record.offset + 1 >= end { break reading }
                case .endOfPartition(let at, let offset) where at == partition && offset >= end:
                    break reading
                case .error(let error, let at?, let offset) where at == partition && error.code == KafkaError.offsetOutOfRange:
                    throw Refused(description: "\(partition): the broker deleted records from offset \(offset) on while the changelog's end was read")
                default:
                    break
                }
            }
            if let last { return Tail(clusterID: clusterID, lastWriter: last, unfinishedRows: rowsAfterLast + rowsInLaterWindows, end: bounds.high) }
            rowsInLaterWindows += rowsAfterLast
            end = start
            window *= 8
        }
        return Tail(clusterID: clusterID, lastWriter: .nobody, unfinishedRows: rowsInLaterWindows, end: bounds.high)
    }

    /// The value of a restart record: the copy starting, how many row changes of an unfinished
    /// batch lie between the changelog's last record of its own and this one, and the number
    /// of the copy's last logged batch.
    static func restartValue(copy: String, unfinishedRows: Int, sequence: Int64) -> [UInt8] {
        Array("\(copy) \(unfinishedRows) \(sequence)".utf8)
    }

    /// Deletes every row of the store but its identity and schema version.
    private static func clearRows(of database: Database) throws {
        let tables = try database.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('store_identity', 'schema_migrations')"
        ).query { $0.string(0) }
        for table in tables { try database.execute("DELETE FROM \"\(table)\"") }
    }

    /// A consumer of the changelog that reads from where it is told, and stops on records
    /// the broker deleted rather than skipping them.
    static func changelogConsumer(_ configuration: ServiceConfiguration) throws -> KafkaConsumer {
        var settings = ConsumerConfiguration(
            bootstrapServers: configuration.bootstrapServers, groupID: "\(configuration.groupID)-restore", extra: configuration.kafkaSettings)
        settings.offsetResetPolicy = "error"
        return try KafkaConsumer(settings, listener: StartingOffsets())
    }

    /// The changelog has no partition for the store: fewer partitions than the input topics.
    private static func missingPartition(topic: String, _ partition: Int32) -> Refused {
        Refused(description: "the changelog \(topic) has no partition \(partition) for task \(partition)'s store: a store per task "
            + "keeps its changelog on its task's partition, so the topic needs as many partitions as the input topics")
    }

    /// The store's transactional producer (`transactional.id` `<group id>-changelog`, and
    /// `-<task>` after it for a task's store), started: starting it fences every older
    /// producer of the store and aborts what it left open.
    static func producer(_ configuration: ServiceConfiguration, task: Int32? = nil) throws -> KafkaProducer {
        let id = "\(configuration.groupID)-changelog" + (task.map { "-\($0)" } ?? "")
        let producer = try KafkaProducer(ProducerConfiguration(
            bootstrapServers: configuration.bootstrapServers,
            // Row images repeat their column names and much of their values: zstd keeps the
            // changelog a fraction of its size on the broker, and a restore reads fewer bytes.
            extra: ["transactional.id": id, "compression.type": "zstd"].merging(configuration.kafkaSettings) { $1 }))
        try producer.initTransactions(timeoutMilliseconds: 60_000)
        return producer
    }

    /// Sends one of the changelog's own records (`restartKey` with the copy's name, `endedKey`)
    /// in a transaction.
    static func send(_ key: [UInt8], value: [UInt8] = [], to topic: String, partition: Int32 = 0, through producer: KafkaProducer) throws {
        try producer.beginTransaction()
        try producer.send(topic: topic, key: key, value: value, partition: partition)
        try producer.commitTransaction(timeoutMilliseconds: 60_000)
        _ = producer.takeDeliveryReports()
    }

    /// Whether the store has applied nothing yet: no input offset stored.
    static func storeIsEmpty(_ database: Database) throws -> Bool {
        try database.prepare("SELECT count(*) FROM offsets").queryOne { $0.int64(0) } == 0
    }

    /// Reads `topic` from its beginning to the ends it has when the restore starts, and applies
    /// every record to the store. A partition whose first records the broker has deleted
    /// (retention, or a topic created without compaction) is refused: a store restored from
    /// part of its changelog would be wrong without saying so.
    /// `cancelled` is asked between records: true gives the restore up (``Cancelled``).
    /// With `clearingFirst`, the store's rows go first, in the same transaction (all but its
    /// identity and schema version): a store older than its changelog is replaced whole, or
    /// stays as it was if the restore fails. `finish` runs last in that transaction (it names
    /// the new copy, or keeps a standby's place), so a crash leaves the store as it was or
    /// restored and named. From a `position` above 0 (a standby's store, which holds the
    /// changelog up to there), only partition 0 is read on from there: the catch-up.
    /// `partition`: a task's store reads its task's partition alone (nil: every partition,
    /// the one store of the `service` layout, which writes partition 0).
    /// - Returns: how many row changes were applied, the offset after the last record of the
    ///   changelog's own (batch end, restart, end) that was applied (where to go on from), and
    ///   where the changelog's partition ended when the restore began.
    @discardableResult
    static func restore(
        into database: Database, capture: ChangeCapture, topic: String, configuration: ServiceConfiguration, logger: Logger,
        partition only: Int32? = nil, from position: Int64 = 0, clearingFirst: Bool = false, announce: Bool = true,
        reading reader: KafkaConsumer? = nil, patienceMilliseconds: Int64 = patienceMilliseconds, cancelled: () -> Bool = { false },
        finish: (Database, _ nextOffset: Int64) throws -> Void
    ) throws -> (rows: Int, nextOffset: Int64, end: Int64) {
        let consumer = try reader ?? changelogConsumer(configuration)
        defer { if reader == nil { consumer.close() } }
        let count = try partitionCount(of: topic, asking: consumer, patienceMilliseconds: patienceMilliseconds, cancelled: cancelled)
        if let only, only >= count { throw missingPartition(topic: topic, only) }
        let partitions = only.map { [TopicPartition(topic: topic, partition: $0)] } ?? (0..<count).map { TopicPartition(topic: topic, partition: $0) }
        var bounds = try patiently("the bounds of \(topic)", patienceMilliseconds: patienceMilliseconds, cancelled: cancelled) {
            try consumer.logBounds(of: partitions)
        }
        let first = TopicPartition(topic: topic, partition: only ?? 0)
        if position > 0 {
            // A catch-up: the records before `position` are in the store already.
            bounds = bounds.filter { $0.key == first }
            if let high = bounds[first]?.high, high < position {
                throw Refused(description: "\(first) ends at offset \(high), before offset \(position) where this standby's store stands: "
                    + "the changelog was deleted or created anew, and is not the history the store holds. Start the standby with an "
                    + "empty data directory")
            }
            if let low = bounds[first]?.low, low > position {
                throw Refused(description: "\(first) starts at offset \(low): the broker has deleted records from \(position) on that this "
                    + "standby's store has not applied, so it cannot catch up (the topic must be compacted, never deleted by time)")
            }
        }
        if position == 0, let lost = bounds.sorted(by: { $0.key.partition < $1.key.partition }).first(where: { $0.value.low > 0 }) {
            throw Refused(description: "\(lost.key) starts at offset \(lost.value.low): the broker has deleted the first records of the changelog, "
                + "so the store cannot be restored from it (the topic must be compacted, never deleted by time). "
                + "Restore the data directory from a copy, or rebuild the store from the input topics (replay)")
        }
        func start(_ partition: TopicPartition) -> Int64 { partition == first ? position : 0 }
        var remaining = bounds.filter { $0.value.high > start($0.key) }.mapValues(\.high)
        guard !remaining.isEmpty || clearingFirst else {
            // Nothing to read: a new store still gets its name; a standby stays where it is.
            if position == 0 { try database.transaction { try finish(database, position) } }
            return (0, position, bounds[first]?.high ?? position)
        }
        let total = remaining.map { $0.value - start($0.key) }.reduce(0, +)
        let log = announce ? logger.info : logger.debug
        log("restoring the store from the changelog", [
            "topic": topic, "partition": only.map(String.init) ?? "all", "records": String(total), "from": String(position),
        ])
        if !remaining.isEmpty { try consumer.assign(Dictionary(uniqueKeysWithValues: remaining.keys.map { ($0, Int64?(start($0))) })) }
        var nextOffset = position
        var applied = 0
        var unfinished = 0
        var lastProgress = Date()
        // Rows are applied as they come, a batch's in a savepoint of their own, released by
        // the batch's end record: the rows of a batch whose end never came (on a broker without
        // transactions, the embedded one, a dead instance may have sent part of its last
        // batch) are rolled back at the restart record after them, or at the end.
        try database.transaction {
            if clearingFirst { try clearRows(of: database) }
            try database.execute("SAVEPOINT restore_all; SAVEPOINT restore_batch")
            while !remaining.isEmpty {
                if cancelled() { throw Cancelled() }
                guard Date().timeIntervalSince(lastProgress) < 60 else {
                    throw Refused(description: "the changelog \(topic) gave nothing for 60 s with \(remaining.values.reduce(0, +)) records still to read")
                }
                switch consumer.poll(timeoutMilliseconds: 100) {
                case .record(let record):
                    lastProgress = Date()
                    guard let end = remaining[record.topicPartition] else { continue }
                    // Past the end this pass set itself (an active instance writing on): done.
                    guard record.offset < end else {
                        remaining[record.topicPartition] = nil
                        continue
                    }
                    if record.offset + 1 >= end { remaining[record.topicPartition] = nil }
                    guard let key = record.key else {
                        throw Refused(description: "\(record.topicPartition)@\(record.offset) has no key: it is no row change")
                    }
                    let marker = Marker(key: key, value: record.value)
                    if record.topicPartition == first, marker != nil { nextOffset = record.offset + 1 }
                    switch marker {
                    case .batchEnd?:
                        try database.execute("RELEASE restore_batch; SAVEPOINT restore_batch")
                        applied += unfinished
                        unfinished = 0
                    case .restart(_, let unfinishedRows, _)?:
                        // Only rows the restart record says were left unfinished. On a
                        // compacted changelog the batch ends before it may be gone (only
                        // the last of their key is kept), and the rows since the last one
                        // left are then finished batches. A record without the count (written
                        // before there was one) rolls back as it always did.
                        if unfinishedRows != 0 {
                            try database.execute("ROLLBACK TO restore_batch")
                        } else {
                            try database.execute("RELEASE restore_batch; SAVEPOINT restore_batch")
                            applied += unfinished
                        }
                        unfinished = 0
                    case .ended?:
                        // The store went on without logging: nothing before this counts.
                        try database.execute("ROLLBACK TO restore_all")
                        // A catch-up clears what the store held from before too.
                        if position > 0 { try clearRows(of: database) }
                        try database.execute("SAVEPOINT restore_batch")
                        applied = 0
                        unfinished = 0
                    case nil:
                        do {
                            try capture.apply(RowChange(encodedKey: key, encodedValue: record.value))
                        } catch {
                            throw Refused(description: "\(record.topicPartition)@\(record.offset): \(error)")
                        }
                        unfinished += 1
                    }
                case .endOfPartition(let partition, let offset):
                    if let end = remaining[partition], offset >= end { remaining[partition] = nil }
                case .error(let error, let partition?, let offset) where error.code == KafkaError.offsetOutOfRange:
                    throw Refused(description: "\(partition): the broker deleted records from offset \(offset) on while the store was restored from them")
                case .error(let error, _, _):
                    logger.warning("changelog consumer error", ["error": error.description])
                case nil:
                    break
                }
            }
            try database.execute("ROLLBACK TO restore_batch; RELEASE restore_all")
            // Read to the end with nothing unfinished: what lies between the last record of
            // the changelog's own and the end is transaction markers, not to be read again.
            if unfinished == 0, remaining[first] == nil, let high = bounds[first]?.high { nextOffset = max(nextOffset, high) }
            try finish(database, nextOffset)
        }
        log("restored the store from the changelog", [
            "topic": topic, "partition": only.map(String.init) ?? "all", "rows": String(applied), "leftOut": String(unfinished),
            "why": unfinished > 0 ? "the last batch's end never reached the changelog: the batch is applied again from its input" : "",
        ])
        return (applied, nextOffset, bounds[first]?.high ?? nextOffset)
    }
}
