/// A stable 64-bit FNV-1a hash of a payload, kept in the inbox to tell a harmless re-send
/// (same id, same payload) from a conflict (same id, different payload). Swift's `Hasher`
/// is seeded per process, so it cannot be stored.
public func payloadHash(_ bytes: [UInt8]) -> Int64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    return Int64(bitPattern: hash)
}
