import LoyaltyDomain
import Messaging
import Testing

@testable import ServiceKit

/// One policy for "the same event": what it says, not how its bytes are laid out.
@Suite struct PayloadHashTests {
    func hash(_ json: String) throws -> Int64 { canonicalPayloadHash(try CloudEvent.decode(Array(json.utf8))) }

    @Test func layoutDoesNotMatterButEveryValueDoes() throws {
        let original = try hash(#"{"specversion":"1.0","id":"e1","source":"shop","type":"order.paid","time":"2026-03-02T20:15:00+08:00","subject":"alice","data":{"orderId":"A-1","paidMinor":32000,"lines":[{"category":"apparel","paidMinor":32000}]}}"#)
        // White space, member order, the spelling of a number and of the same instant.
        let relaidOut = try hash("""
            { "data" : { "lines" : [ { "paidMinor" : 3.2e4, "category" : "apparel" } ], "paidMinor" : 32000.0, "orderId" : "A-1" },
              "subject" : "alice", "time" : "2026-03-02T12:15:00Z", "type" : "order.paid", "source" : "shop", "id" : "e1", "specversion" : "1.0" }
            """)
        #expect(relaidOut == original)
        // Any value changed is another event.
        #expect(try hash(#"{"specversion":"1.0","id":"e1","source":"shop","type":"order.paid","time":"2026-03-02T20:15:00+08:00","subject":"alice","data":{"orderId":"A-1","paidMinor":32001,"lines":[{"category":"apparel","paidMinor":32000}]}}"#) != original)
        #expect(try hash(#"{"specversion":"1.0","id":"e1","source":"shop","type":"order.paid","time":"2026-03-02T20:15:01+08:00","subject":"alice","data":{"orderId":"A-1","paidMinor":32000,"lines":[{"category":"apparel","paidMinor":32000}]}}"#) != original)
        #expect(try hash(#"{"specversion":"1.0","id":"e1","source":"shop","type":"order.paid","time":"2026-03-02T20:15:00+08:00","subject":"alice","data":{"orderId":"A-1","paidMinor":32000,"lines":[{"category":"beauty","paidMinor":32000}]}}"#) != original)
        // Array order is meaning, not layout.
        let two = #"{"specversion":"1.0","id":"e2","source":"s","type":"t","time":"2026-01-01T00:00:00Z","subject":"a","data":{"l":[1,2]}}"#
        let swapped = #"{"specversion":"1.0","id":"e2","source":"s","type":"t","time":"2026-01-01T00:00:00Z","subject":"a","data":{"l":[2,1]}}"#
        #expect(try hash(two) != hash(swapped))
    }
}
