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
}
