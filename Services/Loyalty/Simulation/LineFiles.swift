import Foundation

/// Files of lines in one directory, each written through a buffer of its own: what is
/// written is never held whole. A file is created (or emptied) by its first line.
final class LineFiles {
    private let directory: String
    /// A file being written and what is buffered for it; a class, so that a line is added to
    /// its buffer in place, with one lookup of its name.
    private final class OpenFile {
        let handle: FileHandle
        var buffer: [UInt8] = []

        init(_ handle: FileHandle) { self.handle = handle }
    }

    private var files: [String: OpenFile] = [:]
    private static let flushAt = 1 << 20

    init(directory: String) {
        self.directory = directory
    }

    /// Appends `line` and a newline to the file `name`.
    func append(_ line: [UInt8], to name: String) throws {
        let file: OpenFile
        if let open = files[name] {
            file = open
        } else {
            file = try open(name)
            files[name] = file
        }
        file.buffer += line
        file.buffer.append(UInt8(ascii: "\n"))
        if file.buffer.count >= Self.flushAt {
            try file.handle.write(contentsOf: file.buffer)
            file.buffer.removeAll(keepingCapacity: true)
        }
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

    private func open(_ name: String) throws -> OpenFile {
        let path = "\(directory)/\(name)"
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CLIError("cannot write \(path)") }
        return OpenFile(try FileHandle(forWritingTo: URL(fileURLWithPath: path)))
    }
}
