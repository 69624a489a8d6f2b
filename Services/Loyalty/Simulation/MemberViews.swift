import Foundation

/// Each service's member views, written to a scratch file of its own in the members' order as
/// the service finishes, and read back in step to make each member's end state. A member's
/// points view lists every ledger entry it has, so a year's views are the largest thing a
/// simulation would otherwise hold (about 55 KB a member on the reference program).
final class MemberViews {
    /// The members, in the order the history first names them.
    let members: [String]
    private let directory: URL
    private var services: [(name: String, file: URL)] = []

    /// Keeps the scratch files in `directory`, created (or emptied) now and removed with this.
    init(members: [String], directory: URL) throws {
        self.members = members
        self.directory = directory
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Writes `service`'s view of every member (`view` gives nil where the service has none),
    /// a line each: compact JSON has no raw newline, and no view is empty, so an empty line
    /// stands for none.
    func record(service: String, view: (String) throws -> [UInt8]?) throws {
        let name = "\(services.count)-\(service)"
        let files = LineFiles(directory: directory.path)
        try files.create(name)
        for member in members { try files.append(try view(member) ?? [], to: name) }
        try files.close()
        services.append((service, directory.appendingPathComponent(name)))
    }

    /// Calls `body` with each member some service has a view of, and those views in the order
    /// the services were recorded.
    func forEach(_ body: (_ member: String, _ views: [(service: String, view: [UInt8])]) throws -> Void) throws {
        let readers = try services.map { try (name: $0.name, file: $0.file, reader: LineReader(path: $0.file.path, lastLineWithoutNewline: .error)) }
        for member in members {
            var views: [(service: String, view: [UInt8])] = []
            for (name, file, reader) in readers {
                guard let line = try reader.nextLine() else {
                    throw CLIError("\(file.path) ends early: a simulation's scratch file was changed while it ran")
                }
                if !line.isEmpty { views.append((name, line)) }
            }
            if !views.isEmpty { try body(member, views) }
        }
    }
}
