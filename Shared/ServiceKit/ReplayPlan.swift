import Foundation
import Messaging
import Storage

/// What rebuilding a service's store from its topics (the platform's replay command) is to reproduce,
/// read from the store in use: the records it has applied, and the producers it waited for.
///
/// The rebuilt store reads the same partitions from their beginning, applies exactly those
/// records through the same processor, publishes nothing, and is then compared with the store
/// in use, table by table.
public struct ReplayPlan: Sendable, Equatable {
    /// The store's next offset per input partition: every record below it has been applied.
    public var offsets: [TopicPartition: Int64]
    /// Records of sorted (command) partitions the store applied above its stored offset: they
    /// leave the merge out of offset order.
    public var appliedAbove: [TopicPartition: Set<Int64>]
    /// The producers whose progress marks the store waited for (``ProgressMark``): the rebuild
    /// waits for the same ones, so it applies in the same order.
    public var awaitedProducers: Set<String>
    /// The Kafka cluster the store's offsets belong to, when it recorded one.
    public var clusterID: String?

    /// Runtime tables that say how a store was fed (its outbox, read positions, the marks and
    /// crashes it saw), not what it holds: a rebuilt store differs there and is not compared.
    public static let bookkeepingTables: Set<String> = [
        "outbox", "offsets", "applied_offsets", "upstream_progress", "crash_strikes", "store_identity", "task_frontier",
        "peer_marks", "peer_holds", "peer_mark_published",
    ]

    /// Whether the record at `offset` of `partition` is one the store has applied.
    public func includes(_ offset: Int64, of partition: TopicPartition) -> Bool {
        offset < (offsets[partition] ?? 0) || appliedAbove[partition]?.contains(offset) == true
    }

    /// The offset just past the last record of `partition` to apply.
    public func end(of partition: TopicPartition) -> Int64 {
        max(offsets[partition] ?? 0, (appliedAbove[partition]?.max()).map { $0 + 1 } ?? 0)
    }

    /// Records to apply in all, for progress.
    public var recordCount: Int64 {
        offsets.values.reduce(0, +) + Int64(appliedAbove.values.reduce(0) { $0 + $1.count })
    }

    /// Reads the plan from the store at `path`, without changing it (`variable`: the setting
    /// that named it, for errors).
    public static func read(store path: String, variable: String = "store") throws -> ReplayPlan {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigurationError(variable: variable, problem: "no store at \(path)")
        }
        let database = try Database(DatabaseConfiguration(path: path))
        defer { database.close() }
        var plan = ReplayPlan(offsets: [:], appliedAbove: [:], awaitedProducers: [], clusterID: nil)
        for (topic, partition, offset) in try database.prepare("SELECT topic, partition, next_offset FROM offsets").query(row: {
            ($0.string(0), Int32($0.int64(1)), $0.int64(2))
        }) {
            plan.offsets[TopicPartition(topic: topic, partition: partition)] = offset
        }
        for (topic, partition, offset) in try database.prepare("SELECT topic, partition, record_offset FROM applied_offsets").query(row: {
            ($0.string(0), Int32($0.int64(1)), $0.int64(2))
        }) {
            let place = TopicPartition(topic: topic, partition: partition)
            if offset >= plan.offsets[place] ?? 0 { plan.appliedAbove[place, default: []].insert(offset) }
        }
        plan.awaitedProducers = Set(try database.prepare("SELECT DISTINCT producer FROM upstream_progress").query { $0.string(0) })
        plan.clusterID = try database.prepare("SELECT value FROM store_identity WHERE name = 'kafka-cluster-id'").queryOne { $0.string(0) }
        return plan
    }

    /// Gives the rebuilt store at `path` the read positions of the store at `store` that it
    /// reproduces, and that store's outbox (rows committed there and not yet published: the
    /// rebuild published nothing, so they are still owed): it has applied exactly the plan's
    /// records (it read past the others), so it can take that store's place and go on from
    /// where the store left off.
    public func settle(rebuilt path: String, from store: String) throws {
        let database = try Database(DatabaseConfiguration(path: path))
        defer { database.close() }
        let live = try Database(DatabaseConfiguration(path: store))
        defer { live.close() }
        let owed = try live.prepare("SELECT topic, key, value, partition FROM outbox ORDER BY seq").query {
            [SQLValue.text($0.string(0)), $0.isNull(1) ? .null : .blob($0.blob(1)), $0.isNull(2) ? .null : .blob($0.blob(2)),
             $0.isNull(3) ? .null : .integer($0.int64(3))]
        }
        try database.transaction {
            try database.execute("DELETE FROM offsets; DELETE FROM applied_offsets; DELETE FROM outbox")
            let outbox = try database.prepare("INSERT INTO outbox(topic, key, value, partition) VALUES(?, ?, ?, ?)")
            for row in owed { try outbox.run(row) }
            let offset = try database.prepare("INSERT INTO offsets(topic, partition, next_offset) VALUES(?, ?, ?)")
            for (partition, next) in offsets {
                try offset.run(.text(partition.topic), .integer(Int64(partition.partition)), .integer(next))
            }
            let applied = try database.prepare("INSERT INTO applied_offsets(topic, partition, record_offset) VALUES(?, ?, ?)")
            for (partition, above) in appliedAbove {
                for record in above { try applied.run(.text(partition.topic), .integer(Int64(partition.partition)), .integer(record)) }
            }
        }
        // All of it in the database file, none in a write-ahead log: the file alone can be moved.
        try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    /// Compares the store in use with the rebuilt one (see ``bookkeepingTables``).
    public static func compare(store path: String, rebuilt: String) throws -> Result<StoreComparison.Summary, StoreComparison.Difference> {
        let live = try Database(DatabaseConfiguration(path: path))
        defer { live.close() }
        let replayed = try Database(DatabaseConfiguration(path: rebuilt))
        defer { replayed.close() }
        // Sequence numbers say in which order rows were written into a table that is emptied
        // and refilled (parked records), not what it holds; migrations were applied when each
        // store was made.
        return try StoreComparison.compare(live, replayed, skippingTables: bookkeepingTables, ignoringColumns: ["seq", "applied_at"])
    }
}
