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

    /// Writes `service`'s view of every member (`view` gives nil where the service has none).
    func record(service: String, view: (String) throws -> [UInt8]?) throws {
        let file = directory.appendingPathComponent("\(services.count)-\(service)")
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else { throw CLIError("cannot write \(file.path)") }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        var buffer: [UInt8] = []
        for member in members {
            // Each view as its length plus one (0: none), eight bytes little-endian, then its bytes.
            let bytes = try view(member)
            withUnsafeBytes(of: UInt64(bytes.map { $0.count + 1 } ?? 0).littleEndian) { buffer += $0 }
            if let bytes { buffer += bytes }
            if buffer.count >= 1 << 20 {
                try handle.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try handle.write(contentsOf: buffer)
        services.append((service, file))
    }

    /// Calls `body` with each member some service has a view of, and those views in the order
    /// the services were recorded.
    func forEach(_ body: (_ member: String, _ views: [(service: String, view: [UInt8])]) throws -> Void) throws {
        let readers = try services.map { try (name: $0.name, reader: ChunkedReader($0.file)) }
        for member in members {
            var views: [(service: String, view: [UInt8])] = []
            for (name, reader) in readers {
                let length = try reader.read(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
                if length > 0 { views.append((name, try reader.read(length - 1))) }
            }
            if !views.isEmpty { try body(member, views) }
        }
    }

    /// Reads a file front to back a megabyte at a time.
    private final class ChunkedReader {
        private let handle: FileHandle
        private let file: URL
        private var buffer: [UInt8] = []
        private var position = 0

        init(_ file: URL) throws {
            self.file = file
            handle = try FileHandle(forReadingFrom: file)
        }

        deinit { try? handle.close() }

        /// The next `count` bytes.
        func read(_ count: Int) throws -> [UInt8] {
            while buffer.count - position < count {
                buffer.removeFirst(position)
                position = 0
                guard let chunk = try handle.read(upToCount: max(1 << 20, count)), !chunk.isEmpty else {
                    throw CLIError("\(file.path) ends early: a simulation's scratch file was changed while it ran")
                }
                buffer += chunk
            }
            defer { position += count }
            return Array(buffer[position..<position + count])
        }
    }
}
