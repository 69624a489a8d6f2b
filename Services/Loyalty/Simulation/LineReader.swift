import Foundation

/// Reads a file's lines front to back, a megabyte at a time: a history or a scratch file of any
/// size is never held whole.
final class LineReader {
    /// What a last line with no newline after it is: a line (a file someone wrote by hand), or
    /// a sign the file was cut short (a file this program wrote a newline after every line of).
    enum LastLineWithoutNewline { case line, error }

    private let handle: FileHandle
    private let path: String
    private let lastLine: LastLineWithoutNewline
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    /// Opens `path`; `lastLine` says what a last line without a newline is.
    init(path: String, lastLineWithoutNewline lastLine: LastLineWithoutNewline) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CLIError("cannot read \(path)") }
        self.handle = handle
        self.path = path
        self.lastLine = lastLine
    }

    deinit { try? handle.close() }

    /// The next line, without its newline; nil once every line has been read.
    func nextLine() throws -> [UInt8]? {
        while true {
            if let end = newline(from: start) {
                defer { start = end + 1 }
                return Array(buffer[start..<end])
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                guard lastLine == .line else { throw CLIError("\(path) ends in the middle of a line: it was cut short or changed while read") }
                defer { start = buffer.count }
                return Array(buffer[start...])
            }
            buffer.removeFirst(start)
            start = 0
            let chunk: Data?
            do { chunk = try handle.read(upToCount: 1 << 20) } catch { throw CLIError("cannot read \(path): \(error)") }
            if let chunk, !chunk.isEmpty { buffer += chunk } else { atEnd = true }
        }
    }

    /// Where the first newline at or after `offset` is, found by `memchr` (a scan through the
    /// slice's generic `firstIndex` cost some 20 instructions a byte).
    private func newline(from offset: Int) -> Int? {
        buffer.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress, offset < bytes.count,
                  let found = memchr(base + offset, Int32(UInt8(ascii: "\n")), bytes.count - offset)
            else { return nil }
            return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
        }
    }
}
