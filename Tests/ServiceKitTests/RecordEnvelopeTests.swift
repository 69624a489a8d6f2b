import Basics
import Messaging
import Testing

@testable import ServiceKit

/// The member a record is about, read as every service reads it.
@Suite struct RecordEnvelopeTests {
    func event(subject: String) -> CloudEvent {
        CloudEvent(id: "e", source: "s", type: "t", time: EventTime(millis: 0), subject: subject, data: .object(JSONObject()))
    }

    /// "café" precomposed (NFC) and decomposed (NFD): equal as Swift strings, not as bytes.
    let composed = "caf\u{E9}"
    let decomposed = "cafe\u{301}"

    @Test func theKeyMustBeTheSubjectsBytesAndTheSubjectInNormalizationFormC() throws {
        #expect(composed == decomposed && !composed.utf8.elementsEqual(decomposed.utf8), "the premise: Swift finds them equal")
        #expect(try event(subject: "alice").member(keyedBy: "alice") == "alice")
        #expect(try event(subject: composed).member(keyedBy: composed) == composed)
        #expect(throws: Rejection(code: .keyMismatch, detail: "record key \(decomposed) differs from subject \(composed)")) {
            try event(subject: composed).member(keyedBy: decomposed)
        }
        #expect(throws: Rejection(code: .keyMismatch, detail: "record key (none) differs from subject alice")) {
            try event(subject: "alice").member(keyedBy: nil)
        }
        #expect(throws: Rejection(code: .unnormalizedMemberID, detail: "subject \(decomposed) is not in Unicode normalization form C (NFC)")) {
            try event(subject: decomposed).member(keyedBy: decomposed)
        }
        // Hangul syllables and other precomposed scripts are NFC as they are.
        #expect(try event(subject: "\u{D55C}\u{AE00}-7").member(keyedBy: "\u{D55C}\u{AE00}-7") == "\u{D55C}\u{AE00}-7")
        #expect(try event(subject: "会员-42").member(keyedBy: "会员-42") == "会员-42")
    }
}
