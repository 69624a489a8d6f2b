import LoyaltyDomain
import ReferenceProgram
import ServiceKit

/// Reads the program file a service runs with.
public enum ProgramSource {
    /// The file named by the configuration, or the reference program shipped with the platform.
    public static func load(_ configuration: ServiceConfiguration) throws -> Program {
        let variable = configuration.platform.variable("PROGRAM_FILE")
        let bytes = try ConfiguredFile.bytes(at: configuration.setting("PROGRAM_FILE"), variable: variable, fallback: ReferenceProgram.bytes)
        do {
            return try Program.load(json: bytes)
        } catch {
            throw ConfigurationError(variable: variable, problem: "program refused: \(error.description)")
        }
    }
}
