import Foundation
import Synchronization
import Testing

@testable import ServiceKit

@Suite struct HandOffThreadTests {
    /// What the jobs saw, shared with the thread that runs them.
    final class Seen: Sendable {
        let threads = Mutex<[UInt]>([])
        let values = Mutex<[Int]>([])
    }

    @Test func eachJobRunsOnTheThreadAndIsDoneWhenWaitReturns() {
        let worker = HandOffThread(name: "test-hand-off")
        let seen = Seen()
        let caller = UInt(pthread_self())
        for value in 0..<200 {
            worker.handOver {
                // Slow enough that a wait that did not wait would see the job unfinished.
                if value % 50 == 0 { usleep(20_000) }
                seen.threads.withLock { $0.append(UInt(pthread_self())) }
                seen.values.withLock { $0.append(value) }
            }
            worker.wait()
            #expect(seen.values.withLock { $0.last } == value, "the job handed over is done once wait returns")
        }
        worker.stop()
        let threads = Set(seen.threads.withLock { $0 })
        #expect(threads.count == 1, "every job ran on the one thread")
        #expect(!threads.contains(caller), "never on the caller's")
        #expect(seen.values.withLock { $0 } == Array(0..<200))
    }

    @Test func stoppingWaitsForTheJobInHandAndEndsTheThread() {
        let worker = HandOffThread(name: "test-hand-off")
        let seen = Seen()
        worker.handOver {
            usleep(100_000)
            seen.values.withLock { $0.append(1) }
        }
        worker.stop()
        #expect(seen.values.withLock { $0 } == [1], "the job in hand ran to its end before stop returned")
        // Stopping again, and waiting with nothing handed over, return at once.
        worker.stop()
        worker.wait()
    }
}
