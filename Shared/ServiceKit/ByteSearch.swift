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
        return anyOccurrence(of: needle, leaving: 0) { _ in true }
    }

    /// Whether `prefix` followed by one of `suffixes` occurs in these bytes: the same answer as
    /// asking for each whole needle in turn, in one pass over the bytes for the prefix they
    /// share (a service that looks for any of several event types scans once, not once a type).
    public func contains(_ prefix: [UInt8], followedByAnyOf suffixes: [[UInt8]]) -> Bool {
        guard !prefix.isEmpty else { return suffixes.contains { contains($0) } }
        // A closure, not `\.count`: a key path here was looked up at run time on every call.
        guard let shortest = suffixes.lazy.map({ $0.count }).min() else { return false }
        return withUnsafeBufferPointer { haystack in
            anyOccurrence(of: prefix, leaving: shortest) { after in
                suffixes.contains { suffix in
                    after + suffix.count <= haystack.count
                        && suffix.withUnsafeBufferPointer { $0.isEmpty || memcmp(haystack.baseAddress! + after, $0.baseAddress!, $0.count) == 0 }
                }
            }
        }
    }

    /// Whether `accepts` holds at the end of some occurrence of the non-empty `needle` that
    /// leaves at least `tail` bytes after it.
    private func anyOccurrence(of needle: [UInt8], leaving tail: Int, _ accepts: (_ end: Int) -> Bool) -> Bool {
        guard needle.count + tail <= count else { return false }
        return withUnsafeBufferPointer { haystack in
            needle.withUnsafeBufferPointer { needle in
                let base = haystack.baseAddress!
                let lastStart = haystack.count - needle.count - tail
                var start = 0
                while start <= lastStart {
                    guard let found = memchr(base + start, Int32(needle[0]), lastStart - start + 1) else { return false }
                    let offset = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
                    if memcmp(base + offset, needle.baseAddress!, needle.count) == 0, accepts(offset + needle.count) { return true }
                    start = offset + 1
                }
                return false
            }
        }
    }
}
