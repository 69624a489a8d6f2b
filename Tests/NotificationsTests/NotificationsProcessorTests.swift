import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

@testable import NotificationsService

/// The notifications service's handlers on a real database, through the exactly-once transaction.
@Suite struct NotificationsProcessorTests {
    final class Harness {
        let directory: URL
        let applier: BatchApplier<NotificationsProcessor>
        var offsets: [String: Int64] = [:]

        /// `before` sees the store before the service migrates it: a store of an older release.
        init(inboxHorizonDays: Int64? = nil, before: ((Database) throws -> Void)? = nil) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("notifications-tests-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("notifications.sqlite").path))
            try before?(database)
            let processor = NotificationsProcessor(
                program: try Program.load(json: ReferenceProgram.bytes()), templates: try MessageTemplates.load(json: ReferenceProgram.templatesBytes()))
            // One partition, so that every member's records, all on partition 0, share one task and stream time.
            applier = try BatchApplier(
                database: database, processor: processor, timerMode: .streamTime, partitionCount: 1,
                inboxHorizon: inboxHorizonDays.map { $0 * 86_400_000 })
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        @discardableResult
        func apply(_ events: [(CloudEvent, String)]) throws -> [(topic: String, event: CloudEvent)] {
            let polled = events.map { event, topic -> PolledRecord<NotificationRecord> in
                offsets[topic, default: 0] += 1
                let record = ConsumedRecord(topic: topic, partition: 0, offset: offsets[topic]!, key: Array(event.subject!.utf8), value: event.encoded())
                let decoded: Result<Decoded<NotificationRecord>, Rejection>
                do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                return PolledRecord(record: record, decoded: decoded)
            }
            return try applier.apply(polled).outbox.map { ($0.topic, try CloudEvent.decode($0.value!)) }
        }

        func stored(_ member: String) throws -> String {
            let blob = try applier.database.prepare("SELECT state FROM notification_members WHERE member = ?").queryOne(.text(member)) { $0.blob(0) }
            return String(decoding: blob ?? [], as: UTF8.self)
        }
    }

    static func event(_ id: String, _ type: String, _ member: String, _ time: String, _ data: JSONObject, source: String) throws -> CloudEvent {
        CloudEvent(id: id, source: source, type: type, time: try EventTime.parse(time), subject: member, data: .object(data))
    }
    static func registered(_ member: String, _ data: JSONObject) throws -> (CloudEvent, String) {
        (try event("reg-\(member)", EventType.memberRegistered, member, "2026-01-01T10:00:00+08:00", data, source: "shop"), Topics.members.name)
    }
    static func upgraded(_ id: String, _ member: String, _ time: String, source: String = "loyalty/tiers") throws -> (CloudEvent, String) {
        (try event(id, "tier.upgraded", member, time, ["memberId": .string(member), "from": "growth", "to": "gold"], source: source), Topics.tierChanges.name)
    }

    @Test func lookalikeMemberIdsAreTwoMembersWhicheverBatchTheyShare() throws {
        // One `String`, two record keys and two rows: "Zoé" composed and decomposed.
        let composed = "Zo\u{E9}"
        let decomposed = "Zoe\u{301}"
        let events = [
            try Self.registered(composed, ["locale": "en", "channels": ["email": "first@example.com"]]),
            try Self.registered(decomposed, ["locale": "en", "channels": ["email": "second@example.com"]]),
            try Self.upgraded("t1", decomposed, "2026-01-02T10:00:00+08:00"),
        ]
        let oneBatch = try Harness()
        let published = try oneBatch.apply(events)
        let eventByEvent = try Harness()
        for event in events { try eventByEvent.apply([event]) }
        for harness in [oneBatch, eventByEvent] {
            #expect(try harness.stored(composed).contains("first@example.com") && !harness.stored(composed).contains("second@"))
            #expect(try harness.stored(decomposed).contains("second@example.com") && !harness.stored(decomposed).contains("first@"))
        }
        let message = try #require(published.first { $0.topic == Topics.notifications.name }?.event)
        #expect(message.subject.map { Array($0.utf8) } == Array(decomposed.utf8))
    }

    @Test func aTierChangeReadBeforeTheRegistrationWaitsAndThenGoesOnThePreferredChannel() throws {
        let h = try Harness()
        #expect(try h.apply([try Self.upgraded("t1", "m", "2026-01-02T10:00:00+08:00")]).isEmpty)
        let out = try h.apply([try Self.registered("m", [
            "locale": "en", "channels": ["sms": "13800138000", "email": "m@example.com"], "preferredChannel": "email",
        ])])
        let message = try #require(out.first { $0.topic == Topics.notifications.name }?.event)
        let expectedTime = try EventTime.parse("2026-01-02T10:00:00+08:00")
        #expect(message.type == "notification.requested" && message.time == expectedTime)
        #expect(message.data["channel"]?.stringValue == "email")
        #expect(message.data["address"] == nil, "no topic keeps a copy of the address")
        #expect(!String(decoding: message.encoded(), as: UTF8.self).contains("m@example.com"))
        let contact = try h.applier.processor.memberResource("m", "contacts/email", in: h.applier.database)
        #expect(contact == .found(["memberId": "m", "channel": "email", "address": "m@example.com"]), "senders look the address up")
        #expect(message.data["text"]?.stringValue == "Congratulations! You moved up from Growth to Gold.")
        #expect(message.data["causes"]?.arrayValue == ["t1"])
        #expect(message.id == "notification/\(message.data["idempotencyKey"]!.stringValue!)")
    }

    /// A tier change sent again months later by a restored tiers task, after the inbox let its
    /// first copy go, gives no second message.
    @Test func aTierChangeSentAgainAfterTheInboxForgotItGivesNoSecondMessage() throws {
        let h = try Harness(inboxHorizonDays: 30)
        try h.apply([try Self.registered("m", ["locale": "en", "channels": ["email": "m@example.com"]])])
        let first = try h.apply([try Self.upgraded("t1", "m", "2026-01-02T10:00:00+08:00")])
        #expect(first.filter { $0.topic == Topics.notifications.name }.count == 1)
        try h.apply([(try Self.event("u", EventType.memberUpdated, "m", "2026-05-02T10:00:00+08:00", ["locale": "en"], source: "shop"), Topics.members.name)])
        #expect(try h.applier.database.prepare("SELECT COUNT(*) FROM inbox WHERE event_id = 't1'").queryOne { $0.int64(0) } == 0)
        let again = try h.apply([try Self.upgraded("t1", "m", "2026-01-02T10:00:00+08:00"), try Self.upgraded("t2", "m", "2026-01-03T10:00:00+08:00")])
        let messages = again.filter { $0.topic == Topics.notifications.name }.map(\.event)
        #expect(messages.map { $0.data["causes"]?.arrayValue } == [["t2"]], "t1 again gives nothing; t2, as late and new, its message")
    }

    /// Messages sent before the sent table was keyed by member stay in the member view, and
    /// still keep a tier change sent again from giving a second message.
    @Test func messagesSentBeforeTheUpgradeAreKeptAndStillRecogniseTheirCauses() throws {
        let h = try Harness(inboxHorizonDays: 30) { database in
            try database.migrate(RuntimeSchema.migrations + NotificationsSchema.migrations.filter { $0.version < 102 })
            try database.prepare("""
                INSERT INTO notification_sent(idempotency_key, member, type, channel, send_at, causes)
                VALUES('k-old', 'm', 'tier-up', 'email', ?, 'before,t1')
                """).run(.integer(try EventTime.parse("2026-01-02T10:00:00+08:00").millis))
        }
        try h.apply([try Self.registered("m", ["locale": "en", "channels": ["email": "m@example.com"]])])
        let view = try #require(try h.applier.processor.memberView("m", in: h.applier.database, asOf: nil)?.objectValue)
        #expect(view["sent"]?.arrayValue?.compactMap { $0.objectValue?["idempotencyKey"]?.stringValue } == ["k-old"])
        // Months later, past the inbox's 30 days, t1 comes again.
        try h.apply([(try Self.event("u", EventType.memberUpdated, "m", "2026-05-02T10:00:00+08:00", ["locale": "en"], source: "shop"), Topics.members.name)])
        let again = try h.apply([try Self.upgraded("t1", "m", "2026-01-02T10:00:00+08:00"), try Self.upgraded("t2", "m", "2026-01-03T10:00:00+08:00")])
        let messages = again.filter { $0.topic == Topics.notifications.name }.map(\.event)
        #expect(messages.map { $0.data["causes"]?.arrayValue } == [["t2"]], "t1 was a cause of the message sent before the upgrade")
        let sent = try h.applier.database.prepare("SELECT idempotency_key FROM notification_sent WHERE member = 'm' ORDER BY send_at").query { $0.string(0) }
        #expect(sent.count == 2 && sent.first == "k-old")
    }

    /// A store restored from a changelog that an older release began: its sent messages are
    /// logged keyed by their idempotency key alone, and land in the table as it is keyed now.
    @Test func sentMessagesLoggedBeforeTheUpgradeAreRestoredInTheNewShape() throws {
        let h = try Harness()
        let database = h.applier.database
        let capture = try RuntimeSchema.changelogCapture(of: database, upgrades: h.applier.processor.loggedRowUpgrades)
        let sendAt = try EventTime.parse("2026-01-02T10:00:00+08:00").millis
        let logged = RowChange(
            table: "notification_sent", key: [.text("k-old")],
            row: [.text("k-old"), .text("m"), .text("tier-up"), .text("email"), .integer(sendAt), .text("t1")])
        // Through the bytes a changelog record carries.
        try database.transaction { try capture.apply(RowChange(encodedKey: logged.encodedKey, encodedValue: logged.encodedValue)) }
        try h.apply([try Self.registered("m", ["locale": "en", "channels": ["email": "m@example.com"]])])
        let view = try #require(try h.applier.processor.memberView("m", in: database, asOf: nil)?.objectValue)
        let sent = try #require(view["sent"]?.arrayValue?.first?.objectValue)
        #expect(sent["idempotencyKey"]?.stringValue == "k-old" && sent["type"]?.stringValue == "tier-up" && sent["channel"]?.stringValue == "email")
        #expect(sent["sendAt"]?.stringValue == EventTime(millis: sendAt).description && sent["causes"]?.stringValue == "t1")
        // Without the service's upgrades the row fits no table.
        let plain = try RuntimeSchema.changelogCapture(of: database, upgrades: [])
        #expect(throws: RowChangeFormatError.self) { try database.transaction { try plain.apply(logged) } }
    }

    @Test func theMemberViewShowsTheStoredStateWithMaskedAddresses() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", [
            "locale": "en", "marketingConsent": true, "channels": ["sms": "13800138000", "email": "m@example.com"], "preferredChannel": "email",
        ])])
        let view = try #require(try h.applier.processor.memberView("m", in: h.applier.database, asOf: nil)?.objectValue)
        #expect(view["member"]?.stringValue == "m" && view["locale"]?.stringValue == "en" && view["registered"] == .bool(true))
        #expect(view["channels"] == .object(["sms": "138****8000", "email": "m***@example.com"]))
        #expect(view["preferredChannel"]?.stringValue == "email" && view["v"] == nil)
        #expect(try h.applier.processor.memberView("nobody", in: h.applier.database, asOf: nil) == nil)
    }

    @Test func noChannelIsADeadLetterAndAForgedSourceIsRefused() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", [:])])
        let out = try h.apply([try Self.upgraded("t1", "m", "2026-01-02T10:00:00+08:00"), try Self.upgraded("t2", "m", "2026-01-02T11:00:00+08:00", source: "shop")])
        #expect(out.map(\.topic) == [Topics.deadLetters.name, Topics.deadLetters.name])
        #expect(out.map { $0.event.data["reason"]?.stringValue } == ["no-channel", "forbidden-source"])
    }

    @Test func closingAMemberErasesItsContactDataFromTheDatabase() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", ["channels": ["sms": "13800138000"], "birthday": "03-04"])])
        #expect(try h.stored("m").contains("13800138000"))
        let processor = h.applier.processor
        #expect(try processor.memberResource("m", "contacts/sms", in: h.applier.database) == .found(["memberId": "m", "channel": "sms", "address": "13800138000"]))
        #expect(try processor.memberResource("m", "contacts/email", in: h.applier.database) == .notFound("member m has no email address"))
        #expect(try processor.memberResource("m", "contacts/fax", in: h.applier.database) == .notFound("no channel fax (push, wechat, sms, email)"))
        try h.apply([(try Self.event("close", EventType.memberClosed, "m", "2026-02-01T10:00:00+08:00", [:], source: "shop"), Topics.members.name)])
        #expect(try !h.stored("m").contains("13800138000"))
        #expect(try processor.memberResource("m", "contacts/sms", in: h.applier.database) == .gone("member m is closed: their contact data was erased"))
        // A later profile update of the closed member is not kept either.
        try h.apply([(try Self.event("upd", EventType.memberUpdated, "m", "2026-02-01T11:00:00+08:00", ["channels": ["sms": "13900139000"]], source: "shop"), Topics.members.name)])
        #expect(try !h.stored("m").contains("13900139000"))
        let after = try h.apply([try Self.upgraded("t1", "m", "2026-02-02T10:00:00+08:00")])
        #expect(after.isEmpty, "nothing more is sent")
        let reason = try h.applier.database.prepare("SELECT reason FROM notification_suppressed").queryOne { $0.string(0) }
        #expect(reason == "member-closed")
    }

    @Test func earnedPointsAreDigestedTheNextMorning() throws {
        let h = try Harness()
        try h.apply([try Self.registered("m", ["channels": ["push": "tok"], "locale": "en"])])
        func earned(_ id: String, _ points: Int64, _ time: String) throws -> (CloudEvent, String) {
            (try Self.event(id, "points.earned", "m", time, ["points": .int(points), "source": "check-in"], source: "loyalty/points"), Topics.pointsLedger.name)
        }
        #expect(try h.apply([try earned("e1", 1, "2026-01-05T09:00:00+08:00"), try earned("e2", 2, "2026-01-05T21:00:00+08:00")]).isEmpty)
        let next = try h.apply([try earned("e3", 2, "2026-01-06T09:00:00+08:00")])
        let digest = try #require(next.first { $0.topic == Topics.notifications.name }?.event)
        let eight = try EventTime.parse("2026-01-06T08:00:00+08:00")
        #expect(digest.time == eight)
        #expect(digest.data["text"]?.stringValue == "You earned 3 points on 2026-01-05 (2 entries).")
        #expect(digest.data["category"]?.stringValue == "digest")
    }
}
