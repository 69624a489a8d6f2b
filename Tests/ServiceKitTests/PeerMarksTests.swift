import Basics
import Messaging
import Testing

@testable import ServiceKit

/// The peer marks (architecture.md, step 9) checked against a model of tasks that keep their
/// own stores and send each other commands through Kafka: partitions that deliver each
/// sender's records in order but interleave senders at random, shop input read a little at a
/// time, commands that bounce back depending on what the receiving task applied before. Each
/// task must apply exactly the records, in exactly the order, that one merge of every task
/// (the `service` layout) gives, and none may wait for ever.
@Suite struct PeerMarksTests {
    func key(_ time: Int64, _ rank: Int, _ id: String) -> MergeKey { MergeKey(time: time, rank: rank, id: id) }

    @Test func aTaskWaitsForEveryPeerAndForWhatEachHasReadOfTheOthers() {
        var book = PeerMarkBook(task: 1, tasks: 0..<3)
        #expect(book.bound == .lowest && !book.admits(key(0, 0, "a")), "no mark from a peer yet: nothing goes")
        book.read(PeerMark(task: 0, own: key(10, 2, ""), readFromPeers: key(20, 0, "")))
        #expect(!book.admits(key(0, 0, "a")), "task 2 has not promised anything")
        book.read(PeerMark(task: 2, own: key(30, 0, ""), readFromPeers: key(8, 5, "")))
        #expect(book.bound == key(8, 5, ""), "task 2 has read an older promise of task 0's: a command may be on its way to it")
        #expect(book.admits(key(8, 4, "z")) && !book.admits(key(8, 5, "a")))
        book.read(PeerMark(task: 2, own: key(30, 0, ""), readFromPeers: key(10, 2, "")))
        #expect(book.bound == key(10, 2, ""))
        #expect(book.readFromPeers == key(10, 2, ""), "the lowest own promise read: task 0's")
        book.read(PeerMark(task: 1, own: .lowest, readFromPeers: .lowest))
        book.read(PeerMark(task: 7, own: .lowest, readFromPeers: .lowest))
        #expect(book.bound == key(10, 2, ""), "its own marks and strangers' change nothing")
        #expect(book.mark(earliestSender: key(9, 1, "x")) == PeerMark(task: 1, own: key(9, 2, ""), readFromPeers: key(10, 2, "")))
        #expect(book.mark(earliestSender: nil).own == .highest, "nothing pending that may send: it holds no one")
        #expect(PeerMark.own(earliestSender: .lowest) == .lowest)
    }

    @Test func aMarkGoesThroughKafkaAsAnEventAndBadOnesAreRefused() throws {
        for mark in [
            PeerMark(task: 2, own: key(1_767_196_800_000, 5, ""), readFromPeers: key(1_767_196_800_000, 2, "")),
            PeerMark(task: 0, own: .highest, readFromPeers: .lowest),
            PeerMark(task: 5, own: .lowest, readFromPeers: .highest),
        ] {
            let event = try CloudEvent.decode(mark.event(source: "acme/counting").encoded())
            #expect(try PeerMark.decode(event, tasks: 0..<6) == mark)
            #expect(PeerMark.isCandidate(ConsumedRecord(topic: "t", partition: 1, offset: 0, key: nil, value: event.encoded())))
            #expect(!ProgressMark.isCandidate(ConsumedRecord(topic: "t", partition: 1, offset: 0, key: nil, value: event.encoded())))
        }
        #expect(PeerMark(task: 1, own: key(7, 1, ""), readFromPeers: key(3, 6, "")).event(source: "s").time.millis == 3, "dated at the lower figure")
        let good = PeerMark(task: 2, own: key(9, 5, ""), readFromPeers: key(4, 2, "")).event(source: "s")
        func refusal(_ change: (inout CloudEvent) -> Void, tasks: Range<Int32> = 0..<6) -> Rejection? {
            var event = good
            change(&event)
            do { _ = try PeerMark.decode(event, tasks: tasks); return nil } catch { return error }
        }
        #expect(refusal({ _ in }) == nil)
        #expect(refusal({ _ in }, tasks: 0..<2)?.detail.contains("task 2, which this service does not have") == true)
        #expect(refusal({ $0.data = .object(["task": 1, "own": "soon", "readFromPeers": "idle"]) })?.code == .invalidProgressMark)
        #expect(refusal({ $0.data = .object(["task": 1, "own": .object(["time": 3]), "readFromPeers": "idle"]) })?.code == .invalidProgressMark)
        #expect(refusal({ $0.data = .object(["own": "idle", "readFromPeers": "idle"]) })?.code == .invalidProgressMark)
        #expect(refusal({ $0.type = "stream.progress" })?.code == .invalidProgressMark)
    }

    @Test func tasksOnTheirOwnApplyWhatOneMergeAppliesAndNeverWaitForEachOther() {
        for seed in 0..<400 {
            let model = Model(seed: UInt64(seed), longestChain: 2)
            let reference = model.oneMerge()
            switch model.tasksOnTheirOwn() {
            case .stuck(let pending):
                Issue.record("seed \(seed): the tasks wait for each other with \(pending) records unapplied")
            case .applied(let orders):
                for task in orders.indices where orders[task] != reference[task] {
                    Issue.record("seed \(seed): task \(task) applied \(orders[task]) where one merge applies \(reference[task])")
                }
            }
        }
    }

    /// The model can fail: with chains of three commands one figure is not enough, and some
    /// history shows it (a command caused by a command caused by a command overtaken).
    @Test func chainsLongerThanTwoAreBeyondOneFigure() {
        let differing = (0..<400).filter { seed in
            let model = Model(seed: UInt64(seed), longestChain: 3)
            guard case .applied(let orders) = model.tasksOnTheirOwn() else { return true }
            return orders != model.oneMerge()
        }
        #expect(!differing.isEmpty)
    }
}

/// A history of shop records for a few tasks, some of which send a command to another task (a
/// transfer), whose receiver may send one back (a bounce), and so on up to `longestChain`.
private struct Model {
    struct Record {
        var key: MergeKey
        /// The task a shop record sends a command to, if any.
        var sendsTo: Int32?
        /// 0 for the shop's records; a command's place in its chain.
        var depth: Int
        var origin: Int32
    }

    let tasks: Int32
    let shop: [[Record]]
    let longestChain: Int
    let readAtOnce: Bool
    /// Promise as the runtime does (`EventTimeMerger.frontier(of:)`): from every pending
    /// record, whether it may send or not, and from nothing at all while the shop's partition
    /// has records not read yet and none waiting; otherwise from the records that may send.
    let asTheMergeDoes: Bool
    let seed: UInt64

    init(seed: UInt64, longestChain: Int) {
        var random = SeededRandom(seed: seed)
        tasks = Int32.random(in: 2...4, using: &random)
        var shop: [[Record]] = []
        for task in 0..<tasks {
            var records: [Record] = []
            for index in 0..<Int.random(in: 3...25, using: &random) {
                let sends = Int.random(in: 0..<10, using: &random) < 4
                records.append(Record(
                    key: MergeKey(time: Int64.random(in: 0..<12, using: &random), rank: Int.random(in: 0...3, using: &random), id: "s\(task)-\(index)"),
                    sendsTo: sends ? Int32.random(in: 0..<tasks, using: &random) : nil, depth: 0, origin: task))
            }
            shop.append(records.sorted { $0.key < $1.key })
        }
        self.shop = shop
        self.longestChain = longestChain
        readAtOnce = Bool.random(using: &random)
        asTheMergeDoes = Bool.random(using: &random)
        self.seed = seed
    }

    /// What applying `record` at a task that has applied `applied` records before sends, and
    /// to which task: a shop record its transfer; a command, a bounce to its origin every third
    /// record the task applies (so what comes back depends on the order applied).
    func commands(of record: Record, at task: Int32, applied: Int) -> [(to: Int32, Record)] {
        let next = MergeKey(time: record.key.time, rank: record.key.rank + 1, id: "c(\(record.key.id))")
        if record.depth == 0 {
            guard let target = record.sendsTo else { return [] }
            return [(target, Record(key: next, sendsTo: nil, depth: 1, origin: task))]
        }
        guard record.depth < longestChain, applied % 3 == 0 else { return [] }
        return [(record.origin, Record(key: next, sendsTo: nil, depth: record.depth + 1, origin: task))]
    }

    /// Whether applying a pending record may send anything.
    func maySend(_ record: Record) -> Bool { record.depth == 0 ? record.sendsTo != nil : record.depth < longestChain }

    /// Every task's records in the order one merge of every task applies them: the lowest key
    /// of all first, a command joining as it is sent.
    func oneMerge() -> [[String]] {
        var pending = shop.flatMap { records in records.map { (task: $0.origin, record: $0) } }
        var orders = Array(repeating: [String](), count: Int(tasks))
        while let index = pending.indices.min(by: { pending[$0].record.key < pending[$1].record.key }) {
            let (task, record) = pending.remove(at: index)
            for (target, command) in commands(of: record, at: task, applied: orders[Int(task)].count) { pending.append((target, command)) }
            orders[Int(task)].append(record.key.id)
        }
        return orders
    }

    enum Outcome {
        case applied([[String]])
        case stuck(Int)
    }

    /// The same history with a store per task: each applies its own records once the peer
    /// marks it has read let it, sends commands and marks through partitions that a random
    /// schedule delivers, and reads the shop's records all at once or a few at a time.
    func tasksOnTheirOwn() -> Outcome {
        enum Item {
            case command(Record)
            case mark(PeerMark)
        }
        struct Task {
            var book: PeerMarkBook
            var pending: [Record] = []
            var read = 0
            var published: PeerMark?
            var order: [String] = []
        }
        var random = SeededRandom(seed: seed &+ 7_919)
        var state = (0..<tasks).map { Task(book: PeerMarkBook(task: $0, tasks: 0..<tasks)) }
        /// Each sender's records to each task, in the order sent.
        var partitions: [[[Item]]] = Array(repeating: Array(repeating: [], count: Int(tasks)), count: Int(tasks))

        func readShop(_ task: Int, count: Int) {
            let end = min(shop[task].count, state[task].read + count)
            state[task].pending += shop[task][state[task].read..<end]
            state[task].read = end
        }
        /// Publishes the task's mark to every other task if it changed.
        func publish(_ task: Int) {
            let shopDone = state[task].read == shop[task].count
            var earliest: MergeKey?
            if asTheMergeDoes {
                earliest = state[task].pending.map(\.key).min()
                if !shopDone, !state[task].pending.contains(where: { $0.depth == 0 }) { earliest = .lowest }
            } else {
                earliest = state[task].pending.filter(maySend).map(\.key).min()
                // Shop records not read yet sort at or above the last one read.
                if !shopDone { earliest = min(earliest ?? .highest, state[task].read == 0 ? .lowest : shop[task][state[task].read - 1].key) }
            }
            let mark = state[task].book.mark(earliestSender: earliest)
            guard mark != state[task].published else { return }
            state[task].published = mark
            for other in 0..<Int(tasks) where other != task { partitions[task][other].append(.mark(mark)) }
        }
        /// The task's next record, if it may be applied: its shop partition has a record
        /// waiting or is read to its end (a partition not read to its end holds the merge),
        /// and the peers let it.
        func next(_ task: Int) -> Int? {
            let pending = state[task].pending
            guard let index = pending.indices.min(by: { pending[$0].key < pending[$1].key }) else { return nil }
            let shopWaiting = pending.contains { $0.depth == 0 } || state[task].read == shop[task].count
            return shopWaiting && state[task].book.admits(pending[index].key) ? index : nil
        }

        for task in 0..<Int(tasks) {
            readShop(task, count: readAtOnce ? shop[task].count : 0)
            publish(task)
        }
        while true {
            var actions: [() -> Void] = []
            for from in 0..<Int(tasks) {
                for to in 0..<Int(tasks) where !partitions[from][to].isEmpty {
                    actions.append {
                        switch partitions[from][to].removeFirst() {
                        case .command(let record): state[to].pending.append(record)
                        case .mark(let mark): state[to].book.read(mark)
                        }
                        publish(to)
                    }
                }
            }
            for task in 0..<Int(tasks) {
                if state[task].read < shop[task].count {
                    actions.append {
                        readShop(task, count: 1)
                        publish(task)
                    }
                }
                if let index = next(task) {
                    actions.append {
                        let record = state[task].pending.remove(at: index)
                        for (target, command) in commands(of: record, at: Int32(task), applied: state[task].order.count) {
                            // A command to its own task is awaited as an echo: pending at once.
                            if Int(target) == task { state[task].pending.append(command) } else { partitions[task][Int(target)].append(.command(command)) }
                        }
                        state[task].order.append(record.key.id)
                        publish(task)
                    }
                }
            }
            guard !actions.isEmpty else { break }
            actions[Int.random(in: 0..<actions.count, using: &random)]()
        }
        let left = state.reduce(0) { $0 + $1.pending.count }
        return left == 0 ? .applied(state.map(\.order)) : .stuck(left)
    }
}
