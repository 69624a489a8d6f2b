import Foundation
import Storage
import Synchronization
import Testing

@testable import ServiceKit

/// The checkpointer's and the timer census's thread: it stops when told, promptly, and at the
/// latest when the worker is let go, so that no failed start leaves a thread on the store.
@Suite struct BackgroundWorkerTests {
    final class Turns: Sendable {
        let count = Atomic<Int>(0)
    }

    /// Waits for `condition`; generous, since a suite run with every core busy starved a
    /// worker's first turn for over a minute.
    func waitFor(_ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(600)
        while !condition() {
            guard Date() < deadline else { throw CancellationError() }
            usleep(1_000)
        }
    }

    @Test func aWorkerLetGoStopsTurning() throws {
        let path = try temporaryDirectory().appendingPathComponent("store.sqlite").path
        let turns = Turns()
        var worker: BackgroundWorker? = try BackgroundWorker(
            name: "test-worker", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: 0
        ) { database in
            _ = try? database.prepare("SELECT 1").queryOne { $0.int64(0) }
            turns.count.add(1, ordering: .relaxed)
            return 1
        }
        try waitFor { turns.count.load(ordering: .relaxed) >= 3 }
        #expect(worker != nil)
        worker = nil
        let afterRelease = turns.count.load(ordering: .relaxed)
        usleep(100_000)
        #expect(turns.count.load(ordering: .relaxed) == afterRelease)
    }

    @Test(.timeLimit(.minutes(20))) func stoppingDoesNotWaitOutALongPause() throws {
        let path = try temporaryDirectory().appendingPathComponent("store.sqlite").path
        let turns = Turns()
        let worker = try BackgroundWorker(
            name: "test-worker", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: 0
        ) { _ in
            turns.count.add(1, ordering: .relaxed)
            return 3_600_000
        }
        try waitFor { turns.count.load(ordering: .relaxed) == 1 }
        let started = Date()
        worker.stop()
        worker.stop()
        // Naps are at most 50 ms; far less than the hour's pause, even on a busy machine.
        #expect(Date().timeIntervalSince(started) < 120)
        #expect(turns.count.load(ordering: .relaxed) == 1)
    }

    struct SetUpFailed: Error {}

    /// A worker whose set-up fails throws, takes no turn, and leaves nothing to wait for: the
    /// loop that started it gets the error rather than hanging in the worker's `deinit`.
    @Test(.timeLimit(.minutes(20))) func aFailedSetUpThrowsWithoutHanging() throws {
        let path = try temporaryDirectory().appendingPathComponent("store.sqlite").path
        let turns = Turns()
        #expect(throws: SetUpFailed.self) {
            _ = try BackgroundWorker(
                name: "test-worker", store: DatabaseConfiguration(path: path), firstTurnAfterMilliseconds: 0,
                setUp: { _ -> Int in throw SetUpFailed() }
            ) { _, _ in
                turns.count.add(1, ordering: .relaxed)
                return 1
            }
        }
        #expect(turns.count.load(ordering: .relaxed) == 0)
        // A store that cannot be opened fails the same way.
        #expect(throws: (any Error).self) {
            _ = try BackgroundWorker(
                name: "test-worker", store: DatabaseConfiguration(path: "/nonexistent-directory/store.sqlite"), firstTurnAfterMilliseconds: 0
            ) { _ in 1 }
        }
    }
}
