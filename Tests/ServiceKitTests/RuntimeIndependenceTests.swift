import Foundation
import Testing

/// The runtime is a library that the loyalty platform uses, not a part of it: its sources name
/// no loyalty module, topic, variable or metric. Whatever it writes is named after the platform
/// that hands it a `Platform` (these tests run it as `acme`).
@Suite struct RuntimeIndependenceTests {
    /// The runtime's modules, from this file's place in the repository.
    static let runtimeDirectories = ["Basics", "Storage", "Messaging", "ServiceKit", "CRdKafka", "CSQLite"].map {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Shared").appendingPathComponent($0)
    }

    @Test func theRuntimeSourcesNameNoLoyaltyModuleOrName() throws {
        var files = 0
        var found: [String] = []
        for directory in Self.runtimeDirectories {
            let enumerator = try #require(FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil))
            for case let file as URL in enumerator where ["swift", "h", "modulemap"].contains(file.pathExtension) {
                files += 1
                let text = try String(contentsOf: file, encoding: .utf8)
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let lowered = line.lowercased()
                    if lowered.contains("loyalty") || lowered.contains("import referenceprogram") {
                        found.append("\(directory.lastPathComponent)/\(file.lastPathComponent):\(number + 1): \(line)")
                    }
                }
            }
        }
        #expect(files > 40, "the runtime's sources were found")
        #expect(found.isEmpty, "\(found.prefix(5).joined(separator: "\n"))")
    }
}
