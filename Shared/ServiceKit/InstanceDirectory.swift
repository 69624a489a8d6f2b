import Foundation
import Basics
import Messaging

/// Which instance of a service serves which tasks, on the instances topic: each instance
/// announces its tasks and HTTP address when its assignment changes (and an empty list when it
/// stops); a member lookup that reaches the wrong instance finds the owner here. Operational
/// only: nothing here decides a rule.
public enum InstanceDirectory {
    /// The announcement record of one instance, named by its HTTP address, or by `instance`
    /// when given: an instance keeping warm copies (`STANDBY_REPLICAS`) without an address of
    /// its own (no HTTP, or bound to every interface) announces under a name of its own, so
    /// that the others count it among the live ones.
    public static func announcement(service: String, address: String?, instance: String? = nil, tasks: [Int32]) -> (key: [UInt8], value: [UInt8]) {
        var fields: JSONObject = ["service": .string(service)]
        if let address { fields["address"] = .string(address) }
        if let instance { fields["instance"] = .string(instance) }
        fields["tasks"] = .array(tasks.sorted().map { .int(Int64($0)) })
        return (Array("\(service)@\(instance ?? address ?? "")".utf8), Array(JSONValue.object(fields).jsonString.utf8))
    }

    /// The HTTP address of the instance of `service` that last announced `task`, read from the
    /// topic's beginning (a few records); nil when none did.
    public static func owner(
        of task: Int32, service: String, platform: Platform, bootstrapServers: String, kafkaSettings: [String: String]
    ) throws -> String? {
        let consumer = try reader(platform: platform, bootstrapServers: bootstrapServers, kafkaSettings: kafkaSettings)
        defer { consumer.close() }
        var latest: [String: JSONObject] = [:]
        readToEnd(consumer, seconds: 5) { record in
            guard let key = record.keyString else { return }
            latest[key] = record.value.flatMap { try? JSONValue.parse($0) }?.objectValue
        }
        return latest.values.first { entry in
            entry["service"]?.stringValue == service && entry["address"] != nil && (entry["tasks"]?.arrayValue ?? []).contains { $0.int64Value == Int64(task) }
        }?["address"]?.stringValue
    }

    /// A consumer of the instances topic from its beginning, in no group (a group id of the
    /// platform's all the same, so that its ACLs on groups cover it).
    static func reader(platform: Platform, bootstrapServers: String, kafkaSettings: [String: String]) throws -> KafkaConsumer {
        let topic = platform.instances
        let consumer = try KafkaConsumer(
            ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "\(platform.groupID(of: "directory"))-\(UUID().uuidString)", extra: kafkaSettings),
            listener: StartingOffsets())
        let count = try consumer.partitionCounts(of: [topic])[topic] ?? 0
        guard count > 0 else {
            consumer.close()
            throw MissingTopic(topic: topic)
        }
        try consumer.assign(Dictionary(uniqueKeysWithValues: (0..<count).map { (TopicPartition(topic: topic, partition: $0), Int64?(0)) }))
        return consumer
    }

    /// Hands every record `consumer` reads to `each`, until the end of a partition (the topic
    /// has one) or until `seconds` pass.
    static func readToEnd(_ consumer: KafkaConsumer, seconds: Double, _ each: (ConsumedRecord) -> Void) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            switch consumer.poll(timeoutMilliseconds: 100) {
            case .record(let record)?: each(record)
            case .endOfPartition?: return
            default: continue
            }
        }
    }

    /// The instances topic does not exist.
    struct MissingTopic: Error, CustomStringConvertible {
        var topic: String
        var description: String { "the instances topic \(topic) does not exist: instances announce their tasks there" }
    }

    /// The instances of one service as their announcements tell, read in the topic's order:
    /// who owns each task, and which tasks' warm copies each instance keeps.
    public struct Standings: Sendable {
        public let service: String
        /// Each instance's last announced tasks, and the place of that announcement in the read.
        private var latest: [String: (tasks: Set<Int32>, order: Int)] = [:]
        private var read = 0

        public init(service: String) { self.service = service }

        /// Takes in one record of the instances topic (any service's; a tombstone or a record
        /// that is not an announcement forgets its key).
        public mutating func read(key: [UInt8]?, value: [UInt8]?) {
            guard let key else { return }
            let name = String(decoding: key, as: UTF8.self)
            read += 1
            guard let entry = value.flatMap({ try? JSONValue.parse($0) })?.objectValue, entry["service"]?.stringValue == service else {
                latest[name] = nil
                return
            }
            let tasks = (entry["tasks"]?.arrayValue ?? []).compactMap { $0.int64Value.flatMap { Int32(exactly: $0) } }
            latest[name] = (Set(tasks), read)
        }

        /// The owner of each announced task: the instance that announced it last. An instance
        /// that died without a word keeps its tasks here until their new owners announce them.
        public var owners: [Int32: String] {
            var owners: [Int32: (name: String, order: Int)] = [:]
            for (name, entry) in latest {
                for task in entry.tasks where owners[task].map({ $0.order < entry.order }) ?? true { owners[task] = (name, entry.order) }
            }
            return owners.mapValues(\.name)
        }

        /// The tasks whose warm copies `instance` keeps with `replicas` copies a task: the
        /// instances that own a task, in the order of their names, form a ring, and each
        /// task's copies live on the `replicas` instances after its owner there (fewer when the
        /// ring is smaller). Every instance computes the same placement from the same records,
        /// without talking to the others. An instance that owns no task keeps no copy: it is
        /// not told apart from one that died.
        public func standbyTasks(of instance: String, replicas: Int) -> Set<Int32> {
            let owners = self.owners
            let ring = Set(owners.values).sorted()
            guard replicas > 0, let place = ring.firstIndex(of: instance) else { return [] }
            let copies = min(replicas, ring.count - 1)
            var tasks: Set<Int32> = []
            for (task, owner) in owners {
                let ownerPlace = ring.firstIndex(of: owner)!
                let distance = (place - ownerPlace + ring.count) % ring.count
                if distance >= 1 && distance <= copies { tasks.insert(task) }
            }
            return tasks
        }
    }
}
