import Foundation

/// Files of lines in one directory, each written through a buffer of its own: what is
/// written is never held whole. A file is created (or emptied) by its first line.
final class LineFiles {
    private let directory: String
    private var files: [String: (handle: FileHandle, buffer: [UInt8])] = [:]
    private static let flushAt = 1 << 20

    init(directory: String) {
        self.directory = directory
    }

    /// Appends `line` and a newline to the file `name`.
    func append(_ line: [UInt8], to name: String) throws {
        var file = try files.removeValue(forKey: name) ?? open(name)
        file.buffer += line
        file.buffer.append(UInt8(ascii: "\n"))
        if file.buffer.count >= Self.flushAt {
            try file.handle.write(contentsOf: file.buffer)
            file.buffer.removeAll(keepingCapacity: true)
        }
        files[name] = file
    }

    /// Creates (or empties) the file `name` with no line in it yet.
    func create(_ name: String) throws {
        if files[name] == nil { files[name] = try open(name) }
    }

    /// Writes what is buffered and closes every file.
    func close() throws {
        for (_, file) in files {
            try file.handle.write(contentsOf: file.buffer)
            try file.handle.close()
        }
        files = [:]
    }

    private func open(_ name: String) throws -> (handle: FileHandle, buffer: [UInt8]) {
        let path = "\(directory)/\(name)"
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CLIError("cannot write \(path)") }
        return (try FileHandle(forWritingTo: URL(fileURLWithPath: path)), [])
    }
}
