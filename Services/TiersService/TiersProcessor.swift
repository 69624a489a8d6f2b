import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// The tiers service in the exactly-once loop: reads paid and refunded orders, keeps each
/// member's qualifying figures and tier, sends the tier bonus of each order (decided on the
/// tier held just before it) to the points service as a grant, reverses it on refunds, and
/// publishes tier changes and a compacted tier status per member.
public final class TiersProcessor: StreamProcessor {
    public typealias Body = TierInput

    public let name = "tiers"
    public let platform = Platform.loyalty
    /// Orders; and the shop's other topics for their time only, so that the progress tiers
    /// promises points keeps up with everything points reads from the shop.
    public let inputTopics = [Topics.orders.name, Topics.members.name, Topics.engagement.name, Topics.pointsRequests.name]
    /// Points waits for tiers' progress before it applies what could precede a tier bonus;
    /// notifications before it applies what could precede a tier change.
    public let progressTopics = [Topics.pointsCommands.name, Topics.tierChanges.name]
    public let sortedInputTopics: Set<String> = []
    /// Tier bonuses and their reversals go to points signed.
    public let commandTopics: Set<String> = [Topics.pointsCommands.name]
    /// A member's tier is the member's alone, and tiers sends itself nothing.
    public let tasksAreIndependent = true
    public var migrations: [Migration] {
        [Migration(version: 100, name: "tier members", sql: """
            -- Each member's tier and the figures that decide it, in one row.
            CREATE TABLE tier_members(member TEXT PRIMARY KEY, level TEXT NOT NULL, state BLOB NOT NULL) WITHOUT ROWID;
            """),
         Migration(version: 101, name: "tier history", sql: """
            -- Every tier change of every member, for the member view (the topic has them too).
            CREATE TABLE tier_history(member TEXT NOT NULL, time INTEGER NOT NULL, change TEXT NOT NULL, from_tier TEXT NOT NULL,
                                      to_tier TEXT NOT NULL, reason TEXT NOT NULL, event_id TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE INDEX tier_history_by_member ON tier_history(member, time);
            """),
         Migration(version: 102, name: "older orders apart from tier members", sql: """
            -- A member's state keeps its latest 16 orders and 16 refund ids (the last by id); the
            -- others live here, read only when an order or refund names them, so the state does
            -- not grow with every order. The flags say whether the member has any here.
            ALTER TABLE tier_members ADD COLUMN orders_apart INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE tier_members ADD COLUMN refunds_apart INTEGER NOT NULL DEFAULT 0;
            CREATE TABLE tier_orders(member TEXT NOT NULL, order_id TEXT NOT NULL, time INTEGER NOT NULL, paid_minor INTEGER NOT NULL,
                                     refunded_minor INTEGER NOT NULL, bonus INTEGER NOT NULL, bonus_reversed INTEGER NOT NULL,
                                     PRIMARY KEY(member, order_id)) WITHOUT ROWID;
            CREATE TABLE tier_refund_ids(member TEXT NOT NULL, refund_id TEXT NOT NULL, PRIMARY KEY(member, refund_id)) WITHOUT ROWID;
            """)]
    }

    public let rules: TierRules
    static let source = "loyalty/tiers"
    static let monthEnd = "month-end"

    /// Members read or changed in the current batch, written back in `finish`; by the member
    /// id's bytes, as the `tier_members` table keys them.
    private var members: [ExactText: CachedMember] = [:]

    struct CachedMember {
        var member: TierMember
        var changed = false
        var time: EventTime
        /// What of the member's orders and refund ids is kept apart (`tier_orders`,
        /// `tier_refund_ids`), looked up there this batch, and found.
        var apart = ApartLookups<TierOrder>()
    }

    public init(program: Program) {
        rules = TierRules(program: program)
    }

    /// The member's tier, since when, the qualifying spend in the window at the instant (the
    /// latest payment, or `asOf`) and what the next level needs. The tier itself is the one in
    /// force now: tier history is on `loyalty.tiers.changes`.
    public func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue? {
        guard let state = try database.prepare("SELECT state FROM tier_members WHERE member = ?").queryOne(.text(member), row: { $0.blob(0) })
        else { return nil }
        let levels = rules.program.tiers.levels
        let account = try TierMember.decode(state, levels: levels)
        let at = asOf ?? account.payments.map(\.time).max() ?? account.levelSince
        let spend = rules.qualifyingSpend(of: account, at: at)
        let history = try database.prepare(
            "SELECT time, change, from_tier, to_tier, reason FROM tier_history WHERE member = ? AND time <= ? ORDER BY time, event_id"
        ).query(.text(member), .integer(asOf?.millis ?? .max)) { row -> JSONValue in
            .object(["time": .string(EventTime(millis: row.int64(0)).description), "change": .string(row.string(1)),
                     "from": .string(row.string(2)), "to": .string(row.string(3)), "reason": .string(row.string(4))])
        }
        var view: JSONObject = [
            "member": .string(member), "tier": .string(levels[account.level].id), "tierSince": .string(account.levelSince.description),
            "qualifyingSpendMinor": .int(spend), "measuredAt": .string(at.description),
            "windowDays": .int(rules.program.tiers.qualifyingWindowDays), "history": .array(history),
        ]
        if account.level + 1 < levels.count {
            let next = levels[account.level + 1]
            view["next"] = ["tier": .string(next.id), "qualifyingSpendMinor": .int(next.qualifyingSpendMinor),
                            "missingMinor": .int(max(0, next.qualifyingSpendMinor - spend))]
        }
        return .object(view)
    }

    public func rank(of eventType: String) -> Int { Rank.of(eventType: eventType) }

    public func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<TierInput> {
        if record.topic != Topics.orders.name {
            return .clockOnly(record, body: .clock) { !rules.program.isBeforeStart($0.time, type: $0.type) }
        }
        let (event, _) = try record.cloudEvent()
        let member = try event.member(keyedBy: record.keyString)
        if rules.program.isBeforeStart(event.time, type: event.type) {
            throw Rejection(code: .beforeProgramStart, detail: rules.program.beforeStartDetail(event.time))
        }
        let input: PointsInput
        do { input = try PointsInput.decode(type: event.type, data: event.data) } catch { throw Rejection(code: error.code, detail: error.detail) }
        let body: TierInput
        switch input {
        case .orderPaid(let order): body = .paid(order)
        case .orderRefunded(let refund): body = .refunded(refund)
        default: throw Rejection(code: .unknownType, detail: "the tiers service does not read \(event.type) on \(record.topic)")
        }
        return Decoded(eventID: event.id, time: event.time, rank: Rank.of(eventType: event.type), member: member,
                       payloadHash: canonicalPayloadHash(event), body: body)
    }

    public func apply(_ input: Decoded<TierInput>, in batch: Batch) throws {
        guard input.body.orderReference != nil else { return }
        var cached = try load(input.member, batch.database, since: input.time)
        try loadOrder(named: input.body, into: &cached, batch.database)
        var member = cached.member
        let wasAbove = member.level > 0
        let decision: TierDecision
        switch input.body {
        case .paid(let order): decision = rules.pay(order, at: input.time, member: &member)
        case .refunded(let refund): decision = rules.refund(refund, at: input.time, member: &member)
        case .clock: return
        }
        for grant in decision.grants {
            try batch.emit(CloudEvent(
                id: "tier-bonus/\(input.eventID)", source: Self.source, type: EventType.pointsGrant, time: input.time, subject: input.member,
                data: .object(["component": "tier-bonus", "orderId": .string(grant.orderID), "points": .int(grant.points)])),
                to: Topics.pointsCommands.name)
        }
        for reversal in decision.reversals {
            try batch.emit(CloudEvent(
                id: "tier-bonus-reversal/\(input.eventID)", source: Self.source, type: EventType.pointsReverse, time: input.time,
                subject: input.member,
                data: .object([
                    "component": "tier-bonus", "orderId": .string(reversal.orderID), "refundId": .string(reversal.refundID ?? ""),
                    "points": .int(reversal.points),
                ])),
                to: Topics.pointsCommands.name)
        }
        try publish(decision.changes, of: member, cause: input.eventID, batch)
        if !wasAbove && member.level > 0 { try scheduleMonthEnd(after: input.time, member: input.member, batch) }
        // Counted per change, not per batch: the version is the same however the inputs were batched.
        member.statusVersion += 1
        cached.member = member
        cached.changed = true
        cached.time = input.time
        members[ExactText(input.member)] = cached
    }

    public func fire(_ timer: DueTimer, in batch: Batch) throws {
        guard timer.kind == Self.monthEnd else { return }
        var cached = try load(timer.member, batch.database, since: timer.due)
        var member = cached.member
        let decision = rules.monthEnd(at: timer.due, member: &member)
        try publish(decision.changes, of: member, cause: "month-end/\(timer.due.millis)", batch)
        if member.level > 0 { try scheduleMonthEnd(after: timer.due, member: timer.member, batch) }
        member.statusVersion += 1
        cached.member = member
        cached.changed = true
        cached.time = timer.due
        members[ExactText(timer.member)] = cached
    }

    public func finish(_ batch: Batch) throws {
        let save = try batch.database.prepare(
            "INSERT INTO tier_members(member, level, state, orders_apart, refunds_apart) VALUES(?, ?, ?, ?, ?) ON CONFLICT(member) DO UPDATE SET "
                + "level = excluded.level, state = excluded.state, orders_apart = excluded.orders_apart, refunds_apart = excluded.refunds_apart")
        let saveOrder = try batch.database.prepare(
            "INSERT INTO tier_orders(member, order_id, time, paid_minor, refunded_minor, bonus, bonus_reversed) VALUES(?, ?, ?, ?, ?, ?, ?) "
                + "ON CONFLICT(member, order_id) DO UPDATE SET refunded_minor = excluded.refunded_minor, bonus_reversed = excluded.bonus_reversed")
        let saveRefundID = try batch.database.prepare("INSERT OR IGNORE INTO tier_refund_ids(member, refund_id) VALUES(?, ?)")
        // The keys sorted, not the entries: a sort moves what it sorts, and a member's state is large.
        for key in members.keys.sorted() {
            guard let entry = members[key], entry.changed else { continue }
            let id = key.text
            let member = entry.member
            // Orders read from apart stay there; the state's own beyond its share move there.
            var state = member
            let ordersApart = try entry.apart.settleOrders(&state.orders, time: { $0.time }) {
                try saveOrder.run(.text(id), .text($0), .integer($1.time.millis), .integer($1.paidMinor),
                                  .integer($1.refundedMinor), .integer($1.bonus), .integer($1.bonusReversed))
            }
            let refundIDsApart = try entry.apart.settleRefundIDs(&state.refundIDs) { try saveRefundID.run(.text(id), .text($0)) }
            let levels = rules.program.tiers.levels
            try save.run(.text(id), .text(levels[member.level].id), .blob(state.encoded(levels: levels)),
                         .integer(ordersApart ? 1 : 0), .integer(refundIDsApart ? 1 : 0))
            let status = CloudEvent.encode(
                id: "tier-status/\(id)/\(member.statusVersion)", source: Self.source, type: "tier.status", time: entry.time, subject: id,
                data: { rules.writeStatus(of: member, at: entry.time, to: &$0) })
            try batch.emit(topic: Topics.tierStatus.name, key: id, value: status)
        }
        members.removeAll(keepingCapacity: true)
    }

    public func abandon() { members.removeAll() }

    private func load(_ id: String, _ database: Database, since: EventTime) throws -> CachedMember {
        if let cached = members[ExactText(id)] { return cached }
        let row = try database.prepare("SELECT state, orders_apart, refunds_apart FROM tier_members WHERE member = ?")
            .queryOne(.text(id)) { ($0.blob(0), $0.int64(1) != 0, $0.int64(2) != 0) }
        let member = try row.map { try TierMember.decode($0.0, levels: rules.program.tiers.levels) } ?? TierMember(member: id, since: since)
        return CachedMember(member: member, time: since, apart: ApartLookups(ordersApart: row?.1 ?? false, refundIDsApart: row?.2 ?? false))
    }

    /// Puts the order an input names, and whether its refund id was accepted before, into the
    /// cached member from where they are kept apart (once a batch), as the rules expect to find
    /// them in the member's state.
    private func loadOrder(named input: TierInput, into cached: inout CachedMember, _ database: Database) throws {
        guard let reference = input.orderReference else { return }
        let id = cached.member.member
        if let order = try cached.apart.findOrder(reference.orderID, inState: cached.member.orders[reference.orderID] != nil, read: { orderID in
            try database.prepare("SELECT time, paid_minor, refunded_minor, bonus, bonus_reversed FROM tier_orders WHERE member = ? AND order_id = ?")
                .queryOne(.text(id), .text(orderID)) {
                    TierOrder(time: EventTime(millis: $0.int64(0)), paidMinor: $0.int64(1), refundedMinor: $0.int64(2), bonus: $0.int64(3),
                              bonusReversed: $0.int64(4))
                }
        }) {
            cached.member.orders[reference.orderID] = order
        }
        if let refundID = reference.refundID,
           try cached.apart.findRefundID(refundID, inState: cached.member.refundIDs.contains(refundID), isApart: { refundID in
               try database.prepare("SELECT 1 FROM tier_refund_ids WHERE member = ? AND refund_id = ?").queryOne(.text(id), .text(refundID)) { $0.int64(0) } != nil
           }) {
            cached.member.refundIDs.insert(refundID)
        }
    }

    private func publish(_ changes: [TierChange], of member: TierMember, cause: String, _ batch: Batch) throws {
        for change in changes {
            let value = CloudEvent.encode(
                id: "tier-change/\(member.member)/\(cause)", source: Self.source, type: "tier.\(change.kind.rawValue)", time: change.time,
                subject: member.member, data: { rules.write(change, member: member.member, to: &$0) })
            try batch.emit(topic: Topics.tierChanges.name, key: member.member, value: value)
            try batch.database.prepare(
                "INSERT OR IGNORE INTO tier_history(member, time, change, from_tier, to_tier, reason, event_id) VALUES(?, ?, ?, ?, ?, ?, ?)"
            ).run(.text(member.member), .integer(change.time.millis), .text(change.kind.rawValue), .text(change.from), .text(change.to),
                  .text(change.reason), .text("tier-change/\(member.member)/\(cause)/\(change.kind.rawValue)"))
        }
    }

    private func scheduleMonthEnd(after time: EventTime, member: String, _ batch: Batch) throws {
        let calendar = rules.program.calendar
        let next = calendar.startOfMonth(monthIndex: calendar.localDate(of: time).monthIndex + 1)
        try batch.schedule(TimerRequest(due: next, rank: Rank.monthEnd, member: member, kind: Self.monthEnd, ref: Self.monthEnd))
    }
}

/// What the tiers service reads.
public enum TierInput: Sendable {
    case paid(OrderPaid)
    case refunded(OrderRefunded)
    /// A record of the shop's other topics, read for its time only.
    case clock

    /// The order the tier rules read for this input, with the refund id they check.
    var orderReference: (orderID: String, refundID: String?)? {
        switch self {
        case .paid(let order): (order.orderID, nil)
        case .refunded(let refund): (refund.orderID, refund.refundID)
        case .clock: nil
        }
    }
}
