import Foundation
import Basics
import Synchronization

/// Log severity.
public enum LogLevel: Int, Comparable, Sendable {
    case debug, info, warning, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    /// Parses `debug`, `info`, `warning` or `error`.
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }
}

/// Writes one JSON object per line to standard error:
/// `{"ts":…,"level":…,"service":…,"msg":…, fields…}`. The timestamp is the wall clock:
/// logs are operational, never an input to a business rule.
public struct Logger: Sendable {
    public var service: String
    public var minimumLevel: LogLevel

    private static let lock = Mutex(())

    public init(service: String, minimumLevel: LogLevel = .info) {
        self.service = service
        self.minimumLevel = minimumLevel
    }

    public func debug(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.info, message, fields) }
    public func warning(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.error, message, fields) }

    /// Writes one line if `level` is at or above the minimum.
    public func log(_ level: LogLevel, _ message: String, _ fields: KeyValuePairs<String, String>) {
        guard level >= minimumLevel else { return }
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("ts"); writer.string(EventTime(millis: Int64(Date().timeIntervalSince1970 * 1000)).rfc3339)
        writer.key("level"); writer.string(level.name)
        writer.key("service"); writer.string(service)
        writer.key("msg"); writer.string(message)
        for (key, value) in fields {
            writer.key(escaping: key); writer.string(value)
        }
        writer.endObject()
        var line = writer.bytes
        line.append(UInt8(ascii: "\n"))
        Self.lock.withLock { _ in
            line.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }
}
