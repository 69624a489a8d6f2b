import Foundation
import Basics
import Messaging

/// The keys that authenticate commands one part of the platform sends another (grants and
/// transfer legs, say): HMAC-SHA256 over the event's canonical form, in its `signature` attribute as
/// `<key id>:<hex>`.
///
/// The `<PLATFORM>_COMMAND_KEYS` variable lists `id=secret` pairs separated by commas. The first signs; all
/// verify, so a key is rotated by putting the new one first everywhere, then removing the old
/// one once nothing signed with it is left to read.
public struct CommandKeys: Sendable {
    public struct Key: Sendable {
        public var id: String
        public var secret: [UInt8]
    }

    /// The keys, the signing one first.
    public let keys: [Key]
    /// Each key made ready for HMAC, in the order of `keys` (every command is signed or
    /// verified: the key's blocks are folded in once, here).
    private let macKeys: [HMACSHA256.Key]

    public init(keys: [Key]) {
        precondition(!keys.isEmpty, "at least one command key")
        self.keys = keys
        macKeys = keys.map { HMACSHA256.Key($0.secret) }
    }

    /// Reads `id=secret[,id=secret…]`. Secrets of fewer than 16 bytes are refused.
    /// `variable` names where the text came from, for errors.
    public static func parse(_ text: String, variable: String = "command keys") throws(ConfigurationError) -> CommandKeys {
        var keys: [Key] = []
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[0].contains(":") else {
                throw ConfigurationError(variable: variable, problem: "expected id=secret pairs separated by commas (ids without ':')")
            }
            guard parts[1].utf8.count >= 16 else {
                throw ConfigurationError(variable: variable, problem: "the secret of key \(parts[0]) is shorter than 16 bytes")
            }
            guard !keys.contains(where: { $0.id == parts[0] }) else {
                throw ConfigurationError(variable: variable, problem: "key \(parts[0]) appears twice")
            }
            keys.append(Key(id: parts[0], secret: Array(parts[1].utf8)))
        }
        guard !keys.isEmpty else { throw ConfigurationError(variable: variable, problem: "no key given") }
        return CommandKeys(keys: keys)
    }

    /// The event, signed with the first key.
    public func sign(_ event: CloudEvent) -> CloudEvent {
        var signed = event
        signed.signature = "\(keys[0].id):\(SHA256.lowercaseHex(code(of: canonicalForm(of: event), under: 0)))"
        return signed
    }

    /// Whether the event carries a valid signature of one of the keys; the reason when not.
    /// `form` is the event's `canonicalForm(of:)` when the caller already has it.
    public func verify(_ event: CloudEvent, canonicalForm form: [UInt8]? = nil) -> Rejection? {
        guard let signature = event.signature else {
            return Rejection(code: .unauthenticatedCommand, detail: "\(event.type) must be signed by the platform (no signature)")
        }
        let parts = signature.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let index = keys.firstIndex(where: { $0.id == parts[0] }) else {
            return Rejection(code: .unauthenticatedCommand, detail: "\(event.type) is signed with an unknown key")
        }
        guard HMACSHA256.equal(Array(SHA256.lowercaseHex(code(of: form ?? canonicalForm(of: event), under: index)).utf8), Array(parts[1].utf8)) else {
            return Rejection(code: .unauthenticatedCommand, detail: "\(event.type) has a signature that does not match it")
        }
        return nil
    }

    /// The code of an event's canonical form under the key at `index`: what a signature carries.
    private func code(of form: [UInt8], under index: Int) -> [UInt8] {
        HMACSHA256.authenticationCode(for: form, key: macKeys[index])
    }
}

extension CommandKeys {
    /// The keys of a single-machine installation that sets no `COMMAND_KEYS`: a random
    /// key kept in `<data dir>/command-keys`, made by whichever process needs it first. Every
    /// service and the CLI on the machine then share it; across machines, set the variable.
    public static func ofDataDirectory(_ directory: String) throws -> CommandKeys {
        let path = "\(directory)/command-keys"
        if let existing = try? String(contentsOfFile: path, encoding: .utf8), !existing.isEmpty {
            return try parse(existing.trimmingCharacters(in: .whitespacesAndNewlines), variable: path)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let secret = SHA256.lowercaseHex((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let id = "local-\(secret.prefix(8))"
        // Written aside and linked into place: a process racing this one reads a whole file.
        let draft = "\(path).\(getpid()).draft"
        try "\(id)=\(secret)\n".write(toFile: draft, atomically: false, encoding: .utf8)
        chmod(draft, 0o600)
        _ = link(draft, path)
        unlink(draft)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try parse(text.trimmingCharacters(in: .whitespacesAndNewlines), variable: path)
    }

    /// The platform's `<PLATFORM>_COMMAND_KEYS` when set, else the data directory's keys.
    public static func fromEnvironment(_ environment: [String: String], dataDirectory: String, platform: Platform) throws -> CommandKeys {
        let variable = platform.variable("COMMAND_KEYS")
        if let text = environment[variable]?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
            return try parse(text, variable: variable)
        }
        return try ofDataDirectory(dataDirectory)
    }
}

extension CommandKeys.Key: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The key's id and length, never its bytes: a key printed or dumped by mistake (a log
    /// line, a test's failure message) gives nothing away.
    public var description: String { "CommandKeys.Key(id: \(id), secret: \(secret.count) bytes, redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["id": id, "secret": "\(secret.count) bytes, redacted"]) }
}
