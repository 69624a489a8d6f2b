import Foundation
import Messaging

/// Which input record the loop is working on, written to a file next to the store when the
/// process dies of a trap or fault (an overflow, a stack overflow, a failed precondition) or
/// fails on the record with an error. At the next start the loop reads it back: a record that
/// fails twice in a row is dead-lettered as a poison record instead of stopping the service
/// at every start. A kill from outside (SIGKILL, OOM) leaves no note, so it never counts.
///
/// The note is kept in memory, preformatted, so that the signal handler only has to write
/// bytes (`write` and `ftruncate` are async-signal-safe).
public final class CrashNote {
    /// Where the note goes: `<database>.crash`.
    public let path: String
    private static let capacity = 1024
    private let alternateStack: UnsafeMutableRawPointer
    private static let fatalSignals: [Int32] = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT]

    /// Opens the note file and installs the handlers (process-wide; one loop per process).
    public init(path: String) throws {
        self.path = path
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ConfigurationError(variable: "crash note", problem: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        // The note of the previous run was read by `CrashNote.take` before this.
        ftruncate(descriptor, 0)
        crashNoteDescriptor = descriptor
        // Globals are made on first use, which must not be inside the signal handler.
        crashNoteScratch[0] = 0
        crashNoteTopic[0] = 0
        _ = crashNoteCause.count
        // A stack overflow leaves no stack for the handler: give it one of its own.
        let stackSize = 256 * 1024
        alternateStack = UnsafeMutableRawPointer.allocate(byteCount: stackSize, alignment: 16)
        var stack = stack_t()
        stack.ss_sp = alternateStack
        stack.ss_size = stackSize
        stack.ss_flags = 0
        sigaltstack(&stack, nil)
        for signal in Self.fatalSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = crashNoteHandler
            action.sa_flags = Int32(SA_ONSTACK) | Int32(bitPattern: UInt32(SA_RESETHAND))
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }

    /// The loop is about to decode or apply this record. Called for every record, so it only
    /// stores the location; the signal handler formats the note.
    public func working(on record: ConsumedRecord) {
        if record.topic != lastTopic {
            let bytes = Array(record.topic.utf8.prefix(Self.capacity / 2))
            crashNoteTopicLength = 0
            bytes.withUnsafeBufferPointer { crashNoteTopic.update(from: $0.baseAddress!, count: bytes.count) }
            crashNoteTopicLength = bytes.count
            lastTopic = record.topic
        }
        crashNotePartition = Int64(record.partition)
        crashNoteOffset = record.offset
        crashNoteActive = true
    }

    /// The loop is between records: a crash now is no record's fault.
    public func idle() {
        crashNoteActive = false
    }

    /// Writes the note now, for a record that failed with an error rather than a signal.
    public func failed(on partition: TopicPartition, offset: Int64, because cause: String) {
        crashNoteActive = false
        let text = cause.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ")
        let note = Array("\(partition.topic)\t\(partition.partition)\t\(offset)\t\(text)".utf8.prefix(Self.capacity))
        _ = ftruncate(crashNoteDescriptor, 0)
        _ = note.withUnsafeBufferPointer { pwrite(crashNoteDescriptor, $0.baseAddress, $0.count, 0) }
    }

    private var lastTopic = ""

    /// The note a previous run left, removed from disk: the record it names and why.
    public static func take(at path: String) -> (partition: TopicPartition, offset: Int64, cause: String)? {
        defer { unlink(path) }
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty,
              let text = String(data: data, encoding: .utf8) else { return nil }
        let fields = text.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, let partition = Int32(fields[1]), let offset = Int64(fields[2]) else { return nil }
        return (TopicPartition(topic: String(fields[0]), partition: partition), offset, String(fields[3]))
    }
}

// The handler can reach only globals. One loop runs per process, so one note.
nonisolated(unsafe) private let crashNoteTopic = UnsafeMutablePointer<UInt8>.allocate(capacity: 512)
nonisolated(unsafe) private var crashNoteTopicLength = 0
nonisolated(unsafe) private var crashNotePartition: Int64 = 0
nonisolated(unsafe) private var crashNoteOffset: Int64 = 0
nonisolated(unsafe) private var crashNoteActive = false
nonisolated(unsafe) private var crashNoteDescriptor: Int32 = -1
/// Where the handler formats the note: no allocation in a signal handler.
nonisolated(unsafe) private let crashNoteScratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 1024)
private let crashNoteCause = Array("the service crashed (a trap or fault signal)".utf8)

/// `topic \t partition \t offset \t cause`, formatted with nothing but stores.
private func writeCrashNote() {
    guard crashNoteDescriptor >= 0, crashNoteActive else { return }
    var length = 0
    func put(_ byte: UInt8) {
        guard length < 1024 else { return }
        crashNoteScratch[length] = byte
        length += 1
    }
    func putNumber(_ value: Int64) {
        if value < 0 { put(UInt8(ascii: "-")) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var rest = value.magnitude
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            while count > 0 {
                count -= 1
                put(buffer[count])
            }
        }
    }
    for index in 0..<crashNoteTopicLength { put(crashNoteTopic[index]) }
    put(9)
    putNumber(crashNotePartition)
    put(9)
    putNumber(crashNoteOffset)
    put(9)
    crashNoteCause.withUnsafeBufferPointer { cause in for byte in cause { put(byte) } }
    _ = ftruncate(crashNoteDescriptor, 0)
    _ = pwrite(crashNoteDescriptor, crashNoteScratch, length, 0)
}

private let crashNoteHandler: @convention(c) (Int32) -> Void = { signal in
    writeCrashNote()
    // SA_RESETHAND restored the default action: die of the same signal.
    raise(signal)
}
