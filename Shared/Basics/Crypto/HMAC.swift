/// HMAC-SHA256 (RFC 2104), for commands one part of the platform sends another.
public enum HMACSHA256 {
    private static let blockSize = 64

    /// A key made ready: the hash's state after its inner and its outer padded block, which
    /// every code under the key starts from (two of the four or so blocks a command's code
    /// folds otherwise).
    public struct Key: Sendable {
        fileprivate let inner: SHA256.State
        fileprivate let outer: SHA256.State

        /// The key `secret`, of any length (longer than a block, its digest stands for it).
        public init(_ secret: [UInt8]) {
            var block = secret.count > HMACSHA256.blockSize ? SHA256.digest(secret) : secret
            block += [UInt8](repeating: 0, count: HMACSHA256.blockSize - block.count)
            inner = SHA256.State.initial.folding(block: block.map { $0 ^ 0x36 })
            outer = SHA256.State.initial.folding(block: block.map { $0 ^ 0x5c })
        }
    }

    /// The 32-byte authentication code of `message` under `key`.
    public static func authenticationCode(for message: [UInt8], key: Key) -> [UInt8] {
        SHA256.digest(SHA256.digest(message, after: key.inner), after: key.outer)
    }

    /// The 32-byte authentication code of `message` under the key `secret`.
    public static func authenticationCode(for message: [UInt8], key secret: [UInt8]) -> [UInt8] {
        authenticationCode(for: message, key: Key(secret))
    }

    /// Compares two codes in time independent of where they first differ.
    public static func equal(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for index in left.indices { difference |= left[index] ^ right[index] }
        return difference == 0
    }
}

extension HMACSHA256.Key: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Nothing of the key: its hash states stand for the secret as well as the secret does.
    public var description: String { "HMACSHA256.Key(redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}
