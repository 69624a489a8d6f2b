import Storage
import Testing

@testable import ServiceKit

/// Whether a copy of a store may resume, from the changelog's last record of its own.
@Suite struct ChangelogCopyTests {
    let mine = ChangelogCopy(name: "a", sequence: 10, base: .copy("z", sequence: 4))

    @Test func aCopyResumesWhenItWroteTheLastRecordOrNobodyWroteSinceItBegan() {
        #expect(mine.verdict(last: .copy("a", sequence: 10)) == .resume)
        #expect(mine.verdict(last: .copy("a", sequence: 7)) == .resume, "its later batches still wait in its outbox")
        #expect(mine.verdict(last: .copy("z", sequence: 4)) == .resume, "it died before its first restart record")
        let fresh = ChangelogCopy(name: "b", sequence: 0, base: .nobody)
        #expect(fresh.verdict(last: .nobody) == .resume, "the first copy, on an empty changelog")
    }

    @Test func aCopyTheChangelogWentOnWithoutIsOlder() {
        #expect(mine.verdict(last: .copy("b", sequence: 1)) == .older, "another copy went on")
        #expect(mine.verdict(last: .copy("a", sequence: 11)) == .older, "this file is a snapshot of an earlier state")
        #expect(mine.verdict(last: .copy("z", sequence: 5)) == .older, "its predecessor wrote on after it began")
        #expect(mine.verdict(last: .copy(nil, sequence: nil)) == .older, "an older version wrote after it")
    }

    @Test func aChangelogWithoutThisStoresHistoryIsRefused() {
        guard case .refused(let reason) = mine.verdict(last: .nobody) else { Issue.record("an empty changelog was accepted"); return }
        #expect(reason.contains("holds no record of this store"))
        guard case .refused(let ended) = mine.verdict(last: .ended) else { Issue.record("an ended changelog was accepted"); return }
        #expect(ended.contains("stopped keeping the changelog"))
    }

    @Test func aStoreFromBeforeCopiesWereNamedResumesUnlessANamedCopyTookOver() {
        let unnamed = ChangelogCopy(name: nil, sequence: 0, base: nil)
        #expect(unnamed.verdict(last: .copy(nil, sequence: nil)) == .resume)
        #expect(unnamed.verdict(last: .copy("b", sequence: 3)) == .older)
        #expect(unnamed.verdict(last: .nobody) != .resume)
    }

    @Test func theLastWriterKeepsItsFormInTheStore() {
        for writer in [LastWriter.nobody, .ended, .copy("a", sequence: 3), .copy(nil, sequence: nil)] {
            #expect(LastWriter(text: writer.text) == writer)
        }
        #expect(LastWriter(text: "something else") == nil)
    }

    /// A standby's copy is read on from its place only if it read its changelog to the end
    /// recently: one left unread longer than compaction keeps tombstones may have missed
    /// deletions, and is restored whole.
    @Test func aStandbysPlaceCountsOnlyWhileItWasReadRecently() throws {
        let database = try Database(DatabaseConfiguration(path: ":memory:"))
        try database.execute("CREATE TABLE store_identity(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        let hour: Int64 = 3_600_000
        let now: Int64 = 1_000 * hour
        #expect(try ChangelogCopy.freshStandbyPosition(of: database, now: now) == nil, "not a standby's store")
        try database.transaction { try ChangelogCopy.standBy(at: 420, caughtUpAt: now - 11 * hour, in: database) }
        #expect(try ChangelogCopy.freshStandbyPosition(of: database, now: now) == 420)
        #expect(try ChangelogCopy.freshStandbyPosition(of: database, now: now + 2 * hour) == nil, "13 hours unread")
        #expect(try ChangelogCopy.standbyPosition(of: database) == 420, "still a standby's store, to be restored whole")
        // A pass that found nothing new, recorded when the copy closes, keeps it fresh.
        try ChangelogCopy.markCaughtUp(at: now + 2 * hour, in: database)
        #expect(try ChangelogCopy.freshStandbyPosition(of: database, now: now + 2 * hour) == 420)
        // A store that became a copy of its own forgets both.
        _ = try database.transaction { try ChangelogCopy.begin(in: database, base: .nobody) }
        try ChangelogCopy.markCaughtUp(at: now, in: database)
        #expect(try ChangelogCopy.standbyPosition(of: database) == nil)
        #expect(try database.prepare("SELECT COUNT(*) FROM store_identity WHERE name = ?").queryOne(.text(ChangelogCopy.caughtUpRow)) { $0.int64(0) } == 0)
    }
}
