import LoyaltyDomain
import ReferenceProgram
import Testing

@testable import ServiceKit

/// The Swift check of docs/schemas that `loyalty publish` runs.
@Suite struct EventSchemasTests {
    @Test func inputsAreCheckedAgainstTheSchemaOfTheirTypeOnTheirTopic() throws {
        let schemas = try EventSchemas(files: ReferenceProgram.eventSchemaFiles())
        func problems(_ json: String, on topic: String) throws -> [String] {
            schemas.problems(of: try JSONValue.parse(json), on: topic)
        }
        let order = #"{"specversion":"1.0","id":"o1","source":"shop","type":"order.paid","time":"2026-03-01T10:00:00+08:00","subject":"a","data":{"orderId":"O","paidMinor":100,"lines":[{"category":"x","paidMinor":100}]}}"#
        #expect(try problems(order, on: "loyalty.orders").isEmpty)
        #expect(try problems(order.replacingOccurrences(of: #""paidMinor":100,"#, with: #""paidMinor":0,"#), on: "loyalty.orders")
            == ["data/paidMinor: 0 is less than 1"])
        #expect(try problems(order.replacingOccurrences(of: #""orderId":"O","#, with: ""), on: "loyalty.orders") == ["data/orderId: required"])
        #expect(try problems(order.replacingOccurrences(of: #""specversion":"1.0""#, with: #""specversion":"0.3""#), on: "loyalty.orders")
            == ["specversion: must be \"1.0\""])
        #expect(try problems(order, on: "loyalty.members") == ["no schema for type order.paid on loyalty.members"])
        let registration = #"{"specversion":"1.0","id":"r","source":"shop","type":"member.registered","time":"2026-03-01T10:00:00+08:00","subject":"a","data":{"channels":{"fax":"123"},"locale":"fr"}}"#
        #expect(try problems(registration, on: "loyalty.members").sorted() == ["data/channels/fax: not allowed here", "data/locale: must be one of \"zh-CN\", \"en\""])
        // A platform command needs its signature attribute.
        let grant = #"{"specversion":"1.0","id":"g","source":"loyalty/tiers","type":"points.grant","time":"2026-03-01T10:00:00+08:00","subject":"a","data":{"component":"tier-bonus","points":5}}"#
        #expect(try problems(grant, on: "loyalty.points.commands") == ["signature: required"])
    }
}
