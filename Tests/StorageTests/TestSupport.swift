import Foundation
import Storage

/// Runs `body` with a fresh directory under the system's temporary directory, removed afterwards.
/// Databases opened inside `body` must be released by the time it returns.
@discardableResult
func withTemporaryDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("StorageTests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

/// Runs `body` with the path of a not-yet-existing database file in a temporary directory.
@discardableResult
func withDatabasePath<T>(_ body: (String) throws -> T) throws -> T {
    try withTemporaryDirectory { directory in
        try body(directory.appendingPathComponent("test.sqlite").path)
    }
}

/// Runs `body` with a database opened on a fresh file, closed afterwards.
@discardableResult
func withDatabase<T>(_ body: (Database) throws -> T) throws -> T {
    try withDatabasePath { path in
        let database = try Database(DatabaseConfiguration(path: path))
        defer { database.close() }
        return try body(database)
    }
}

struct ExpectedFailure: Error, Equatable {}

extension Database {
    func count(_ table: String) throws -> Int {
        try prepare("SELECT count(*) FROM \(table)").queryOne { $0.int(0) } ?? -1
    }

    func integers(_ sql: String) throws -> [Int64] {
        try prepare(sql).query { $0.int64(0) }
    }

    func tableExists(_ name: String) throws -> Bool {
        try prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").queryOne(.text(name)) { _ in true }
            ?? false
    }

    func pragma(_ name: String) throws -> SQLValue? {
        try prepare("PRAGMA \(name)").queryOne { $0.value(0) }
    }
}
