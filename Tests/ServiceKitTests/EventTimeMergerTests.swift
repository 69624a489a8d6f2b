import Messaging
import Testing

@testable import ServiceKit

@Suite struct EventTimeMergerTests {
    let a0 = TopicPartition(topic: "a", partition: 0)
    let b0 = TopicPartition(topic: "b", partition: 0)
    let a1 = TopicPartition(topic: "a", partition: 1)
    let b1 = TopicPartition(topic: "b", partition: 1)
    let c0 = TopicPartition(topic: "cmd", partition: 0)

    func key(_ time: Int64, _ rank: Int = 0, _ id: String) -> MergeKey { MergeKey(time: time, rank: rank, id: id) }

    func drain(_ merger: inout EventTimeMerger<String>, now: Int64 = 0) -> [String] {
        var out: [String] = []
        while let next = merger.next(now: now) { out.append(next.item) }
        return out
    }

    @Test func appliesPartitionsInEventTimeOrder() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.add("a@30", key: key(30, 0, "a30"), offset: 1, from: a0)
        merger.add("b@20", key: key(20, 0, "b20"), offset: 0, from: b0)
        merger.add("b@40", key: key(40, 0, "b40"), offset: 1, from: b0)
        // b@40 must wait: once a0 is empty it may still hold something earlier.
        #expect(drain(&merger) == ["a@10", "b@20", "a@30"])
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["b@40"])
        // The end of a partition is usually reported while its last records are still buffered.
        merger.add("a@50", key: key(50, 0, "a50"), offset: 2, from: a0)
        merger.add("b@60", key: key(60, 0, "b60"), offset: 2, from: b0)
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["a@50", "b@60"])
        // A new record clears the mark: a0 may hold more, so b@70 waits again.
        merger.add("a@65", key: key(65, 0, "a65"), offset: 3, from: a0)
        merger.add("b@70", key: key(70, 0, "b70"), offset: 3, from: b0)
        #expect(drain(&merger) == ["a@65"])
    }

    @Test func equalTimesGoByRankThenEventID() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.add("grant-z", key: key(5, 5, "z"), offset: 0, from: b0)
        merger.add("order", key: key(5, 1, "o"), offset: 0, from: a0)
        merger.add("refund", key: key(5, 2, "r"), offset: 1, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["order", "refund", "grant-z"])
        merger.add("x-b", key: key(9, 3, "x"), offset: 1, from: b0)
        merger.add("y-a", key: key(9, 3, "y"), offset: 2, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["x-b", "y-a"])
    }

    @Test func aPartitionBehindItsEndHoldsTheMergeHoweverLong() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 500)
        merger.assign([a0, b0], positions: [b0: 3])
        merger.add("a@10", key: key(10, 0, "a"), offset: 0, from: a0)
        merger.markCaughtUp(a0)
        // b0's end is not known yet: it may hold something earlier, so wait, with no time limit.
        #expect(merger.next(now: 1000) == nil)
        #expect(merger.next(now: 10_000_000) == nil)
        #expect(merger.heldPartitions(now: 10_000_500).map(\.partition) == [b0])
        #expect(merger.heldPartitions(now: 10_000_500).map(\.milliseconds) == [9_999_500])
        // The broker says b0 ends at 5 while we stand at 3: two records are on their way.
        merger.updateEnd(b0, to: 5)
        #expect(merger.next(now: 20_000_000) == nil)
        // Read to its end: now only the grace is left, counted from when it was found empty.
        merger.markCaughtUp(b0, at: 5)
        #expect(merger.next(now: 30_000_000) == nil)
        #expect(merger.heldPartitions(now: 30_000_000).map(\.inGrace) == [true])
        #expect(merger.next(now: 30_000_499) == nil)
        #expect(merger.next(now: 30_000_500)?.item == "a@10")
        #expect(merger.heldPartitions(now: 30_000_500).isEmpty)
    }

    @Test func recordsFetchedButNotYetPolledHoldTheMerge() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0], positions: [a0: 0, b0: 0])
        merger.markCaughtUp(b0, at: 0)
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.add("a@20", key: key(20, 0, "a20"), offset: 1, from: a0)
        merger.markCaughtUp(a0, at: 2)
        #expect(merger.next(now: 0)?.item == "a@10")
        // A fetch reported b0's end at 1: its record is in the client's queue, not here yet.
        merger.updateEnd(b0, to: 1)
        #expect(merger.next(now: 0) == nil)
        merger.add("b@15", key: key(15, 0, "b15"), offset: 0, from: b0)
        #expect(drain(&merger) == ["b@15", "a@20"])
        // A stale end (below what was read) changes nothing.
        merger.updateEnd(b0, to: 0)
        #expect(merger.committableOffsets[b0] == 1)
    }

    @Test func recordsPolledAndBeingDecodedHoldTheMergeOnceTheirPartitionIsDrained() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0], positions: [a0: 0, b0: 0])
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.markCaughtUp(a0, at: 1)
        merger.add("b@20", key: key(20, 0, "b20"), offset: 0, from: b0)
        merger.add("b@40", key: key(40, 0, "b40"), offset: 1, from: b0)
        merger.markCaughtUp(b0, at: 2)
        // The next poll brought a0's offsets 1 and 2 (a@30 among them); they are being decoded
        // beside the loop while it drains what the merge holds.
        merger.expectRecords(a0, below: 3)
        // Without that, a0 would count as read to its end, 1, and b@20 and b@40 would go
        // before a@30.
        #expect(drain(&merger) == ["a@10"], "b@20 waits: a0 is behind the end its polled records make")
        merger.add("a@30", key: key(30, 0, "a30"), offset: 1, from: a0)
        merger.add("a@50", key: key(50, 0, "a50"), offset: 2, from: a0)
        #expect(drain(&merger) == ["b@20", "a@30", "b@40", "a@50"])
        // An end already known to be further is never lowered.
        merger.updateEnd(a0, to: 9)
        merger.expectRecords(a0, below: 4)
        merger.add("b@60", key: key(60, 0, "b60"), offset: 2, from: b0)
        #expect(drain(&merger).isEmpty, "a0 is still behind its end, 9")
    }

    @Test func aRecordPastTheKnownEndMakesTheEndUnknownAgain() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.markCaughtUp(b0, at: 4)
        merger.add("b@5", key: key(5, 0, "b5"), offset: 4, from: b0)
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.markCaughtUp(a0, at: 1)
        // b0 has grown past the end last reported: it may hold more before a@10.
        #expect(drain(&merger) == ["b@5"])
        merger.markCaughtUp(b0, at: 5)
        #expect(drain(&merger) == ["a@10"])
    }

    @Test func servicePartitionsReadToTheirEndHaveNoGrace() {
        var merger = EventTimeMerger<String>(topics: ["a", "ledger"], serviceTopics: ["ledger"], idleMilliseconds: 60_000)
        merger.assign([a0, TopicPartition(topic: "ledger", partition: 0)])
        merger.markCaughtUp(TopicPartition(topic: "ledger", partition: 0), at: 0)
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.markCaughtUp(a0, at: 1)
        #expect(merger.next(now: 0)?.item == "a@10")
    }

    @Test func allTasksOfTheInstanceShareOneOrder() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0, a1, b1])
        merger.add("t1-a@50", key: key(50, 0, "1a"), offset: 0, from: a1)
        merger.add("t0-a@10", key: key(10, 0, "0a"), offset: 0, from: a0)
        merger.add("t0-b@60", key: key(60, 0, "0b"), offset: 0, from: b0)
        merger.markCaughtUp(a1)
        merger.markCaughtUp(b1)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["t0-a@10", "t1-a@50", "t0-b@60"])
        #expect(merger.assignedTasks == [0, 1])
    }

    @Test func sortedTopicsAreBufferedByKeyNotArrival() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([a0, c0])
        merger.add("cmd@30", key: key(30, 5, "c30"), offset: 0, from: c0)
        merger.add("cmd@10", key: key(10, 5, "c10"), offset: 1, from: c0)
        merger.add("cmd@20", key: key(20, 5, "c20"), offset: 2, from: c0)
        merger.add("a@15", key: key(15, 0, "a15"), offset: 0, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        #expect(drain(&merger) == ["cmd@10", "a@15", "cmd@20", "cmd@30"])
    }

    @Test func committableOffsetsStopAtTheFirstRecordNotHandedOut() {
        var merger = EventTimeMerger<String>(topics: ["cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([c0])
        merger.add("late", key: key(30, 5, "c30"), offset: 7, from: c0)
        merger.add("early", key: key(10, 5, "c10"), offset: 8, from: c0)
        #expect(merger.committableOffsets[c0] == 7)
        merger.markCaughtUp(c0)
        #expect(merger.next(now: 0)?.item == "early")
        // Offset 8 is done but 7 is not: storing 9 would skip 7 after a restart.
        #expect(merger.committableOffsets[c0] == 7)
        #expect(merger.next(now: 0)?.item == "late")
        #expect(merger.committableOffsets[c0] == 9)
    }

    @Test func lookalikeIdsAreTwoRecordsInTheirBytesOrderAndTwoEchoes() {
        // One `String`, two ids: "Zoé" composed and decomposed ("e" sorts before "é" by bytes).
        let composed = "credit/Zo\u{E9}"
        let decomposed = "credit/Zoe\u{301}"
        #expect(key(5, 1, composed) != key(5, 1, decomposed))
        for composedFirst in [true, false] {
            var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
            merger.assign([a0, b0])
            merger.add("composed", key: key(5, 1, composed), offset: 0, from: composedFirst ? a0 : b0)
            merger.add("decomposed", key: key(5, 1, decomposed), offset: 0, from: composedFirst ? b0 : a0)
            merger.markCaughtUp(a0)
            merger.markCaughtUp(b0)
            #expect(drain(&merger) == ["decomposed", "composed"], "whichever partition holds which")
        }
        // Two commands awaited back: the echo of one does not stand for the other.
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([a0, c0])
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        merger.expectEcho(key(20, 5, composed), on: c0)
        merger.expectEcho(key(20, 5, decomposed), on: c0)
        #expect(merger.pendingEchoes == 2)
        merger.add("a@25", key: key(25, 0, "a25"), offset: 0, from: a0)
        merger.markCaughtUp(a0)
        merger.add("composed", key: key(20, 5, composed), offset: 0, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.pendingEchoes == 1)
        #expect(drain(&merger).isEmpty, "the decomposed command, still on its way, sorts first")
        merger.add("decomposed", key: key(20, 5, decomposed), offset: 1, from: c0)
        merger.markCaughtUp(c0)
        #expect(drain(&merger) == ["decomposed", "composed", "a@25"])
    }

    @Test func recordsWaitForAnEchoThatSortsBeforeThem() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([a0, c0])
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        // A command this instance sent at time 20 is on its way back.
        merger.expectEcho(key(20, 5, "credit-1"), on: c0)
        merger.add("a@15", key: key(15, 0, "a15"), offset: 0, from: a0)
        merger.add("a@25", key: key(25, 0, "a25"), offset: 1, from: a0)
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["a@15"])
        #expect(merger.pendingEchoes == 1)
        merger.add("credit", key: key(20, 5, "credit-1"), offset: 0, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.pendingEchoes == 0)
        #expect(drain(&merger) == ["credit", "a@25"])
        // An echo for a partition another instance owns is not waited for here.
        merger.expectEcho(key(1, 5, "elsewhere"), on: TopicPartition(topic: "cmd", partition: 3))
        #expect(merger.pendingEchoes == 0)
    }

    /// Instances sharing the store: records wait at the bound the other instances' tasks set,
    /// and a command sent to one of those tasks lowers it at once.
    @Test func recordsWaitForTheTasksOfOtherInstances() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([a0, c0])
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.add("a@30", key: key(30, 0, "a30"), offset: 1, from: a0)
        merger.add("a@50", key: key(50, 0, "a50"), offset: 2, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        merger.otherTasksBound = key(30, 0, "a30")
        #expect(drain(&merger, now: 7) == ["a@10", "a@30"], "up to the bound, itself included")
        #expect(merger.heldByOtherTasks(now: 10) == 3)
        // This instance sends a command at 40 to a task it does not own: a@50 may come after
        // what that command causes there.
        merger.otherTasksBound = key(60, 0, "x")
        merger.expectEcho(key(40, 5, "credit"), on: TopicPartition(topic: "cmd", partition: 3))
        #expect(merger.otherTasksBound == key(40, 5, "credit"))
        #expect(drain(&merger) == [])
        merger.otherTasksBound = nil
        #expect(merger.heldByOtherTasks(now: 10) == nil)
        #expect(drain(&merger) == ["a@50"])
    }

    /// A task of a store of its own taken on again reads its command partition again from its
    /// stored offset, while its book, stored as of the marks read past that offset, no longer
    /// holds it for an answer it had read there: until that partition has been read as far as
    /// it went at the assignment, the answer may be behind a later command and nothing of the
    /// task is handed out.
    @Test func aTakenOnTaskWaitsForItsPeersPartitionToBeReadToItsFirstEnd() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.peersWriteSortedPartitions = true
        merger.assign([a0, c0], positions: [a0: 0, c0: 5], ends: [a0: 1, c0: 8])
        merger.otherTasksBound = key(100, 0, "x")
        merger.add("a@38", key: key(38, 0, "a38"), offset: 0, from: a0)
        merger.markCaughtUp(a0)
        merger.add("cmd@80", key: key(80, 0, "later command"), offset: 5, from: c0)
        #expect(drain(&merger) == [], "the answer at 33 may be among offsets 6 and 7")
        merger.add("cmd@33", key: key(33, 0, "answer"), offset: 6, from: c0)
        merger.add("cmd@90", key: key(90, 0, "another"), offset: 7, from: c0)
        #expect(drain(&merger) == ["cmd@33", "a@38", "cmd@80", "cmd@90"])
    }

    /// The hold by other instances lasts only while the merge finds it so, and a partition read
    /// to its end, in its grace or not, leaves the frontier to the rest.
    @Test func theHoldByOtherInstancesEndsWithItsCauseAndGraceIsNotAFrontier() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 60_000)
        merger.assign([a0, b0])
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        merger.otherTasksBound = key(5, 0, "x")
        #expect(drain(&merger, now: 1) == [])
        #expect(merger.heldByOtherTasks(now: 3) == 2)
        #expect(merger.frontier(of: 0) == key(10, 0, "a10"), "b0 is read to its end: its grace is this instance's own")
        merger.otherTasksBound = key(50, 0, "x")
        #expect(drain(&merger, now: 10_000) == [], "this instance's own grace for b0")
        #expect(drain(&merger, now: 70_000) == ["a@10"])
        #expect(merger.heldByOtherTasks(now: 70_001) == nil, "nothing left is held by the bound")
        merger.otherTasksBound = key(5, 0, "x")
        merger.add("a@20", key: key(20, 0, "a20"), offset: 1, from: a0)
        merger.markCaughtUp(a0)
        #expect(drain(&merger, now: 70_002) == [])
        merger.revoke([a0, b0])
        #expect(merger.heldByOtherTasks(now: 70_003) == nil)
    }

    /// What a task's peer marks promise: the earliest of its records that may send another
    /// task a command. The others count for nothing, and a partition's records not read yet
    /// come after its latest buffered one (what it holds for itself is still every record).
    @Test func aPeerFigureCountsOnlyTheRecordsThatReachOtherTasks() {
        var merger = EventTimeMerger<String>(topics: ["a", "b", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.reachesOtherTasks = { $0.hasPrefix("send") }
        merger.assign([a0, b0, c0])
        merger.markCaughtUp(c0)
        merger.add("order@10", key: key(10, 1, "o10"), offset: 0, from: a0)
        merger.add("send@30", key: key(30, 4, "t30"), offset: 1, from: a0)
        merger.add("order@40", key: key(40, 1, "o40"), offset: 2, from: a0)
        merger.add("order@20", key: key(20, 1, "o20"), offset: 0, from: b0)
        merger.add("order@25", key: key(25, 1, "o25"), offset: 1, from: b0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(b0)
        #expect(merger.frontier(of: 0) == key(10, 1, "o10"), "every record, as before")
        #expect(merger.frontier(of: 0, onlyWhatReachesOtherTasks: true) == key(30, 4, "t30"))
        // b0 has records not read yet: they may send, from after its latest buffered on.
        merger.add("order@26", key: key(26, 1, "o26"), offset: 2, from: b0)
        #expect(merger.frontier(of: 0, onlyWhatReachesOtherTasks: true) == key(26, 1, "o26"))
        merger.markCaughtUp(b0)
        // A command waiting on the sorted partition may send (its answer) too.
        merger.add("send-cmd@28", key: key(28, 5, "c28"), offset: 0, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.frontier(of: 0, onlyWhatReachesOtherTasks: true) == key(28, 5, "c28"))
        #expect(drain(&merger) == ["order@10", "order@20", "order@25", "order@26", "send-cmd@28", "send@30", "order@40"])
        // Nothing left that may send: the task holds no one.
        #expect(merger.frontier(of: 0, onlyWhatReachesOtherTasks: true) == .highest)
        // A record read past the end last reported: a0's end is not known, so what follows may send.
        merger.add("order@50", key: key(50, 1, "o50"), offset: 3, from: a0)
        #expect(merger.frontier(of: 0, onlyWhatReachesOtherTasks: true) == key(50, 1, "o50"))
    }

    /// A command partition taken on counts as unknown until it has been read as far as it went
    /// when it was assigned: what its last owner read (and answered for) there, no sender
    /// covers any more, and its senders write it in no common order. From then on what it has
    /// not read is its senders' to cover.
    @Test func aCommandPartitionTakenOnCountsUntilReadToItsEndAtTheAssignment() {
        var merger = EventTimeMerger<String>(topics: ["cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.reachesOtherTasks = { _ in true }
        merger.assign([c0])
        merger.updateEnd(c0, to: 3)
        merger.add("credit@50", key: key(50, 5, "c50"), offset: 0, from: c0)
        #expect(merger.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == .lowest,
                "offsets 1 and 2 may hold an earlier command its last owner had answered for")
        merger.add("credit@70", key: key(70, 5, "c70"), offset: 1, from: c0)
        merger.add("credit@60", key: key(60, 5, "c60"), offset: 2, from: c0)
        merger.updateEnd(c0, to: 9)
        #expect(merger.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == key(50, 5, "c50"),
                "read past its end at the assignment: the rest is its senders' to cover")
        merger.revoke([c0])
        merger.assign([c0])
        merger.updateEnd(c0, to: 12)
        #expect(merger.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == .lowest,
                "assigned again: the end it went to then counts anew")
    }

    /// The end the broker gave at the assignment is the first end, whatever the client's cached
    /// watermark says afterwards: one left from an earlier assignment here can be behind what
    /// the last owner read.
    @Test func theEndAskedOfTheBrokerAtTheAssignmentIsTheFirstEnd() {
        var merger = EventTimeMerger<String>(topics: ["cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.reachesOtherTasks = { _ in true }
        merger.assign([c0], positions: [c0: 0], ends: [c0: 3])
        merger.add("credit@50", key: key(50, 5, "c50"), offset: 0, from: c0)
        merger.updateEnd(c0, to: 1)  // a stale cached watermark: as if read to its end
        #expect(merger.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == .lowest,
                "offsets 1 and 2 were there at the assignment")
        merger.add("credit@60", key: key(60, 5, "c60"), offset: 1, from: c0)
        merger.add("credit@55", key: key(55, 5, "c55"), offset: 2, from: c0)
        #expect(merger.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == key(50, 5, "c50"))
        // A rebuild that stops reading before that end needs to read only that far.
        var capped = EventTimeMerger<String>(topics: ["cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        capped.reachesOtherTasks = { _ in true }
        capped.assign([c0], positions: [c0: 0], ends: [c0: 3])
        capped.capRead(c0, at: 1)
        capped.add("credit@50", key: key(50, 5, "c50"), offset: 0, from: c0)
        #expect(capped.frontier(of: 0, unreadCountsNothingOn: ["cmd"], onlyWhatReachesOtherTasks: true) == key(50, 5, "c50"))
    }

    /// What a task's owner commits for the other instances: the earliest record it holds, or
    /// nothing known while a partition has records not read yet or a producer has not promised.
    @Test func aTasksFrontierIsTheEarliestRecordItHasLeft() {
        var merger = EventTimeMerger<String>(
            topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0, awaitedProducers: ["cmd": ["tiers"]])
        let c1 = TopicPartition(topic: "cmd", partition: 1)
        merger.assign([a0, c0, a1, c1])
        #expect(merger.frontier(of: 0) == .lowest, "nothing read yet")
        merger.markCaughtUp(a1)
        merger.markCaughtUp(c1)
        merger.add("a@20", key: key(20, 0, "a20"), offset: 0, from: a0)
        merger.add("cmd@15", key: key(15, 5, "g15"), offset: 0, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.frontier(of: 0) == .lowest, "tiers has promised nothing yet")
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 12, idle: false), offset: 1, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.frontier(of: 0) == key(12, .min, ""), "tiers may still send at 12")
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 100, idle: false), offset: 2, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.frontier(of: 0) == key(15, 5, "g15"))
        #expect(merger.next(now: 0)?.item == "cmd@15")
        #expect(merger.frontier(of: 0) == key(20, 0, "a20"))
        #expect(merger.next(now: 0)?.item == "a@20")
        #expect(merger.frontier(of: 0) == .lowest, "a0's end is not known")
        merger.markCaughtUp(a0)
        #expect(merger.frontier(of: 0) == key(100, .min, ""))
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 100, idle: true, positions: ["a": 1]), offset: 3, from: c0)
        merger.markCaughtUp(c0)
        #expect(merger.frontier(of: 0) == .highest, "everything read, and tiers idle")
    }

    @Test func revokingDropsBufferedRecordsAndEchoes() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.add("x", key: key(1, 0, "x"), offset: 0, from: a0)
        merger.expectEcho(key(5, 5, "e"), on: b0)
        merger.revoke([a0, b0])
        #expect(merger.bufferedCount == 0)
        #expect(merger.pendingEchoes == 0)
        #expect(merger.assignedTasks.isEmpty)
        merger.add("ignored", key: key(1, 0, "i"), offset: 1, from: a0)
        #expect(merger.bufferedCount == 0)
    }

    /// A rebuild (`loyalty replay`) reads the service's own earlier commands before it sends
    /// them again: each waits out of the merge until it is sent, then takes its place by key.
    @Test func aCommandReadBeforeItIsSentWaitsUntilItIsSent() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.assign([a0, c0])
        merger.add("credit@20", key: key(20, 5, "credit"), offset: 0, from: c0, heldUntilSent: true)
        merger.add("grant@15", key: key(15, 5, "grant"), offset: 1, from: c0)
        merger.add("transfer@20", key: key(20, 1, "transfer"), offset: 0, from: a0)
        merger.add("order@30", key: key(30, 1, "order"), offset: 1, from: a0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        #expect(merger.heldCount == 1)
        // The credit sorts before the order, but nothing has sent it yet.
        #expect(merger.next(now: 0)?.item == "grant@15")
        #expect(merger.next(now: 0)?.item == "transfer@20")
        #expect(merger.committableOffsets[c0] == 0, "the held command's offset is not committed")
        // Applying the transfer sends the credit (the loop tells the merge at once): it joins
        // the merge ahead of the order.
        merger.expectEcho(key(20, 5, "credit"), on: c0)
        #expect(merger.heldCount == 0 && merger.pendingEchoes == 0)
        #expect(drain(&merger) == ["credit@20", "order@30"])
        #expect(merger.committableOffsets[c0] == 2)
        // Sent before it is read: the echo waits for it as usual.
        merger.add("transfer@40", key: key(40, 1, "transfer2"), offset: 2, from: a0)
        merger.expectEcho(key(40, 5, "credit2"), on: c0)
        merger.add("order@50", key: key(50, 1, "order2"), offset: 3, from: a0)
        merger.markCaughtUp(a0)
        #expect(drain(&merger) == ["transfer@40"])
        merger.add("credit@40", key: key(40, 5, "credit2"), offset: 2, from: c0, heldUntilSent: true)
        merger.markCaughtUp(c0)
        #expect(drain(&merger) == ["credit@40", "order@50"])
    }

    /// An outbox republished after a crash put a command on the topic twice: both copies are
    /// merged once it is sent (the second is then a duplicate, as it was the first time), and a
    /// copy read after the send is never held.
    @Test func everyCopyOfAResentCommandIsReleased() {
        var merger = EventTimeMerger<String>(topics: ["a", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0)
        merger.rebuilding = true
        merger.assign([a0, c0])
        merger.add("credit", key: key(20, 5, "credit"), offset: 0, from: c0, heldUntilSent: true)
        merger.add("credit again", key: key(20, 5, "credit"), offset: 1, from: c0, heldUntilSent: true)
        #expect(merger.heldCount == 2)
        merger.expectEcho(key(20, 5, "credit"), on: c0)
        merger.markCaughtUp(a0)
        merger.markCaughtUp(c0)
        #expect(Set(drain(&merger)) == ["credit", "credit again"])
        #expect(merger.committableOffsets[c0] == 2)
        merger.add("credit a third time", key: key(20, 5, "credit"), offset: 2, from: c0, heldUntilSent: true)
        #expect(merger.heldCount == 0)
        merger.markCaughtUp(c0)
        #expect(drain(&merger) == ["credit a third time"])
    }

    /// A rebuild reads a partition only as far as the store it reproduces: the end counts as
    /// there, whatever the broker says.
    @Test func aCappedPartitionEndsWhereTheCapIs() {
        var merger = EventTimeMerger<String>(topics: ["a", "b"], idleMilliseconds: 0)
        merger.assign([a0, b0])
        merger.capRead(a0, at: 1)
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.updateEnd(a0, to: 50)
        merger.add("b@20", key: key(20, 0, "b20"), offset: 0, from: b0)
        merger.markCaughtUp(b0)
        #expect(drain(&merger) == ["a@10", "b@20"], "a0 read to its cap holds nothing")
        merger.markCaughtUp(a0, at: 50)
        #expect(merger.position(of: a0) == 1)
    }

    @Test func aRecordReadPastMovesThePositionWithoutBuffering() {
        var merger = EventTimeMerger<String>(topics: ["a"], idleMilliseconds: 0)
        merger.assign([a0])
        merger.add("a@10", key: key(10, 0, "a10"), offset: 0, from: a0)
        merger.readPast(1, from: a0)
        merger.readPast(2, from: a0)
        #expect(merger.position(of: a0) == 3)
        #expect(merger.bufferedCount == 1)
        merger.markCaughtUp(a0, at: 3)
        #expect(drain(&merger) == ["a@10"])
        #expect(merger.committableOffsets[a0] == 3)
    }
}
