import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// The points service in the exactly-once loop: decodes member, order, engagement and
/// points-command records, applies the points rules, and writes the ledger, refusals,
/// balances and commands through the outbox.
public final class PointsProcessor: StreamProcessor {
    public typealias Body = PointsRecord

    public let name = "points"
    public let platform = Platform.loyalty
    public let inputTopics = [
        Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.pointsCommands.name,
    ]
    /// Other services' grants and the service's own commands share this topic.
    public let sortedInputTopics: Set<String> = [Topics.pointsCommands.name]
    /// Transfer legs and referral rewards go out signed.
    public let commandTopics: Set<String> = [Topics.pointsCommands.name]
    /// Grants and reversals from tiers and campaigns wait for both to have promised past them.
    public let upstreamProducers: [String: Set<String>] = [Topics.pointsCommands.name: ["tiers", "campaigns"]]
    /// Notifications waits for points' progress on the ledger.
    public let progressTopics = [Topics.pointsLedger.name]
    /// Reward stock spans every member, but is kept by the task of each reward's key and
    /// reserved by commands to it (architecture.md, "Global figures"): no figure spans tasks.
    public let figuresSpanTasks = false
    /// A transfer's credit given back and a reservation's answer go to the task that sent the
    /// credit or the reservation; nothing else a command causes goes anywhere.
    public let repliesGoBackToTheSender = true
    /// Commands only the platform sends, each signed with a command key: from anyone else they
    /// would mint points.
    static let signedTypes: Set<String> = EventType.internalCommands.union([
        EventType.pointsGrant, EventType.pointsReverse, EventType.adjust, EventType.openingBalance, EventType.releaseHeld,
    ])
    /// Member profiles carry contact data and birthdays: kept out of dead letters.
    public let personalDataTopics: Set<String> = [Topics.members.name]
    public var migrations: [Migration] { PointsSchema.migrations }

    public func rank(of eventType: String) -> Int { Rank.of(eventType: eventType) }

    public let rules: PointsRules
    /// Refusals by reason: of the current batch, and since start (for metrics).
    private var batchRefusals: [String: Int] = [:]
    private var refusalTotals: [String: Int] = [:]
    /// Accounts read or changed in the current batch, written back in `finish`; by the member
    /// id's bytes, as the `accounts` table keys them (two lookalike ids are two members). An
    /// account is out of it while one of its member's inputs or timers is applied.
    private var accounts: [ExactText: CachedAccount] = [:]
    static let source = "loyalty/points"

    struct CachedAccount {
        var account: PointsAccount?
        var entriesWhenLoaded: Int64
        var lastEntryTime: EventTime?
        var changed: Bool
        /// The member's task (a batch spans several).
        var task: Int32
        /// What of the member's orders and accepted refund ids is kept apart from the account
        /// (`account_orders`, `accepted_refunds`), looked up there this batch, and found.
        var apart = ApartLookups<OrderRecord>()
    }

    /// Checks the signatures of the platform's commands.
    public let commandKeys: CommandKeys
    /// The largest adjustment (either way) an operator may make in one command.
    public let adjustmentLimit: Int64

    public init(program: Program, commandKeys: CommandKeys, adjustmentLimit: Int64 = 100_000) {
        rules = PointsRules(program: program)
        self.commandKeys = commandKeys
        self.adjustmentLimit = adjustmentLimit
    }

    // MARK: Decoding

    public func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<PointsRecord> {
        if record.value == nil && record.topic == Topics.members.name {
            // A tombstone: the shop erasing a closed member's records from its compacted topic.
            return .passedOver(record, body: PointsRecord(event: PointsEvent(id: "", time: EventTime(millis: 0), member: "", input: .memberUpdated), raw: []))
        }
        let (event, raw) = try record.cloudEvent()
        var decoded = try decode(event, raw: raw, key: record.keyString)
        decoded.body.origin = (record.topic, record.partition, record.offset)
        if case .memberUpdated = decoded.body.event.input {
            // A profile (contact data, birthday) changes nothing here: read past, never kept,
            // not even while the member is unknown.
            decoded.isRelevant = false
            decoded.body.raw = []
        }
        return decoded
    }

    func decode(_ event: CloudEvent, raw: [UInt8], key: String?) throws(Rejection) -> Decoded<PointsRecord> {
        let member = try event.member(keyedBy: key)
        // Referral rewards and transfer legs are the service's own commands; from anyone else
        // they would mint points.
        if EventType.internalCommands.contains(event.type) && event.source != Self.source {
            throw Rejection(code: .forbiddenSource, detail: "\(event.type) is accepted only from \(Self.source), not \(event.source)")
        }
        // Grants and reversals come from the platform's services (tiers, campaigns), never a shop.
        if (event.type == EventType.pointsGrant || event.type == EventType.pointsReverse) && !event.source.hasPrefix("loyalty/") {
            throw Rejection(code: .forbiddenSource, detail: "\(event.type) is accepted only from loyalty/* services, not \(event.source)")
        }
        // A source is only a claim: the signature proves the platform sent it.
        // The canonical form is encoded once for both the signature and the inbox hash.
        let canonical = canonicalForm(of: event)
        if Self.signedTypes.contains(event.type), let rejection = commandKeys.verify(event, canonicalForm: canonical) { throw rejection }
        if rules.program.isBeforeStart(event.time, type: event.type) {
            throw Rejection(code: .beforeProgramStart, detail: rules.program.beforeStartDetail(event.time))
        }
        let input: PointsInput
        do {
            input = try PointsInput.decode(type: event.type, data: event.data)
        } catch {
            throw Rejection(code: error.code, detail: error.detail)
        }
        if input.isOperatorCommand, (event.data["operator"]?.stringValue ?? "").isEmpty {
            // An operator's command is made under someone's name.
            let named = switch input {
            case .openingBalance: "an opening balance names the operator who imported it"
            case .releaseHeld: "a release names the operator who made it"
            default: "an adjustment names the operator who made it"
            }
            throw Rejection(code: .invalidEvent, detail: "data.operator: \(named)")
        }
        if case .adjust(let adjustment) = input {
            // An operator's correction, not a way to print points: bounded.
            guard adjustment.points.magnitude <= adjustmentLimit.magnitude else {
                throw Rejection(code: .adjustmentOverLimit, detail: "data.points: at most \(adjustmentLimit) either way in one adjustment")
            }
        }
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: Rank.of(eventType: event.type), member: member,
            payloadHash: payloadHash(canonical),
            body: PointsRecord(event: PointsEvent(id: event.id, time: event.time, member: member, input: input), raw: raw))
        // Commands only the platform's services may send (checked above), whatever the lag they arrive with.
        decoded.isExternalInput = !(EventType.internalCommands.contains(event.type)
            || event.type == EventType.pointsGrant || event.type == EventType.pointsReverse)
        return decoded
    }

    /// What sends another member's task a command: a registration (its referrer's reward, and
    /// the kept events it releases), a transfer and its credit (given back when the recipient is
    /// unknown), a redemption of a stocked reward and its reservation (answered). Orders,
    /// engagement, grants and the rest change their member alone.
    public func mayCommandOtherTasks(_ input: Decoded<PointsRecord>) -> Bool {
        switch input.body.event.input {
        case .registered, .transfer, .transferCredit, .stockReservation: true
        case .redeem(let redemption): rules.program.catalogue[redemption.rewardID]?.stock != nil
        case .memberUpdated, .memberClosed, .orderPaid, .orderRefunded, .checkedIn, .reviewPosted, .contentShared, .taskCompleted,
             .grant, .reversal, .referralReward, .cashOffset, .adjust, .openingBalance, .transferReturned, .stockAnswer, .releaseHeld: false
        }
    }

    // MARK: Applying

    /// A grant, reversal or other command sent again after its inbox row was pruned: applied
    /// before if its member's ledger has an entry it caused. One that was refused, or gave no
    /// entry, is decided again as the first time, to the same refusal id. A reservation of
    /// reward stock: if its reward's task kept it as decided. (An answer needs no check: one to
    /// a redemption no longer held changes nothing.)
    public func hasApplied(_ input: Decoded<PointsRecord>, in batch: Batch) throws -> Bool {
        if case .stockReservation(let reservation) = input.body.event.input {
            return try batch.database.prepare("SELECT 1 FROM stock_reservations WHERE reward_id = ? AND request_id = ?")
                .queryOne(.text(reservation.rewardID), .text(reservation.requestID)) { _ in true } ?? false
        }
        return try batch.database.prepare("SELECT 1 FROM ledger WHERE member = ? AND cause_id = ? LIMIT 1")
            .queryOne(.text(input.member), .text(input.eventID)) { _ in true } ?? false
    }

    public func apply(_ input: Decoded<PointsRecord>, in batch: Batch) throws {
        let event = input.body.event
        if case .stockReservation(let reservation) = event.input {
            return try reserve(reservation, at: event.time, batch)
        }
        let key = ExactText(event.member)
        var cached = try takeAccount(event.member, batch)
        if let rejection = tooEarly(input, registeredAt: cached.account?.registeredAt) {
            accounts[key] = cached
            return try batch.deadLetter(input.body.consumedRecord, reason: rejection)
        }
        try loadOrder(named: event.input, into: &cached, batch)
        let wasRegistered = cached.account != nil
        let decision = rules.apply(event, to: &cached.account)
        if decision.memberUnknown {
            accounts[key] = cached
            try park(input, batch)
            return
        }
        try record(decision, into: &cached, batch)
        accounts[key] = cached
        if !wasRegistered, cached.account != nil {
            try applyParkedEvents(of: event.member, registeredAt: event.time, batch)
        }
    }

    public func fire(_ timer: DueTimer, in batch: Batch) throws {
        switch timer.kind {
        case TimerKind.release, TimerKind.expiry, TimerKind.expiryWarning, TimerKind.inactivity:
            var cached = try takeAccount(timer.member, batch)
            defer { accounts[ExactText(timer.member)] = cached }
            guard cached.account != nil else { return }
            let decision: PointsDecision
            switch timer.kind {
            case TimerKind.release:
                decision = rules.release(lotID: timer.ref, at: timer.due, account: &cached.account!)
            case TimerKind.expiry:
                decision = rules.expire(at: timer.due, account: &cached.account!)
            case TimerKind.expiryWarning:
                guard let expiresAt = Int64(timer.ref) else { return }
                decision = rules.warnOfExpiry(at: EventTime(millis: expiresAt), warnedAt: timer.due, account: cached.account!)
            default:
                decision = rules.deductForInactivity(at: timer.due, account: &cached.account!)
            }
            try record(decision, into: &cached, batch)
        case ParkedRecords.timerKind:
            try ParkedRecords.expire(timer, waitHours: rules.program.members.unknownMemberWaitHours, in: batch)
        default:
            break
        }
    }

    public func finish(_ batch: Batch) throws {
        let save = try batch.database.prepare(
            "INSERT INTO accounts(member, task, available, pending, debt, state, orders_apart, refunds_apart) VALUES(?, ?, ?, ?, ?, ?, ?, ?) "
                + "ON CONFLICT(member) DO UPDATE SET task = excluded.task, available = excluded.available, "
                + "pending = excluded.pending, debt = excluded.debt, state = excluded.state, "
                + "orders_apart = excluded.orders_apart, refunds_apart = excluded.refunds_apart")
        let saveOrder = try batch.database.prepare(
            "INSERT INTO account_orders(member, order_id, state) VALUES(?, ?, ?) ON CONFLICT(member, order_id) DO UPDATE SET state = excluded.state")
        let saveRefundID = try batch.database.prepare("INSERT OR IGNORE INTO accepted_refunds(member, refund_id) VALUES(?, ?)")
        // The keys sorted, not the entries: a sort moves what it sorts, and a member's state is large.
        for key in accounts.keys.sorted() {
            guard let cached = accounts[key], cached.changed else { continue }
            guard let account = cached.account else { continue }
            let member = key.text
            // Orders read from apart stay there; the account's own beyond its share move there. An
            // order only a bonus grant has named yet (its time is the grant's until it is paid)
            // stays; a paid order's time never changes, so the account keeps the latest 16 paid
            // orders however its inputs were batched.
            var state = account
            let ordersApart = try cached.apart.settleOrders(&state.orders, movable: { $0.accepted }, time: { $0.time }) {
                try saveOrder.run(.text(member), .text($0), .blob($1.encoded()))
            }
            let refundIDsApart = try cached.apart.settleRefundIDs(&state.acceptedRefundIDs) { try saveRefundID.run(.text(member), .text($0)) }
            try save.run(
                .text(member), .integer(Int64(cached.task)), .integer(account.balance.available),
                .integer(account.balance.pending), .integer(account.balance.debt), .blob(state.encoded()),
                .integer(ordersApart ? 1 : 0), .integer(refundIDsApart ? 1 : 0))
            if account.entries != cached.entriesWhenLoaded, let time = cached.lastEntryTime {
                let value = CloudEvent.encode(
                    id: "balance/\(member)/\(account.entries)", source: Self.source, type: "points.balance", time: time,
                    subject: member, data: { account.writeBalance(to: &$0) })
                try batch.emit(topic: Topics.pointsBalances.name, key: member, value: value)
            }
        }
        accounts.removeAll(keepingCapacity: true)
        for (reason, count) in batchRefusals { refusalTotals[reason, default: 0] += count }
        batchRefusals.removeAll()
    }

    public func abandon() {
        accounts.removeAll()
        batchRefusals.removeAll()
    }

    // MARK: Operators' views

    public func metricLines() -> [String] {
        ["# HELP loyalty_points_refusals_total Requests the points rules refused, by reason.",
         "# TYPE loyalty_points_refusals_total counter"]
            + refusalTotals.sorted { $0.key < $1.key }.map { "loyalty_points_refusals_total{service=\"points\",reason=\"\($0.key)\"} \($0.value)" }
    }

    /// Balance, lots with their expiry, every ledger entry with its cause, and refusals. As of a
    /// past instant: the entries dated up to it, the balance after the last of them, and each
    /// lot's points left then (from the entries' lot movements).
    public func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue? {
        try serializedMemberView(member, in: database, asOf: asOf).map { try JSONValue.parse($0) }
    }

    /// ``memberView(_:in:asOf:)`` written straight as JSON: a view holds every ledger entry of
    /// the member, and a tree of them cost three times the writing.
    public func serializedMemberView(_ member: String, in database: Database, asOf: EventTime?) throws -> [UInt8]? {
        guard let state = try database.prepare("SELECT state FROM accounts WHERE member = ?").queryOne(.text(member), row: { $0.blob(0) })
        else { return nil }
        let account = try PointsAccount.decode(state)
        let limit = asOf?.millis ?? .max
        let rows = try database.prepare(
            "SELECT sequence, entry_id, time, kind, source, points, available_after, pending_after, debt_after, cause_id, order_id, lots "
                + "FROM ledger WHERE member = ? AND time <= ? ORDER BY sequence"
        ).query(.text(member), .integer(limit)) { row in
            (sequence: row.int64(0), id: row.string(1), time: row.int64(2), kind: row.string(3), source: row.string(4), points: row.int64(5),
             available: row.int64(6), pending: row.int64(7), debt: row.int64(8), cause: row.string(9),
             order: row.isNull(10) ? nil : row.string(10), lots: row.string(11))
        }
        var balance = asOf == nil ? account.balance : Balance()
        if asOf != nil, let last = rows.last {
            balance = Balance(available: last.available, pending: last.pending, debt: last.debt)
        }
        // Points left in each lot at the instant: its movements up to it (the account holds
        // what is left now). A movement reads `lot:+5` or `lot:-3`, which `Int64` parses.
        var left: [String: Int64] = [:]
        if asOf != nil {
            for row in rows {
                for movement in row.lots.split(separator: " ") {
                    let parts = movement.split(separator: ":")
                    if parts.count == 2, let delta = Int64(parts[1]) { left[String(parts[0]), default: 0] += delta }
                }
            }
        }
        let refusals = try database.prepare("SELECT refusal_id, time, reason FROM refusals WHERE member = ? AND time <= ? ORDER BY time, refusal_id")
            .query(.text(member), .integer(limit)) { row in (id: row.string(0), time: row.int64(1), reason: row.string(2)) }
        var writer = JSONWriter(capacity: 512 + rows.count * 256)
        writer.beginObject()
        writer.key("member"); writer.string(member)
        writer.key("registeredAt"); writer.time(account.registeredAt)
        writer.key("closed"); writer.bool(account.closed)
        writer.key("balance")
        writer.beginObject()
        writer.key("available"); writer.int(balance.available)
        writer.key("pending"); writer.int(balance.pending)
        writer.key("debt"); writer.int(balance.debt)
        writer.key("net"); writer.int(balance.net)
        writer.endObject()
        writer.key("lots")
        writer.beginArray()
        for lot in account.lots {
            let remaining = asOf == nil ? lot.remaining : (left[lot.id] ?? 0)
            if let asOf, remaining == 0 || lot.earnedAt > asOf { continue }
            writer.beginObject()
            writer.key("lotId"); writer.string(lot.id)
            writer.key("source"); writer.string(lot.source)
            writer.key("points"); writer.int(lot.points)
            writer.key("remaining"); writer.int(remaining)
            writer.key("pending"); writer.bool(asOf.map { lot.availableAt > $0 } ?? lot.pending)
            writer.key("availableAt"); writer.time(lot.availableAt)
            writer.key("expiresAt"); writer.time(lot.expiresAt)
            writer.endObject()
        }
        writer.endArray()
        writer.key("entries")
        writer.beginArray()
        for row in rows {
            writer.beginObject()
            writer.key("sequence"); writer.int(row.sequence)
            writer.key("entryId"); writer.string(row.id)
            writer.key("time"); writer.time(EventTime(millis: row.time))
            writer.key("kind"); writer.string(row.kind)
            writer.key("source"); writer.string(row.source)
            writer.key("points"); writer.int(row.points)
            writer.key("causeId"); writer.string(row.cause)
            writer.key("balanceAfter")
            Balance(available: row.available, pending: row.pending, debt: row.debt).write(to: &writer)
            if let order = row.order { writer.key("orderId"); writer.string(order) }
            writer.endObject()
        }
        writer.endArray()
        writer.key("refusals")
        writer.beginArray()
        for refusal in refusals {
            writer.beginObject()
            writer.key("refusalId"); writer.string(refusal.id)
            writer.key("time"); writer.time(EventTime(millis: refusal.time))
            writer.key("reason"); writer.string(refusal.reason)
            writer.endObject()
        }
        writer.endArray()
        // Redemptions waiting for their reward's stock (the latest state: not as of `asOf`);
        // one whose answer was lost is released by `loyalty release-held`.
        if asOf == nil && !account.heldRedemptions.isEmpty {
            writer.key("heldRedemptions")
            writer.beginArray()
            for held in account.heldRedemptions {
                writer.beginObject()
                writer.key("requestId"); writer.string(held.requestID)
                writer.key("time"); writer.time(held.time)
                writer.key("rewardId"); writer.string(held.rewardID)
                writer.key("quantity"); writer.int(held.quantity)
                writer.key("points"); writer.int(held.points)
                writer.endObject()
            }
            writer.endArray()
        }
        if let asOf { writer.key("asOf"); writer.time(asOf) }
        writer.endObject()
        return writer.bytes
    }

    // MARK: Pieces

    /// Decides a reservation of a reward this task owns, takes its units, and answers the
    /// member's task.
    private func reserve(_ reservation: StockReservation, at time: EventTime, _ batch: Batch) throws {
        let taken = try batch.database.prepare("SELECT taken FROM reward_stock WHERE reward_id = ?")
            .queryOne(.text(reservation.rewardID)) { $0.int64(0) } ?? 0
        let answer = rules.reserve(reservation, taken: taken)
        try batch.database.prepare("INSERT OR IGNORE INTO stock_reservations(reward_id, request_id) VALUES(?, ?)")
            .run(.text(reservation.rewardID), .text(reservation.requestID))
        if answer.refusal == nil, rules.program.catalogue[reservation.rewardID]?.stock != nil {
            try batch.database.prepare(
                "INSERT INTO reward_stock(reward_id, taken) VALUES(?, ?) ON CONFLICT(reward_id) DO UPDATE SET taken = taken + excluded.taken"
            ).run(.text(reservation.rewardID), .integer(reservation.quantity))
        }
        try batch.emit(Self.event(for: .answerStock(member: reservation.member, answer, time: time)), to: Topics.pointsCommands.name)
    }

    /// The member's account taken out of the batch's cache (read from the store the first time
    /// in a batch), while applying an input or timer of the member's own task. The caller
    /// changes it and puts it back: left in the cache as well, a timer's first change to its
    /// lots or orders would copy them all. (An input's changes are still made to a copy, by
    /// the rules, which leave the account as it was when they refuse the input.)
    private func takeAccount(_ member: String, _ batch: Batch) throws -> CachedAccount {
        if let cached = accounts.removeValue(forKey: ExactText(member)) { return cached }
        let row = try batch.database.prepare("SELECT state, orders_apart, refunds_apart FROM accounts WHERE member = ?")
            .queryOne(.text(member)) { ($0.blob(0), $0.int64(1) != 0, $0.int64(2) != 0) }
        let account = try row.map { try PointsAccount.decode($0.0) }
        var cached = CachedAccount(
            account: account, entriesWhenLoaded: account?.entries ?? 0, lastEntryTime: nil, changed: false, task: batch.task)
        cached.apart = ApartLookups(ordersApart: row?.1 ?? false, refundIDsApart: row?.2 ?? false)
        return cached
    }

    /// Puts the order an input names, and whether its refund id was accepted before, into the
    /// cached account from where they are kept apart (once a batch), as the rules expect to
    /// find them in the account.
    private func loadOrder(named input: PointsInput, into cached: inout CachedAccount, _ batch: Batch) throws {
        guard let reference = input.orderReference, let member = cached.account?.member else { return }
        let database = batch.database
        if let order = try cached.apart.findOrder(reference.orderID, inState: cached.account?.orders[reference.orderID] != nil, read: { id in
            try database.prepare("SELECT state FROM account_orders WHERE member = ? AND order_id = ?")
                .queryOne(.text(member), .text(id)) { $0.blob(0) }.map { try OrderRecord.decode($0) }
        }) {
            cached.account?.orders[order.id] = order
        }
        if let refundID = reference.refundID,
           try cached.apart.findRefundID(refundID, inState: cached.account?.acceptedRefundIDs.contains(refundID) == true, isApart: { id in
               try database.prepare("SELECT 1 FROM accepted_refunds WHERE member = ? AND refund_id = ?").queryOne(.text(member), .text(id)) { $0.int64(0) } != nil
           }) {
            cached.account?.acceptedRefundIDs.insert(refundID)
        }
    }

    /// Writes a decision's entries, refusals, timers and commands.
    private func record(_ decision: PointsDecision, into cached: inout CachedAccount, _ batch: Batch) throws {
        cached.changed = true
        let database = batch.database
        if !decision.entries.isEmpty {
            let insert = try database.prepare(
                "INSERT INTO ledger(member, sequence, entry_id, time, kind, source, points, available_after, pending_after, "
                    + "debt_after, cause_id, order_id, lots) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for entry in decision.entries {
                let event = CloudEvent.encode(
                    id: entry.id, source: Self.source, type: entry.eventType, time: entry.time, subject: entry.member,
                    data: { entry.write(to: &$0) })
                try insert.run(
                    .text(entry.member), .integer(entry.sequence), .text(entry.id), .integer(entry.time.millis),
                    .text(entry.kind.rawValue), .text(entry.source), .integer(entry.points),
                    .integer(entry.balanceAfter.available), .integer(entry.balanceAfter.pending),
                    .integer(entry.balanceAfter.debt), .text(entry.causeID), entry.orderID.map { .text($0) } ?? .null,
                    .text(entry.lots.map { "\($0.lotID):\($0.delta >= 0 ? "+" : "")\($0.delta)" }.joined(separator: " ")))
                try batch.emit(topic: Topics.pointsLedger.name, key: entry.member, value: event)
                cached.lastEntryTime = entry.time
            }
        }
        if !decision.refusals.isEmpty {
            let insert = try database.prepare(
                "INSERT OR IGNORE INTO refusals(refusal_id, member, time, reason, event) VALUES(?, ?, ?, ?, ?)")
            for refusal in decision.refusals {
                batchRefusals[refusal.reason.rawValue, default: 0] += 1
                let event = CloudEvent.encode(
                    id: refusal.id, source: Self.source, type: "points.refused", time: refusal.time, subject: refusal.member,
                    data: { $0.value(refusal.json) })
                try insert.run(.text(refusal.id), .text(refusal.member), .integer(refusal.time.millis), .text(refusal.reason.rawValue), .blob(event))
                try batch.emit(topic: Topics.pointsLedger.name, key: refusal.member, value: event)
            }
        }
        for release in decision.releases {
            guard let member = cached.account?.member else { continue }
            try batch.schedule(TimerRequest(
                due: release.due, rank: TimerKind.rank(TimerKind.release), member: member, kind: TimerKind.release, ref: release.lotID))
        }
        if let member = cached.account?.member {
            try scheduleTimers(of: decision, member: member, now: batch.streamTime, batch)
        }
        for warning in decision.warnings {
            let event = CloudEvent(
                id: warning.id, source: Self.source, type: "points.expiry-warning", time: warning.time, subject: warning.member,
                data: .object(JSONObject([
                    "memberId": .string(warning.member), "expiresAt": .string(warning.expiresAt.rfc3339), "points": .int(warning.points),
                ])))
            try batch.emit(event, to: Topics.pointsLedger.name)
        }
        for command in decision.commands {
            try batch.emit(Self.event(for: command), to: Topics.pointsCommands.name)
        }
    }

    /// Expiry and warning timers for new lots, and the moved inactivity clock.
    private func scheduleTimers(of decision: PointsDecision, member: String, now: EventTime, _ batch: Batch) throws {
        for expiresAt in decision.expiries.sorted() {
            let ref = String(expiresAt.millis)
            try batch.schedule(TimerRequest(due: expiresAt, rank: TimerKind.rank(TimerKind.expiry), member: member, kind: TimerKind.expiry, ref: ref))
            // A warning whose time has passed (a late credit) is not given: it would come late,
            // and its id may already be taken by the warning given on time.
            let warning = rules.warningTime(for: expiresAt)
            if warning > now {
                try batch.schedule(TimerRequest(
                    due: warning, rank: TimerKind.rank(TimerKind.expiryWarning), member: member, kind: TimerKind.expiryWarning, ref: ref))
            }
        }
        if let due = decision.inactivityDue {
            // The only inactivity timer of the member has just fired (or this is its first).
            try batch.schedule(TimerRequest(
                due: due, rank: TimerKind.rank(TimerKind.inactivity), member: member, kind: TimerKind.inactivity, ref: TimerKind.inactivity))
        }
    }

    /// The event of a command the service sends itself. Ids derive from the cause, so a
    /// re-emission after a crash is the same command.
    static func event(for command: PointsCommand) -> CloudEvent {
        switch command {
        case .referralReward(let referrer, let reward, let time):
            return CloudEvent(
                id: "referral/\(reward.registrationID)", source: source, type: EventType.referralReward, time: time, subject: referrer,
                data: .object(JSONObject(["refereeId": .string(reward.refereeID), "registrationId": .string(reward.registrationID)])))
        case .transferCredit(let recipient, let leg, let time):
            return CloudEvent(
                id: "transfer-credit/\(leg.transferID)", source: source, type: EventType.transferCredit, time: time, subject: recipient,
                data: .object(JSONObject([
                    "fromMemberId": .string(leg.counterpart), "transferId": .string(leg.transferID), "points": .int(leg.points),
                ])))
        case .transferReturned(let sender, let leg, let time):
            return CloudEvent(
                id: "transfer-returned/\(leg.transferID)", source: source, type: EventType.transferReturned, time: time, subject: sender,
                data: .object(JSONObject([
                    "toMemberId": .string(leg.counterpart), "transferId": .string(leg.transferID), "points": .int(leg.points),
                ])))
        case .reserveStock(let reservation, let time):
            return CloudEvent(
                id: "stock-reservation/\(reservation.requestID)", source: source, type: EventType.stockReservation, time: time,
                subject: StockReservation.key(of: reservation.rewardID),
                data: .object(JSONObject([
                    "rewardId": .string(reservation.rewardID), "quantity": .int(reservation.quantity),
                    "memberId": .string(reservation.member), "requestId": .string(reservation.requestID),
                ])))
        case .answerStock(let member, let answer, let time):
            var data = JSONObject([
                "rewardId": .string(answer.rewardID), "quantity": .int(answer.quantity), "requestId": .string(answer.requestID),
            ])
            if let refusal = answer.refusal { data["refusal"] = .string(refusal.rawValue) }
            return CloudEvent(
                id: "stock-answer/\(answer.requestID)", source: source, type: EventType.stockAnswer, time: time, subject: member,
                data: .object(data))
        }
    }

    /// Keeps an event of a member not registered yet, with a timer that dead-letters it if
    /// the member does not register within the wait.
    private func park(_ input: Decoded<PointsRecord>, _ batch: Batch) throws {
        try ParkedRecords.park(
            input, record: input.body.consumedRecord, until: input.time.adding(hours: rules.program.members.unknownMemberWaitHours), in: batch)
    }

    /// A shop's event dated further before its member's registration than an unknown member's
    /// events may wait: had it come before the registration, its wait would have run out first.
    /// (Operators' commands, an import or an adjustment, are dated by the operator.)
    private func tooEarly(_ input: Decoded<PointsRecord>, registeredAt: EventTime?) -> Rejection? {
        let event = input.body.event
        guard input.isExternalInput, let registeredAt, !event.input.isRegistration, !event.input.isOperatorCommand else { return nil }
        let waitHours = rules.program.members.unknownMemberWaitHours
        guard MemberLifetime.isTooEarly(event.time, registeredAt: registeredAt, waitHours: waitHours) else { return nil }
        return Rejection(code: .memberNotRegistered, detail: MemberLifetime.tooEarlyDetail(event.time, registeredAt: registeredAt, waitHours: waitHours))
    }

    /// Applies the kept events of a member who just registered, in event-time order. What
    /// they send other tasks leaves at the registration, which causes it (a transfer's credit
    /// carries the registration's time, not the transfer's).
    private func applyParkedEvents(of member: String, registeredAt: EventTime, _ batch: Batch) throws {
        for parked in try ParkedRecords.take(member: member, in: batch) {
            // It decoded when it arrived, but the service may have been restarted with other rules since.
            let decoded: Decoded<PointsRecord>
            do { decoded = try decode(parked) } catch {
                try batch.deadLetter(parked, reason: error)
                continue
            }
            var cached = try takeAccount(member, batch)
            if let rejection = tooEarly(decoded, registeredAt: cached.account?.registeredAt) {
                accounts[ExactText(member)] = cached
                try batch.deadLetter(parked, reason: rejection)
                continue
            }
            try loadOrder(named: decoded.body.event.input, into: &cached, batch)
            var decision = rules.apply(decoded.body.event, to: &cached.account)
            decision.commands = decision.commands.map { $0.notBefore(registeredAt) }
            try record(decision, into: &cached, batch)
            accounts[ExactText(member)] = cached
        }
    }
}

/// A decoded points input with the bytes it came from (kept when the event is parked).
public struct PointsRecord: Sendable {
    public var event: PointsEvent
    public var raw: [UInt8]
    public var origin: (topic: String, partition: Int32, offset: Int64)?

    public init(event: PointsEvent, raw: [UInt8], origin: (topic: String, partition: Int32, offset: Int64)? = nil) {
        self.event = event
        self.raw = raw
        self.origin = origin
    }

    /// The record it was read from, for a dead letter.
    var consumedRecord: ConsumedRecord {
        ConsumedRecord(topic: origin?.topic ?? "", partition: origin?.partition ?? 0, offset: origin?.offset ?? 0,
                       key: Array(event.member.utf8), value: raw)
    }
}

/// The points service's timers and their order at equal due times (DOMAIN.md, "Order").
enum TimerKind {
    static let release = "release"
    static let expiry = "expiry"
    static let expiryWarning = "expiry-warning"
    static let inactivity = "inactivity"

    static func rank(_ kind: String) -> Int {
        switch kind {
        case release: Rank.pendingRelease
        case expiry: Rank.expiry
        case expiryWarning: Rank.expiryWarning
        case inactivity: Rank.inactivity
        case ParkedRecords.timerKind: ParkedRecords.timerRank
        default: 9
        }
    }
}
