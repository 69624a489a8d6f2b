import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

/// Replays records through the real `points` executable on a fresh embedded broker, from
/// empty state, and returns the ledger topic.
enum PointsReplay {
    struct Result {
        /// Ledger topic records, partition by partition, in offset order.
        var ledgerByPartition: [Int32: [[UInt8]]]
        var events: [CloudEvent]
    }

    /// Publishes `records`, starts the service, waits until it has applied at least `inputs`
    /// events and nothing is left in flight, stops it, and reads the ledger to its end.
    static func run(
        _ records: [(topic: String, key: String, value: [UInt8])], inputs: Int, programFile: URL? = nil, seconds: Double = 400
    ) throws -> Result {
        let directory = try temporaryDirectory("points-replay")
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = try EmbeddedBroker()
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        for (index, record) in records.enumerated() {
            try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value)
            // The embedded broker keeps only so much per partition: let it keep up.
            if index % 20_000 == 19_999 { _ = producer.flush(timeoutMilliseconds: 30_000) }
        }
        #expect(producer.flush(timeoutMilliseconds: 60_000))

        var environment = [
            "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
        ]
        if let programFile { environment["LOYALTY_PROGRAM_FILE"] = programFile.path }
        // Read the ledger while it is written: the embedded broker keeps only about 5 MiB a partition.
        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name])
        defer { reader.close() }
        let service = ServiceProcess(name: "points", environment: environment, log: directory.appendingPathComponent("points.log"))
        try service.start()
        let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path))
        func count(_ table: String) -> Int64? { try? database.prepare("SELECT COUNT(*) FROM \(table)").queryOne(row: { $0.int64(0) }) }
        let deadline = Date().addingTimeInterval(seconds)
        var last: Int64 = -1
        while Date() < deadline {
            reader.poll(milliseconds: 1_000)
            guard let applied = count("inbox"), let unsent = count("outbox"), let echoes = count("echoes") else { continue }
            if applied >= Int64(inputs) && unsent == 0 && echoes == 0 && applied == last { break }
            last = applied
        }
        #expect(service.isRunning, "see \(directory.path)/points.log")
        #expect(service.stop() == 0)

        reader.readToEnd(seconds: 120)
        var byPartition: [Int32: [[UInt8]]] = [:]
        for record in reader.records.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
            byPartition[record.partition, default: []].append(record.value!)
        }
        return Result(ledgerByPartition: byPartition, events: try reader.records.map { try CloudEvent.decode($0.value!) })
    }

    /// Records where two replays' ledgers differ (empty when byte-identical).
    static func differences(_ first: Result, _ second: Result) -> [String] {
        var differences: [String] = []
        for partition in Set(first.ledgerByPartition.keys).union(second.ledgerByPartition.keys).sorted() {
            let a = first.ledgerByPartition[partition] ?? []
            let b = second.ledgerByPartition[partition] ?? []
            if a.count != b.count { differences.append("partition \(partition): \(a.count) records vs \(b.count)") }
            if let index = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) {
                differences.append("partition \(partition) record \(index):\n\(String(decoding: a[index], as: UTF8.self))\n\(String(decoding: b[index], as: UTF8.self))")
            }
        }
        return differences
    }
}
