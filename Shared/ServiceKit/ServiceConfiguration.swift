import Foundation
import Messaging
import Storage

/// When timers fire.
public enum TimerMode: String, Sendable {
    /// On stream time: before the first record whose event time reaches the due time.
    /// Replays and simulations use this, so a year of history gives the same ledger.
    case streamTime = "stream"
    /// On the machine clock, for live operation where events can be sparse.
    case wallClock = "wall-clock"
}

/// A configuration value that could not be used.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var problem: String
    public var description: String { "\(variable): \(problem)" }

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }
}

/// Everything a service needs to start, read from environment variables with documented
/// defaults. Each setting below is named without its platform's prefix: `DATA_DIR` is read
/// from `SHOP_DATA_DIR` for a platform named `shop` (``Platform/variable(_:)``).
public struct ServiceConfiguration: Sendable {
    /// The service's name.
    public var service: String
    /// The platform the service belongs to, whose name prefixes the variables.
    public var platform: Platform
    /// `BOOTSTRAP_SERVERS`; default: the address the embedded broker wrote to
    /// `<data dir>/broker.address`, else `127.0.0.1:9092`.
    public var bootstrapServers: String
    /// `DATA_DIR`, default `.<platform>`: where databases and the broker address live.
    public var dataDirectory: String
    /// `DATABASE`, default `<data dir>/<service>.sqlite`.
    public var databasePath: String
    /// `STORE_LAYOUT`: `service` (default), one store for all of the service's tasks at
    /// `databasePath`; or `task`, a store per task (``databasePath(ofTask:)``), opened as the
    /// task is assigned, for a service that keeps no figure spanning its tasks
    /// (`StreamProcessor.figuresSpanTasks`) and whose tasks are independent or send each
    /// other commands on signed command topics (they then wait for one another through
    /// peer marks, ``PeerMark``). Not yet with `REPLAY_OF` or a service that reads broadcast
    /// topics.
    public var storePerTask: Bool = false
    /// `THREADS`, default the number of cores (at most 64): in the `task` layout, how many
    /// threads apply the tasks, task *p* on thread *p* mod `threads` (with one, the loop's own;
    /// with more, threads of their own while the loop's polls and decodes beside them). One
    /// store (the `service` layout) is applied on the loop's thread alone.
    public var threads: Int = 1
    /// `GROUP_ID`, default `<platform>-<service>`.
    public var groupID: String
    /// `TIMERS`: `stream` (default) or `wall-clock`.
    public var timerMode: TimerMode
    /// `TASK_IDLE_MS`, default 0: the grace a shop partition read to its end holds the
    /// merge, for records its writer has not written yet (Kafka Streams' `max.task.idle.ms`).
    /// A partition known to hold unread records always holds the merge, whatever this is.
    public var taskIdleMilliseconds: Int64
    /// `BATCH_RECORDS`, default 2000: records applied in one transaction at most.
    public var maxBatchRecords: Int
    /// `PAUSE_RECORDS`, default 50000: records one partition may hold in the merge, waiting
    /// on its siblings, before the loop stops fetching it until it drains to half. A partition
    /// on which the merge waits for a producer's progress mark is fetched regardless.
    public var pauseRecords: Int = 50_000
    /// `SQLITE_SYNCHRONOUS`: `normal` (default; survives process crashes) or `full`
    /// (also survives power loss).
    public var synchronous: DatabaseConfiguration.Synchronous
    /// `SESSION_TIMEOUT_MS`, default 6000, from 3000 to 300000: how soon the group
    /// reassigns a dead instance's partitions. Apache Kafka refuses less than its
    /// `group.min.session.timeout.ms` (6000 by default); shorter ones churn the group.
    public var sessionTimeoutMilliseconds: Int
    /// `WAL_LIMIT_MB`, default 64: past this size the loop checkpoints the write-ahead
    /// log itself, so that it starts over, and the file is cut back to this size (0: never;
    /// the background checkpointer alone).
    public var walLimitBytes: Int64
    /// `CACHE_MB`, default 16: SQLite's page cache for the store's writer. Pages beyond it are
    /// read from the file again (the operating system's cache, at best) whenever a batch needs
    /// them; each mebibyte more is up to a mebibyte more of resident memory.
    public var cacheMiB: Int = 16
    /// `INBOX_HORIZON_DAYS`, default 90: inbox rows older than this (in event time,
    /// behind the task's stream time) are pruned, and an event older than this is dead-lettered
    /// with `older-than-inbox-horizon`, since it can no longer be told from a duplicate. 0 keeps
    /// every row forever.
    public var inboxHorizonDays: Int
    /// `LOG_LEVEL`: `debug`, `info` (default), `warning`, `error`.
    public var logLevel: LogLevel
    /// `CHANGELOG`: `on` or `off` (default). On: every batch's row changes also go, through
    /// the outbox, to the service's compacted changelog topic (``Platform/changelog(of:)``),
    /// and a store that has applied nothing yet is first restored from that topic, so that an
    /// instance that lost its data directory (or its host) goes on where the store had come.
    public var changelog: Bool = false
    /// `STANDBY`: `on` or `off` (default). On (with `CHANGELOG=on`): the instance keeps its
    /// store a warm copy of the changelog, read as it grows, and never joins the group nor
    /// writes anything; started later with it off, the store takes over from where it stood.
    /// In the `task` layout it keeps a copy of every task's store, each from its partition.
    public var standby: Bool = false
    /// `STANDBY_REPLICAS`: how many other instances keep a warm copy of each task's store
    /// (default 0; the `task` layout with `CHANGELOG=on`). Each instance reads the changelog
    /// of the tasks the instance directory places with it (``InstanceDirectory/Standings``)
    /// on a thread beside its loop, so that a task it is given takes over from its copy
    /// instead of being restored whole.
    public var standbyReplicas: Int = 0
    /// `DECODE_AHEAD`: `on` (default) or `off`. On: the records of each poll are decoded on a
    /// thread of their own while the loop applies the ones polled before, so that a second
    /// core takes the decoding off the loop's thread. The results are the same either way.
    public var decodeAhead: Bool = true
    /// How far ahead an event may be and still be applied, in milliseconds. In stream mode
    /// (`STREAM_TIME_MARGIN_DAYS`, default 366): ahead of the newest of its task's stream
    /// time, the store's other tasks' and its record's broker-set Kafka timestamp (for the
    /// store's first record, whoever set it; `BatchApplier.futureMargin`). In wall-clock mode (`CLOCK_MARGIN_HOURS`, default 24): ahead of the machine clock.
    /// An event further ahead is dead-lettered (`time-out-of-range`) and moves no clock.
    public var futureMarginMilliseconds: Int64 = 366 * 86_400_000
    /// librdkafka settings for every producer and consumer of the service, from
    /// `KAFKA_<PROPERTY>` variables: `SHOP_KAFKA_SECURITY_PROTOCOL=SASL_SSL` sets
    /// `security.protocol`. Checked at start; a setting librdkafka refuses stops the service.
    public var kafkaSettings: [String: String] = [:]
    /// `HTTP_ADDRESS`: where the HTTP API listens (`host:port`, port 0 for any); nil:
    /// no HTTP API. The bound address is written to `<data dir>/<service>.http`.
    public var httpAddress: String?
    /// `HTTP_ADVERTISED_ADDRESS`: the address other instances send member lookups to
    /// (default: the bound address; set it when binding 0.0.0.0 or behind NAT).
    public var httpAdvertisedAddress: String?
    /// `HTTP_TOKEN`: the bearer token member endpoints require (nil: none; set one in
    /// production).
    public var httpToken: String?
    /// `COMMAND_KEYS` as given (nil: the data directory's keys); see `commandKeys()`.
    public var commandKeysText: String?
    /// `FAULT_CRASH_ON`, for failure tests only: the service traps (as an overflow
    /// would) while decoding a record whose value contains this text. Unset in production.
    public var faultCrashOn: String?
    /// `FAULT_CRASH_APPLYING_ON`, for failure tests only: the same trap, taken while applying
    /// (on the thread of the record's task) rather than while decoding. Unset in production.
    public var faultCrashApplyingOn: String?
    /// `FAULT_KILL_AFTER_COMMIT`, for failure tests only: the service kills itself
    /// (SIGKILL) right after committing a batch whose outbox holds a record containing this
    /// text, before publishing it. Unset in production.
    public var faultKillAfterCommit: String?
    /// `WAIT_FOR`: the producing services that are deployed, whose progress a service
    /// reading their output waits for before it applies a record (comma-separated, or `none`);
    /// nil: every producer the service declares (`StreamProcessor.upstreamProducers`). Waiting
    /// for a producer that is not running holds the service back; not waiting for one that is
    /// makes results depend on how far behind it runs.
    public var waitFor: Set<String>? = nil
    /// `REPLAY_OF`: the path of a store in use. When set, the service does not serve:
    /// it rebuilds its own (empty) store from the topics, applying exactly what that store has
    /// applied and publishing nothing, then compares the two (the platform's replay command).
    public var replayOf: String? = nil
    /// The environment the configuration was read from, for the settings of the platform's own
    /// (``setting(_:)``).
    public var environment: [String: String] = [:]

    /// A setting the runtime does not know, which the platform reads for its services (a rule
    /// file, say): the value of `<PLATFORM>_<setting>`, nil when unset or blank.
    public func setting(_ setting: String) -> String? {
        guard let text = environment[platform.variable(setting)]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        return text
    }

    /// The producers to wait for on each input topic: the service's own list, narrowed to
    /// `WAIT_FOR` when it is set. Names of services this one reads nothing from are
    /// ignored, so a deployment may give every service the same list; the `starting` log line
    /// says whom the service waits for.
    public func awaitedProducers(declared: [String: Set<String>]) -> [String: Set<String>] {
        guard let waitFor else { return declared }
        return declared.mapValues { $0.intersection(waitFor) }.filter { !$0.value.isEmpty }
    }

    /// The keys that sign and check commands: `COMMAND_KEYS`, or on a single machine
    /// the data directory's (made on first use).
    public func commandKeys() throws -> CommandKeys {
        if let commandKeysText { return try CommandKeys.parse(commandKeysText, variable: platform.variable("COMMAND_KEYS")) }
        return try CommandKeys.ofDataDirectory(dataDirectory)
    }

    /// The librdkafka settings named by the platform's `<PLATFORM>_KAFKA_*` variables, checked by librdkafka.
    public static func kafkaSettings(_ environment: [String: String], platform: Platform) throws -> [String: String] {
        var settings: [String: String] = [:]
        var variables: [String: String] = [:]
        let prefix = platform.variable("KAFKA_")
        for (name, value) in environment where name.hasPrefix(prefix) && name.count > prefix.count {
            let property = name.dropFirst(prefix.count).lowercased().replacingOccurrences(of: "_", with: ".")
            settings[property] = value
            variables[property] = name
        }
        for (property, value) in settings.sorted(by: { $0.key < $1.key }) {
            do { try validateKafkaSettings([property: value]) } catch {
                throw ConfigurationError(variable: variables[property]!, problem: "librdkafka refuses \(property)=\(value): \(error)")
            }
        }
        return settings
    }

    /// A whole-number setting of one service from the environment, checked against `range`.
    public static func integer(
        _ name: String, default fallback: Int, range: ClosedRange<Int>, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Int {
        guard let text = environment[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigurationError(variable: name, problem: "expected a whole number in \(range), got \(text)")
        }
        return number
    }

    /// The store of task `task` in the `task` layout: `databasePath` with `.task-<task>` before
    /// its `.sqlite` (`<data dir>/tiers.task-3.sqlite`).
    public func databasePath(ofTask task: Int32) -> String {
        "\(storePathBase).task-\(task).sqlite"
    }

    /// `databasePath` without its `.sqlite`: what the files beside the store are named after.
    var storePathBase: String {
        databasePath.hasSuffix(".sqlite") ? String(databasePath.dropLast(".sqlite".count)) : databasePath
    }

    /// A comma-separated list of service names; `none` (or nothing) is the empty set.
    static func serviceList(_ text: String) -> Set<String> {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return names == ["none"] ? [] : Set(names)
    }

    /// Reads the configuration of `service` from `environment`.
    public static func fromEnvironment(
        service: String, platform: Platform, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ServiceConfiguration {
        func value(_ setting: String) -> String? {
            guard let text = environment[platform.variable(setting)]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            return text
        }
        func integer(_ setting: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
            try Self.integer(platform.variable(setting), default: fallback, range: range, environment: environment)
        }
        let dataDirectory = value("DATA_DIR") ?? ".\(platform.name)"
        let bootstrap = value("BOOTSTRAP_SERVERS") ?? EmbeddedBrokerAddress.read(dataDirectory: dataDirectory) ?? "127.0.0.1:9092"
        let timerText = value("TIMERS") ?? TimerMode.streamTime.rawValue
        guard let timerMode = TimerMode(rawValue: timerText) else {
            throw ConfigurationError(variable: platform.variable("TIMERS"), problem: "expected stream or wall-clock, got \(timerText)")
        }
        let syncText = (value("SQLITE_SYNCHRONOUS") ?? "normal").lowercased()
        let synchronous: DatabaseConfiguration.Synchronous
        switch syncText {
        case "normal": synchronous = .normal
        case "full": synchronous = .full
        default: throw ConfigurationError(variable: platform.variable("SQLITE_SYNCHRONOUS"), problem: "expected normal or full, got \(syncText)")
        }
        let levelText = value("LOG_LEVEL") ?? "info"
        guard let logLevel = LogLevel(name: levelText) else {
            throw ConfigurationError(variable: platform.variable("LOG_LEVEL"), problem: "expected debug, info, warning or error, got \(levelText)")
        }
        /// A setting that is `on` or `off`, in any case.
        func isOn(_ setting: String, default fallback: Bool) throws -> Bool {
            switch (value(setting) ?? (fallback ? "on" : "off")).lowercased() {
            case "on": return true
            case "off": return false
            case let text: throw ConfigurationError(variable: platform.variable(setting), problem: "expected on or off, got \(text)")
            }
        }
        let changelog = try isOn("CHANGELOG", default: false)
        let standby = try isOn("STANDBY", default: false)
        let decodeAhead = try isOn("DECODE_AHEAD", default: true)
        guard !standby || changelog else {
            throw ConfigurationError(variable: platform.variable("STANDBY"), problem: "a standby copies the store's changelog: set \(platform.variable("CHANGELOG"))=on as well")
        }
        let layoutText = (value("STORE_LAYOUT") ?? "service").lowercased()
        guard layoutText == "service" || layoutText == "task" else {
            throw ConfigurationError(variable: platform.variable("STORE_LAYOUT"), problem: "expected service or task, got \(layoutText)")
        }
        let storePerTask = layoutText == "task"
        if storePerTask, value("REPLAY_OF") != nil {
            throw ConfigurationError(
                variable: platform.variable("STORE_LAYOUT"),
                problem: "a store per task does not work with \(platform.variable("REPLAY_OF")) yet: use \(platform.variable("STORE_LAYOUT"))=service")
        }
        let standbyReplicas = try integer("STANDBY_REPLICAS", default: 0, range: 0...16)
        if standbyReplicas > 0 {
            let problem: String? = !storePerTask ? "warm copies are kept per task: set \(platform.variable("STORE_LAYOUT"))=task"
                : !changelog ? "warm copies read the tasks' changelog: set \(platform.variable("CHANGELOG"))=on"
                : standby ? "a standby instance copies every task already" : nil
            if let problem { throw ConfigurationError(variable: platform.variable("STANDBY_REPLICAS"), problem: problem) }
        }
        var configuration = ServiceConfiguration(
            service: service,
            platform: platform,
            bootstrapServers: bootstrap,
            dataDirectory: dataDirectory,
            databasePath: value("DATABASE") ?? "\(dataDirectory)/\(service).sqlite",
            storePerTask: storePerTask,
            threads: try integer("THREADS", default: min(ProcessInfo.processInfo.activeProcessorCount, 64), range: 1...64),
            groupID: value("GROUP_ID") ?? platform.groupID(of: service),
            timerMode: timerMode,
            taskIdleMilliseconds: Int64(try integer("TASK_IDLE_MS", default: 0, range: 0...600_000)),
            maxBatchRecords: try integer("BATCH_RECORDS", default: 2000, range: 1...1_000_000),
            pauseRecords: try integer("PAUSE_RECORDS", default: 50_000, range: 100...10_000_000),
            synchronous: synchronous,
            sessionTimeoutMilliseconds: try integer("SESSION_TIMEOUT_MS", default: 6000, range: 3000...300_000),
            walLimitBytes: Int64(try integer("WAL_LIMIT_MB", default: 64, range: 0...65_536)) * 1_048_576,
            cacheMiB: try integer("CACHE_MB", default: 16, range: 1...65_536),
            inboxHorizonDays: try integer("INBOX_HORIZON_DAYS", default: 90, range: 0...36_500),
            logLevel: logLevel,
            changelog: changelog,
            standby: standby,
            decodeAhead: decodeAhead,
            futureMarginMilliseconds: timerMode == .streamTime
                ? Int64(try integer("STREAM_TIME_MARGIN_DAYS", default: 366, range: 1...36_500)) * 86_400_000
                : Int64(try integer("CLOCK_MARGIN_HOURS", default: 24, range: 1...87_600)) * 3_600_000,
            kafkaSettings: try kafkaSettings(environment, platform: platform),
            httpAddress: value("HTTP_ADDRESS"),
            httpAdvertisedAddress: value("HTTP_ADVERTISED_ADDRESS"),
            httpToken: value("HTTP_TOKEN"),
            commandKeysText: value("COMMAND_KEYS"),
            faultCrashOn: value("FAULT_CRASH_ON"),
            faultCrashApplyingOn: value("FAULT_CRASH_APPLYING_ON"),
            faultKillAfterCommit: value("FAULT_KILL_AFTER_COMMIT"),
            waitFor: value("WAIT_FOR").map(Self.serviceList),
            replayOf: value("REPLAY_OF"),
            environment: environment)
        configuration.standbyReplicas = standbyReplicas
        return configuration
    }
}

/// The file in which the platform's broker command publishes the embedded broker's address.
public enum EmbeddedBrokerAddress {
    /// The path of the address file in a data directory.
    public static func path(dataDirectory: String) -> String { "\(dataDirectory)/broker.address" }

    /// The address written there, if any.
    public static func read(dataDirectory: String) -> String? {
        guard let text = try? String(contentsOfFile: path(dataDirectory: dataDirectory), encoding: .utf8) else { return nil }
        let address = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return address.isEmpty ? nil : address
    }

    /// Writes the address atomically, creating the data directory if needed.
    public static func write(_ address: String, dataDirectory: String) throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        try Data((address + "\n").utf8).write(to: URL(fileURLWithPath: path(dataDirectory: dataDirectory)), options: .atomic)
    }
}
