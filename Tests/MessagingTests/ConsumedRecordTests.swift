import Testing

@testable import Messaging

@Suite struct ConsumedRecordTests {
    func record(key: [UInt8]?) -> ConsumedRecord {
        ConsumedRecord(topic: "loyalty.members", partition: 0, offset: 0, key: key, value: nil)
    }

    @Test func aKeyIsTextOnlyWhenItIsUTF8() {
        #expect(record(key: Array("member-42".utf8)).keyString == "member-42")
        #expect(record(key: Array("会员-42".utf8)).keyString == "会员-42")
        #expect(record(key: []).keyString == "")
        #expect(record(key: nil).keyString == nil)
        // A lone continuation byte, an overlong slash and a truncated sequence are not UTF-8.
        #expect(record(key: [0x6D, 0x80]).keyString == nil)
        #expect(record(key: [0xC0, 0xAF]).keyString == nil)
        #expect(record(key: Array("会".utf8).dropLast()).keyString == nil)
    }
}
