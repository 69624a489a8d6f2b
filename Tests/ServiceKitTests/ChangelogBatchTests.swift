import Foundation
import Messaging
import Storage
import Testing

@testable import ServiceKit

/// A batch's row changes travel as one outbox row and reach the changelog as one record per row.
@Suite struct ChangelogBatchTests {
    let changes = [
        RowChange(table: "counts", key: [.text("m1")], row: [.text("m1"), .integer(42), .real(0.5)]),
        RowChange(table: "inbox", key: [.text("e1")], row: nil),
        RowChange(table: "blobs", key: [.integer(7), .text("k")], row: [.integer(7), .text("k"), .blob([0, 1, 255]), .null]),
    ]

    @Test func aPackedBatchUnpacksIntoItsRowsInOrderClosedByTheBatchEnd() throws {
        let records = try ChangelogBatch.records(of: try ChangelogBatch.pack(changes, copy: "w1", sequence: 7, topic: "t", limit: 1_000))
        #expect(records.count == 4)
        for (change, record) in zip(changes, records) {
            #expect(record.key == change.encodedKey && record.value == change.encodedValue)
            #expect(try RowChange(encodedKey: record.key, encodedValue: record.value) == change)
        }
        #expect(records.last!.key == ChangelogRestore.batchEndKey && records.last!.value == Array("3 w1 7".utf8), "rows and the copy that wrote them")
    }

    @Test func aRowOverTheRecordLimitIsRefusedNamingTheTopic() throws {
        let large = RowChange(table: "counts", key: [.text("m1")], row: [.blob(Array(repeating: 1, count: 2_000))])
        #expect(throws: OutputTooLarge.self) { try ChangelogBatch.pack([changes[0], large], copy: "w1", sequence: 7, topic: "acme.counting.changelog", limit: 1_000) }
        do {
            _ = try ChangelogBatch.pack([large], copy: "w1", sequence: 7, topic: "acme.counting.changelog", limit: 1_000)
            Issue.record("a row over the limit was packed")
        } catch let error as OutputTooLarge {
            #expect(error.topic == "acme.counting.changelog" && error.bytes > 2_000)
        }
    }

    @Test func damagedBytesAreRefusedNotSentInPart() throws {
        let packed = try ChangelogBatch.pack(changes, copy: "w1", sequence: 7, topic: "t", limit: 1_000)
        #expect(throws: ChangelogBatchFormatError.self) { try ChangelogBatch.records(of: Array(packed.dropLast())) }
        var badFlag = packed
        badFlag[4 + 2 + 8 + 4 + changes[0].encodedKey.count] = 7
        #expect(throws: ChangelogBatchFormatError.self) { try ChangelogBatch.records(of: badFlag) }
        #expect(throws: ChangelogBatchFormatError.self) { try ChangelogBatch.records(of: [0, 0, 0]) }
    }

    /// The relay sends a packed row as its records, and a row written one record per change
    /// (by a version before packing, left in the outbox at an upgrade) as it is.
    @Test func theRelaySendsPackedRowsAsTheirRecordsAndOlderRowsAsTheyAre() throws {
        let topic = TopicSpec(name: "cb.changelog", partitions: 1, compacted: true, key: "row", summary: "")
        let broker = try EmbeddedBroker(topics: [topic])
        let configuration = ProducerConfiguration(bootstrapServers: broker.bootstrapServers)
        let transactional = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers, extra: ["transactional.id": "cb"]))
        try transactional.initTransactions(timeoutMilliseconds: 30_000)
        let relay = OutboxRelay(producer: try KafkaProducer(configuration), logger: Logger(service: "cb", minimumLevel: .warning))
        relay.sendChangelog(to: topic.name, through: transactional)
        let older = changes[1]
        try relay.publish([
            OutboxRow(seq: 1, topic: topic.name, key: older.encodedKey, value: older.encodedValue, partition: 0),
            OutboxRow(seq: 2, topic: topic.name, key: ChangelogRestore.batchEndKey, value: Array("1".utf8), partition: 0),
            OutboxRow(seq: 3, topic: topic.name, key: nil, value: try ChangelogBatch.pack(changes, copy: "w1", sequence: 7, topic: topic.name, limit: 1_000), partition: 0),
        ])
        #expect(try relay.drain(timeoutMilliseconds: 30_000))
        #expect(relay.rowsToDelete == [1, 2, 3])

        let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [topic.name])
        reader.read(seconds: 30) { $0.count >= 6 }
        reader.close()
        let read = reader.records.map { [UInt8]($0.key ?? []) }
        #expect(read == [older.encodedKey, ChangelogRestore.batchEndKey] + changes.map(\.encodedKey) + [ChangelogRestore.batchEndKey])
        #expect(reader.records.map(\.value) == [older.encodedValue, Array("1".utf8)] + changes.map(\.encodedValue) + [Array("3 w1 7".utf8)])
    }
}
