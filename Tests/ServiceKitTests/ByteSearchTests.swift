import Testing
@testable import ServiceKit

@Suite struct ByteSearchTests {
    /// Tries every offset: what `contains` must agree with.
    private func naiveContains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    @Test func findsANeedleWhereverItIs() {
        let marker = Array("\"type\":\"points.earned\"".utf8)
        let event = Array(#"{"specversion":"1.0","id":"e1","type":"points.earned","data":{"points":5}}"#.utf8)
        #expect(event.contains(marker))
        #expect(!event.contains(Array("\"type\":\"points.spent\"".utf8)))
        #expect(marker.contains(marker), "a needle as long as the bytes")
        #expect(Array("ab\"type\":\"points.earned\"".utf8).contains(marker), "at the very end")
        #expect(Array("\"type\":\"points.earned".utf8).contains(marker) == false, "cut short by one byte")
        #expect([UInt8]().contains([]) && ![UInt8]().contains([1]))
        #expect(([1, 1, 1, 2] as [UInt8]).contains([1, 1, 2]), "after a false start on the same first byte")
    }

    @Test func agreesWithTryingEveryOffset() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // A small alphabet makes partial matches and repeats common.
            let haystack = (0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...3, using: &generator) }
            let needle = (0..<Int.random(in: 0...5, using: &generator)).map { _ in UInt8.random(in: 0...3, using: &generator) }
            #expect(haystack.contains(needle) == naiveContains(haystack, needle), "\(haystack) \(needle)")
        }
    }

    @Test func aPrefixFollowedByAnyOfItsEndsIsFoundAsEachWholeNeedleWouldBe() {
        let event = Array(#"{"specversion":"1.0","id":"e1","type":"points.earned","data":{"points":5}}"#.utf8)
        let prefix = Array(#""type":"points."#.utf8)
        #expect(event.contains(prefix, followedByAnyOf: [Array("redeemed\"".utf8), Array("earned\"".utf8)]))
        #expect(!event.contains(prefix, followedByAnyOf: [Array("redeemed\"".utf8), Array("earned!".utf8)]))
        #expect(!event.contains(prefix, followedByAnyOf: []), "no end, no match")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let haystack = (0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...3, using: &generator) }
            let prefix = (0..<Int.random(in: 0...3, using: &generator)).map { _ in UInt8.random(in: 0...3, using: &generator) }
            let ends = (0..<Int.random(in: 0...3, using: &generator)).map { _ in
                (0..<Int.random(in: 0...3, using: &generator)).map { _ in UInt8.random(in: 0...3, using: &generator) }
            }
            let expected = ends.contains { naiveContains(haystack, prefix + $0) }
            #expect(haystack.contains(prefix, followedByAnyOf: ends) == expected, "\(haystack) \(prefix) \(ends)")
        }
    }
}
