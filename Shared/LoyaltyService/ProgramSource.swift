import LoyaltyDomain
import ReferenceProgram
import ServiceKit

/// Reads the program file a service runs with.
public enum ProgramSource {
    /// The file named by the configuration, or the reference program shipped with the platform.
    public static func load(_ configuration: ServiceConfiguration) throws -> Program {
        let bytes = try ConfiguredFile.bytes(at: configuration.programFile, variable: "LOYALTY_PROGRAM_FILE", fallback: ReferenceProgram.bytes)
        do {
            return try Program.load(json: bytes)
        } catch {
            throw ConfigurationError(variable: "LOYALTY_PROGRAM_FILE", problem: "program refused: \(error.description)")
        }
    }
}
