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
        guard !needle.isEmpty else { return true }
        guard needle.count <= count else { return false }
        return withUnsafeBufferPointer { haystack in
            needle.withUnsafeBufferPointer { needle in
                let base = haystack.baseAddress!
                let lastStart = haystack.count - needle.count
                var start = 0
                while start <= lastStart {
                    guard let found = memchr(base + start, Int32(needle[0]), lastStart - start + 1) else { return false }
                    let offset = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
                    if memcmp(base + offset, needle.baseAddress!, needle.count) == 0 { return true }
                    start = offset + 1
                }
                return false
            }
        }
    }
}
