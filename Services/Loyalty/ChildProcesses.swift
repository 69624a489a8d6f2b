import Foundation

/// The services `loyalty dev` and `loyalty demo` run, found next to the `loyalty` executable.
enum ServiceExecutables {
    /// Every service executable that exists in this build, in start order.
    static let names = ["points", "tiers", "campaigns", "campaign-budgets", "notifications"]

    static var directory: URL {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: path).deletingLastPathComponent()
    }

    static func url(of name: String) -> URL? {
        let url = directory.appendingPathComponent(name)
        return FileManager.default.isExecutableFile(atPath: url.path) ? url : nil
    }
}

/// Child service processes, stopped together with SIGTERM.
final class ChildProcesses {
    private(set) var processes: [(name: String, process: Process)] = []

    /// Starts a service with the given environment added to ours; its output goes to `log`
    /// (a file), or to our standard error when nil.
    func start(_ name: String, environment: [String: String], log: URL?) throws {
        guard let url = ServiceExecutables.url(of: name) else {
            throw CLIError("cannot find the \(name) executable next to loyalty in \(ServiceExecutables.directory.path); run `swift build` first")
        }
        let process = Process()
        process.executableURL = url
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
        }
        try process.run()
        processes.append((name, process))
    }

    /// Sends SIGTERM to every child and waits for them; returns the names of those that failed.
    @discardableResult
    func stopAll() -> [String] {
        for (_, process) in processes where process.isRunning { process.terminate() }
        var failed: [String] = []
        for (name, process) in processes {
            process.waitUntilExit()
            if process.terminationStatus != 0 { failed.append(name) }
        }
        processes.removeAll()
        return failed
    }

    /// Kills the child at `index` with SIGKILL, as a lost host would go, waits for it, and
    /// forgets it.
    func kill(_ index: Int) {
        let process = processes.remove(at: index).process
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// A child that has exited, if any.
    var exited: (name: String, status: Int32)? {
        processes.first { !$0.process.isRunning }.map { ($0.name, $0.process.terminationStatus) }
    }
}

/// A command-line error, printed without a stack.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
