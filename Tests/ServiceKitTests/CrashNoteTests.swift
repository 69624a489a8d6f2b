import Foundation
import Messaging
import Testing

@testable import ServiceKit

@Suite struct CrashNoteTests {
    /// Threads that fail at once (tasks applied on threads of their own) each leave their
    /// record in the note: the next start counts a strike against each, not against whichever
    /// wrote last.
    @Test func eachThreadThatFailsLeavesItsOwnRecord() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("service.sqlite.crash").path
        let note = try CrashNote(path: path)
        let first = TopicPartition(topic: "in", partition: 2), second = TopicPartition(topic: "in", partition: 1)
        note.failed(on: first, offset: 40, because: "an earlier failure, overwritten", in: .applying(onThread: 2))
        note.failed(on: first, offset: 41, because: "failed\twith a tab", in: .applying(onThread: 2))
        note.failed(on: second, offset: 7, because: String(repeating: "long ", count: 400), in: .applying(onThread: 1))

        let notes = CrashNote.take(at: path)
        #expect(notes.map { "\($0.partition)@\($0.offset)" } == ["\(second)@7", "\(first)@41"], "one record per thread, ordered by record")
        #expect(notes.last?.cause == "failed with a tab")
        #expect(notes.first.map { $0.cause.utf8.count < CrashNote.capacity } == true, "a long cause is cut to the thread's region")
        #expect(!FileManager.default.fileExists(atPath: path), "taken means removed")
        #expect(CrashNote.take(at: path).isEmpty)
    }
}
