/// How to open and tune a ``Database`` connection.
public struct DatabaseConfiguration: Sendable {
    /// How often SQLite waits for data to reach stable storage (`PRAGMA synchronous`).
    ///
    /// With the WAL journal that ``Database`` always uses on files:
    /// - ``normal`` survives a crash of the process (even `SIGKILL`): a committed transaction is in the
    ///   WAL file, which the operating system still holds. Only a power loss or OS crash can undo the
    ///   last commits, and never corrupts the database.
    /// - ``full`` also survives power loss, at the cost of an `fsync` per commit.
    /// - ``off`` hands data to the OS without any `fsync`; for throwaway data only.
    public enum Synchronous: String, Sendable {
        case off = "OFF"
        case normal = "NORMAL"
        case full = "FULL"
    }

    /// The database file. `":memory:"` opens a private in-memory database and `""` a private temporary
    /// one; neither can use WAL, so neither is held to it.
    public var path: String
    /// How long a statement waits for another connection's lock before failing with `SQLITE_BUSY`.
    /// Zero or less disables waiting.
    public var busyTimeoutMilliseconds: Int32
    /// The durability level; see ``Synchronous``.
    public var synchronous: Synchronous
    /// The page cache size per connection, in KiB. Must not be negative.
    public var cacheSizeKiB: Int
    /// The page size of a database file created by this connection (`PRAGMA page_size`): a
    /// power of two from 512 to 65,536. A file that has pages keeps the size it was made with.
    ///
    /// 8 KiB rather than SQLite's 4 KiB: a batch writes each page it touched once to the log
    /// and once more into the file, and with half as many pages per table (and fewer levels
    /// above them) a batch of the services' random member keys writes fewer frames in all.
    public var pageSize: Int

    /// SQLite's own page size, for measurements that must not move with this package's choice.
    public static let sqliteDefaultPageSize = 4_096

    /// Creates a configuration with defaults suited to a service that owns its database file.
    public init(
        path: String,
        busyTimeoutMilliseconds: Int32 = 10_000,
        synchronous: Synchronous = .normal,
        cacheSizeKiB: Int = 16_384,
        pageSize: Int = 8_192
    ) {
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        self.synchronous = synchronous
        self.cacheSizeKiB = cacheSizeKiB
        self.pageSize = pageSize
    }

    /// Whether ``path`` names a database that lives only as long as the connection.
    var isTransient: Bool { path == ":memory:" || path.isEmpty }
}
