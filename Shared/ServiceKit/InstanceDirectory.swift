import Foundation
import Basics
import Messaging

/// Which instance of a service serves which tasks, on the instances topic: each instance
/// announces its tasks and HTTP address when its assignment changes (and an empty list when it
/// stops); a member lookup that reaches the wrong instance finds the owner here. Operational
/// only: nothing here decides a rule.
public enum InstanceDirectory {
    /// The announcement record of one instance.
    public static func announcement(service: String, address: String, tasks: [Int32]) -> (key: [UInt8], value: [UInt8]) {
        let value = JSONValue.object([
            "service": .string(service), "address": .string(address), "tasks": .array(tasks.sorted().map { .int(Int64($0)) }),
        ])
        return (Array("\(service)@\(address)".utf8), Array(value.jsonString.utf8))
    }

    /// The HTTP address of the instance of `service` that last announced `task`, read from the
    /// topic's beginning (a few records); nil when none did.
    public static func owner(
        of task: Int32, service: String, platform: Platform, bootstrapServers: String, kafkaSettings: [String: String]
    ) throws -> String? {
        // A group of the platform's, so that its ACLs on groups cover it.
        let group = "\(platform.groupID(of: "directory"))-\(UUID().uuidString)"
        let topic = platform.instances
        let consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: group, extra: kafkaSettings),
            listener: StartingOffsets())
        defer { consumer.close() }
        try consumer.subscribe([topic])
        var latest: [String: JSONObject] = [:]
        let deadline = Date().addingTimeInterval(5)
        reading: while Date() < deadline {
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record):
                guard let key = record.keyString else { continue }
                latest[key] = record.value.flatMap { try? JSONValue.parse($0) }?.objectValue
            case .endOfPartition:
                break reading
            default:
                continue
            }
        }
        return latest.values.first { entry in
            entry["service"]?.stringValue == service && (entry["tasks"]?.arrayValue ?? []).contains { $0.int64Value == Int64(task) }
        }?["address"]?.stringValue
    }
}
