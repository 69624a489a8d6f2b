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

    /// The event schemas (JSON Schema 2020-12, docs/schemas): every file's bytes by its path
    /// under the schema folder, e.g. `loyalty.orders/order.paid.schema.json`.
    public static func eventSchemaFiles() throws -> [String: [UInt8]] {
        guard let root = Bundle.module.url(forResource: "event-schemas", withExtension: nil) else { throw CocoaError(.fileNoSuchFile) }
        var files: [String: [UInt8]] = [:]
        let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)
        while let url = enumerator?.nextObject() as? URL {
            guard url.pathExtension == "json" else { continue }
            let relative = url.path.dropFirst(root.path.count).drop { $0 == "/" }
            files[String(relative)] = Array(try Data(contentsOf: url))
        }
        return files
    }

    private static func resource(_ name: String) throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json") else {
            throw CocoaError(.fileNoSuchFile)
        }
        return Array(try Data(contentsOf: url))
    }
}
