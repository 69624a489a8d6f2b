import Foundation

/// An advisory lock that marks a file as in use by a running process (BSD `flock`, which is
/// independent of the POSIX locks SQLite takes on the same file). Services hold it shared for
/// their database while they run; a tool about to remove a database asks whether anyone does.
public final class FileUseLock: @unchecked Sendable {
    // Immutable after init; the descriptor is only closed in deinit.
    private let descriptor: Int32

    /// Marks `path` as in use until this object is released. Several processes may hold it
    /// at once (instances sharing a store), unless one holds it `exclusive`ly: then no other
    /// may, and the one that comes second is refused (within a second).
    public init(path: String, exclusive: Bool = false) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SQLiteError(code: 14, message: "cannot open \(path) to mark it in use: errno \(errno)") }
        // A tool asking whether the file is in use holds it alone for a moment: wait that out.
        var attempts = 0
        while flock(descriptor, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            let code = errno
            attempts += 1
            if code == EWOULDBLOCK && attempts < 50 {
                usleep(20_000)
                continue
            }
            // Every property is set, so deinit runs and closes the descriptor.
            throw SQLiteError(
                code: 14,
                message: code == EWOULDBLOCK
                    ? "\(path) is in use by another process \(exclusive ? "" : "that holds it alone ")(a store with a changelog has one instance)"
                    : "cannot mark \(path) in use: errno \(code)")
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
