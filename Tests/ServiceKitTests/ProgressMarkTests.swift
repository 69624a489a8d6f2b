import LoyaltyDomain
import Messaging
import Testing

@testable import ServiceKit

/// Progress between services: a producer's promise per task, and a consumer that applies a
/// record only once every producer it waits for has promised past it.
@Suite struct ProgressMarkTests {
    let shop0 = TopicPartition(topic: "shop", partition: 0)
    let cmd0 = TopicPartition(topic: "cmd", partition: 0)
    let shop1 = TopicPartition(topic: "shop", partition: 1)
    let cmd1 = TopicPartition(topic: "cmd", partition: 1)

    func key(_ time: Int64, _ rank: Int = 0, _ id: String) -> MergeKey { MergeKey(time: time, rank: rank, id: id) }

    func drain(_ merger: inout EventTimeMerger<String>) -> [String] {
        var out: [String] = []
        while let next = merger.next(now: 0) { out.append(next.item) }
        return out
    }

    func consumer() -> EventTimeMerger<String> {
        var merger = EventTimeMerger<String>(
            topics: ["shop", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0, awaitedProducers: ["cmd": ["tiers", "campaigns"]])
        merger.assign([shop0, cmd0, shop1, cmd1], positions: [shop0: 0, cmd0: 0, shop1: 0, cmd1: 0])
        merger.markCaughtUp(shop1, at: 0)
        merger.markCaughtUp(cmd1, at: 0)
        return merger
    }

    @Test func aRecordWaitsUntilEveryProducerHasPromisedPastItsTime() {
        var merger = consumer()
        merger.add("order@10", key: key(10, 1, "o10"), offset: 0, from: shop0)
        merger.add("order@30", key: key(30, 1, "o30"), offset: 1, from: shop0)
        merger.markCaughtUp(shop0)
        merger.markCaughtUp(cmd0, at: 0)
        #expect(drain(&merger).isEmpty, "no producer has said anything yet")
        #expect(merger.progressWaits(now: 5).map(\.producer) == ["campaigns"])
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 20, idle: false), offset: 0, from: cmd0)
        #expect(drain(&merger).isEmpty, "campaigns has not")
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 10, idle: false), offset: 1, from: cmd0)
        #expect(drain(&merger).isEmpty, "a promise of 10 that is not idle does not cover a record of 10")
        // The grant tiers sends for the order at 10 arrives before its next promise.
        merger.add("grant@10", key: key(10, 5, "g10"), offset: 2, from: cmd0)
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 25, idle: false), offset: 3, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["order@10", "grant@10"], "the grant in its place; order@30 waits for tiers past 30")
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 30, idle: true), offset: 4, from: cmd0)
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 30, idle: true), offset: 5, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["order@30"], "idle producers promise their stream time itself")
        #expect(merger.committableOffsets[cmd0] == 6, "marks are read past like records")
    }

    /// The loop reads a partition on, never pausing it, while the merge waits there for a
    /// producer's promise; once a mark read gives it, the partition may be paused again, so a
    /// producer far ahead is held in Kafka rather than in the consumer's memory.
    @Test func aPartitionIsReadOnForAPromiseOnlyUntilAMarkGivesIt() {
        var merger = EventTimeMerger<String>(
            topics: ["shop", "out"], idleMilliseconds: 0, awaitedProducers: ["out": ["campaigns"]])
        let out0 = TopicPartition(topic: "out", partition: 0)
        merger.assign([shop0, out0], positions: [shop0: 0, out0: 0])
        merger.add("registered@10", key: key(10, 1, "r10"), offset: 0, from: shop0)
        merger.add("registered@20", key: key(20, 1, "r20"), offset: 1, from: shop0)
        merger.markCaughtUp(shop0)
        merger.add("reward@10", key: key(10, 9, "w10"), offset: 0, from: out0)
        #expect(drain(&merger).isEmpty, "campaigns has promised nothing")
        #expect(merger.waitsForProgress(on: out0))
        #expect(!merger.waitsForProgress(on: shop0), "only the partition the promise comes on")

        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 5, idle: false), offset: 1, from: out0)
        #expect(merger.waitsForProgress(on: out0), "a promise short of the record's time")
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 15, idle: false), offset: 2, from: out0)
        #expect(!merger.waitsForProgress(on: out0), "read far enough: the partition may be paused before the merge is asked again")

        #expect(drain(&merger) == ["registered@10", "reward@10"])
        #expect(merger.waitsForProgress(on: out0), "registered@20 needs a promise past 20: read on again")
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 20, idle: true), offset: 3, from: out0)
        #expect(!merger.waitsForProgress(on: out0), "an idle producer's stream time covers its own time")
        merger.markCaughtUp(out0)
        #expect(drain(&merger) == ["registered@20"])
        #expect(!merger.waitsForProgress(on: out0))

        // Held by the same producer for a later record, then for an earlier one that arrived
        // meanwhile: the time waited for follows the record the merge would apply next.
        merger.add("registered@40", key: key(40, 1, "r40"), offset: 2, from: shop0)
        #expect(drain(&merger).isEmpty && merger.waitsForProgress(on: out0))
        merger.add("reward@30", key: key(30, 9, "w30"), offset: 4, from: out0)
        #expect(drain(&merger).isEmpty)
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 35, idle: false), offset: 5, from: out0)
        #expect(!merger.waitsForProgress(on: out0), "35 promises past 30, the record now waiting")
    }

    /// A partition carrying the marks of two producers is read on until both have promised.
    @Test func aPartitionWithTwoProducersIsReadOnUntilBothHavePromised() {
        var merger = EventTimeMerger<String>(
            topics: ["shop", "out"], idleMilliseconds: 0, awaitedProducers: ["out": ["campaigns", "tiers"]])
        let out0 = TopicPartition(topic: "out", partition: 0)
        merger.assign([shop0, out0], positions: [shop0: 0, out0: 0])
        merger.add("order@100", key: key(100, 1, "o100"), offset: 0, from: shop0)
        merger.markCaughtUp(shop0)
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 50, idle: false), offset: 0, from: out0)
        #expect(drain(&merger).isEmpty)
        #expect(merger.carriesProgress(out0) && !merger.carriesProgress(shop0))
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 120, idle: false), offset: 1, from: out0)
        #expect(merger.waitsForProgress(on: out0), "campaigns has promised past 100, tiers only 50")
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 110, idle: false), offset: 2, from: out0)
        #expect(!merger.waitsForProgress(on: out0))
        merger.markCaughtUp(out0)
        #expect(drain(&merger) == ["order@100"])
    }

    @Test func anIdleProducerThatHasReadWhatTheConsumerHasCoversEveryTime() {
        let idle = ProgressMark(producer: "tiers", task: 0, time: 40, idle: true, positions: ["shop": 12])
        let unplaced = ProgressMark(producer: "tiers", task: 0, time: 40, idle: true)
        #expect(unplaced.admits(40, readTo: [:]) && !unplaced.admits(41, readTo: [:]), "without positions, the stream time itself")
        #expect(idle.admits(99_999, readTo: ["shop": 12, "cmd": 70]), "the consumer has read nothing the producer has not")
        #expect(!idle.admits(99_999, readTo: ["shop": 13]), "a shop record the producer has not read yet may bring a grant")
        let busy = ProgressMark(producer: "tiers", task: 0, time: 40, idle: false, positions: ["shop": 12])
        #expect(!busy.admits(40, readTo: ["shop": 12]) && busy.admits(39, readTo: ["shop": 12]))

        // The tail of a history: points has a transfer credit later than anything tiers will
        // ever read for the task; tiers has read it all, so the credit goes.
        var merger = EventTimeMerger<String>(topics: ["shop", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0, awaitedProducers: ["cmd": ["tiers"]])
        merger.assign([shop0, cmd0], positions: [shop0: 0, cmd0: 0])
        merger.add("order@10", key: key(10, 1, "o10"), offset: 0, from: shop0)
        merger.markCaughtUp(shop0)
        merger.add("credit@500", key: key(500, 5, "c500"), offset: 0, from: cmd0)
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 10, idle: true, positions: ["shop": 0]), offset: 1, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["order@10"], "tiers' idle mark at offset 0 predates the order")
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 10, idle: true, positions: ["shop": 1]), offset: 2, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["credit@500"])
    }

    @Test func aStoredMarkCountsOnlyOnceThePartitionIsReadPastIt() {
        var merger = EventTimeMerger<String>(topics: ["shop", "cmd"], sortedTopics: ["cmd"], idleMilliseconds: 0, awaitedProducers: ["cmd": ["tiers"]])
        // After a restart the store holds a mark read at offset 7, but the partition is read again from 5:
        // the grants at 5 and 6, which it covers, must be read before it counts.
        merger.assign([shop0, cmd0], positions: [shop0: 0, cmd0: 5], marks: [cmd0: [(ProgressMark(producer: "tiers", task: 0, time: 100, idle: false), 7)]])
        merger.add("order@50", key: key(50, 1, "o50"), offset: 0, from: shop0)
        merger.markCaughtUp(shop0)
        merger.add("grant@40", key: key(40, 5, "g40"), offset: 5, from: cmd0)
        #expect(drain(&merger).isEmpty)
        merger.add("grant@45", key: key(45, 5, "g45"), offset: 6, from: cmd0)
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 100, idle: false), offset: 7, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["grant@40", "grant@45", "order@50"])
    }

    @Test func marksOfOtherProducersAndOtherTasksDoNotCount() {
        var merger = consumer()
        merger.add("order@10", key: key(10, 1, "o10"), offset: 0, from: shop0)
        merger.markCaughtUp(shop0)
        merger.markCaughtUp(shop1)
        merger.markCaughtUp(cmd1)
        merger.noteProgress(ProgressMark(producer: "tiers", task: 1, time: 99, idle: true), offset: 0, from: cmd1)
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 1, time: 99, idle: true), offset: 1, from: cmd1)
        merger.noteProgress(ProgressMark(producer: "stranger", task: 0, time: 99, idle: true), offset: 0, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger).isEmpty)
        #expect(merger.takeChangedMarks().map(\.mark.producer).sorted() == ["campaigns", "tiers"], "only awaited producers' marks are kept")
    }

    @Test func aProducerPromisesTheEarliestOfWhatItStillHolds() {
        func marks(_ pending: [Int32: PendingWork], _ streamTimes: [Int32: Int64], _ timers: [Int32: Int64] = [:]) -> [Int32: ProgressMark] {
            Dictionary(uniqueKeysWithValues: ProgressMark.marks(producer: "p", pending: pending, streamTimes: streamTimes, nextTimers: timers).map { ($0.task, $0) })
        }
        let full = PendingWork(earliestBuffered: 50, hasEmptyPartition: false, isIdle: false, earliestEcho: nil)
        let waiting = PendingWork(earliestBuffered: 70, hasEmptyPartition: true, isIdle: false, earliestEcho: nil)
        let idle = PendingWork(earliestBuffered: nil, hasEmptyPartition: true, isIdle: true, earliestEcho: nil)
        // Buffered heads, then a timer due earlier, bound the promise; so does another busy task.
        #expect(marks([0: full], [0: 40])[0] == ProgressMark(producer: "p", task: 0, time: 50, idle: false))
        #expect(marks([0: full], [0: 40], [0: 45])[0]?.time == 45)
        #expect(marks([0: full, 1: waiting], [0: 40, 1: 60])[0]?.time == 50)
        #expect(marks([0: full, 1: waiting], [0: 40, 1: 60])[1]?.time == 50, "task 0 may still send task 1 a command at 50")
        // An idle task promises its stream time, idle (with how far it read) only when every task is.
        var readIdle = idle
        readIdle.positions = ["shop": 7]
        #expect(marks([0: readIdle, 1: idle], [0: 80, 1: 90])[0] == ProgressMark(producer: "p", task: 0, time: 80, idle: true, positions: ["shop": 7]))
        #expect(marks([0: idle, 1: waiting], [0: 80, 1: 60])[0] == ProgressMark(producer: "p", task: 0, time: 60, idle: false))
        // A command on its way to the task holds its promise at the command's time.
        var echoed = idle
        echoed.earliestEcho = 75
        echoed.isIdle = false
        #expect(marks([0: echoed], [0: 80])[0]?.time == 75)
        // Nothing applied and nothing to go by: no promise, for any task.
        #expect(marks([0: waiting, 1: full], [1: 40]).isEmpty)
        // Read everything and applied nothing (all passed over): an idle promise from time 0.
        #expect(marks([0: readIdle], [:])[0] == ProgressMark(producer: "p", task: 0, time: 0, idle: true, positions: ["shop": 7]))
        // A service that waits for others promises no more than they have.
        var capped = full
        capped.upstream = .some(30)
        #expect(marks([0: capped], [0: 20])[0]?.time == 30)
        var silent = full
        silent.upstream = .none
        #expect(marks([0: silent], [0: 20]).isEmpty, "a producer it waits for has said nothing yet")
        var waitingIdle = readIdle
        waitingIdle.upstream = .some(90)
        #expect(marks([0: waitingIdle], [0: 80])[0] == ProgressMark(producer: "p", task: 0, time: 80, idle: false))
        // Wall-clock timers fire without input: a task with one set is never idle.
        let clocked = ProgressMark.marks(producer: "p", pending: [0: readIdle], streamTimes: [0: 80], nextTimers: [0: 500], timersFireWithoutInput: true)
        #expect(clocked.first?.idle == false && clocked.first?.time == 80)
    }

    /// Tasks that send each other nothing promise for themselves: no task waits for a slower
    /// one, or for one that has promised nothing yet.
    @Test func independentTasksPromiseForThemselvesAlone() {
        func marks(_ pending: [Int32: PendingWork], independent: Bool, others: [TaskPromise] = []) -> [Int32: ProgressMark] {
            Dictionary(uniqueKeysWithValues: ProgressMark.marks(
                producer: "p", pending: pending, streamTimes: [0: 40, 1: 60, 2: 80], nextTimers: [:], tasksAreIndependent: independent,
                otherInstances: others).map { ($0.task, $0) })
        }
        let full = PendingWork(earliestBuffered: 50, hasEmptyPartition: false, isIdle: false, earliestEcho: nil)
        let later = PendingWork(earliestBuffered: 90, hasEmptyPartition: false, isIdle: false, earliestEcho: nil)
        let unknown = PendingWork(earliestBuffered: 70, hasEmptyPartition: false, isIdle: false, earliestEcho: nil, upstream: .none)
        var readIdle = PendingWork(earliestBuffered: nil, hasEmptyPartition: true, isIdle: true, earliestEcho: nil)
        readIdle.positions = ["shop": 7]
        // Coupled, task 1 is held to task 0's 50 and nothing goes out while task 2 has no promise.
        #expect(marks([0: full, 1: later], independent: false)[1]?.time == 50)
        #expect(marks([0: full, 1: later, 2: unknown], independent: false).isEmpty)
        // Independent, each task's mark is its own promise, idle when it alone is.
        let own = marks([0: full, 1: later, 2: unknown], independent: true)
        #expect(own == [0: ProgressMark(producer: "p", task: 0, time: 50, idle: false), 1: ProgressMark(producer: "p", task: 1, time: 90, idle: false)])
        #expect(marks([0: full, 2: readIdle], independent: true)[2] == ProgressMark(producer: "p", task: 2, time: 80, idle: true, positions: ["shop": 7]))
        #expect(marks([2: readIdle], independent: true, others: [.none, .busy(10)])[2]?.idle == true, "other instances' tasks send it nothing either")
    }

    /// Tasks other instances own (sharing the store) lower the marks as the instance's own do.
    @Test func tasksOfOtherInstancesCountLikeTheInstancesOwn() {
        func marks(_ pending: [Int32: PendingWork], others: [TaskPromise]) -> [Int32: ProgressMark] {
            Dictionary(uniqueKeysWithValues: ProgressMark.marks(
                producer: "p", pending: pending, streamTimes: [0: 80], nextTimers: [:], otherInstances: others).map { ($0.task, $0) })
        }
        var readIdle = PendingWork(earliestBuffered: nil, hasEmptyPartition: true, isIdle: true, earliestEcho: nil)
        readIdle.positions = ["shop": 7]
        let full = PendingWork(earliestBuffered: 90, hasEmptyPartition: false, isIdle: false, earliestEcho: nil)
        #expect(ProgressMark.promise(of: full, streamTime: 80, nextTimer: 85) == .busy(85))
        #expect(ProgressMark.promise(of: readIdle, streamTime: 80, nextTimer: nil) == .idle(80))
        #expect(marks([0: full], others: [.idle(10), .busy(60)])[0] == ProgressMark(producer: "p", task: 0, time: 60, idle: false))
        #expect(marks([0: readIdle], others: [.idle(10)])[0] == ProgressMark(producer: "p", task: 0, time: 80, idle: true, positions: ["shop": 7]))
        #expect(marks([0: readIdle], others: [.busy(95)])[0] == ProgressMark(producer: "p", task: 0, time: 80, idle: false))
        #expect(marks([0: full], others: [.none]).isEmpty, "a task of another instance has promised nothing yet")
        #expect(marks([0: full], others: []) == marks([0: full], others: [.idle(0)]))
    }

    @Test func markEventsRoundTripAndBadOnesAreRefused() throws {
        let mark = ProgressMark(producer: "tiers", task: 3, time: 1_767_225_600_000, idle: true, positions: ["loyalty.orders": 41])
        let event = mark.event(source: "loyalty/tiers")
        #expect(try ProgressMark.decode(CloudEvent.decode(event.encoded()), partition: 3) == mark)
        #expect(throws: Rejection.self) { try ProgressMark.decode(event, partition: 2) }
        var broken = event
        broken.data = .object(["producer": "tiers"])
        #expect(throws: Rejection.self) { try ProgressMark.decode(broken, partition: 3) }
        let record = ConsumedRecord(topic: "cmd", partition: 3, offset: 0, key: nil, value: event.encoded())
        #expect(ProgressMark.isCandidate(record))
        #expect(!ProgressMark.isCandidate(ConsumedRecord(topic: "cmd", partition: 3, offset: 0, key: Array("m".utf8), value: event.encoded())))
    }

    /// A producer that keeps records aside may promise a merge key rather than a millisecond
    /// (`ProgressMark.tie`): within the mark's time, what sorts before the key is applied and
    /// what sorts after it waits. Without a tie a mark is read and written as before.
    @Test func aMarkThatPromisesAKeyAdmitsWhatSortsBeforeItWithinItsMillisecond() throws {
        var merger = consumer()
        merger.add("order@10#a", key: key(10, 1, "a"), offset: 0, from: shop0)
        merger.add("order@10#c", key: key(10, 1, "c"), offset: 1, from: shop0)
        merger.add("order@11", key: key(11, 1, "d"), offset: 2, from: shop0)
        merger.markCaughtUp(shop0)
        merger.markCaughtUp(cmd0, at: 0)
        merger.noteProgress(ProgressMark(producer: "tiers", task: 0, time: 50, idle: false), offset: 0, from: cmd0)
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 10, idle: false, tie: (1, "b")), offset: 1, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["order@10#a"], "campaigns may still send something at (10, 1, b)")
        #expect(merger.waitsForProgress(on: cmd0))
        merger.noteProgress(ProgressMark(producer: "campaigns", task: 0, time: 10, idle: false, tie: (2, "")), offset: 2, from: cmd0)
        merger.markCaughtUp(cmd0)
        #expect(drain(&merger) == ["order@10#c"], "a later rank at 10 covers every id of rank 1 there, not 11")

        // Read and written with its tie; a plain mark's bytes carry none.
        let tied = ProgressMark(producer: "campaigns", task: 3, time: 10, idle: false, tie: (4, "m-7/claim"))
        let event = tied.event(source: "loyalty/campaigns")
        #expect(try ProgressMark.decode(CloudEvent.decode(event.encoded()), partition: 3) == tied)
        let plain = ProgressMark(producer: "campaigns", task: 3, time: 10, idle: false)
        #expect(plain != tied && plain.event(source: "s").id == "progress/campaigns/3/10/busy" && event.id == "progress/campaigns/3/10/busy/4/m-7/claim")
        #expect(plain.event(source: "s").data["rank"] == nil && plain.event(source: "s").data["id"] == nil)
        var idleTied = event
        idleTied.data = .object(["producer": "campaigns", "task": 3, "idle": true, "rank": 4, "id": "x"])
        #expect(throws: Rejection.self) { try ProgressMark.decode(idleTied, partition: 3) }
        var rankAlone = event
        rankAlone.data = .object(["producer": "campaigns", "task": 3, "idle": false, "rank": 4])
        #expect(throws: Rejection.self) { try ProgressMark.decode(rankAlone, partition: 3) }
    }

    /// What a processor still owes on a topic lowers its mark there, and makes it busy.
    @Test func aBoundLowersAMarkToItsKeyAndEndsItsIdleness() {
        let busy = ProgressMark(producer: "p", task: 1, time: 100, idle: false)
        #expect(busy.lowered(to: nil) == busy)
        #expect(busy.lowered(to: key(120, 0, "x")) == busy, "a bound past the promise changes nothing")
        #expect(busy.lowered(to: key(90, 3, "x")) == ProgressMark(producer: "p", task: 1, time: 90, idle: false, tie: (3, "x")))
        #expect(busy.lowered(to: key(100, 3, "x")) == busy, "the millisecond's promise is the lower")
        let idle = ProgressMark(producer: "p", task: 1, time: 100, idle: true, positions: ["shop": 7])
        #expect(idle.lowered(to: key(150, 0, "y")) == ProgressMark(producer: "p", task: 1, time: 101, idle: false),
                "idle promised nothing more at its time either: what was sent at 100 stays admitted")
        #expect(idle.lowered(to: key(150, 0, "y")).admits(key(100, 9, "z"), readTo: [:]))
        #expect(idle.lowered(to: key(100, 2, "y")) == ProgressMark(producer: "p", task: 1, time: 100, idle: false, tie: (2, "y")))
        #expect(idle.lowered(to: key(60, 2, "y")) == ProgressMark(producer: "p", task: 1, time: 60, idle: false, tie: (2, "y")))
    }
}
