import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Storage
import Synchronization
import Testing

/// The command key every service of the end-to-end tests runs with, and signs test commands.
let testCommandKeysText = "e2e=end-to-end-test-secret-0001"
let testCommandKeys = try! CommandKeys.parse(testCommandKeysText)

/// A service executable of this build, run as a child process.
final class ServiceProcess {
    let name: String
    let environment: [String: String]
    let log: URL
    private(set) var process: Process?

    init(name: String, environment: [String: String], log: URL) {
        self.name = name
        self.environment = environment
        self.log = log
    }

    /// The build's products folder: the test bundle sits next to the executables.
    static var productsDirectory: URL {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: path)
        while url.pathExtension != "xctest" && url.path != "/" { url.deleteLastPathComponent() }
        return url.deletingLastPathComponent()
    }

    static func executable(_ name: String) throws -> URL {
        let url = productsDirectory.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw TestFailure("\(url.path) is missing: run `swift build` before the end-to-end tests (scripts/test does)")
        }
        return url
    }

    func start() throws { try startWith(arguments: []) }

    /// Starts the executable with command-line arguments (for `loyalty`).
    func startWith(arguments: [String]) throws {
        let process = Process()
        process.executableURL = try Self.executable(name)
        process.arguments = arguments
        // Points waits for tiers' and campaigns' progress; a test that runs it without them says
        // so by default, and one that runs them beside it names them (`LOYALTY_WAIT_FOR`).
        process.environment = ProcessInfo.processInfo.environment
            .merging(["LOYALTY_COMMAND_KEYS": testCommandKeysText, "LOYALTY_WAIT_FOR": "none"]) { $1 }
            .merging(environment) { $1 }
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
    }

    /// Kills the process without warning, as a crash or an OOM killer would.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Asks for a graceful stop and returns the exit status.
    func stop() -> Int32 {
        guard let process else { return -1 }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var isRunning: Bool { process?.isRunning ?? false }

    /// The last lines of its log at level error, or not JSON at all (a trap's), for the
    /// message of a failed expectation: the test's directory goes with the test.
    var lastErrors: String {
        let lines = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n")
        return lines.filter { $0.contains(#""level":"error""#) || !$0.hasPrefix("{") }.suffix(5).joined(separator: "\n")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads topics from the beginning (no group offsets kept).
final class TopicReader: RebalanceListener {
    private var consumer: KafkaConsumer?
    private(set) var records: [ConsumedRecord] = []
    private var ended: Set<TopicPartition> = []
    private var assigned: Set<TopicPartition> = []

    init(bootstrap: String, topics: [String]) throws {
        let consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: bootstrap, groupID: "reader-\(UUID())"), listener: self)
        try consumer.subscribe(topics)
        self.consumer = consumer
    }

    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        assigned.formUnion(partitions)
        return [:]
    }

    func partitionsRevoked(_ partitions: [TopicPartition]) {}

    /// Reads what has arrived, for at most `milliseconds`.
    func poll(milliseconds: Int) {
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        while Date() < deadline {
            switch consumer!.poll(timeoutMilliseconds: 50) {
            case .record(let record):
                // The services' progress marks are not outputs: tests compare what they publish.
                if !ProgressMark.isCandidate(record) { records.append(record) }
                ended.remove(record.topicPartition)
            case .endOfPartition(let partition, _):
                ended.insert(partition)
            default:
                break
            }
        }
    }

    /// Reads until every assigned partition has been read to its end.
    func readToEnd(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        repeat { poll(milliseconds: 200) } while (assigned.isEmpty || !assigned.isSubset(of: ended)) && Date() < deadline
    }

    func close() { consumer?.close() }
}


/// A count from the database of a service running in `directory` (`SELECT COUNT(*) …`), or -1
/// while the file cannot be read yet: how far the service has got. With a store per task
/// (`LOYALTY_STORE_LAYOUT=task`), the sum of the count over the task stores.
func serviceCount(in directory: URL, _ service: String, _ sql: String) -> Int64 {
    func count(_ file: String) -> Int64 { storeCount(at: directory.appendingPathComponent(file), sql) ?? -1 }
    let taskStores = serviceTaskStores(in: directory, service)
    guard !taskStores.isEmpty else { return count("\(service).sqlite") }
    var total: Int64 = 0
    for file in taskStores {
        let part = count(file)
        if part < 0 { return -1 }
        total += part
    }
    return total
}

/// A count over the stores of a service on several hosts (data directories), each store
/// counted once: where hosts hold a store of the same name (a task's store left behind when
/// the task moved, or a warm copy), the largest count of those, the owner's store being ahead
/// of the other copies but for one handed over ahead of its changelog (whose count the owner's
/// reaches again as it applies the rest). nil while a store cannot be read yet.
func serviceCountAcrossHosts(in directories: [URL], _ service: String, _ sql: String) -> Int64? {
    var largest: [String: Int64] = [:]
    for directory in directories {
        let names = serviceTaskStores(in: directory, service)
        for name in names.isEmpty ? ["\(service).sqlite"] : names {
            guard let count = storeCount(at: directory.appendingPathComponent(name), sql) else { return nil }
            largest[name] = max(largest[name] ?? count, count)
        }
    }
    return largest.values.reduce(0, +)
}

/// A count from the store at `store` (`SELECT COUNT(*) …`), or nil while it cannot be read.
/// Never makes the file: one the service has not made yet would be of the wrong layout.
func storeCount(at store: URL, _ sql: String) -> Int64? {
    guard FileManager.default.fileExists(atPath: store.path), let database = try? Database(DatabaseConfiguration(path: store.path)) else { return nil }
    return try? database.prepare(sql).queryOne(row: { $0.int64(0) })
}

/// The task stores of a service in `directory` (`<service>.task-<task>.sqlite`), by name.
func serviceTaskStores(in directory: URL, _ service: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
        .filter { $0.hasPrefix("\(service).task-") && $0.hasSuffix(".sqlite") }.sorted()
}

/// Asks the broker where partitions end, to tell when a service has read its inputs whole.
final class EndProbe: RebalanceListener {
    private var consumer: KafkaConsumer?

    init(bootstrap: String) throws {
        consumer = try KafkaConsumer(ConsumerConfiguration(bootstrapServers: bootstrap, groupID: "probe-\(UUID())"), listener: self)
    }

    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    func partitionsRevoked(_ partitions: [TopicPartition]) {}

    /// Whether the service running in `directory` has stored offsets at the end of every
    /// partition of `topics` (false while anything cannot be read).
    func hasReadToEnd(_ service: String, in directory: URL, topics: [String]) -> Bool {
        hasReadToEnd(service, inAnyOf: [directory], topics: topics)
    }

    /// Whether instances of the service with stores per task in `directories` (hosts of their
    /// own) have, between them, stored offsets at the end of every partition of `topics`: a
    /// partition's task may have moved, so the store that read it furthest counts.
    func hasReadToEnd(_ service: String, inAnyOf directories: [URL], topics: [String]) -> Bool {
        guard let consumer, let counts = try? consumer.partitionCounts(of: topics) else { return false }
        let partitions = counts.flatMap { topic, count in (0..<count).map { TopicPartition(topic: topic, partition: $0) } }
        guard let bounds = try? consumer.logBounds(of: partitions) else { return false }
        return partitions.allSatisfy { partition in
            let stored = directories.map { directory in
                serviceCount(
                    in: directory, service,
                    "SELECT COALESCE(MAX(next_offset), 0) FROM offsets WHERE topic = '\(partition.topic)' AND partition = \(partition.partition)")
            }.max() ?? -1
            return stored >= bounds[partition]!.high
        }
    }
}

/// Records a service running in `directory` has applied (its inbox forgets old events, this
/// count does not), or -1 while the file cannot be read yet.
func serviceApplied(in directory: URL, _ service: String) -> Int64 {
    serviceCount(in: directory, service, "SELECT COALESCE(SUM(applied), 0) FROM task_clock")
}

/// Publishes a history's records as the shop would (keyed by member), and waits until the
/// broker has them all.
func publish(_ records: [(topic: String, key: String, value: [UInt8])], to broker: EmbeddedBroker, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
    for record in records { try producer.send(topic: record.topic, key: Array(record.key.utf8), value: record.value) }
    #expect(producer.flush(timeoutMilliseconds: 60_000), "the broker has the history", sourceLocation: sourceLocation)
}

/// Whether tests keep their directories (`KEEP_TEST_STATE` set), to be looked at after a run.
let keepsTestState = ProcessInfo.processInfo.environment["KEEP_TEST_STATE"] != nil

/// Removes a test's directory, unless tests keep their state (``keepsTestState``).
func removeTestState(at directory: URL) {
    if !keepsTestState { try? FileManager.default.removeItem(at: directory) }
}

/// Runs `yes > /dev/null` on every core until `stop`.
final class CPUHog {
    private var processes: [Process] = []

    init() throws {
        for _ in 0..<ProcessInfo.processInfo.activeProcessorCount {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/yes")
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            processes.append(process)
        }
    }

    func stop() {
        // SIGKILL: a child started from a test thread inherits its blocked SIGTERM.
        for process in processes where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

func temporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Checks records against their JSON Schemas in docs/schemas with scripts/validate-events
/// (Python's jsonschema in a venv) and records an issue for any that does not match. Records
/// of `loyalty.instances` (not events) are left out.
func expectRecordsMatchTheirSchemas(_ records: [ConsumedRecord], in directory: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var root = ServiceProcess.productsDirectory
    while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) && root.path != "/" { root.deleteLastPathComponent() }
    let lines = records.filter { $0.topic != Topics.instances.name }.map { record in
        JSONValue.object(["topic": .string(record.topic), "value": .string(String(decoding: record.value ?? [], as: UTF8.self))]).jsonString
    }
    let file = directory.appendingPathComponent("records-\(UUID().uuidString).jsonl")
    try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
    let report = directory.appendingPathComponent("validation-\(UUID().uuidString).txt")
    _ = FileManager.default.createFile(atPath: report.path, contents: nil)
    let handle = try FileHandle(forWritingTo: report)
    let validator = Process()
    validator.executableURL = root.appendingPathComponent("scripts/validate-events")
    validator.arguments = [file.path]
    validator.standardOutput = handle
    validator.standardError = handle
    try validator.run()
    validator.waitUntilExit()
    let text = try String(contentsOf: report, encoding: .utf8)
    #expect(validator.terminationStatus == 0 && text.contains(" 0 problems"), "\(text.suffix(3_000))", sourceLocation: sourceLocation)
}
