import Basics

/// The timers of a ``BatchApplier`` kept in memory only (``BatchApplier/timersInMemoryOnly``):
/// what the `timers` table holds and answers, in its order, without its rows. A batch's changes
/// are undone if its transaction rolls back, as the table's would be.
///
/// Each timer set has a slot of its own, never reused until the slots are compacted; each
/// task's timers are a heap of slots in the table's order (due, rank, member, kind, ref; text
/// by its bytes, as the table's `BINARY` keys). A timer removed leaves its slot in the heap,
/// passed over when it comes to the top: a slot's liveness is checked without hashing its key.
final class MemoryTimers: TimerStore {
    /// A timer's identity: the table's primary key.
    struct Key: Hashable {
        var task: Int32
        var due: Int64
        var rank: Int
        var member: ExactText
        var kind: ExactText
        var ref: ExactText

        init(task: Int32, due: Int64, rank: Int, member: String, kind: String, ref: String) {
            self.task = task
            self.due = due
            self.rank = rank
            self.member = ExactText(member)
            self.kind = ExactText(kind)
            self.ref = ExactText(ref)
        }

        init(_ timer: DueTimer) {
            self.init(task: timer.task, due: timer.due.millis, rank: timer.rank, member: timer.member, kind: timer.kind, ref: timer.ref)
        }

        /// The task, due time and member: one member's timers rarely share a due time, so
        /// hashing the kind's and ref's text too (a third of the key's hashing) bought nothing.
        func hash(into hasher: inout Hasher) {
            hasher.combine(task)
            hasher.combine(due)
            hasher.combine(member)
        }

        /// The table's order among a task's timers (across tasks, the applier breaks a tie by
        /// the task's number).
        static func fires(_ left: Key, before right: Key) -> Bool {
            if left.due != right.due { return left.due < right.due }
            if left.rank != right.rank { return left.rank < right.rank }
            if left.member != right.member { return left.member < right.member }
            if left.kind != right.kind { return left.kind < right.kind }
            return left.ref < right.ref
        }
    }

    /// What is kept of a timer: its key, its payload (emptied once it is removed) and whether it
    /// is still set.
    private var keys: [Key] = []
    private var payloads: [[UInt8]] = []
    private var alive: [Bool] = []
    /// The slot of each timer set.
    private var slots: [Key: Int] = [:]
    /// Per task, its slots in the table's order, removed ones among them.
    private var queues: [Heap<Queued>] = []
    /// Per member, the slots of its timers: what a cancel or a take looks through.
    private var byMember: [ExactText: [Int]] = [:]
    /// The running batch's changes, oldest first: each key with the payload it had before (nil:
    /// it was not set).
    private var undo: [(key: Key, before: [UInt8]?)] = []
    /// Whether the running batch took slots out of a queue (``due(task:upTo:count:)``).
    private var dequeued = false

    private struct Queued {
        var due: Int64
        var rank: Int
        var slot: Int
    }

    /// How many timers it holds.
    var count: Int { slots.count }
    /// How many slots it keeps, those of removed timers included (for tests).
    var slotCount: Int { keys.count }

    /// Every timer, in the table's order within each task, tasks in order (for tests).
    var all: [DueTimer] {
        slots.sorted { $0.key.task != $1.key.task ? $0.key.task < $1.key.task : Key.fires($0.key, before: $1.key) }
            .map { dueTimer($0.value) }
    }

    /// Sets a timer; one with the same key is the same timer, whose payload the new one replaces.
    func schedule(_ request: TimerRequest, task: Int32) {
        let key = Key(task: task, due: request.due.millis, rank: request.rank, member: request.member, kind: request.kind, ref: request.ref)
        if let slot = slots[key] {
            guard payloads[slot] != request.payload else { return }
            undo.append((key, payloads[slot]))
            payloads[slot] = request.payload
            return
        }
        undo.append((key, nil))
        add(key, payload: request.payload)
    }

    /// Removes the member's timers of this kind, and of this ref when one is given.
    func cancel(member: String, kind: String, ref: String?) {
        let kind = ExactText(kind)
        let ref = ref.map(ExactText.init)
        guard let memberSlots = byMember[ExactText(member)] else { return }
        for slot in memberSlots where keys[slot].kind == kind && (ref == nil || keys[slot].ref == ref) { remove(slot: slot) }
    }

    /// Takes out the member's first timer (due, rank, kind, ref) firing before `bound`.
    func take(member: String, firingBefore bound: (time: Int64, rank: Int)) -> DueTimer? {
        guard let memberSlots = byMember[ExactText(member)] else { return nil }
        var first: Int?
        for slot in memberSlots {
            let key = keys[slot]
            guard key.due < bound.time || (key.due == bound.time && key.rank < bound.rank) else { continue }
            guard let chosenSlot = first else {
                first = slot
                continue
            }
            let chosen = keys[chosenSlot]
            if (key.due, key.rank) != (chosen.due, chosen.rank) {
                if (key.due, key.rank) < (chosen.due, chosen.rank) { first = slot }
            } else if key.kind != chosen.kind {
                if key.kind < chosen.kind { first = slot }
            } else if key.ref != chosen.ref ? key.ref < chosen.ref : key.task < chosen.task {
                first = slot
            }
        }
        guard let first else { return nil }
        let timer = dueTimer(first)
        remove(slot: first)
        return timer
    }

    /// Removes a timer (one fired); nothing if it is gone already.
    func remove(_ timer: DueTimer) {
        guard let slot = slots[Key(timer)] else { return }
        remove(slot: slot)
    }

    /// The due time of the task's earliest timer.
    func earliestDue(task: Int32) -> Int64? {
        firstCurrent(task)?.due
    }

    /// The task's first timer due before `limit`, left in place.
    func first(task: Int32, dueBefore limit: Int64) -> DueTimer? {
        guard let first = firstCurrent(task), first.due < limit else { return nil }
        return dueTimer(first.slot)
    }

    /// Takes out of the queue the task's first `count` timers due at or before `limit`, in
    /// order; they stay set until removed (each is fired, and removed with it, before the batch
    /// ends or rolls back).
    func due(task: Int32, upTo limit: Int64, count: Int) -> [DueTimer] {
        var due: [DueTimer] = []
        while due.count < count, let first = firstCurrent(task), first.due <= limit {
            _ = queues[Int(task)].removeFirst()
            dequeued = true
            due.append(dueTimer(first.slot))
        }
        return due
    }

    /// The batch committed: its changes stay, and slots mostly of removed timers are compacted.
    func commit() {
        undo.removeAll(keepingCapacity: true)
        dequeued = false
        if keys.count > 4_096 && keys.count > 2 * slots.count { rebuild(from: current()) }
    }

    /// The batch rolled back: every timer is as it was before it.
    func discard() {
        guard !undo.isEmpty || dequeued else { return }
        var timers = current()
        for (key, before) in undo.reversed() { timers[key] = before }
        undo.removeAll(keepingCapacity: true)
        dequeued = false
        rebuild(from: timers)
    }

    /// Nothing: a simulation's store is every task's, for its whole run.
    func forget(tasks: [Int32]) {}

    // MARK: - Private

    private func dueTimer(_ slot: Int) -> DueTimer {
        let key = keys[slot]
        return DueTimer(
            task: key.task, due: EventTime(millis: key.due), rank: key.rank, member: key.member.text, kind: key.kind.text,
            ref: key.ref.text, payload: payloads[slot])
    }

    /// The table's order between two slots' timers of one task.
    private func fires(_ left: Queued, before right: Queued) -> Bool {
        if left.due != right.due { return left.due < right.due }
        if left.rank != right.rank { return left.rank < right.rank }
        return Key.fires(keys[left.slot], before: keys[right.slot])
    }

    private func add(_ key: Key, payload: [UInt8]) {
        let slot = keys.count
        keys.append(key)
        payloads.append(payload)
        alive.append(true)
        slots[key] = slot
        byMember[key.member, default: []].append(slot)
        let task = Int(key.task)
        while queues.count <= task { queues.append(Heap { [unowned self] in self.fires($0, before: $1) }) }
        queues[task].insert(Queued(due: key.due, rank: key.rank, slot: slot))
    }

    private func remove(slot: Int) {
        let key = keys[slot]
        undo.append((key, payloads[slot]))
        slots[key] = nil
        alive[slot] = false
        payloads[slot] = []
        if var memberSlots = byMember.removeValue(forKey: key.member) {
            memberSlots.removeAll { $0 == slot }
            if !memberSlots.isEmpty { byMember[key.member] = memberSlots }
        }
    }

    /// The task's first queued slot that is still set, removed ones dropped.
    private func firstCurrent(_ task: Int32) -> Queued? {
        let task = Int(task)
        guard task < queues.count else { return nil }
        while let first = queues[task].first {
            if alive[first.slot] { return first }
            _ = queues[task].removeFirst()
        }
        return nil
    }

    /// The timers set, with their payloads.
    private func current() -> [Key: [UInt8]] {
        slots.mapValues { payloads[$0] }
    }

    /// Starts the slots and queues again with `timers`.
    private func rebuild(from timers: [Key: [UInt8]]) {
        keys.removeAll()
        payloads.removeAll()
        alive.removeAll()
        slots.removeAll()
        queues.removeAll()
        byMember.removeAll()
        for (key, payload) in timers { add(key, payload: payload) }
    }
}
