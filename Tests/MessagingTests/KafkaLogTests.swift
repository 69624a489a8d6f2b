import Foundation
import Synchronization
import Testing

@testable import Messaging

/// librdkafka's own log lines reach the installed handler instead of plain-text standard error.
@Suite(.serialized) struct KafkaLogTests {
    @Test func librdkafkaLinesGoToTheInstalledHandler() throws {
        let lines = Mutex<[(Int32, String, String)]>([])
        KafkaLog.install { level, facility, message in lines.withLock { $0.append((level, facility, message)) } }
        // Nothing listens on port 1: the client logs its failed connections.
        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: "127.0.0.1:1"))
        let deadline = Date().addingTimeInterval(10)
        while lines.withLock({ $0.isEmpty }) && Date() < deadline { producer.poll(timeoutMilliseconds: 100) }
        let seen = lines.withLock { $0 }
        #expect(!seen.isEmpty)
        #expect(seen.contains { $0.2.contains("127.0.0.1:1") }, "\(seen.prefix(3))")
    }
}
