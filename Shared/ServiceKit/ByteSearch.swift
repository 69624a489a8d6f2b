#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in these bytes. Services call it on records they pass over
    /// unparsed, so it jumps from one occurrence of the needle's first byte to the next with
    /// `memchr` and compares the rest with `memcmp`, rather than trying every offset.
    public func contains(_ needle: [UInt8]) -> Bool {
        contains(needle, followedByAnyOf: [[]])
    }

    /// Whether `prefix` followed by one of `suffixes` occurs in these bytes: the same answer as
    /// asking for each whole needle in turn, in one pass over the bytes for the prefix they
    /// share (a service that looks for any of several event types scans once, not once a type).
    public func contains(_ prefix: [UInt8], followedByAnyOf suffixes: [[UInt8]]) -> Bool {
        guard !prefix.isEmpty else { return suffixes.contains { $0.isEmpty || contains($0, followedByAnyOf: [[]]) } }
        guard let shortest = suffixes.map(\.count).min(), prefix.count + shortest <= count else { return false }
        return withUnsafeBufferPointer { haystack in
            prefix.withUnsafeBufferPointer { prefix in
                let base = haystack.baseAddress!
                let lastStart = haystack.count - prefix.count - shortest
                var start = 0
                while start <= lastStart {
                    guard let found = memchr(base + start, Int32(prefix[0]), lastStart - start + 1) else { return false }
                    let offset = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
                    if memcmp(base + offset, prefix.baseAddress!, prefix.count) == 0 {
                        let after = offset + prefix.count
                        for suffix in suffixes where after + suffix.count <= haystack.count {
                            if suffix.withUnsafeBufferPointer({ $0.isEmpty || memcmp(base + after, $0.baseAddress!, $0.count) == 0 }) { return true }
                        }
                    }
                    start = offset + 1
                }
                return false
            }
        }
    }
}
