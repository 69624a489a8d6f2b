import Foundation

/// `loyalty replay <service>`: rebuilds a service's store from the topics into a new one and
/// compares it with the store in use: the operator's proof that a store is sound.
enum ReplayCommand {
    static let usage = """
        usage: loyalty replay <points|tiers|campaigns|campaign-budgets|notifications> [--store FILE] [--into DIR]
          rebuild the service's store from the topics, exactly as far as the store in use has applied
          (default <data dir>/<service>.sqlite), and compare the two table by table; prints progress,
          then "the same" (exit 0) or the first difference (exit 3). The rebuild publishes nothing and
          is kept in --into (default: a temporary directory, removed afterwards). Run it with the
          service's settings (program file, templates, command keys), with the service stopped or idle
        """

    static func run(_ arguments: [String], dataDirectory: String, bootstrapServers: () throws -> String) throws -> Int32 {
        let options = try CommandOptions(arguments, known: ["store", "into"], usage: usage)
        guard options.positional.count == 1, let service = options.positional.first, ServiceExecutables.names.contains(service) else {
            throw CLIError(usage)
        }
        guard let executable = ServiceExecutables.url(of: service) else {
            throw CLIError("cannot find the \(service) executable next to loyalty in \(ServiceExecutables.directory.path); run `swift build` first")
        }
        let store = options["store"] ?? "\(dataDirectory)/\(service).sqlite"
        guard FileManager.default.fileExists(atPath: store) else {
            throw CLIError("no store at \(store): name it with --store, or set LOYALTY_DATA_DIR to the service's data directory")
        }
        let keep = options["into"] != nil
        let into = options["into"] ?? NSTemporaryDirectory() + "loyalty-replay-\(service)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: into, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(atPath: into) } }

        var environment = ProcessInfo.processInfo.environment
        environment["LOYALTY_REPLAY_OF"] = store
        environment["LOYALTY_DATA_DIR"] = into
        environment["LOYALTY_DATABASE"] = "\(into)/\(service).sqlite"
        environment["LOYALTY_BOOTSTRAP_SERVERS"] = try bootstrapServers()
        // A group of its own: the rebuild reads every partition and takes none from the service.
        environment["LOYALTY_GROUP_ID"] = "loyalty-\(service)-replay-\(UUID().uuidString.prefix(8))"
        environment["LOYALTY_HTTP_ADDRESS"] = nil
        if environment["LOYALTY_LOG_LEVEL"] == nil { environment["LOYALTY_LOG_LEVEL"] = "warning" }
        // The rebuild checks commands' signatures with the keys the service used.
        if environment["LOYALTY_COMMAND_KEYS"]?.isEmpty ?? true {
            guard let keys = try? String(contentsOfFile: "\(dataDirectory)/command-keys", encoding: .utf8) else {
                throw CLIError("no command keys: set LOYALTY_COMMAND_KEYS as the service has it, or LOYALTY_DATA_DIR to its data directory")
            }
            environment["LOYALTY_COMMAND_KEYS"] = keys.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let process = Process()
        process.executableURL = executable
        process.environment = environment
        try process.run()
        process.waitUntilExit()
        guard process.terminationReason == .exit else {
            throw CLIError("the rebuild of \(service) crashed (signal \(process.terminationStatus)); its log is above")
        }
        if keep { say("the rebuilt store is in \(into)") }
        return process.terminationStatus
    }
}
