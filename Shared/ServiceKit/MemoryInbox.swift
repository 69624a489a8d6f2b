import Basics

/// The inbox of a ``BatchApplier`` kept in memory only (``BatchApplier/inboxInMemoryOnly``):
/// the answers the `inbox` table gives, without its rows. What a batch notes and prunes is held
/// apart until the batch's transaction commits, and dropped if it rolls back, as the table's
/// rows would be.
final class MemoryInbox: InboxStore {
    private struct Note {
        var payloadHash: Int64
        var task: Int32
        var time: Int64
    }

    /// The event ids of committed batches.
    private var notes: [ExactText: Note] = [:]
    /// Per task, the committed notes by time: pruning takes the oldest first.
    private var byTime: [Int32: Heap<(time: Int64, id: ExactText)>] = [:]
    /// The running batch's new notes and prunings.
    private var pending: [ExactText: Note] = [:]
    private var pendingPrunes: [(task: Int32, cutoff: Int64)] = []

    /// Whether notes are ever pruned (the applier has an inbox horizon): if not, no heap is kept.
    private let prunes: Bool

    init(prunes: Bool) { self.prunes = prunes }

    /// How many event ids it holds, committed.
    var count: Int { notes.count }

    func note(_ eventID: String, payloadHash: Int64, task: Int32, time: Int64) -> InboxAnswer {
        let id = ExactText(eventID)
        if let known = pending[id] ?? notes[id] { return .known(payloadHash: known.payloadHash) }
        pending[id] = Note(payloadHash: payloadHash, task: task, time: time)
        return .new
    }

    /// Takes back a note of the running batch (a record carried to the next batch).
    func forget(_ eventID: String) {
        pending[ExactText(eventID)] = nil
    }

    /// Drops the task's notes older than `cutoff` once the batch commits.
    func prune(task: Int32, before cutoff: Int64) {
        pendingPrunes.append((task, cutoff))
    }

    /// The batch committed: its notes are kept, then its prunings done (in that order, as in
    /// its transaction).
    func commit() {
        for (eventID, note) in pending {
            notes[eventID] = note
            if prunes { byTime[note.task, default: Heap { $0.time < $1.time }].insert((note.time, eventID)) }
        }
        pending.removeAll(keepingCapacity: true)
        for (task, cutoff) in pendingPrunes {
            guard var oldest = byTime[task] else { continue }
            byTime[task] = nil  // uniquely referenced while it is changed
            while let first = oldest.first, first.time < cutoff {
                _ = oldest.removeFirst()
                if let note = notes[first.id], note.task == task, note.time == first.time { notes[first.id] = nil }
            }
            byTime[task] = oldest
        }
        pendingPrunes.removeAll(keepingCapacity: true)
    }

    /// The batch rolled back: nothing it noted or pruned is kept.
    func discard() {
        pending.removeAll(keepingCapacity: true)
        pendingPrunes.removeAll(keepingCapacity: true)
    }
}
