/// SHA-256 (FIPS 180-4) in pure Swift, for control-group assignment and the commands' HMAC. The
/// domain module has no C import, and a control group must be the same on every machine and in
/// every language.
public enum SHA256 {
    /// The hash's state after whole blocks of a message: what HMAC's key blocks leave, so that a
    /// key used for many messages is folded in once (``digest(_:after:)``).
    public struct State: Sendable {
        fileprivate var words: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)
        /// Bytes folded in so far (a multiple of 64).
        fileprivate var length: Int

        /// The state before any byte.
        public static let initial = State(
            words: (0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19), length: 0)

        /// This state with the 64-byte `block` folded in.
        public func folding(block: [UInt8]) -> State {
            precondition(block.count == 64, "SHA-256 folds whole 64-byte blocks")
            var next = self
            block.withUnsafeBufferPointer { bytes in
                roundConstants.withUnsafeBufferPointer { constants in
                    withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
                        compress(&next.words, bytes, schedule, constants)
                    }
                }
            }
            next.length += 64
            return next
        }
    }

    /// The 32-byte digest of `message`.
    public static func digest(_ message: [UInt8]) -> [UInt8] {
        digest(message, after: .initial)
    }

    /// The 32-byte digest of what `start` folded in, followed by `message`.
    public static func digest(_ message: [UInt8], after start: State) -> [UInt8] {
        var state = start.words
        // Whole blocks are read in place; only the tail and the padding, one or two blocks,
        // are copied (every command's signature and every message's key ends here).
        message.withUnsafeBufferPointer { bytes in
            roundConstants.withUnsafeBufferPointer { constants in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { words in
                    let wholeBlocks = bytes.count / 64
                    for block in 0..<wholeBlocks {
                        compress(&state, UnsafeBufferPointer(rebasing: bytes[(block * 64)..<(block * 64 + 64)]), words, constants)
                    }
                    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
                        let rest = bytes.count - wholeBlocks * 64
                        for index in 0..<rest { tail[index] = bytes[wholeBlocks * 64 + index] }
                        tail[rest] = 0x80
                        let length = rest + 9 <= 64 ? 64 : 128
                        for index in (rest + 1)..<(length - 8) { tail[index] = 0 }
                        let bitLength = UInt64(start.length + bytes.count) &* 8
                        for index in 0..<8 { tail[length - 8 + index] = UInt8(truncatingIfNeeded: bitLength >> UInt64(56 - 8 * index)) }
                        let padding = UnsafeBufferPointer(tail)
                        compress(&state, UnsafeBufferPointer(rebasing: padding[0..<64]), words, constants)
                        if length == 128 { compress(&state, UnsafeBufferPointer(rebasing: padding[64..<128]), words, constants) }
                    }
                }
            }
        }
        // Big-endian words, into one buffer (not an array per word: every message and every
        // control-group draw ends here).
        return [UInt8](unsafeUninitializedCapacity: 32) { digest, count in
            let words = [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7]
            for (index, word) in words.enumerated() {
                for byte in 0..<4 { digest[index * 4 + byte] = UInt8(truncatingIfNeeded: word >> UInt32(24 - 8 * byte)) }
            }
            count = 32
        }
    }

    /// Folds one 64-byte block into `state`, with `words` as the message schedule's room.
    @inline(__always)
    private static func compress(
        _ state: inout (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32),
        _ block: UnsafeBufferPointer<UInt8>, _ words: UnsafeMutableBufferPointer<UInt32>, _ constants: UnsafeBufferPointer<UInt32>
    ) {
        for index in 0..<16 {
            let base = block.startIndex + index * 4
            words[index] = UInt32(block[base]) << 24 | UInt32(block[base + 1]) << 16 | UInt32(block[base + 2]) << 8 | UInt32(block[base + 3])
        }
        for index in 16..<64 {
            let s0 = rotate(words[index - 15], 7) ^ rotate(words[index - 15], 18) ^ (words[index - 15] >> 3)
            let s1 = rotate(words[index - 2], 17) ^ rotate(words[index - 2], 19) ^ (words[index - 2] >> 10)
            words[index] = words[index - 16] &+ s0 &+ words[index - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = state
        for index in 0..<64 {
            let s1 = rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)
            let choice = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ choice &+ constants[index] &+ words[index]
            let s0 = rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)
            let majority = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ majority
            (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d, state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
    }

    /// The digest as lowercase hexadecimal.
    public static func hex(_ message: [UInt8]) -> String {
        lowercaseHex(digest(message))
    }

    /// Bytes as lowercase hexadecimal.
    public static func lowercaseHex(_ bytes: [UInt8]) -> String {
        // Written as UTF-8 into the string's own storage: every message's key is one of these.
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: bytes.count * 2) { text in
            for (index, byte) in bytes.enumerated() {
                text[2 * index] = digits.utf8Start[Int(byte >> 4)]
                text[2 * index + 1] = digits.utf8Start[Int(byte & 15)]
            }
            return bytes.count * 2
        }
    }

    private static func rotate(_ value: UInt32, _ count: UInt32) -> UInt32 {
        (value >> count) | (value << (32 - count))
    }

    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}
