import Foundation
import Messaging
import Basics

/// A data file the platform ships a default for (the program, campaigns, templates), which an
/// environment variable may replace with a file of the operator's.
public enum ConfiguredFile {
    /// The bytes of the file at `path` (named by `variable`), or `fallback()` when there is no path.
    public static func bytes(at path: String?, variable: String, fallback: () throws -> [UInt8]) throws -> [UInt8] {
        guard let path else { return try fallback() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(variable: variable, problem: "cannot read \(path)")
        }
        return Array(data)
    }

    /// The same, with the path read from `variable` in the environment (blank counts as unset).
    public static func bytes(variable: String, fallback: () throws -> [UInt8]) throws -> [UInt8] {
        let path = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespaces)
        return try bytes(at: path?.isEmpty == false ? path : nil, variable: variable, fallback: fallback)
    }
}

/// The `main` of every service: configuration from the environment, signals, the processors
/// the service makes from it (with its rule files), the loop; exits 0 after a requested stop
/// and 1 (with the error logged) on failure.
public enum ServiceRunner {
    public static func run<Processor: StreamProcessor>(
        service: String, platform: Platform, processors: (ServiceConfiguration) throws -> () -> Processor
    ) -> Never {
        var logger = Logger(service: service)
        do {
            let configuration = try ServiceConfiguration.fromEnvironment(service: service, platform: platform)
            logger.minimumLevel = configuration.logLevel
            // librdkafka's own lines into the same JSON stream, at their syslog severity.
            let kafkaLogger = logger
            KafkaLog.install { level, facility, message in
                let mapped: LogLevel = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
                kafkaLogger.log(mapped, "librdkafka", ["facility": facility, "message": message])
            }
            let stop = StopSignal()
            stop.install()
            // The rule files are read here, once: every processor made after (one per task in
            // the `task` layout) applies the same rules.
            let makeProcessor = try processors(configuration)
            let processor = makeProcessor()
            guard processor.platform == platform else {
                throw ConfigurationError(variable: "platform", problem: "the \(service) processor belongs to \(processor.platform.name), not \(platform.name)")
            }
            if configuration.replayOf != nil { exit(try replay(configuration, processor: processor, logger: logger, stop: stop)) }
            // In the `task` layout each task's unit gets a processor of its own, to apply on a thread of its own.
            let loop = try ExactlyOnceLoop(
                configuration: configuration, processor: processor, makeProcessor: makeProcessor, logger: logger, stop: stop)
            try loop.run()
            exit(0)
        } catch {
            logger.error("service failed", ["error": "\(error)"])
            exit(1)
        }
    }

    /// Exit status of a rebuild whose store differs from the one in use.
    public static let replayDiffers: Int32 = 3
    /// Exit status of a rebuild the store in use moved away from while it ran.
    public static let replayMoved: Int32 = 4

    /// Rebuilds the store at `configuration.databasePath` from the topics, exactly as far as
    /// the store at `configuration.replayOf` has come, and compares the two; the exit status
    /// says how it went (0: the same).
    static func replay<Processor: StreamProcessor>(
        _ configuration: ServiceConfiguration, processor: Processor, logger: Logger, stop: StopSignal
    ) throws -> Int32 {
        var configuration = configuration
        let live = configuration.replayOf!
        guard URL(fileURLWithPath: live).standardizedFileURL != URL(fileURLWithPath: configuration.databasePath).standardizedFileURL else {
            throw ConfigurationError(variable: configuration.platform.variable("REPLAY_OF"), problem: "the store to compare with is the one to rebuild")
        }
        guard !FileManager.default.fileExists(atPath: configuration.databasePath) else {
            throw ConfigurationError(variable: configuration.platform.variable("DATABASE"), problem: "a rebuild starts from nothing: \(configuration.databasePath) exists")
        }
        let plan = try ReplayPlan.read(store: live, variable: configuration.platform.variable("REPLAY_OF"))
        // The rebuild waits for the producers the store waited for, so it applies in the same order.
        configuration.waitFor = plan.awaitedProducers
        ReplayOutput.say("rebuilding \(configuration.service) from the topics: \(plan.recordCount) records, as far as \(live) has applied; "
            + "waiting for \(plan.awaitedProducers.isEmpty ? "no other service" : plan.awaitedProducers.sorted().joined(separator: ", "))")
        let loop = try ExactlyOnceLoop(configuration: configuration, processor: processor, logger: logger, stop: stop, replay: plan)
        try loop.run()
        if stop.isRequested { return 1 }
        guard try ReplayPlan.read(store: live, variable: configuration.platform.variable("REPLAY_OF")) == plan else {
            ReplayOutput.say("the store in use moved on while the rebuild ran (its service is applying records): "
                + "stop the service, or run the replay again when it is idle")
            return replayMoved
        }
        // Only a complete rebuild may take the place of the store in use.
        if !loop.rebuildIsIncomplete { try plan.settle(rebuilt: configuration.databasePath, from: live) }
        switch try ReplayPlan.compare(store: live, rebuilt: configuration.databasePath) {
        case .success where loop.rebuildIsIncomplete:
            ReplayOutput.say("INCOMPLETE: the rebuild stopped short of the store in use (above), so it is no proof and must not take its place")
            return replayDiffers
        case .success(let summary):
            ReplayOutput.say("the same: the rebuilt store equals \(live) in all \(summary.tables) tables, \(summary.rows) rows "
                + "(bookkeeping tables left out: \(ReplayPlan.bookkeepingTables.sorted().joined(separator: ", ")))")
            return 0
        case .failure(let difference):
            ReplayOutput.say("DIFFERENT: \(difference)")
            if loop.rebuildIsIncomplete { ReplayOutput.say("(the rebuild stopped short of the store in use, above: it must not take its place)") }
            return replayDiffers
        }
    }
}
