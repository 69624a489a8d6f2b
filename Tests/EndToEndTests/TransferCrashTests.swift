import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEndSecondLane {
    /// A transfer whose debit committed survives a SIGKILL before its credit was even published:
    /// the credit arrives exactly once.
    @Suite struct TransferCrashTests {
        @Test func aTransferKilledBetweenDebitAndCreditIsCreditedOnce() throws {
            let directory = try temporaryDirectory("points-transfer")
            defer { removeTestState(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func publish(_ id: String, _ type: String, _ member: String, _ time: String, _ data: JSONObject = JSONObject()) throws {
                let event = CloudEvent(id: id, source: "shop", type: type, time: try EventTime.parse(time), subject: member, data: .object(data))
                try producer.send(topic: Topics.inputTopic(forEventType: type)!.name, key: Array(member.utf8), value: event.encoded())
            }
            try publish("ra", EventType.memberRegistered, "ann", "2026-03-01T09:00:00+08:00")
            try publish("rb", EventType.memberRegistered, "ben", "2026-03-01T09:30:00+08:00")
            try publish("o1", EventType.orderPaid, "ann", "2026-03-01T10:00:00+08:00", ["orderId": "O-1", "paidMinor": 50_000])
            try publish("t1", EventType.transfer, "ann", "2026-03-10T10:00:00+08:00", ["toMemberId": "ben", "points": 200])
            try publish("c1", EventType.checkedIn, "ann", "2026-03-12T10:00:00+08:00")
            try publish("c2", EventType.checkedIn, "ben", "2026-03-12T10:00:00+08:00")
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let log = directory.appendingPathComponent("points.log")
            let environment = [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_TASK_IDLE_MS": "2000",
                "LOYALTY_SESSION_TIMEOUT_MS": "3000",
            ]
            let crashing = ServiceProcess(name: "points", environment: environment.merging(["LOYALTY_FAULT_KILL_AFTER_COMMIT": #""type":"points.transfer-credit""#]) { $1 }, log: log)
            try crashing.start()
            let deadline = Date().addingTimeInterval(60)
            while crashing.isRunning && Date() < deadline { usleep(100_000) }
            #expect(!crashing.isRunning, "the service killed itself after committing the debit")
            #expect(crashing.process?.terminationReason == .uncaughtSignal)

            let restarted = ServiceProcess(name: "points", environment: environment, log: log)
            try restarted.start()
            let reader = try TopicReader(bootstrap: broker.bootstrapServers, topics: [Topics.pointsLedger.name, Topics.pointsBalances.name, Topics.deadLetters.name])
            var events: [CloudEvent] = []
            let readDeadline = Date().addingTimeInterval(90)
            while Date() < readDeadline {
                reader.poll(milliseconds: 300)
                events = try reader.records.map { try CloudEvent.decode($0.value!) }
                if events.contains(where: { $0.id == "c2/check-in" }) && events.contains(where: { $0.id == "c1/check-in" }) { break }
            }
            #expect(restarted.stop() == 0)
            reader.poll(milliseconds: 500)
            reader.close()
            events = try reader.records.map { try CloudEvent.decode($0.value!) }

            let ledger = events.filter { $0.type.hasPrefix("points.") && $0.type != "points.balance" }
            let debits = Set(ledger.filter { $0.type == "points.transferred-out" }.map(\.id))
            let credits = ledger.filter { $0.type == "points.transferred-in" }
            #expect(debits == ["t1/transfer-out"])
            #expect(Set(credits.map(\.id)) == ["transfer-credit/t1/transfer-in"])
            #expect(Set(credits.map { $0.encoded() }).count == 1, "one credit, however often it was published")
            #expect(credits.first?.subject == "ben")
            #expect(credits.first?.data["points"]?.int64Value == 200)
            // Ben's last balance: 200 from Ann and 1 for the check-in; Ann's: 500 − 200 + 1.
            let balances = Dictionary(grouping: events.filter { $0.type == "points.balance" }, by: { $0.subject! })
                .mapValues { $0.max { ($0.data["entries"]?.int64Value ?? 0) < ($1.data["entries"]?.int64Value ?? 0) }! }
            #expect(balances["ben"]?.data["available"]?.int64Value == 201)
            #expect(balances["ann"]?.data["available"]?.int64Value == 301)
            #expect(balances["ann"]?.data["lifetimeTransferredOut"]?.int64Value == 200)
            #expect(balances["ben"]?.data["lifetimeTransferredIn"]?.int64Value == 200)
        }
    }
}
