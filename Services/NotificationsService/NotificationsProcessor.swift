import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// The notifications service in the exactly-once loop. It reads member profiles, the points
/// ledger, tier changes and campaign rewards; decides every message by the notification
/// policy on event time; and publishes outbound messages for the senders on
/// `loyalty.notifications`, each with an idempotency key.
public final class NotificationsProcessor: StreamProcessor {
    public typealias Body = NotificationRecord

    public let name = "notifications"
    public let platform = Platform.loyalty
    public let inputTopics = [Topics.members.name, Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name]
    public let sortedInputTopics: Set<String> = []
    public let serviceInputTopics: Set<String> = [Topics.pointsLedger.name, Topics.tierChanges.name, Topics.campaignRewards.name]
    /// Each output read waits for its producer's progress, so messages never depend on which
    /// service runs behind.
    public let upstreamProducers: [String: Set<String>] = [
        Topics.pointsLedger.name: ["points"], Topics.tierChanges.name: ["tiers"], Topics.campaignRewards.name: ["campaigns"],
    ]
    /// Member profiles carry contact data and birthdays: kept out of dead letters.
    public let personalDataTopics: Set<String> = [Topics.members.name]
    /// The one store of the platform that keeps contact addresses (erased at `member.closed`).
    public let storesPersonalData = true
    /// A member's messages and addresses are the member's alone, and notifications sends
    /// itself nothing.
    public let tasksAreIndependent = true
    public var migrations: [Migration] { NotificationsSchema.migrations }
    public var loggedRowUpgrades: [LoggedRowUpgrade] { NotificationsSchema.loggedRowUpgrades }
    public let rules: NotificationRules
    private let logger: Logger?
    static let source = "loyalty/notifications"

    /// Members read or changed in the current batch, written back in `finish`; by the member
    /// id's bytes, as `notification_members` keys them.
    private var members: [ExactText: (member: NotificationMember, changed: Bool)] = [:]

    /// The member's channels (masked), consent, held messages and pending digest, and the
    /// messages suppressed with their reasons (up to `asOf` when given).
    public func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue? {
        guard let state = try database.prepare("SELECT state FROM notification_members WHERE member = ?").queryOne(.text(member), row: { $0.blob(0) }),
              // The view lists the state as its JSON form did (whichever form is stored).
              var stored = try JSONValue.parse(NotificationMember.decode(state).encodedAsJSON()).objectValue
        else { return nil }
        var channels = JSONObject()
        for member in stored["channels"]?.objectValue?.members ?? [] {
            if let channel = Channel(rawValue: member.key), let address = member.value.stringValue {
                channels[member.key] = .string(ContactMask.mask(address, channel: channel))
            }
        }
        stored["channels"] = .object(channels)
        stored["v"] = nil
        let suppressed = try database.prepare(
            "SELECT type, reason, causes, time FROM notification_suppressed WHERE member = ? AND time <= ? ORDER BY time, seq"
        ).query(.text(member), .integer(asOf?.millis ?? .max)) { row -> JSONValue in
            .object(["type": .string(row.string(0)), "reason": .string(row.string(1)), "causes": .string(row.string(2)),
                     "time": .string(EventTime(millis: row.int64(3)).description)])
        }
        stored["suppressed"] = .array(suppressed)
        stored["sent"] = .array(try database.prepare(
            "SELECT type, channel, send_at, causes, idempotency_key FROM notification_sent WHERE member = ? AND send_at <= ? ORDER BY send_at, idempotency_key"
        ).query(.text(member), .integer(asOf?.millis ?? .max)) { row -> JSONValue in
            .object(["type": .string(row.string(0)), "channel": .string(row.string(1)), "sendAt": .string(EventTime(millis: row.int64(2)).description),
                     "causes": .string(row.string(3)), "idempotencyKey": .string(row.string(4))])
        })
        return .object(stored)
    }

    /// `contacts/<channel>`: the address senders deliver a message to, looked up when they send
    /// it (messages carry none). A closed member's contact data is gone for good: 410.
    public func memberResource(_ member: String, _ resource: String, in database: Database) throws -> MemberResource {
        let parts = resource.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "contacts" else {
            return .notFound("no resource \(resource); try contacts/<channel>")
        }
        guard let channel = Channel(rawValue: String(parts[1])) else {
            return .notFound("no channel \(parts[1]) (push, wechat, sms, email)")
        }
        guard let state = try database.prepare("SELECT state FROM notification_members WHERE member = ?").queryOne(.text(member), row: { $0.blob(0) })
        else { return .notFound("no member \(member) here") }
        let stored = try NotificationMember.decode(state)
        if stored.closed { return .gone("member \(member) is closed: their contact data was erased") }
        guard let address = stored.profile.channels[channel] else { return .notFound("member \(member) has no \(channel.rawValue) address") }
        return .found(.object(["memberId": .string(member), "channel": .string(channel.rawValue), "address": .string(address)]))
    }

    public init(program: Program, templates: MessageTemplates, logger: Logger? = nil) {
        rules = NotificationRules(program: program, templates: templates)
        self.logger = logger
    }

    public func rank(of eventType: String) -> Int { Rank.of(eventType: eventType) }

    // MARK: Decoding

    /// Ledger types that call for a message; the rest of the ledger is passed over unparsed.
    /// The ledger's types that may call for a message, as they stand in a record's bytes: the
    /// part they share, and each one's end.
    private static let ledgerTypePrefix = Array(#""type":"points."#.utf8)
    private static let ledgerTypeEnds = ["earned", "expiry-warning", "redeemed", "refused", "transferred-in"].map { Array("\($0)\"".utf8) }

    public func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<NotificationRecord> {
        if record.value == nil && record.topic == Topics.members.name {
            // A tombstone: the shop erasing a closed member's records from its compacted topic.
            return .passedOver(record, body: NotificationRecord(input: .ignored, record: record))
        }
        if record.topic == Topics.pointsLedger.name, let value = record.value, !value.contains(Self.ledgerTypePrefix, followedByAnyOf: Self.ledgerTypeEnds) {
            // Most of the ledger (releases, reversals, spending) calls for no message.
            return .passedOver(record, body: NotificationRecord(input: .ignored, record: record))
        }
        let (event, _) = try record.cloudEvent()
        let member = try event.member(keyedBy: record.keyString)
        let input = try input(of: event, topic: record.topic)
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: rank(of: event.type), member: member, payloadHash: canonicalPayloadHash(event),
            body: NotificationRecord(input: input, record: record))
        if case .ignored = input { decoded.isRelevant = false }
        if record.topic != Topics.members.name {
            decoded.rank = Rank.serviceOutput
            decoded.isExternalInput = false
        }
        return decoded
    }

    func input(of event: CloudEvent, topic: String) throws(Rejection) -> NotificationInput {
        let data = event.data.objectValue ?? JSONObject()
        if !event.data.isNull && event.data.objectValue == nil { throw Rejection(code: .invalidEvent, detail: "data must be a JSON object") }
        func requireSource(_ source: String) throws(Rejection) {
            guard event.source == source else { throw Rejection(code: .forbiddenSource, detail: "\(event.type) is accepted only from \(source), not \(event.source)") }
        }
        func int(_ key: String) -> Int64 { data[key]?.int64Value ?? 0 }
        func text(_ key: String) -> String { data[key]?.stringValue ?? "" }
        let details = data["details"]?.objectValue ?? JSONObject()
        let program = rules.program
        func tierName(_ id: String) -> String { program.tiers.levels.first { $0.id == id }?.name ?? id }
        func rewardName(_ id: String) -> String { program.catalogue[id]?.name ?? id }
        switch (topic, event.type) {
        case (Topics.members.name, EventType.memberRegistered), (Topics.members.name, EventType.memberUpdated):
            var profile = MemberProfile()
            do { try profile.update(from: data) } catch { throw Rejection(code: .invalidEvent, detail: "data.\(error.description)") }
            return event.type == EventType.memberRegistered ? .registered(data) : .updated(data)
        case (Topics.members.name, EventType.memberClosed):
            return .closed
        case (Topics.members.name, _):
            throw Rejection(code: .unknownType, detail: "the notifications service does not read \(event.type) on \(topic)")
        case (Topics.pointsLedger.name, "points.earned"):
            try requireSource("loyalty/points")
            return .earned(points: int("points"))
        case (Topics.pointsLedger.name, "points.expiry-warning"):
            try requireSource("loyalty/points")
            let expiresAt: EventTime
            do { expiresAt = try EventTime.parse(text("expiresAt")) } catch {
                throw Rejection(code: .invalidEvent, detail: "data.expiresAt: \(error)")
            }
            let lastDay = program.calendar.localDate(of: expiresAt.adding(milliseconds: -1))
            return .message(.pointsExpiring, ["points": String(int("points")), "lastDay": lastDay.description])
        case (Topics.pointsLedger.name, "points.redeemed"):
            try requireSource("loyalty/points")
            return .message(.redemptionDone, ["reward": rewardName(details["reward"]?.stringValue ?? ""), "points": String(abs(int("points")))])
        case (Topics.pointsLedger.name, "points.refused"):
            try requireSource("loyalty/points")
            guard text("subject") == "redemption" else { return .ignored }
            return .message(.redemptionRefused, ["reward": rewardName(text("detail")), "reason": text("reason")])
        case (Topics.pointsLedger.name, "points.transferred-in"):
            try requireSource("loyalty/points")
            return .message(.transferReceived, ["points": String(int("points")), "from": details["from"]?.stringValue ?? ""])
        case (Topics.pointsLedger.name, _):
            return .ignored
        case (Topics.tierChanges.name, _):
            try requireSource("loyalty/tiers")
            switch event.type {
            case "tier.upgraded": return .message(.tierUp, ["tier": tierName(text("to")), "previousTier": tierName(text("from"))])
            case "tier.downgraded": return .message(.tierDown, ["tier": tierName(text("to")), "previousTier": tierName(text("from"))])
            case "tier.at-risk": return .message(.tierAtRisk, ["tier": tierName(text("to"))])
            default: throw Rejection(code: .unknownType, detail: "the notifications service does not read \(event.type) on \(topic)")
            }
        case (Topics.campaignRewards.name, "campaign.rewarded"):
            try requireSource("loyalty/campaigns")
            switch text("trigger") {
            case "birthday": return .message(.birthday, ["points": String(int("points"))])
            case "dormant" where data["coupon"] != nil: return .message(.winBack, ["coupon": text("coupon")])
            default:
                return .message(.campaignReward, [
                    "campaign": text("campaignName"), "points": String(int("points")), "coupon": text("coupon"), "badge": text("badge"),
                ])
            }
        default:
            throw Rejection(code: .unknownType, detail: "the notifications service does not read \(event.type) on \(topic)")
        }
    }

    // MARK: Applying

    /// A ledger entry, tier change or reward sent again after its inbox row was pruned (by a
    /// restored task of its service): applied before if a message sent names it among its
    /// causes. Counting it again would move the daily cap and a digest's total.
    public func hasApplied(_ input: Decoded<NotificationRecord>, in batch: Batch) throws -> Bool {
        try batch.database.prepare("SELECT 1 FROM notification_sent WHERE member = ? AND instr(',' || causes || ',', ?) > 0 LIMIT 1")
            .queryOne(.text(input.member), .text(",\(input.eventID),")) { _ in true } ?? false
    }

    public func apply(_ input: Decoded<NotificationRecord>, in batch: Batch) throws {
        var member = try load(input.member, batch.database)
        var decision = NotificationDecision()
        switch input.body.input {
        case .registered(let data):
            do { try rules.register(data, member: &member) } catch {
                return try batch.deadLetter(input.body.record, reason: Rejection(code: .invalidEvent, detail: "data.\(error)"))
            }
        case .updated(let data):
            do { try rules.update(data, member: &member) } catch {
                return try batch.deadLetter(input.body.record, reason: Rejection(code: .invalidEvent, detail: "data.\(error)"))
            }
        case .closed:
            rules.close(member: &member)
            try ParkedRecords.discard(member: input.member, in: batch)
            batch.noteErasure()
        case .ignored:
            return
        case .earned, .message:
            // A ledger entry or a tier change can be read before the member's registration.
            guard member.registered || member.closed else {
                return try ParkedRecords.park(
                    input, record: input.body.record, until: input.time.adding(hours: rules.program.members.unknownMemberWaitHours), in: batch)
            }
            decision = decide(input.body.input, cause: input.eventID, at: input.time, member: &member)
        }
        try record(decision, member: member, batch)
        if case .registered = input.body.input { try applyParked(of: input.member, batch) }
    }

    private func decide(_ input: NotificationInput, cause: String, at time: EventTime, member: inout NotificationMember) -> NotificationDecision {
        switch input {
        case .earned(let points): rules.earned(points: points, cause: cause, at: time, member: &member)
        case .message(let type, let fields): rules.notify(type, fields: fields, cause: cause, at: time, member: &member)
        case .registered, .updated, .closed, .ignored: NotificationDecision()
        }
    }

    private func applyParked(of id: String, _ batch: Batch) throws {
        for parked in try ParkedRecords.take(member: id, in: batch) {
            // It decoded when it arrived, but the service may have been restarted with other rules since.
            let input: Decoded<NotificationRecord>
            do { input = try decode(parked) } catch {
                try batch.deadLetter(parked, reason: error)
                continue
            }
            var member = try load(id, batch.database)
            let decision = decide(input.body.input, cause: input.eventID, at: input.time, member: &member)
            try record(decision, member: member, batch)
        }
    }

    public func fire(_ timer: DueTimer, in batch: Batch) throws {
        if timer.kind == ParkedRecords.timerKind {
            return try ParkedRecords.expire(timer, waitHours: rules.program.members.unknownMemberWaitHours, in: batch)
        }
        var member = try load(timer.member, batch.database)
        let decision: NotificationDecision
        switch timer.kind {
        case NotificationTimer.Kind.digest.rawValue:
            guard let day = Int64(timer.ref) else { return }
            decision = rules.digest(day: day, at: timer.due, member: &member)
        case NotificationTimer.Kind.held.rawValue:
            decision = rules.releaseHeld(at: timer.due, member: &member)
        default:
            return
        }
        try record(decision, member: member, batch)
    }

    /// Writes a decision: outbound messages, suppressions, dead letters for members with no channel, timers.
    private func record(_ decision: NotificationDecision, member: NotificationMember, _ batch: Batch) throws {
        let id = member.member
        members[ExactText(id)] = (member, true)
        for message in decision.messages {
            let value = CloudEvent.encode(
                id: "notification/\(message.idempotencyKey)", source: Self.source, type: "notification.requested", time: message.sendAt,
                subject: id, data: { message.write(member: id, to: &$0) })
            try batch.emit(topic: Topics.notifications.name, key: id, value: value)
            try batch.database.prepare(
                "INSERT OR IGNORE INTO notification_sent(idempotency_key, member, type, channel, send_at, causes) VALUES(?, ?, ?, ?, ?, ?)"
            ).run(.text(message.idempotencyKey), .text(id), .text(message.type.rawValue), .text(message.channel.rawValue),
                  .integer(message.sendAt.millis), .text(message.causes.joined(separator: ",")))
            // The fields cost a mask and a date format each: built only when someone reads them.
            if let logger, logger.minimumLevel <= .debug {
                logger.debug("notification", [
                    "member": id, "type": message.type.rawValue, "channel": message.channel.rawValue,
                    "to": ContactMask.mask(message.address, channel: message.channel), "sendAt": message.sendAt.rfc3339,
                ])
            }
        }
        if !decision.suppressed.isEmpty {
            let insert = try batch.database.prepare(
                "INSERT INTO notification_suppressed(member, type, reason, causes, time) VALUES(?, ?, ?, ?, ?)")
            for suppressed in decision.suppressed {
                try insert.run(.text(id), .text(suppressed.type.rawValue), .text(suppressed.reason),
                               .text(suppressed.causes.joined(separator: ",")), .integer(suppressed.time.millis))
            }
        }
        for message in decision.undeliverable {
            try batch.deadLetter(
                id: "no-channel/\(message.type.rawValue)/\(message.causes.first ?? id)", key: id,
                reason: Rejection(code: .noChannel, detail: "member \(id) has no address on any channel for a \(message.type.rawValue) message"),
                about: ["memberId": .string(id), "messageType": .string(message.type.rawValue), "causes": .array(message.causes.map { .string($0) })])
        }
        for timer in decision.timers {
            try batch.schedule(TimerRequest(
                due: timer.due, rank: timer.kind == .digest ? Rank.digest : Rank.heldMessage, member: id, kind: timer.kind.rawValue, ref: timer.ref))
        }
    }

    public func finish(_ batch: Batch) throws {
        let save = try batch.database.prepare(
            "INSERT INTO notification_members(member, state) VALUES(?, ?) ON CONFLICT(member) DO UPDATE SET state = excluded.state")
        // The keys sorted, not the entries: a sort moves what it sorts, and a member's state is large.
        for id in members.keys.sorted() {
            guard let entry = members[id], entry.changed else { continue }
            try save.run(.text(id.text), .blob(entry.member.encoded()))
        }
        members.removeAll(keepingCapacity: true)
    }

    public func abandon() { members.removeAll() }

    private func load(_ id: String, _ database: Database) throws -> NotificationMember {
        if let cached = members[ExactText(id)] { return cached.member }
        let stored = try database.prepare("SELECT state FROM notification_members WHERE member = ?").queryOne(.text(id)) { $0.blob(0) }
        return try stored.map { try NotificationMember.decode($0) } ?? NotificationMember(member: id)
    }
}

/// A decoded input with the record it came from (kept when it waits for a registration).
public struct NotificationRecord: Sendable {
    public var input: NotificationInput
    public var record: ConsumedRecord
}

/// What the notifications service reads.
public enum NotificationInput: Sendable {
    case registered(JSONObject)
    case updated(JSONObject)
    case closed
    /// Points earned (for the daily digest).
    case earned(points: Int64)
    /// A message an event calls for, with its template fields.
    case message(MessageType, [String: String])
    case ignored
}

extension OutboundMessage {
    /// The `data` of a `notification.requested` event (docs/notifications.md).
    func write(member: String, to w: inout JSONWriter) {
        w.beginObject()
        w.key("memberId"); w.string(member)
        w.key("type"); w.string(type.rawValue)
        w.key("category"); w.string(type.category.rawValue)
        w.key("channel"); w.string(channel.rawValue)
        // No address: senders look it up when they send (`GET /members/<id>/contacts/<channel>`),
        // so that no topic keeps a copy past the member's closure.
        w.key("locale"); w.string(locale)
        w.key("text"); w.string(text)
        w.key("sendAt"); w.time(sendAt)
        w.key("templateVersion"); w.string(templateVersion)
        w.key("idempotencyKey"); w.string(idempotencyKey)
        w.key("causes"); w.beginArray()
        for cause in causes { w.string(cause) }
        w.endArray()
        w.endObject()
    }
}
