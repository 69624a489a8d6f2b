import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit

/// Publishes CloudEvents to the input topic of their type, keyed by subject.
enum Publisher {
    /// Publishes every event and waits until the broker has acknowledged them all.
    static func publish(_ events: [CloudEvent], producer: KafkaProducer) throws {
        // Check everything first, so a bad event publishes nothing rather than part of the file.
        let routed = try events.map { event in
            guard let topic = Topics.inputTopic(forEventType: event.type) else {
                throw CLIError("event \(event.id): no input topic for type \(event.type)")
            }
            guard let subject = event.subject else {
                throw CLIError("event \(event.id): subject (the member id, used as the key) is required")
            }
            return (topic.name, Array(subject.utf8), event.encoded())
        }
        for (topic, key, value) in routed {
            try producer.send(topic: topic, key: key, value: value)
        }
        guard producer.flush(timeoutMilliseconds: 30_000) else { throw CLIError("the broker did not acknowledge every event") }
        if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil }) {
            throw CLIError("an event was not delivered: \(failed.error!)")
        }
    }

    /// What the services would refuse in a shop event, checked by the same decoders they use
    /// (docs/schemas describes the same rules): nil when it is fine.
    static func problem(with event: CloudEvent) -> String? {
        guard event.subject != nil else { return "\(ReasonCode.missingAttribute): subject (the member id) is required" }
        guard let topic = Topics.inputTopic(forEventType: event.type) else { return "\(ReasonCode.unknownType): no input topic for \(event.type)" }
        if topic == Topics.members {
            var profile = MemberProfile()
            do { try profile.update(from: event.data.objectValue ?? JSONObject()) } catch { return "\(ReasonCode.invalidEvent): data.\(error)" }
            if event.type == EventType.memberRegistered, let referrer = event.data["referrerId"], referrer.stringValue?.isEmpty != false {
                return "\(ReasonCode.invalidEvent): data.referrerId must be a non-empty string"
            }
            return nil
        }
        do { _ = try PointsInput.decode(type: event.type, data: event.data) } catch { return "\(error.code): \(error.detail)" }
        return nil
    }

    /// Publishes a file of CloudEvents, one JSON object per line; stops at the first bad line.
    static func publishFile(_ path: String, bootstrapServers: String) throws -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        var events: [CloudEvent] = []
        let schemas = try EventSchemas(files: ReferenceProgram.eventSchemaFiles())
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            do {
                let event = try CloudEvent.decode(Array(text.utf8))
                if let topic = Topics.inputTopic(forEventType: event.type) {
                    let found = schemas.problems(of: try JSONValue.parse(Array(text.utf8)), on: topic.name)
                    if !found.isEmpty { throw CLIError("does not match its schema (docs/schemas/\(topic.name)/\(event.type).schema.json): \(found.joined(separator: "; "))") }
                }
                if let problem = problem(with: event) { throw CLIError(problem) }
                events.append(event)
            } catch {
                throw CLIError("\(path):\(number + 1): \(error)")
            }
        }
        try publish(events, producer: try KafkaProducer(ProducerConfiguration(bootstrapServers: bootstrapServers)))
        return events.count
    }
}

/// Prints a topic's records.
enum Tail {

    static func run(topic: String, bootstrapServers: String, stop: StopSignal) throws {
        let listener = StartingOffsets()
        let consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "loyalty-tail-\(UUID().uuidString)"), listener: listener)
        try consumer.subscribe([topic])
        while !stop.isRequested {
            if case .record(let record) = consumer.poll(timeoutMilliseconds: 100) {
                let value = record.value.map { String(decoding: $0, as: UTF8.self) } ?? "(tombstone)"
                print("\(record.partition)/\(record.offset) \(record.keyString ?? "-") \(value)")
            }
        }
        consumer.close()
    }
}
