import Foundation

/// An advisory lock that marks a file as in use by a running process (BSD `flock`, which is
/// independent of the POSIX locks SQLite takes on the same file). Services hold it shared for
/// their database while they run; a tool about to remove a database asks whether anyone does.
public final class FileUseLock: @unchecked Sendable {
    // Immutable after init; the descriptor is only closed in deinit.
    private let descriptor: Int32

    /// Marks `path` as in use until this object is released. Several processes may hold it
    /// at once (instances sharing a store).
    public init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SQLiteError(code: 14, message: "cannot open \(path) to mark it in use: errno \(errno)") }
        guard flock(descriptor, LOCK_SH) == 0 else {
            close(descriptor)
            throw SQLiteError(code: 14, message: "cannot mark \(path) in use: errno \(errno)")
        }
    }

    deinit { close(descriptor) }

    /// Whether a running process holds `path` (false for a file that does not exist).
    public static func isInUse(path: String) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        return flock(descriptor, LOCK_EX | LOCK_NB) != 0
    }
}
