import Messaging
import Testing

@testable import ServiceKit

@Suite struct EventTimeMergerTests {
    let a0 = TopicPartition(topic: "a", partition: 0)
    let b0 = TopicPartition(topic: "b", partition: 0)
    let a1 = TopicPartition(topic: "a", partition: 1)
    let b1 = TopicPartition(topic: "b", partition: 1)

    func drain(_ merger: inout EventTimeMerger<String>, now: Int64 = 0) -> [String] {
        var out: [String] = []
        while let next = merger.next(now: now) { out.append(next.item) }
        return out
    }

    @Test func appliesATasksPartitionsInEventTimeOrder() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 1000)
        merger.assign([a0, b0])
        merger.add("a@10", time: 10, rank: 0, from: a0)
        merger.add("a@30", time: 30, rank: 0, from: a0)
        merger.add("b@20", time: 20, rank: 0, from: b0)
        merger.add("b@40", time: 40, rank: 0, from: b0)
        // b@40 must wait: once a0 is empty it may still hold something earlier.
        #expect(drain(&merger) == ["a@10", "b@20", "a@30"])
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["b@40"])
        // The end of a partition is usually reported while its last records are still buffered.
        merger.add("a@50", time: 50, rank: 0, from: a0)
        merger.add("b@60", time: 60, rank: 0, from: b0)
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["a@50", "b@60"])
        // A new record clears the mark: a0 may hold more, so b@70 waits again.
        merger.add("a@65", time: 65, rank: 0, from: a0)
        merger.add("b@70", time: 70, rank: 0, from: b0)
        #expect(drain(&merger) == ["a@65"])
    }

    @Test func equalTimesGoByRankThenArrival() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.add("grant", time: 5, rank: 5, from: b0)
        merger.add("order", time: 5, rank: 1, from: a0)
        merger.add("refund", time: 5, rank: 2, from: a0)
        merger.add("grant-2", time: 5, rank: 5, from: b0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["order", "refund", "grant", "grant-2"])
    }

    @Test func waitsForAnEmptyPartitionUntilTheIdleTimePasses() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 500)
        merger.assign([a0, b0])
        merger.add("a@10", time: 10, rank: 0, from: a0)
        #expect(merger.next(now: 1000) == nil)  // b0 not read to its end yet: wait
        #expect(merger.next(now: 1499) == nil)
        #expect(merger.next(now: 1500)?.item == "a@10")
    }

    @Test func tasksAreIndependent() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 10_000)
        merger.assign([a0, b0, a1, b1])
        merger.add("t1-a", time: 50, rank: 0, from: a1)
        merger.add("t1-b", time: 60, rank: 0, from: b1)
        merger.add("t0-a", time: 10, rank: 0, from: a0)  // task 0 waits for b0
        merger.markCaughtUp(a1)
        merger.markCaughtUp(b1)
        #expect(drain(&merger) == ["t1-a", "t1-b"])
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["t0-a"])
    }

    @Test func revokingDropsBufferedRecords() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.add("x", time: 1, rank: 0, from: a0)
        merger.revoke([a0, b0])
        #expect(merger.bufferedCount == 0)
        #expect(merger.assignedTasks.isEmpty)
        merger.add("ignored", time: 1, rank: 0, from: a0)
        #expect(merger.bufferedCount == 0)
    }
}
