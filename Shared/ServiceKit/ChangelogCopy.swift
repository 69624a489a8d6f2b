import Foundation
import Storage

/// One copy of a store that keeps a changelog: the file on one host. A copy is named when it
/// begins (empty, or restored from the changelog) and keeps its name across restarts; every
/// batch-end and restart record it writes carries the name and the number of its last logged
/// batch. At start, the changelog's last such record tells whether this copy may resume, or
/// whether the changelog went on without it (another copy was restored and wrote more, or
/// this file is a snapshot of an earlier state of the copy that did).
struct ChangelogCopy: Equatable {
    /// The copy's name; nil for a store from before copies were named.
    var name: String?
    /// The number of the copy's last batch that logged changes (0 before the first).
    var sequence: Int64
    /// The changelog's last record of its own when the copy was named: while that is still
    /// the last, nobody wrote since the copy began (it died before its first restart record).
    var base: LastWriter?

    static let nameRow = "changelog-copy"
    static let sequenceRow = "changelog-sequence"
    static let baseRow = "changelog-base"
    /// A standby's store: the offset of the changelog it holds everything before.
    static let standbyRow = "changelog-standby-next-offset"

    /// Where a standby's store stands in the changelog; nil for any other store.
    static func standbyPosition(of database: Database) throws -> Int64? {
        try identityNumber(standbyRow, in: database)
    }

    /// A number the store keeps in `store_identity` under `row`.
    private static func identityNumber(_ row: String, in database: Database) throws -> Int64? {
        try database.prepare("SELECT value FROM store_identity WHERE name = ?").queryOne(.text(row)) { $0.string(0) }.flatMap { Int64($0) }
    }

    /// Keeps `value` in `store_identity` under `row`, in the caller's transaction.
    private static func keepIdentity(_ row: String, _ value: String, in database: Database) throws {
        try database.prepare("INSERT OR REPLACE INTO store_identity(name, value) VALUES(?, ?)").run(.text(row), .text(value))
    }

    /// A standby's store: when (machine clock, milliseconds) it last read its changelog to the end.
    static let caughtUpRow = "changelog-standby-caught-up-at"
    /// How long a standby's store may go without reading its changelog to the end and still be
    /// read on from its place: half of Kafka's default `delete.retention.ms` (a day). Compaction
    /// removes a tombstone that long after it cleaned it, so a copy left unread longer may have
    /// missed deletions (an erased member's rows among them); it is restored whole instead.
    /// An operational clock, not a rule's: it decides how a copy is rebuilt, never what it holds.
    static let freshnessMilliseconds: Int64 = 12 * 3_600_000

    /// Keeps a standby's place, in the caller's transaction; the store is nobody's copy. It has
    /// just read its changelog to `nextOffset`, at `caughtUpAt` (machine clock).
    static func standBy(at nextOffset: Int64, caughtUpAt: Int64 = wallClockMilliseconds(), in database: Database) throws {
        try database.prepare("DELETE FROM store_identity WHERE name IN ('\(nameRow)', '\(sequenceRow)', '\(baseRow)')").run()
        try keepIdentity(standbyRow, String(nextOffset), in: database)
        try keepIdentity(caughtUpRow, String(caughtUpAt), in: database)
    }

    /// Records that a standby's store read its changelog to the end at `time` (a pass that
    /// found nothing new writes nothing, so the copier records its last one when it closes the copy).
    static func markCaughtUp(at time: Int64, in database: Database) throws {
        try database.transaction {
            guard try standbyPosition(of: database) != nil else { return }
            try keepIdentity(caughtUpRow, String(time), in: database)
        }
    }

    /// Where a standby's store stands, if it read its changelog to the end within
    /// ``freshnessMilliseconds`` of `now`: nil for any other store, and for one left unread
    /// longer (or from before the time was kept), which is to be restored whole.
    static func freshStandbyPosition(of database: Database, now: Int64 = wallClockMilliseconds()) throws -> Int64? {
        guard let position = try standbyPosition(of: database) else { return nil }
        guard let caughtUp = try identityNumber(caughtUpRow, in: database), now - caughtUp <= freshnessMilliseconds else { return nil }
        return position
    }

    /// The copy the store holds.
    static func read(from database: Database) throws -> ChangelogCopy {
        let rows = Dictionary(uniqueKeysWithValues: try database.prepare(
            "SELECT name, value FROM store_identity WHERE name IN ('\(nameRow)', '\(sequenceRow)', '\(baseRow)')"
        ).query { ($0.string(0), $0.string(1)) })
        return ChangelogCopy(
            name: rows[nameRow], sequence: rows[sequenceRow].flatMap { Int64($0) } ?? 0,
            base: rows[baseRow].flatMap(LastWriter.init(text:)))
    }

    /// Names a new copy of the store, begun when the changelog's last record of its own was
    /// `base`, in the caller's transaction.
    static func begin(in database: Database, base: LastWriter) throws -> ChangelogCopy {
        let copy = ChangelogCopy(name: UUID().uuidString.lowercased(), sequence: 0, base: base)
        try database.prepare("DELETE FROM store_identity WHERE name IN (?, ?)").run(.text(standbyRow), .text(caughtUpRow))
        for (row, value) in [(nameRow, copy.name!), (sequenceRow, "0"), (baseRow, base.text)] {
            try keepIdentity(row, value, in: database)
        }
        return copy
    }

    /// Whether this copy may resume, given the changelog's last record of its own.
    func verdict(last: LastWriter) -> Verdict {
        if let base, name != nil, last == base { return .resume }
        switch last {
        case .nobody:
            return .refused("the changelog holds no record of this store (the topic was deleted or created anew, or is another "
                + "cluster's), so a store restored from it would lack this one's history")
        case .ended:
            return .refused("a store stopped keeping the changelog after this one last wrote to it, so the changelog is not "
                + "this store's history any more")
        case .copy(let writer, let writerSequence):
            guard let name else { return writer == nil ? .resume : .older }
            guard writer == name else { return .older }
            // The changelog never runs ahead of the copy that wrote it (the relay sends a batch
            // after its commit): ahead under this name, the file is an earlier snapshot.
            return (writerSequence ?? 0) <= sequence ? .resume : .older
        }
    }

    enum Verdict: Equatable {
        /// The changelog is this copy's history, up to where the copy has come or short of it.
        case resume
        /// The changelog went on without this copy: it is replaced by a restore.
        case older
        /// Neither: the reason.
        case refused(String)
    }
}

/// What the changelog's last record of its own (batch end, restart or end) says of who wrote it.
enum LastWriter: Equatable {
    /// The changelog has none: it is empty, or was deleted and created again.
    case nobody
    /// A store stopped keeping it.
    case ended
    /// The copy of the store that wrote it and the number of its batch (nil: a record from
    /// before copies were named).
    case copy(String?, sequence: Int64?)

    /// A form to keep in `store_identity`.
    var text: String {
        switch self {
        case .nobody: "nobody"
        case .ended: "ended"
        case .copy(let name, let sequence): "copy \(name ?? "-") \(sequence.map(String.init) ?? "-")"
        }
    }

    init?(text: String) {
        let words = text.split(separator: " ").map(String.init)
        switch words.first {
        case "nobody": self = .nobody
        case "ended": self = .ended
        case "copy" where words.count == 3:
            self = .copy(words[1] == "-" ? nil : words[1], sequence: Int64(words[2]))
        default: return nil
        }
    }
}

/// The machine clock in milliseconds since 1970, for operational decisions only.
func wallClockMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
