/// The partition a keyed record goes to under librdkafka's `murmur2_random` partitioner
/// (the Java client's default): `toPositive(murmur2(key)) % partitions`. A service uses it to
/// know, before sending, which partition a command it sends to itself will land on.
public enum Murmur2Partitioner {
    /// The partition of `key` among `partitions`.
    public static func partition(of key: [UInt8], partitions: Int32) -> Int32 {
        Int32(murmur2(key) & 0x7fff_ffff) % partitions
    }

    /// Kafka's 32-bit murmur2 with its fixed seed.
    public static func murmur2(_ data: [UInt8]) -> UInt32 {
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: data.count)
        let blocks = data.count / 4
        for index in 0..<blocks {
            let base = index * 4
            var k = UInt32(data[base]) | UInt32(data[base + 1]) << 8 | UInt32(data[base + 2]) << 16 | UInt32(data[base + 3]) << 24
            k &*= m
            k ^= k >> r
            k &*= m
            h &*= m
            h ^= k
        }
        let tail = blocks * 4
        switch data.count & 3 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 1:
            h ^= UInt32(data[tail])
            h &*= m
        default:
            break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return h
    }
}
