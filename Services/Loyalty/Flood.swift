import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Storage

/// `loyalty flood`: publishes orders to an embedded broker as fast as it can while the points
/// service runs, more than the broker keeps of a partition, and accounts for every one. Each
/// is read by the service (applied, refused or dead-lettered), or the service stops and names
/// the records it could not read; never fewer with nothing said.
enum Flood {
    static let usage = """
        usage: loyalty flood [--orders N] [--members N]

        Publishes N small orders (default 1000000) for M members (default 1000) to a fresh embedded
        broker while the points service runs, then accounts for every one. Exits 1 if any record
        was skipped without the service saying so. Build with -c release for a quick run.
        """

    static func run(arguments: [String]) throws {
        var orders = 1_000_000
        var members = 1_000
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            if flag == "--help" || flag == "-h" {
                print(usage)
                return
            }
            guard let text = rest.popFirst(), let value = Int(text), value > 0 else { throw CLIError(usage) }
            switch flag {
            case "--orders": orders = value
            case "--members": members = value
            default: throw CLIError("unknown option \(flag)\n\n\(usage)")
            }
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loyalty-flood-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker(topics: Topics.all)
        let children = ChildProcesses()
        defer { children.stopAll() }
        let log = directory.appendingPathComponent("points.log")
        try children.start("points", environment: ["LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path], log: log)
        say("loyalty flood: \(orders) orders for \(members) members; points logs to \(log.path)")
        try Demo.waitUntilAssigned(["points"], logs: directory, children: children)

        let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        let epoch: Int64 = 1_767_196_800_000
        for index in 0..<members {
            let event = CloudEvent(id: "flood-registered-\(index)", source: "flood-shop", type: EventType.memberRegistered,
                                   time: EventTime(millis: epoch), subject: "flood-m\(index)", data: .object([:]))
            try producer.send(topic: Topics.members.name, key: Array("flood-m\(index)".utf8), value: event.encoded())
        }
        let started = Date()
        for index in 0..<orders {
            let member = "flood-m\(index % members)"
            let event = CloudEvent(id: "flood-order-\(index)", source: "flood-shop", type: EventType.orderPaid,
                                   time: EventTime(millis: epoch + 60_000 + Int64(index)), subject: member,
                                   data: .object(["orderId": .string("F-\(index)"), "paidMinor": 1_000, "lines": .array([.object(["category": "apparel", "paidMinor": 1_000])])]))
            try producer.send(topic: Topics.orders.name, key: Array(member.utf8), value: event.encoded())
            if index % 10_000 == 9_999 { producer.poll() }
        }
        guard producer.flush(timeoutMilliseconds: 120_000) else { throw CLIError("the broker did not acknowledge every order within 120 s") }
        let failed = producer.takeDeliveryReports().filter { $0.error != nil }.count
        say(String(format: "  published %d orders in %.1f s (%d not acknowledged)", orders, Date().timeIntervalSince(started), failed))

        // Wait until the service has read every order, or has stopped.
        let database = directory.appendingPathComponent("points.sqlite").path
        func consumedOrders() -> Int64 {
            guard let store = try? Database(DatabaseConfiguration(path: database)) else { return 0 }
            return (try? store.prepare("SELECT COALESCE(SUM(next_offset), 0) FROM offsets WHERE topic = ?")
                .queryOne(.text(Topics.orders.name), row: { $0.int64(0) })) ?? 0
        }
        var last: Int64 = -1
        var quietSince = Date()
        while children.exited == nil {
            let consumed = consumedOrders()
            if consumed >= Int64(orders - failed) { break }
            if consumed != last { quietSince = Date(); last = consumed }
            if Date().timeIntervalSince(quietSince) > 60 { break }
            usleep(500_000)
        }
        let consumed = consumedOrders()
        let text = String(decoding: FileManager.default.contents(atPath: log.path) ?? Data(), as: UTF8.self)
        let lost = text.split(separator: "\n").first { $0.contains("\"input lost\"") || $0.contains("deleted (retention)") }
        say("  the service read \(consumed) of \(orders - failed) orders (applied, refused or dead-lettered)")
        if consumed >= Int64(orders - failed) {
            say("  every order accounted for")
        } else if let exited = children.exited, exited.status != 0, let lost {
            say("  the service stopped (status \(exited.status)) and named what it could not read:\n    \(lost)")
        } else {
            throw CLIError("\(Int64(orders - failed) - consumed) orders neither read nor reported lost; see \(log.path)")
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
