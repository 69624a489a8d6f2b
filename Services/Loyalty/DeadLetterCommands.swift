import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit

/// `loyalty dlq list | show | redrive`: the dead letters, the records they stand for, and
/// sending those records again once their cause is fixed (the inbox makes a record that was
/// applied after all harmless to send again).
enum DeadLetterCommands {
    static let usage = """
        usage: loyalty dlq list [--reason R] [--since TIME]
               loyalty dlq show <dead-letter id>
               loyalty dlq redrive <dead-letter id>... | --reason R
        """

    struct Letter {
        var event: CloudEvent
        var reason: String { event.data["reason"]?.stringValue ?? "" }
        var location: (topic: String, partition: Int32, offset: Int64)? {
            guard let topic = event.data["topic"]?.stringValue, let partition = event.data["partition"]?.int64Value,
                  let offset = event.data["offset"]?.int64Value else { return nil }
            return (topic, Int32(partition), offset)
        }
    }

    static func run(_ arguments: [String], bootstrapServers: () throws -> String) throws {
        guard let command = arguments.first, !["--help", "-h"].contains(command) else { print(usage); return }
        let options = try CommandOptions(arguments.dropFirst(), known: ["reason", "since"], usage: usage)
        let ids = options.positional
        let since = try options["since"].map { text in
            do { return try EventTime.parse(text) } catch { throw CLIError("--since: expected an RFC 3339 time, got \(text)") }
        }
        switch command {
        case "list":
            let letters = try readLetters(try bootstrapServers()).filter { letter in
                (options["reason"].map { letter.reason == $0 } ?? true) && (since.map { letter.event.time >= $0 } ?? true)
            }
            for letter in letters {
                let location = letter.location.map { "\($0.topic)[\($0.partition)]@\($0.offset)" } ?? "-"
                print("\(letter.event.id)\t\(letter.event.time)\t\(letter.event.data["service"]?.stringValue ?? "")\t\(letter.reason)\t\(location)\t"
                    + (letter.event.data["detail"]?.stringValue ?? ""))
            }
            FileHandle.standardError.write(Data("\(letters.count) dead letters\n".utf8))
        case "show":
            guard ids.count == 1 else { throw CLIError("usage: loyalty dlq show <dead-letter id>") }
            let servers = try bootstrapServers()
            guard let letter = try readLetters(servers).first(where: { $0.event.id == ids[0] }) else { throw CLIError("no dead letter \(ids[0])") }
            print(JSONValue.object(letter.event.data.objectValue ?? JSONObject()).jsonString)
            if let location = letter.location, let record = try fetch(location, bootstrapServers: servers) {
                print("original record (\(location.topic)[\(location.partition)]@\(location.offset), key \(record.keyString ?? "-")):")
                print(record.value.map { String(decoding: $0, as: UTF8.self) } ?? "(no value)")
            } else {
                print("the original record is no longer on its topic")
            }
        case "redrive":
            guard ids.isEmpty != (options["reason"] == nil) else { throw CLIError("name dead letters or --reason, one of the two\n\(usage)") }
            let servers = try bootstrapServers()
            let letters = try readLetters(servers).filter { letter in
                ids.isEmpty ? letter.reason == options["reason"] && (since.map { letter.event.time >= $0 } ?? true) : ids.contains(letter.event.id)
            }
            if !ids.isEmpty, let missing = Set(ids).subtracting(letters.map(\.event.id)).sorted().first { throw CLIError("no dead letter \(missing)") }
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: servers))
            var sent = 0
            for letter in letters {
                guard let location = letter.location else {
                    FileHandle.standardError.write(Data("loyalty: \(letter.event.id) stands for no input record (\(letter.reason)); skipped\n".utf8))
                    continue
                }
                guard let record = try fetch(location, bootstrapServers: servers) else {
                    throw CLIError("\(letter.event.id): \(location.topic)[\(location.partition)]@\(location.offset) is no longer on its topic")
                }
                try producer.send(topic: location.topic, key: record.key, value: record.value)
                sent += 1
            }
            guard producer.flush(timeoutMilliseconds: 30_000) else { throw CLIError("the broker did not acknowledge every record") }
            if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil }) { throw CLIError("not delivered: \(failed.error!)") }
            print("sent \(sent) records back to their topics")
        default:
            throw CLIError("unknown dlq command \(command)\n\(usage)")
        }
    }

    static func readLetters(_ bootstrapServers: String) throws -> [Letter] {
        try CampaignCommands.readToEnd(Topics.deadLetters, bootstrapServers: bootstrapServers).map { Letter(event: $0) }
    }

    /// The record at a topic, partition and offset, whole (a dead letter keeps an excerpt).
    static func fetch(_ location: (topic: String, partition: Int32, offset: Int64), bootstrapServers: String) throws -> ConsumedRecord? {
        let wanted = TopicPartition(topic: location.topic, partition: location.partition)
        let consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "loyalty-cli-\(UUID().uuidString)"),
            listener: StartingOffsets([wanted: location.offset]))
        defer { consumer.close() }
        try consumer.subscribe([location.topic])
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record) where record.topicPartition == wanted:
                if record.offset == location.offset { return record }
                if record.offset > location.offset { return nil }
            case .endOfPartition(let partition, _) where partition == wanted:
                return nil
            case .error(_, let partition, _) where partition == wanted:
                return nil
            default:
                break
            }
        }
        throw CLIError("could not read \(location.topic)[\(location.partition)] within 20 s")
    }
}
