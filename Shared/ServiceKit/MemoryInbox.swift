import Basics

/// The inbox of a ``BatchApplier`` kept in memory only (``BatchApplier/inboxInMemoryOnly``):
/// the answers the `inbox` table gives, without its rows. What a batch notes is taken out again
/// if its transaction rolls back, and what it prunes is pruned when it commits, as the table's
/// rows would be.
final class MemoryInbox: InboxStore {
    private struct Note {
        var payloadHash: Int64
        var task: Int32
        var time: Int64
    }

    /// The event ids noted, the running batch's among them (``added`` says which).
    private var notes: [ExactText: Note] = [:]
    /// Per task, the committed notes by time: pruning takes the oldest first.
    private var byTime: [Int32: Heap<(time: Int64, id: ExactText)>] = [:]
    /// The running batch's new notes, in the order noted: into the heaps when it commits, out
    /// of `notes` if it rolls back. Kept beside the notes rather than in a map of their own,
    /// so that a note is one lookup of its id, not three (ids are long; hashing them was a
    /// tenth of the simulation's hashing).
    private var added: [(id: ExactText, task: Int32, time: Int64)] = []
    private var pendingPrunes: [(task: Int32, cutoff: Int64)] = []

    /// Whether notes are ever pruned (the applier has an inbox horizon): if not, no heap is kept.
    private let prunes: Bool

    init(prunes: Bool) { self.prunes = prunes }

    /// How many event ids it holds, committed.
    var count: Int { notes.count - added.count }

    func note(_ eventID: String, payloadHash: Int64, task: Int32, time: Int64) -> InboxAnswer {
        let id = ExactText(eventID)
        var isNew = false
        // One lookup: the note there, or this one put there.
        let noted = Self.read(&notes[id, default: {
            isNew = true
            return Note(payloadHash: payloadHash, task: task, time: time)
        }()])
        guard isNew else { return .known(payloadHash: noted.payloadHash) }
        added.append((id, task, time))
        return .new
    }

    private static func read(_ note: inout Note) -> Note { note }

    /// Takes back a note of the running batch (a record carried to the next batch).
    func forget(_ eventID: String) {
        let id = ExactText(eventID)
        guard let index = added.lastIndex(where: { $0.id == id }) else { return }
        added.remove(at: index)
        notes[id] = nil
    }

    /// Drops the task's notes older than `cutoff` once the batch commits.
    func prune(task: Int32, before cutoff: Int64) {
        pendingPrunes.append((task, cutoff))
    }

    /// The batch committed: its notes are kept, then its prunings done (in that order, as in
    /// its transaction).
    func commit() {
        if prunes {
            for note in added { byTime[note.task, default: Heap { $0.time < $1.time }].insert((note.time, note.id)) }
        }
        added.removeAll(keepingCapacity: true)
        for (task, cutoff) in pendingPrunes {
            guard var oldest = byTime[task] else { continue }
            byTime[task] = nil  // uniquely referenced while it is changed
            while let first = oldest.first, first.time < cutoff {
                _ = oldest.removeFirst()
                if let index = notes.index(forKey: first.id), notes.values[index].task == task, notes.values[index].time == first.time {
                    notes.remove(at: index)
                }
            }
            byTime[task] = oldest
        }
        pendingPrunes.removeAll(keepingCapacity: true)
    }

    /// The batch rolled back: nothing it noted or pruned is kept.
    func discard() {
        for note in added { notes[note.id] = nil }
        added.removeAll(keepingCapacity: true)
        pendingPrunes.removeAll(keepingCapacity: true)
    }
}
