import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// Where campaigns learns what a budget has left.
public enum BudgetDecisions: Sendable {
    /// Counted in the service's store, which must then hold every task (the `service` layout).
    case counted
    /// Claimed of the keeper of budgets (``BudgetKeeperProcessor``) on `claims`, answered on
    /// `answers`: any layout, tasks on any host (campaigns.md, "Budgets when tasks live on
    /// different hosts").
    case keeper(claims: String, answers: String)

    /// The keeper's topics from the catalogue.
    public static let keeperOfTheCatalogue = BudgetDecisions.keeper(
        claims: Topics.campaignBudgetClaims.name, answers: Topics.campaignBudgetAnswers.name)

    /// The keeper's topics, if budgets are claimed.
    public var topics: (claims: String, answers: String)? {
        switch self {
        case .counted: nil
        case .keeper(let claims, let answers): (claims, answers)
        }
    }
}

/// What a member's decision is taken on: a record as read, or a timer as it fell due. Kept
/// with a claim until its answer, or aside while an earlier claim of the member waits.
enum BudgetTrigger {
    case record(Decoded<CampaignRecord>)
    case timer(DueTimer)

    var time: EventTime {
        switch self {
        case .record(let input): input.time
        case .timer(let timer): timer.due
        }
    }

    var rank: Int {
        switch self {
        case .record(let input): input.rank
        case .timer(let timer): timer.rank
        }
    }

    /// The id the trigger's outputs are named after: the event's id, or the timer's.
    var cause: String {
        switch self {
        case .record(let input): input.eventID
        case .timer(let timer):
            switch timer.kind {
            case CampaignTimer.Kind.birthday.rawValue, CampaignTimer.Kind.dormant.rawValue: "\(timer.kind)/\(timer.member)/\(timer.due.millis)"
            default: "\(timer.kind)/\(timer.ref)"
            }
        }
    }

    /// The id of the claim the trigger sends, which the keeper orders claims by within their key.
    var claimID: String { Self.claimID(of: cause) }

    /// The id of the claim a trigger named `cause` sends.
    static func claimID(of cause: String) -> String { claimPrefix + cause }

    /// The trigger a claim id names, nil if it names none.
    static func cause(ofClaim claim: String) -> String? {
        claim.hasPrefix(claimPrefix) ? String(claim.dropFirst(claimPrefix.count)) : nil
    }

    private static let claimPrefix = "budget-claim/"

    /// The trigger's columns in `campaign_budget_claims` and `campaign_kept_aside`, after the
    /// member and task: time, rank, cause, then the record (topic, partition, offset, value) or
    /// the timer (kind, ref, payload).
    var columns: [SQLValue] {
        switch self {
        case .record(let input):
            let record = input.body.record
            return [.integer(time.millis), .integer(Int64(rank)), .text(cause), .text(record.topic), .integer(Int64(record.partition)),
                    .integer(record.offset), .blob(record.value ?? []), .null, .null, .null]
        case .timer(let timer):
            return [.integer(time.millis), .integer(Int64(rank)), .text(cause), .null, .null, .null, .null,
                    .text(timer.kind), .text(timer.ref), .blob(timer.payload)]
        }
    }

    static let columnNames = "time, rank, cause, topic, partition, record_offset, value, timer_kind, timer_ref, timer_payload"
}

/// A stored trigger, read back: the record to decode again, or the timer.
enum StoredTrigger {
    case record(ConsumedRecord)
    case timer(DueTimer)

    /// Reads the columns ``BudgetTrigger/columnNames`` names, from `first`.
    init(_ row: Statement, from first: Int32, member: String, task: Int32) {
        if row.isNull(first + 3) {
            self = .timer(DueTimer(
                task: task, due: EventTime(millis: row.int64(first)), rank: Int(row.int64(first + 1)), member: member,
                kind: row.string(first + 7), ref: row.string(first + 8), payload: row.blob(first + 9)))
        } else {
            self = .record(ConsumedRecord(
                topic: row.string(first + 3), partition: Int32(row.int64(first + 4)), offset: row.int64(first + 5),
                key: Array(member.utf8), value: row.blob(first + 6)))
        }
    }
}

extension CampaignsProcessor {
    /// With the keeper, an answer releases what a member kept aside, whose timers may be due
    /// already: they fire in that batch, so that no promise waits on a record that never comes.
    public var firesDueTimersAtBatchEnd: Bool { budgets.topics != nil }

    /// The keeper's answer: signed by the keeper, for the member it is keyed by, with the
    /// points granted each budget. It waits for nothing and moves no clock: it is dated at its
    /// claim's trigger, long past.
    func decodeAnswer(_ event: CloudEvent, member: String, canonicalForm: [UInt8], record: ConsumedRecord) throws(Rejection) -> Decoded<CampaignRecord> {
        guard event.type == EventType.campaignsBudgetAnswer else {
            throw Rejection(code: .unknownType, detail: "\(record.topic) carries \(EventType.campaignsBudgetAnswer) only, not \(event.type)")
        }
        // Only the keeper answers; a forged answer grants nothing.
        guard event.source == BudgetKeeperProcessor.source else {
            throw Rejection(code: .forbiddenSource, detail: "\(record.topic) is written by \(BudgetKeeperProcessor.source) only, not \(event.source)")
        }
        if let rejection = commandKeys.verify(event, canonicalForm: canonicalForm) { throw rejection }
        guard let claim = event.data["claim"]?.stringValue, BudgetTrigger.cause(ofClaim: claim) != nil else {
            throw Rejection(code: .invalidEvent, detail: "data.claim: expected the id of the claim answered")
        }
        guard let members = event.data["granted"]?.objectValue?.members else {
            throw Rejection(code: .invalidEvent, detail: "data.granted: expected the points granted by campaign")
        }
        var granted: [String: Int64] = [:]
        for entry in members {
            guard let points = entry.value.int64Value, points >= 0 else {
                throw Rejection(code: .invalidEvent, detail: "data.granted.\(entry.key): expected points, 0 or more")
            }
            granted[entry.key] = points
        }
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: Rank.returnedCommand, member: member, payloadHash: payloadHash(canonicalForm),
            body: CampaignRecord(input: .answered(claim: claim, granted: granted), record: record))
        decoded.isExternalInput = false
        decoded.movesStreamTime = false
        return decoded
    }

    /// Decides a trigger of a member that waits for no answer. Counted, or with no budgeted
    /// campaign in effect: at once. With the keeper: `decide` runs on a copy with the view
    /// `probing`; a trigger that asks no budget
    /// keeps what the copy decided, and one that does sends its claim and returns nil (the
    /// member waits, its state as before the trigger). `answered`: the trigger again, with the
    /// keeper's answer.
    func decideOnce(
        _ trigger: BudgetTrigger, answered: [String: Int64]?, campaigns: [CampaignDefinition], member: inout CampaignMember, _ batch: Batch,
        _ decide: (inout CampaignMember, inout CampaignTotals) throws -> CampaignDecision
    ) throws -> CampaignDecision? {
        guard let topics = budgets.topics else { return try decide(&member, &totals) }
        if answered == nil && !campaigns.contains(where: { $0.budgetPoints != nil }) {
            // Nothing to ask: no copy, no second pass.
            return try decide(&member, &totals)
        }
        if let answered {
            totals.budgetView = .answered(answered)
            defer { totals.budgetView = .counted }
            return try decide(&member, &totals)
        }
        var probedMember = member
        var probed = totals
        probed.budgetView = .probing
        probed.claim = BudgetClaim()
        let decision = try decide(&probedMember, &probed)
        guard !probed.claim.isEmpty else {
            // No budget asked: probing decided as the keeper's empty answer would.
            probed.budgetView = .counted
            member = probedMember
            totals = probed
            return decision
        }
        var data = probed.claim.json.objectValue ?? JSONObject()
        data["rank"] = .int(Int64(trigger.rank))
        try batch.emit(CloudEvent(
            id: trigger.claimID, source: Self.source, type: EventType.campaignsBudgetClaim, time: trigger.time, subject: member.member,
            data: .object(data)), to: topics.claims)
        // Answered already (a store restored or rebuilt from older state reads the answer again,
        // and may read it before the trigger): decided with that answer at once. The claim is
        // sent again all the same, a duplicate the keeper drops, so that the outputs are the same.
        if let early = try takeEarlyAnswer(to: trigger.claimID, member: member.member, batch.database) {
            totals.budgetView = .answered(early)
            defer { totals.budgetView = .counted }
            return try decide(&member, &totals)
        }
        // The timers it sets do not depend on budgets: those the copy set are the answer's.
        let timersFrom = decision.timers.map(\.due.millis).min()
        try batch.database.prepare(
            "INSERT INTO campaign_budget_claims(member, task, \(BudgetTrigger.columnNames), timers_from) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ).run([.text(member.member), .integer(Int64(batch.task))] + trigger.columns + [timersFrom.map { .integer($0) } ?? .null])
        members[ExactText(member.member)] = (member, true)
        waiting[ExactText(member.member)] = true
        return nil
    }

    /// An answer read before its claim was made, taken for it.
    private func takeEarlyAnswer(to claim: String, member: String, _ database: Database) throws -> [String: Int64]? {
        guard let raw = try database.prepare("SELECT granted FROM campaign_budget_answers WHERE member = ? AND claim = ?")
            .queryOne(.text(member), .text(claim), row: { $0.blob(0) }) else { return nil }
        try database.prepare("DELETE FROM campaign_budget_answers WHERE member = ? AND claim = ?").run(.text(member), .text(claim))
        var granted: [String: Int64] = [:]
        for entry in try JSONValue.parse(raw).objectValue?.members ?? [] { granted[entry.key] = entry.value.int64Value ?? 0 }
        return granted
    }

    /// Whether the member waits on `claim`, or keeps aside the trigger that sends it.
    func isWanted(_ claim: String, member: String, _ database: Database) throws -> Bool {
        guard let cause = BudgetTrigger.cause(ofClaim: claim) else { return false }
        return try database.prepare(
            "SELECT 1 FROM campaign_budget_claims WHERE member = ?1 AND cause = ?2 UNION ALL SELECT 1 FROM campaign_kept_aside WHERE member = ?1 AND cause = ?2"
        ).queryOne(.text(member), .text(cause)) { _ in true } ?? false
    }

    /// Whether the member waits for an answer to a claim.
    func isWaiting(_ member: String, _ database: Database) throws -> Bool {
        guard budgets.topics != nil else { return false }
        if let known = waiting[ExactText(member)] { return known }
        let found = try database.prepare("SELECT 1 FROM campaign_budget_claims WHERE member = ?").queryOne(.text(member)) { _ in true } ?? false
        waiting[ExactText(member)] = found
        return found
    }

    /// Cancels the member's timers of this kind and ref: those set, and those kept aside (a
    /// member's timers kept aside, when its kept records are applied, are still to fire, as
    /// set timers are; one a record moves must not also fire where it was).
    func cancelTimers(member: String, kind: String, ref: String, _ batch: Batch) throws {
        try batch.cancelTimers(member: member, kind: kind, ref: ref)
        guard budgets.topics != nil else { return }
        try batch.database.prepare("DELETE FROM campaign_kept_aside WHERE member = ? AND timer_kind = ? AND timer_ref = ?")
            .run(.text(member), .text(kind), .text(ref))
    }

    /// Cancels the member's timers of this kind whatever their ref, set or kept aside.
    func cancelTimers(member: String, kind: String, _ batch: Batch) throws {
        try batch.cancelTimers(member: member, kind: kind)
        guard budgets.topics != nil else { return }
        try batch.database.prepare("DELETE FROM campaign_kept_aside WHERE member = ? AND timer_kind = ?").run(.text(member), .text(kind))
    }

    /// Keeps a waiting member's record or timer until its claim is answered.
    func keepAside(_ trigger: BudgetTrigger, _ batch: Batch) throws {
        let member = switch trigger {
        case .record(let input): input.member
        case .timer(let timer): timer.member
        }
        try batch.database.prepare(
            "INSERT OR IGNORE INTO campaign_kept_aside(member, task, \(BudgetTrigger.columnNames)) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ).run([.text(member), .integer(Int64(batch.task))] + trigger.columns)
    }

    /// The keeper's answer to the member's claim: the trigger applied with it, then what the
    /// member kept aside, in order, until one claims again. An answer to a claim that no longer
    /// waits (sent again) changes nothing.
    func applyAnswer(claim: String, granted: [String: Int64], member: String, _ batch: Batch) throws {
        let pending = try batch.database.prepare(
            "SELECT task, cause, \(BudgetTrigger.columnNames) FROM campaign_budget_claims WHERE member = ?"
        ).queryOne(.text(member)) { row in
            (cause: row.string(1), trigger: StoredTrigger(row, from: 2, member: member, task: Int32(row.int64(0))))
        }
        guard let pending, BudgetTrigger.claimID(of: pending.cause).isExactly(claim) else {
            // Not the claim that waits: one whose trigger is still to be read again (a store
            // restored or rebuilt), kept until then, or one answered before, kept in vain.
            let stored = JSONValue.object(JSONObject(granted.sorted { $0.key < $1.key }.map { JSONMember(key: $0.key, value: .int($0.value)) }))
            return try batch.database.prepare("INSERT OR IGNORE INTO campaign_budget_answers(member, claim, granted) VALUES(?, ?, ?)")
                .run(.text(member), .text(claim), .blob(Array(stored.jsonString.utf8)))
        }
        try batch.database.prepare("DELETE FROM campaign_budget_claims WHERE member = ?").run(.text(member))
        waiting[ExactText(member)] = false
        try apply(pending.trigger, answered: granted, batch)
        // What waited behind the claim, in the order the task met it (at one time a timer before
        // a record, as the runtime fires them), until one of it claims again. The member's
        // timers set meanwhile and due before the next of it fire first, as they would have
        // then (what is left of them fires at the end of the batch, or waits behind a new claim).
        let next = try batch.database.prepare(
            "SELECT task, time, rank, cause, \(BudgetTrigger.columnNames) FROM campaign_kept_aside WHERE member = ? "
                + "ORDER BY time, topic IS NOT NULL, rank, cause LIMIT 1")
        let remove = try batch.database.prepare("DELETE FROM campaign_kept_aside WHERE member = ? AND time = ? AND rank = ? AND cause = ?")
        while try !isWaiting(member, batch.database),
              let kept = try next.queryOne(.text(member), row: { row in
                  (key: [SQLValue.integer(row.int64(1)), .integer(row.int64(2)), .text(row.string(3))], time: row.int64(1), rank: row.int(2),
                   trigger: StoredTrigger(row, from: 4, member: member, task: Int32(row.int64(0))))
              }) {
            // A timer due at a record's time fires before it; before a timer, by rank.
            let firesBefore: (time: Int64, rank: Int) = switch kept.trigger {
            case .record: (kept.time, .max)
            case .timer: (kept.time, kept.rank)
            }
            if let timer = try batch.takeTimer(member: member, firingBefore: firesBefore) {
                try fireTrigger(timer, answered: nil, batch)
                continue
            }
            try remove.run([.text(member)] + kept.key)
            try apply(kept.trigger, answered: nil, batch)
        }
    }


    /// Applies a stored trigger: a record decoded again (the service may have restarted with
    /// other rules since it arrived), or a timer.
    private func apply(_ trigger: StoredTrigger, answered: [String: Int64]?, _ batch: Batch) throws {
        switch trigger {
        case .record(let record):
            let input: Decoded<CampaignRecord>
            do { input = try decode(record) } catch {
                return try batch.deadLetter(record, reason: error)
            }
            try applyTrigger(input, answered: answered, batch)
        case .timer(let timer):
            try fireTrigger(timer, answered: answered, batch)
        }
    }

    /// With the keeper: a task's promise on points' commands and on rewards stays at or below
    /// its earliest unanswered claim, whose answer publishes at the claim's time; on the claims
    /// topic, at or below the claim of its earliest record or timer kept aside (to the key:
    /// one may be kept at the very millisecond of its member's claim), and the earliest timer
    /// an unanswered trigger sets (it is set, and may fire, once the answer comes). One kept
    /// aside from before its member's claim (a late record) bounds nothing: its claim comes
    /// after the keeper has passed its time, whatever the promise, as any late record's
    /// outputs do.
    public func progressBounds(of tasks: [Int32], in database: Database) throws -> [Int32: [String: MergeKey]] {
        guard let topics = budgets.topics else { return [:] }
        let claims = try database.prepare("SELECT min(time), min(timers_from) FROM campaign_budget_claims WHERE task = ?")
        let kept = try database.prepare(
            "SELECT k.time, k.rank, k.cause FROM campaign_kept_aside k JOIN campaign_budget_claims c ON c.member = k.member "
                + "WHERE k.task = ? AND (k.time, k.rank, k.cause) > (c.time, c.rank, c.cause) ORDER BY k.time, k.rank, k.cause LIMIT 1")
        var bounds: [Int32: [String: MergeKey]] = [:]
        for task in tasks {
            let pending = try claims.queryOne(.integer(Int64(task))) { row in
                (claim: row.isNull(0) ? nil : row.int64(0), timers: row.isNull(1) ? nil : row.int64(1))
            }
            if let time = pending?.claim {
                let key = MergeKey(time: time, rank: .min, id: "")
                bounds[task, default: [:]][Topics.pointsCommands.name] = key
                bounds[task, default: [:]][Topics.campaignRewards.name] = key
            }
            var claimsBound = pending?.timers.map { MergeKey(time: $0, rank: .min, id: "") }
            if let (time, rank, cause) = try kept.queryOne(.integer(Int64(task)), row: { ($0.int64(0), $0.int(1), $0.string(2)) }) {
                claimsBound = min(claimsBound ?? .highest, MergeKey(time: time, rank: rank, id: BudgetTrigger.claimID(of: cause)))
            }
            if let claimsBound { bounds[task, default: [:]][topics.claims] = claimsBound }
        }
        return bounds
    }
}
