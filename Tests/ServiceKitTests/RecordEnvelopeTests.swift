import Basics
import Messaging
import Testing

@testable import ServiceKit

/// The member a record is about, read as every service reads it.
@Suite struct RecordEnvelopeTests {
    func event(subject: String) -> CloudEvent {
        CloudEvent(id: "e", source: "s", type: "t", time: EventTime(millis: 0), subject: subject, data: .object(JSONObject()))
    }

    /// "café" precomposed and decomposed: equal as Swift strings, not as bytes, so on two
    /// partitions under murmur2 of the key.
    @Test func theKeyMustBeTheSubjectsBytes() throws {
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        #expect(composed == decomposed && !composed.utf8.elementsEqual(decomposed.utf8), "the premise: Swift finds them equal")
        #expect(try event(subject: "alice").member(keyedBy: "alice") == "alice")
        #expect(try event(subject: composed).member(keyedBy: composed) == composed)
        #expect(try event(subject: decomposed).member(keyedBy: decomposed) == decomposed)
        #expect(throws: Rejection(code: .keyMismatch, detail: "record key \(decomposed) differs from subject \(composed)")) {
            try event(subject: composed).member(keyedBy: decomposed)
        }
        #expect(throws: Rejection(code: .keyMismatch, detail: "record key (none) differs from subject alice")) {
            try event(subject: "alice").member(keyedBy: nil)
        }
    }
}
