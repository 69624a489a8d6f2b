import Foundation

/// The reference program file shipped with the platform (DOMAIN.md's figures), used when
/// no `LOYALTY_PROGRAM_FILE` is given.
public enum ReferenceProgram {
    /// The file's bytes.
    public static func bytes() throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: "reference-program", withExtension: "json") else {
            throw CocoaError(.fileNoSuchFile)
        }
        return Array(try Data(contentsOf: url))
    }
}
