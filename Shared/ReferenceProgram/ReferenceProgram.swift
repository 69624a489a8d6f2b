import Foundation

/// The reference program file shipped with the platform (DOMAIN.md's figures), used when
/// no `LOYALTY_PROGRAM_FILE` is given, and the reference campaigns, the default set of the
/// campaigns service.
public enum ReferenceProgram {
    /// The program file's bytes.
    public static func bytes() throws -> [UInt8] {
        try resource("reference-program")
    }

    /// The reference campaigns file's bytes (`{"campaigns": [ … ]}`).
    public static func campaignsBytes() throws -> [UInt8] {
        try resource("reference-campaigns")
    }

    /// The reference message templates (`{"version": …, "templates": { … }}`).
    public static func templatesBytes() throws -> [UInt8] {
        try resource("reference-templates")
    }

    private static func resource(_ name: String) throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json") else {
            throw CocoaError(.fileNoSuchFile)
        }
        return Array(try Data(contentsOf: url))
    }
}
