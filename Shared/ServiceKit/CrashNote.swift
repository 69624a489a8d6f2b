import Foundation
import Messaging

/// Which input record the loop is working on, written to a file next to the store when the
/// process dies of a trap or fault (an overflow, a stack overflow, a failed precondition) or
/// fails on the record with an error. At the next start the loop reads it back: a record that
/// fails twice in a row is dead-lettered as a poison record instead of stopping the service
/// at every start. A kill from outside (SIGKILL, OOM) leaves no note, so it never counts.
///
/// The note is kept in memory, preformatted, so that the signal handler only has to write
/// bytes (`pwrite` is async-signal-safe). Each thread's slot has a region of its own in the
/// file, so threads failing at once never write over each other's notes.
///
/// Several threads may work on records at once: the loop applies (``Slot/applying``) while a
/// worker decodes what was polled after (``Slot/decoding``); in the `task` store layout with
/// several threads, task threads apply (``Slot/applying(onThread:)``) while the loop's thread
/// decodes (``Slot/decoding``). Each has a slot of its
/// own, and the handler writes the slot of the thread that died, so a crash is never blamed on
/// the record another thread was working on.
public final class CrashNote: @unchecked Sendable {
    /// Which thread's record: each slot is written by one thread at a time.
    public struct Slot: Sendable, Equatable {
        let index: Int
        /// The thread that applies, the loop's (or decoding, when nothing decodes ahead).
        public static let applying = Slot(index: 0)
        /// The thread that decodes beside the applying ones.
        public static let decoding = Slot(index: 1)
        /// The thread that applies the tasks `t` with `t` mod the thread count equal to
        /// `thread` (0: the first, ``applying``).
        public static func applying(onThread thread: Int) -> Slot {
            precondition(thread >= 0 && thread < CrashNote.maximumThreads, "no crash note slot for thread \(thread)")
            return thread == 0 ? .applying : Slot(index: thread + 1)
        }
    }

    /// The most threads that apply records at once (`THREADS`).
    public static let maximumThreads = 64

    /// Where the note goes: `<database>.crash`.
    public let path: String
    /// Bytes of a slot's region in the file (and of its note, at most).
    static let capacity = 1024
    private let alternateStack: UnsafeMutableRawPointer
    /// The note file, which this note's errors are written to (the signal handler writes the
    /// process's latest, a global).
    private let descriptor: Int32
    private static let fatalSignals: [Int32] = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT]

    /// Opens the note file and installs the handlers (process-wide; one loop per process).
    public init(path: String) throws {
        self.path = path
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ConfigurationError(variable: "crash note", problem: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        // The note of the previous run was read by `CrashNote.take` before this.
        ftruncate(descriptor, 0)
        crashNoteDescriptor = descriptor
        // Globals are made on first use, which must not be inside the signal handler.
        crashNoteScratch[0] = 0
        for index in 0..<crashNoteSlotCount { crashNoteSlots[index].active = false }
        _ = crashNoteCause.count
        // A stack overflow leaves no stack for the handler: give it one of its own.
        alternateStack = Self.installAlternateSignalStack()
        for signal in Self.fatalSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = crashNoteHandler
            action.sa_flags = Int32(SA_ONSTACK) | Int32(bitPattern: UInt32(SA_RESETHAND))
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }

    /// A thread is about to decode or apply this record. Called for every record, so it only
    /// stores the location; the signal handler formats the note.
    public func working(on record: ConsumedRecord, in slot: Slot = .applying) {
        let note = crashNoteSlots.advanced(by: slot.index)
        let lastTopic = lastTopics[slot.index]
        if record.topic != lastTopic.name {
            let bytes = Array(record.topic.utf8.prefix(Self.capacity / 2))
            note.pointee.topicLength = 0
            bytes.withUnsafeBufferPointer { note.pointee.topic.update(from: $0.baseAddress!, count: bytes.count) }
            note.pointee.topicLength = bytes.count
            lastTopic.name = record.topic
        }
        note.pointee.partition = Int64(record.partition)
        note.pointee.offset = record.offset
        note.pointee.thread = pthread_self()
        note.pointee.active = true
    }

    /// The thread is between records: a crash of it now is no record's fault.
    public func idle(in slot: Slot = .applying) {
        crashNoteSlots[slot.index].active = false
    }

    /// Writes the note now, for a record that failed with an error rather than a signal, on
    /// the thread of `slot`.
    public func failed(on partition: TopicPartition, offset: Int64, because cause: String, in slot: Slot = .applying) {
        crashNoteSlots[slot.index].active = false
        let text = cause.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ")
        var note = Array("\(partition.topic)\t\(partition.partition)\t\(offset)\t\(text)".utf8.prefix(Self.capacity))
        note += Array(repeating: 0, count: Self.capacity - note.count)
        _ = note.withUnsafeBufferPointer { pwrite(descriptor, $0.baseAddress, $0.count, off_t(slot.index * Self.capacity)) }
    }

    /// The topic in each slot's buffer, each written by its slot's thread alone.
    private let lastTopics = (0..<crashNoteSlotCount).map { _ in LastTopic() }
    private final class LastTopic {
        var name = ""
    }

    /// Runs `body` with an alternate signal stack for the calling thread (each thread needs
    /// its own), so that a stack overflow on a thread other than the loop's (the one that
    /// decodes ahead) still leaves its note.
    public static func withAlternateSignalStack(_ body: () -> Void) {
        let memory = installAlternateSignalStack()
        body()
        var disabled = stack_t()
        disabled.ss_flags = Int32(SS_DISABLE)
        sigaltstack(&disabled, nil)
        memory.deallocate()
    }

    /// Gives the calling thread an alternate signal stack, and returns its memory.
    private static func installAlternateSignalStack() -> UnsafeMutableRawPointer {
        let size = 256 * 1024
        let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        var stack = stack_t()
        stack.ss_sp = memory
        stack.ss_size = size
        stack.ss_flags = 0
        sigaltstack(&stack, nil)
        return memory
    }

    /// What a note says: the record a thread failed on, and why.
    public typealias Note = (partition: TopicPartition, offset: Int64, cause: String)

    /// The notes a previous run left (one per thread that failed, ordered by record), removed
    /// from disk.
    public static func take(at path: String) -> [Note] {
        defer { unlink(path) }
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let bytes = Array(data)
        var notes: [Note] = []
        for start in stride(from: 0, to: bytes.count, by: capacity) {
            let region = bytes[start..<min(start + capacity, bytes.count)].prefix { $0 != 0 }
            guard let text = String(bytes: region, encoding: .utf8) else { continue }
            let fields = text.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count == 4, let partition = Int32(fields[1]), let offset = Int64(fields[2]) else { continue }
            notes.append((TopicPartition(topic: String(fields[0]), partition: partition), offset, String(fields[3])))
        }
        return notes.sorted { ($0.partition.topic, $0.partition.partition, $0.offset) < ($1.partition.topic, $1.partition.partition, $1.offset) }
    }
}

// The handler can reach only globals. One loop runs per process, so one note, with a slot
// per thread that works on records.
private struct CrashNoteSlot {
    let topic = UnsafeMutablePointer<UInt8>.allocate(capacity: 512)
    var topicLength = 0
    var partition: Int64 = 0
    var offset: Int64 = 0
    var thread = pthread_t()
    var active = false
}
/// The decoding thread's slot and one per applying thread.
private let crashNoteSlotCount = CrashNote.maximumThreads + 1
nonisolated(unsafe) private let crashNoteSlots: UnsafeMutablePointer<CrashNoteSlot> = {
    let slots = UnsafeMutablePointer<CrashNoteSlot>.allocate(capacity: crashNoteSlotCount)
    // One at a time: each slot gets a topic buffer of its own.
    for index in 0..<crashNoteSlotCount { (slots + index).initialize(to: CrashNoteSlot()) }
    return slots
}()
nonisolated(unsafe) private var crashNoteDescriptor: Int32 = -1
/// Where the handler formats the note: no allocation in a signal handler.
/// A region per slot, so two threads dying at once do not share one.
nonisolated(unsafe) private let crashNoteScratch = UnsafeMutablePointer<UInt8>.allocate(capacity: CrashNote.capacity * crashNoteSlotCount)
private let crashNoteCause = Array("the service crashed (a trap or fault signal)".utf8)

/// `topic \t partition \t offset \t cause` of the crashing thread's record, formatted with
/// nothing but stores.
private func writeCrashNote() {
    guard crashNoteDescriptor >= 0 else { return }
    let me = pthread_self()
    var slot = 0
    while slot < crashNoteSlotCount, !(crashNoteSlots[slot].active && pthread_equal(crashNoteSlots[slot].thread, me) != 0) { slot += 1 }
    guard slot < crashNoteSlotCount else { return }
    let note = crashNoteSlots[slot]
    let scratch = crashNoteScratch + slot * CrashNote.capacity
    var length = 0
    func put(_ byte: UInt8) {
        guard length < CrashNote.capacity else { return }
        scratch[length] = byte
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
    for index in 0..<note.topicLength { put(note.topic[index]) }
    put(9)
    putNumber(note.partition)
    put(9)
    putNumber(note.offset)
    put(9)
    crashNoteCause.withUnsafeBufferPointer { cause in for byte in cause { put(byte) } }
    // The whole region, so nothing of an earlier note of the slot is left after it.
    while length < CrashNote.capacity { put(0) }
    _ = pwrite(crashNoteDescriptor, scratch, CrashNote.capacity, off_t(slot * CrashNote.capacity))
}

private let crashNoteHandler: @convention(c) (Int32) -> Void = { signal in
    writeCrashNote()
    // SA_RESETHAND restored the default action: die of the same signal.
    raise(signal)
}
