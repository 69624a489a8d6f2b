import Basics
import Testing

/// Ids as the stores and record keys see them: their UTF-8 bytes.
@Suite struct ExactTextTests {
    let composed = "Zo\u{E9}"
    let decomposed = "Zoe\u{301}"

    @Test func lookalikesAreTwoKeysInEveryCollection() {
        #expect(composed == decomposed, "one String")
        #expect(ExactText(composed) != ExactText(decomposed) && ExactText(composed) == ExactText("Zo\u{E9}"))
        #expect(!composed.isExactly(decomposed) && composed.isExactly("Zo" + "\u{E9}"))
        var orders: IDDictionary<Int> = [composed: 1]
        orders[decomposed] = 2
        #expect(orders.count == 2 && orders[composed] == 1 && orders[decomposed] == 2)
        orders.removeValue(forID: composed)
        #expect(orders.ids.map { Array($0.utf8) } == [Array(decomposed.utf8)])
        var refunds: IDSet = [composed]
        #expect(refunds.insert(decomposed) && !refunds.insert(composed) && refunds.count == 2)
        #expect(refunds.remove(decomposed) && refunds.contains(composed) && !refunds.contains(decomposed))
    }

    @Test func theOrderIsTheBytesOrderAsSQLitesBinaryCollation() {
        // "e" + accent then "z" sorts after "é" + "a" as text, before it by bytes (0x65 < 0xC3).
        let first = "e\u{301}z"
        let second = "\u{E9}a"
        #expect(second < first, "String's order")
        #expect(first.exactlyPrecedes(second) && !second.exactlyPrecedes(first) && ExactText(first) < ExactText(second))
        #expect(!first.exactlyPrecedes(first) && "ab".exactlyPrecedes("abc") && !"abc".exactlyPrecedes("ab"))
        // For ASCII and NFC text, the same order as String's.
        let ids = ["order-10", "order-9", "Order-1", "订单-2", "\u{E9}t\u{E9}", "", "a"]
        #expect(ids.sorted { $0.exactlyPrecedes($1) } == ids.sorted())
        var orders = IDDictionary<Int>()
        for id in ids { orders[id] = id.count }
        #expect(orders.sortedByID().map(\.key) == ids.sorted())
        #expect(IDSet(ids).sorted() == ids.sorted())
    }
}
