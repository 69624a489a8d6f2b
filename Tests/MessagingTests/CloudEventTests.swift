import LoyaltyDomain
import Testing

@testable import Messaging

@Suite struct CloudEventTests {
    let sample = #"{"specversion":"1.0","id":"e-1","source":"shop","type":"order.paid","time":"2026-03-15T10:00:00+08:00","subject":"m-1","data":{"orderId":"o-1","paidMinor":12000}}"#

    @Test func decodesStructuredModeAndConvertsTimeToUTC() throws {
        let event = try CloudEvent.decode(Array(sample.utf8))
        #expect(event.id == "e-1")
        #expect(event.type == "order.paid")
        #expect(event.subject == "m-1")
        #expect(event.time.rfc3339 == "2026-03-15T02:00:00.000Z")
        #expect(event.data["paidMinor"]?.int64Value == 12000)
    }

    @Test func encodingIsCanonicalAndRoundTrips() throws {
        let event = try CloudEvent.decode(Array(sample.utf8))
        let bytes = event.encoded()
        #expect(String(decoding: bytes, as: UTF8.self)
            == #"{"specversion":"1.0","id":"e-1","source":"shop","type":"order.paid","time":"2026-03-15T02:00:00.000Z","subject":"m-1","datacontenttype":"application/json","data":{"orderId":"o-1","paidMinor":12000}}"#)
        #expect(try CloudEvent.decode(bytes) == event)
        #expect(try CloudEvent.decode(bytes).encoded() == bytes)
    }

    @Test(arguments: [
        ("not json", "not-json"),
        ("[1,2]", "not-an-object"),
        (#"{"specversion":"0.3","id":"e","source":"s","type":"t","time":"2026-03-15T10:00:00Z"}"#, "bad-specversion"),
        (#"{"specversion":"1.0","source":"s","type":"t","time":"2026-03-15T10:00:00Z"}"#, "missing-attribute"),
        (#"{"specversion":"1.0","id":"","source":"s","type":"t","time":"2026-03-15T10:00:00Z"}"#, "missing-attribute"),
        (#"{"specversion":"1.0","id":"e","source":"s","type":"t"}"#, "missing-attribute"),
        (#"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"yesterday"}"#, "bad-time"),
        (#"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-02-30T10:00:00Z"}"#, "bad-time"),
        (#"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-03-15T10:00:00Z","subject":7}"#, "missing-attribute"),
        (#"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-03-15T10:00:00Z","datacontenttype":"text/xml"}"#, "bad-data"),
    ])
    func refusesWithAReasonCode(text: String, code: String) {
        #expect(throws: CloudEventError.self) { try CloudEvent.decode(Array(text.utf8)) }
        do {
            _ = try CloudEvent.decode(Array(text.utf8))
        } catch {
            #expect(error.code.rawValue == code)
        }
    }

    @Test func aJSONMediaTypeWithParametersIsAccepted() throws {
        let text = #"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-03-15T10:00:00Z","datacontenttype":"application/json; charset=utf-8","data":{}}"#
        #expect(try CloudEvent.decode(Array(text.utf8)).id == "e")
        let notText = #"{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-03-15T10:00:00Z","datacontenttype":5}"#
        #expect(throws: CloudEventError(code: .badData, detail: "datacontenttype must be application/json")) {
            try CloudEvent.decode(Array(notText.utf8))
        }
    }

    @Test func everyEventTypeHasAnInputTopic() {
        #expect(Topics.inputTopic(forEventType: "member.registered") == Topics.members)
        #expect(Topics.inputTopic(forEventType: "order.refunded") == Topics.orders)
        #expect(Topics.inputTopic(forEventType: "engagement.checked-in") == Topics.engagement)
        #expect(Topics.inputTopic(forEventType: "points.grant") == Topics.pointsCommands)
        #expect(Topics.inputTopic(forEventType: "weather.sunny") == nil)
    }

    @Test func coPartitionedTopicsShareOnePartitionCount() {
        let inputs = [Topics.members, Topics.orders, Topics.engagement, Topics.pointsCommands, Topics.pointsLedger]
        #expect(Set(inputs.map(\.partitions)).count == 1)
        #expect(Set(Topics.all.map(\.name)).count == Topics.all.count)
    }
}
