import Foundation
import Storage
import Testing

@testable import ServiceKit

/// The background checkpointer and the writer's own checkpoint take turns on the log: a writer
/// whose checkpoint kept finding the background turn holding the lock let the log grow to ten
/// times its limit through a bulk load.
@Suite struct WALCheckpointerTests {
    /// Commits 500 rows of about a page each: every background turn has some copying to do,
    /// holding the checkpoint lock for a while.
    func commit(_ key: Int, to database: Database) throws {
        try database.transaction {
            let insert = try database.prepare("INSERT INTO rows(key, value) VALUES (?, randomblob(3000))")
            for row in 0..<500 { try insert.run(.integer(Int64(key * 500 + row))) }
        }
    }

    func passiveCheckpoint(_ database: Database) throws -> (busy: Int64, logFrames: Int64, copied: Int64) {
        try #require(try database.prepare("PRAGMA wal_checkpoint(PASSIVE)").queryOne { ($0.int64(0), $0.int64(1), $0.int64(2)) })
    }

    /// Commits until the checkpointer stands aside; generous, since a suite run with every core
    /// busy starves a background thread for a long while. The writer may checkpoint after a
    /// second's wait whether or not the turns stood aside (and then a turn may hold the lock),
    /// so the test waits for the standing aside itself.
    func commitUntilHandedOver(_ checkpointer: WALCheckpointer, _ database: Database, from key: inout Int) throws {
        let deadline = Date().addingTimeInterval(600)
        // Asking is what sets the turns catching up, so it comes first on every round.
        while !(checkpointer.writerMayCheckpoint() && checkpointer.standsAside) {
            guard Date() < deadline else { throw CancellationError() }
            try commit(key, to: database)
            key += 1
            usleep(1_000)
        }
    }

    @Test(.timeLimit(.minutes(20))) func theCheckpointerStandsAsideForTheWritersCheckpointUntilResumed() throws {
        let path = try temporaryDirectory().appendingPathComponent("store.sqlite").path
        let writer = try Database(DatabaseConfiguration(path: path))
        // As the loop's connection: no checkpoint inside a commit.
        try writer.execute("PRAGMA wal_autocheckpoint = 0")
        try writer.execute("CREATE TABLE rows(key INTEGER PRIMARY KEY, value BLOB NOT NULL)")
        // In a hurry whenever the log holds anything: turn after turn, as through a bulk load,
        // each holding the checkpoint lock while it copies and syncs.
        let checkpointer = try WALCheckpointer(path: path, intervalMilliseconds: 200, hurryAboveBytes: 0, logger: Logger(service: "test"))
        defer { checkpointer.stop() }
        var key = 0
        for round in 1...2 {
            try commitUntilHandedOver(checkpointer, writer, from: &key)
            // Standing aside: however long the writer takes between its commits and its
            // checkpoints, no background turn runs, and each checkpoint copies all.
            let turnsBefore = checkpointer.checkpoints
            for _ in 0..<40 {
                try commit(key, to: writer)
                key += 1
                let result = try passiveCheckpoint(writer)
                #expect(result.busy == 0, "round \(round): the writer's checkpoint found the lock held")
                #expect(result.copied == result.logFrames)
            }
            usleep(50_000)
            #expect(checkpointer.checkpoints == turnsBefore, "round \(round): a turn ran while standing aside")
            #expect(checkpointer.standsAside, "it stands aside until resumed")
            checkpointer.resume()
        }
    }
}
