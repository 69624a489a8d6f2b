import Foundation
import LoyaltyDomain
import ReferenceProgram

/// Reads the program file a service runs with.
public enum ProgramSource {
    /// The file named by the configuration, or the reference program shipped with the platform.
    public static func load(_ configuration: ServiceConfiguration) throws -> Program {
        let bytes: [UInt8]
        if let path = configuration.programFile {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(variable: "LOYALTY_PROGRAM_FILE", problem: "cannot read \(path)")
            }
            bytes = Array(data)
        } else {
            bytes = try ReferenceProgram.bytes()
        }
        do {
            return try Program.load(json: bytes)
        } catch {
            throw ConfigurationError(variable: "LOYALTY_PROGRAM_FILE", problem: "program refused: \(error.description)")
        }
    }
}

/// The `main` of every service: configuration from the environment, signals, the program,
/// the loop; exits 0 after a requested stop and 1 (with the error logged) on failure.
public enum ServiceRunner {
    public static func run<Processor: StreamProcessor>(
        service: String, makeProcessor: (ServiceConfiguration, Program) throws -> Processor
    ) -> Never {
        var logger = Logger(service: service)
        do {
            let configuration = try ServiceConfiguration.fromEnvironment(service: service)
            logger.minimumLevel = configuration.logLevel
            let stop = StopSignal()
            stop.install()
            let program = try ProgramSource.load(configuration)
            let processor = try makeProcessor(configuration, program)
            let loop = try ExactlyOnceLoop(configuration: configuration, processor: processor, logger: logger, stop: stop)
            try loop.run()
            exit(0)
        } catch {
            logger.error("service failed", ["error": "\(error)"])
            exit(1)
        }
    }
}
