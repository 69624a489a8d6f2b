import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// The campaigns service in the exactly-once loop. It reads members, orders and check-ins from
/// the shop, and the campaign definitions topic whole; counts check-in streaks and referrals by
/// the rules points rewards them by (never from points' output, which would make each service
/// wait for the other); decides every campaign on the definitions in effect at the event's
/// time; sends points to the points service as grants and reversals, with its progress;
/// publishes rewards and running results.
public final class CampaignsProcessor: StreamProcessor {
    public typealias Body = CampaignRecord

    public let name = "campaigns"
    public let platform = Platform.loyalty
    /// The shop's topics (spending requests for their time only, so that the progress campaigns
    /// promises points keeps up with everything points reads from the shop), and the referrals
    /// campaigns sends itself.
    /// With the keeper of budgets, also its answers.
    public var inputTopics: [String] {
        [Topics.members.name, Topics.orders.name, Topics.engagement.name, Topics.pointsRequests.name, Topics.campaignCommands.name]
            + (budgets.topics.map { [$0.answers] } ?? [])
    }
    public let sortedInputTopics: Set<String> = [Topics.campaignCommands.name]
    /// The keeper's answers are a service's output: a partition of them read to its end holds
    /// nothing up.
    public var serviceInputTopics: Set<String> { sortedInputTopics.union(budgets.topics.map { [$0.answers] } ?? []) }
    public let broadcastTopics = [Topics.campaignDefinitions.name]
    /// Campaign points and their reversals go to points signed; so do referrals to itself, and
    /// claims to the keeper of budgets.
    public var commandTopics: Set<String> {
        Set([Topics.pointsCommands.name, Topics.campaignCommands.name] + (budgets.topics.map { [$0.claims] } ?? []))
    }
    /// Points waits for campaigns' progress before it applies what could precede a campaign
    /// grant; notifications before it applies what could precede a reward; the keeper of
    /// budgets before it decides a claim that could follow another task's.
    public var progressTopics: [String] {
        [Topics.pointsCommands.name, Topics.campaignRewards.name] + (budgets.topics.map { [$0.claims] } ?? [])
    }
    /// Where budgets are counted (``BudgetDecisions``): with the keeper, nowhere here.
    public let budgets: BudgetDecisions
    /// Counted here, a budget spans every member, so all tasks: default campaigns with a budget
    /// keep the service in one store, and a budgeted definition read from the topic into a
    /// task's own store is dead-lettered. With the keeper of budgets (campaigns.md, "Budgets
    /// when tasks live on different hosts") nothing spans tasks: results are kept per task.
    public var figuresSpanTasks: Bool { budgets.topics == nil && defaults.contains { $0.budgetPoints != nil } }
    /// Member profiles carry contact data and birthdays: kept out of dead letters.
    public let personalDataTopics: Set<String> = [Topics.members.name]
    /// Birthdays, for birthday campaigns (erased at `member.closed`).
    public let storesPersonalData = true
    public var migrations: [Migration] { CampaignsSchema.migrations }
    public var loggedRowUpgrades: [LoggedRowUpgrade] { CampaignsSchema.loggedRowUpgrades }

    public let rules: CampaignRules
    /// Every version of every campaign: the defaults, then what the definitions topic brought.
    public private(set) var registry: CampaignRegistry {
        didSet { inEffect = nil }
    }
    /// The campaigns in effect over a span of event time: most events of a batch fall in the
    /// span of the one before, so the registry is walked only when a version takes effect.
    private var inEffect: (campaigns: [CampaignDefinition], from: EventTime, until: EventTime)?
    private let defaults: [CampaignDefinition]
    private let tierIDs: [String]
    static let source = "loyalty/campaigns"

    /// Members and results read or changed in the current batch, written back in `finish`. The
    /// maps of members are keyed by the id's bytes, as the tables are: two lookalike ids are two
    /// members.
    var members: [ExactText: (member: CampaignMember, changed: Bool)] = [:]
    /// Of each member read this batch: what of its orders and refund ids is kept apart
    /// (`campaign_orders`, `campaign_refund_ids`), looked up there, and found.
    private var apart: [ExactText: ApartLookups<OrderApart>] = [:]

    /// An order as kept apart: the tier's record of it and the campaign bonus it earned.
    struct OrderApart: Equatable {
        var tier: TierOrder
        var bonus: BonusOrder?
    }
    /// The results of the task at hand (``useTask(_:)``) and what each budget has granted in
    /// all, read once per batch (the budgets are checked against them).
    var totals = CampaignTotals()
    /// Of each member looked up this batch, whether a claim of its waits for the keeper's answer.
    var waiting: [ExactText: Bool] = [:]
    /// The task whose results `totals` holds (-1: none), and every other task's, by task.
    private var totalsTask: Int32 = -1
    private var otherTasksResults: [Int32: [String: CampaignResults]] = [:]
    private var totalsLoaded = false
    /// A campaign's results in one task (each task publishes its own members' share).
    private struct TaskResults: Hashable, Comparable {
        var task: Int32
        var campaign: String
        static func < (a: TaskResults, b: TaskResults) -> Bool { (a.task, a.campaign) < (b.task, b.campaign) }
    }
    /// The results changed in this batch, with the latest event time that changed each.
    private var touched: [TaskResults: EventTime] = [:]
    private var registryLoaded = false

    /// `defaults` are in effect from the beginning of time unless the topic supersedes them.
    /// Checks the signatures of campaign definitions.
    public let commandKeys: CommandKeys

    public init(program: Program, defaults: [CampaignDefinition], commandKeys: CommandKeys, budgets: BudgetDecisions = .counted) {
        self.commandKeys = commandKeys
        self.budgets = budgets
        rules = CampaignRules(program: program)
        self.defaults = defaults
        registry = CampaignRegistry(defaults: defaults)
        tierIDs = program.tiers.levels.map(\.id)
    }

    public func rank(of eventType: String) -> Int { Rank.of(eventType: eventType) }

    /// Only a registration naming a referrer sends another task a command (the referral); what
    /// a registration releases (orders and check-ins that waited for it) and the referral
    /// itself send points commands alone. With a store per task, the peer marks promise past
    /// every other record, so tasks hold for each other only around registrations.
    public func mayCommandOtherTasks(_ input: Decoded<CampaignRecord>) -> Bool {
        switch input.body.input {
        case .registered(_, let referrer), .refusedRegistration(let referrer, _): referrer.map { $0 != input.member } ?? false
        case .updated, .closed, .paid, .refunded, .checkedIn, .referred, .answered, .ignored: false
        }
    }

    /// The member's campaign rewards and points by campaign, paid orders and rewarded
    /// referrals, as stored (the latest; `asOf` is not kept per member here).
    public func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue? {
        guard let state = try database.prepare("SELECT state FROM campaign_members WHERE member = ?").queryOne(.text(member), row: { $0.blob(0) }),
              // The view lists the state as its JSON form did (whichever form is stored; the
              // tier, stored apart, is not part of it).
              let stored = try JSONValue.parse(
                CampaignMember.decode(state, tier: TierMember(member: member, since: EventTime(millis: 0))).encodedAsJSON()).objectValue
        else { return nil }
        let campaigns: [JSONValue] = (stored["stats"]?.arrayValue ?? []).compactMap { row in
            guard let fields = row.arrayValue, fields.count >= 4 else { return nil }
            return .object(["campaign": fields[0], "rewards": fields[1], "points": fields[2], "controlGroup": fields.count > 4 ? fields[4] : .bool(false)])
        }
        // Badges and coupons: each reward of a campaign whose latest version gives one.
        var rewardKinds: [String: (badge: String?, coupon: String?)] = [:]
        for definition in defaults { rewardKinds[definition.id] = (definition.reward.badge, definition.reward.coupon) }
        let published = try database.prepare("SELECT definition FROM campaign_definitions WHERE definition IS NOT NULL ORDER BY seq")
            .query { $0.blob(0) }
        for raw in published {
            if let definition = try? CampaignDefinition.load(try JSONValue.parse(raw), tiers: tierIDs) {
                rewardKinds[definition.id] = (definition.reward.badge, definition.reward.coupon)
            }
        }
        var badges: [JSONValue] = []
        var coupons: [JSONValue] = []
        for entry in campaigns {
            guard let campaign = entry["campaign"]?.stringValue, let times = entry["rewards"]?.int64Value, times > 0 else { continue }
            if let badge = rewardKinds[campaign]?.badge { badges.append(.object(["badge": .string(badge), "campaign": .string(campaign), "times": .int(times)])) }
            if let coupon = rewardKinds[campaign]?.coupon { coupons.append(.object(["coupon": .string(coupon), "campaign": .string(campaign), "times": .int(times)])) }
        }
        var view: JSONObject = [
            "member": .string(member), "paidOrders": stored["paidOrders"] ?? .int(0), "rewardedReferrals": stored["referrals"] ?? .int(0),
            "campaigns": .array(campaigns), "badges": .array(badges), "coupons": .array(coupons),
        ]
        if asOf != nil { view["note"] = "campaigns keeps each member's latest state only; asOf is not applied" }
        // A member whose trigger waits for the keeper of budgets, with what waits behind it.
        if let (cause, time) = try database.prepare("SELECT cause, time FROM campaign_budget_claims WHERE member = ?")
            .queryOne(.text(member), row: { ($0.string(0), $0.int64(1)) }) {
            let kept = try database.prepare("SELECT COUNT(*) FROM campaign_kept_aside WHERE member = ?").queryOne(.text(member)) { $0.int64(0) } ?? 0
            view["waitingForBudget"] = .object([
                "claim": .string(BudgetTrigger.claimID(of: cause)), "since": .string(EventTime(millis: time).description), "keptAside": .int(kept),
            ])
        }
        return .object(view)
    }

    // MARK: Decoding

    private static let checkInMarker = Array("\"\(EventType.checkedIn)\"".utf8)

    public func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<CampaignRecord> {
        if record.value == nil && record.topic == Topics.members.name {
            // A tombstone: the shop erasing a closed member's records from its compacted topic.
            return .passedOver(record, body: CampaignRecord(input: .ignored, record: record))
        }
        // Of the shop's engagement only check-ins count here, and of its requests nothing: the
        // rest moves the clock only (points dead-letters what is unreadable).
        if record.topic == Topics.pointsRequests.name
            || (record.topic == Topics.engagement.name && !(record.value ?? []).contains(Self.checkInMarker)) {
            return .clockOnly(record, body: CampaignRecord(input: .ignored, record: record)) {
                !rules.program.isBeforeStart($0.time, type: $0.type)
            }
        }
        let (event, _) = try record.cloudEvent()
        let member = try event.member(keyedBy: record.keyString)
        if rules.program.isBeforeStart(event.time, type: event.type) {
            throw Rejection(code: .beforeProgramStart, detail: rules.program.beforeStartDetail(event.time))
        }
        // The canonical form is encoded once for both the signature and the inbox hash.
        let canonical = canonicalForm(of: event)
        if let topics = budgets.topics, record.topic == topics.answers {
            return try decodeAnswer(event, member: member, canonicalForm: canonical, record: record)
        }
        if record.topic == Topics.campaignCommands.name {
            // Only this service writes here; a forged referral is refused, never counted.
            guard event.source == Self.source else {
                throw Rejection(code: .forbiddenSource, detail: "\(record.topic) is written by \(Self.source) only, not \(event.source)")
            }
            if let rejection = commandKeys.verify(event, canonicalForm: canonical) { throw rejection }
        }
        let body = try Self.body(of: event, topic: record.topic)
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: Rank.of(eventType: event.type), member: member,
            payloadHash: payloadHash(canonical), body: CampaignRecord(input: body, record: record))
        if case .ignored = body { decoded.isRelevant = false }
        if record.topic == Topics.campaignCommands.name { decoded.isExternalInput = false }
        return decoded
    }

    static func body(of event: CloudEvent, topic: String) throws(Rejection) -> CampaignInput {
        let data = event.data.objectValue ?? JSONObject()
        if !event.data.isNull && event.data.objectValue == nil {
            throw Rejection(code: .invalidEvent, detail: "data must be a JSON object")
        }
        switch event.type {
        case EventType.memberRegistered:
            // The referrer as points reads it, so that both count the same referrals: points
            // registers a member whose profile campaigns refuses, and rewards the referrer.
            let referrer: String?
            do {
                guard case .registered(let id) = try PointsInput.decode(type: event.type, data: event.data) else { return .registered(data, referrer: nil) }
                referrer = id
            } catch {
                throw Rejection(code: error.code, detail: error.detail)
            }
            var profile = MemberProfile()
            do { try profile.update(from: data) } catch {
                return .refusedRegistration(referrer: referrer, Rejection(code: .invalidEvent, detail: "data.\(error.description)"))
            }
            return .registered(data, referrer: referrer)
        case EventType.memberUpdated:
            // Checked here so that a bad profile is dead-lettered with its reason.
            var profile = MemberProfile()
            do { try profile.update(from: data) } catch { throw Rejection(code: .invalidEvent, detail: "data.\(error.description)") }
            return .updated(data)
        case EventType.memberClosed:
            return .closed
        case EventType.orderPaid, EventType.orderRefunded:
            do {
                switch try PointsInput.decode(type: event.type, data: event.data) {
                case .orderPaid(let order): return .paid(order)
                case .orderRefunded(let refund): return .refunded(refund)
                default: return .ignored
                }
            } catch {
                throw Rejection(code: error.code, detail: error.detail)
            }
        case EventType.checkedIn where topic == Topics.engagement.name:
            do { _ = try PointsInput.decode(type: event.type, data: event.data) } catch { throw Rejection(code: error.code, detail: error.detail) }
            return .checkedIn
        case EventType.campaignsReferral where topic == Topics.campaignCommands.name:
            guard let referee = data["referee"]?.stringValue, !referee.isEmpty else {
                throw Rejection(code: .invalidEvent, detail: "data.referee: expected the referred member")
            }
            return .referred(referee: referee)
        default:
            throw Rejection(code: .unknownType, detail: "the campaigns service does not read \(event.type) on \(topic)")
        }
    }

    // MARK: Applying

    /// An input from the platform older than the inbox horizon: a referral command sent again
    /// after its inbox row was pruned, applied before if its referrer's referrals read name it;
    /// an answer of the keeper, still wanted only by the claim its member waits on or a trigger
    /// it keeps aside (an older trigger yet to be read would be older than the horizon too).
    public func hasApplied(_ input: Decoded<CampaignRecord>, in batch: Batch) throws -> Bool {
        if case .answered(let claim, _) = input.body.input { return try !isWanted(claim, member: input.member, batch.database) }
        return try batch.database.prepare("SELECT 1 FROM campaign_referrals WHERE member = ? AND event_id = ?")
            .queryOne(.text(input.member), .text(input.eventID)) { _ in true } ?? false
    }

    public func apply(_ input: Decoded<CampaignRecord>, in batch: Batch) throws {
        try loadRegistryIfNeeded(batch.database)
        if case .answered(let claim, let granted) = input.body.input {
            return try applyAnswer(claim: claim, granted: granted, member: input.member, batch)
        }
        // A member whose claim waits for the keeper's answer keeps its later records aside.
        if try isWaiting(input.member, batch.database) { return try keepAside(.record(input), batch) }
        try applyTrigger(input, answered: nil, batch)
    }

    /// Applies a record of a member that waits for no answer: with `answered`, the trigger of a
    /// claim again, with the keeper's answer.
    func applyTrigger(_ input: Decoded<CampaignRecord>, answered: [String: Int64]?, _ batch: Batch) throws {
        var member = try load(input.member, batch.database, since: input.time)
        let campaigns = self.campaigns(inEffectAt: input.time)
        try loadTotals(for: batch.task, batch.database)
        let decision: CampaignDecision
        switch input.body.input {
        case .refusedRegistration(let referrer, let rejection):
            try sendReferral(to: referrer, of: input, member: &member, batch)
            return try batch.deadLetter(input.body.record, reason: rejection)
        case .registered(let data, let referrer):
            try sendReferral(to: referrer, of: input, member: &member, batch)
            // A registration asks no budget.
            do {
                decision = try rules.register(data, at: input.time, member: &member, campaigns: campaigns)
            } catch {
                return try batch.deadLetter(input.body.record, reason: Rejection(code: .invalidEvent, detail: "data.\(error)"))
            }
        case .updated(let data):
            do {
                decision = try rules.update(data, at: input.time, member: &member)
            } catch {
                return try batch.deadLetter(input.body.record, reason: Rejection(code: .invalidEvent, detail: "data.\(error)"))
            }
        case .closed:
            // A closed member is never rewarded again: the birthday has no more use, and goes.
            rules.close(member: &member)
            try cancelTimers(member: input.member, kind: CampaignTimer.Kind.birthday.rawValue, ref: "birthday", batch)
            batch.noteErasure()
            decision = CampaignDecision()
        case .ignored, .answered:
            return
        case .referred(let referee):
            try batch.database.prepare("INSERT OR IGNORE INTO campaign_referrals(member, event_id) VALUES(?, ?)")
                .run(.text(input.member), .text(input.eventID))
            // Like points: a referrer unknown at the registration's time is not rewarded (points
            // refuses it `unknown-referrer`), and nothing waits for one.
            guard let registeredAt = member.registeredAt, registeredAt <= input.time else { return }
            guard let decided = try decideOnce(.record(input), answered: answered, campaigns: campaigns, member: &member, batch, { member, totals in
                guard EngagementRules.admitReferral(at: input.time, counts: &member.referralsByMonth, program: rules.program) else { return CampaignDecision() }
                return rules.referral(referee: referee, at: input.time, member: &member, campaigns: campaigns, totals: &totals)
            }) else { return }
            decision = decided
        case .paid, .refunded, .checkedIn:
            // Events can arrive before the member's registration (another topic): they wait
            // for it, like the points service's, and are then applied in event-time order.
            guard let registeredAt = member.registeredAt else { return try park(input, batch) }
            if let rejection = tooEarly(input, registeredAt: registeredAt) { return try batch.deadLetter(input.body.record, reason: rejection) }
            try loadOrder(named: input.body.input, into: &member, batch.database)
            guard let decided = try decideOnce(.record(input), answered: answered, campaigns: campaigns, member: &member, batch, { member, totals in
                decide(input.body.input, at: input.time, member: &member, campaigns: campaigns, totals: &totals)
            }) else { return }
            decision = decided
        }
        try record(decision, member: member, cause: input.eventID, time: input.time, batch)
        if case .registered = input.body.input { try applyParkedEvents(of: input.member, batch) }
    }

    /// Points rewards the referrer named by a member's first registration, under the referrer's
    /// monthly cap: the referrer's task counts it, at the registration's time, ordered among
    /// its inputs like points' own `referral/<registration>` command.
    private func sendReferral(to referrer: String?, of input: Decoded<CampaignRecord>, member: inout CampaignMember, _ batch: Batch) throws {
        guard !member.registrationRead else { return }
        member.registrationRead = true
        members[ExactText(input.member)] = (member, true)
        guard let referrer, !referrer.isExactly(input.member) else { return }
        try batch.emit(CloudEvent(
            id: "referral/\(input.eventID)", source: Self.source, type: EventType.campaignsReferral, time: input.time,
            subject: referrer, data: .object(["referee": .string(input.member), "registrationId": .string(input.eventID)])),
            to: Topics.campaignCommands.name)
    }

    private func decide(
        _ input: CampaignInput, at time: EventTime, member: inout CampaignMember, campaigns: [CampaignDefinition], totals: inout CampaignTotals
    ) -> CampaignDecision {
        switch input {
        case .paid(let order): rules.pay(order, at: time, member: &member, campaigns: campaigns, totals: &totals)
        case .refunded(let refund): rules.refund(refund, at: time, member: &member, totals: &totals)
        case .checkedIn:
            // Counted by the rule points rewards by: a second check-in the same day counts nothing.
            if let day = EngagementRules.checkIn(
                on: rules.program.calendar.localDate(of: time).dayNumber, days: &member.checkInDays, lastDay: &member.lastCheckInDay,
                streakLength: &member.streakLength) {
                rules.checkIn(streakDay: day, at: time, member: &member, campaigns: campaigns, totals: &totals)
            } else {
                CampaignDecision()
            }
        case .registered, .refusedRegistration, .updated, .closed, .referred, .answered, .ignored: CampaignDecision()
        }
    }

    // MARK: Members not registered yet

    private func park(_ input: Decoded<CampaignRecord>, _ batch: Batch) throws {
        try ParkedRecords.park(
            input, record: input.body.record, until: input.time.adding(hours: rules.program.members.unknownMemberWaitHours), in: batch)
    }

    /// A shop's event dated further before its member's registration than an unknown member's
    /// events may wait: had it come before the registration, its wait would have run out first.
    private func tooEarly(_ input: Decoded<CampaignRecord>, registeredAt: EventTime) -> Rejection? {
        let waitHours = rules.program.members.unknownMemberWaitHours
        guard input.isExternalInput, MemberLifetime.isTooEarly(input.time, registeredAt: registeredAt, waitHours: waitHours) else { return nil }
        return Rejection(code: .memberNotRegistered, detail: MemberLifetime.tooEarlyDetail(input.time, registeredAt: registeredAt, waitHours: waitHours))
    }

    private func applyParkedEvents(of member: String, _ batch: Batch) throws {
        for parked in try ParkedRecords.take(member: member, in: batch) {
            // It decoded when it arrived, but the service may have been restarted with other rules since.
            let input: Decoded<CampaignRecord>
            do { input = try decode(parked) } catch {
                try batch.deadLetter(parked, reason: error)
                continue
            }
            // One that claims of a budget makes the rest wait behind it.
            if try isWaiting(member, batch.database) { try keepAside(.record(input), batch) } else { try applyTrigger(input, answered: nil, batch) }
        }
    }

    public func fire(_ timer: DueTimer, in batch: Batch) throws {
        if try isWaiting(timer.member, batch.database) { return try keepAside(.timer(timer), batch) }
        try fireTrigger(timer, answered: nil, batch)
    }

    /// Fires a timer of a member that waits for no answer: with `answered`, the trigger of a
    /// claim again, with the keeper's answer.
    func fireTrigger(_ timer: DueTimer, answered: [String: Int64]?, _ batch: Batch) throws {
        if timer.kind == ParkedRecords.timerKind {
            return try ParkedRecords.expire(timer, waitHours: rules.program.members.unknownMemberWaitHours, in: batch)
        }
        try loadRegistryIfNeeded(batch.database)
        var member = try load(timer.member, batch.database, since: timer.due)
        let campaigns = self.campaigns(inEffectAt: timer.due)
        try loadTotals(for: batch.task, batch.database)
        let decided: CampaignDecision?
        switch timer.kind {
        case CampaignTimer.Kind.birthday.rawValue:
            decided = try decideOnce(.timer(timer), answered: answered, campaigns: campaigns, member: &member, batch) { member, totals in
                rules.birthday(at: timer.due, member: &member, campaigns: campaigns, totals: &totals)
            }
        case CampaignTimer.Kind.dormant.rawValue:
            decided = try decideOnce(.timer(timer), answered: answered, campaigns: campaigns, member: &member, batch) { member, totals in
                rules.dormant(campaign: timer.ref, at: timer.due, member: &member, campaigns: campaigns, totals: &totals)
            }
        default:
            return
        }
        guard let decision = decided else { return }
        try record(decision, member: member, cause: BudgetTrigger.timer(timer).cause, time: timer.due, batch)
    }

    /// Writes a decision: commands to the points service, reward events, timers.
    func record(_ decision: CampaignDecision, member: CampaignMember, cause: String, time: EventTime, _ batch: Batch) throws {
        let id = member.member
        members[ExactText(id)] = (member, true)
        for campaign in decision.touched {
            let key = TaskResults(task: batch.task, campaign: campaign)
            touched[key] = max(touched[key] ?? time, time)
        }
        for grant in decision.grants {
            var data: JSONObject = [
                "component": .string(grant.orderID == nil ? GrantComponent.campaignReward.rawValue : GrantComponent.campaignBonus.rawValue),
                "points": .int(grant.points), "campaignId": .string(grant.campaign),
            ]
            if let order = grant.orderID { data["orderId"] = .string(order) }
            try batch.emit(CloudEvent(
                id: "campaign-grant/\(grant.campaign)/\(cause)", source: Self.source, type: EventType.pointsGrant, time: time, subject: id,
                data: .object(data)), to: Topics.pointsCommands.name)
        }
        for reversal in decision.reversals {
            try batch.emit(CloudEvent(
                id: "campaign-reversal/\(reversal.campaign)/\(cause)", source: Self.source, type: EventType.pointsReverse, time: time, subject: id,
                data: .object([
                    "component": .string(GrantComponent.campaignBonus.rawValue), "orderId": .string(reversal.orderID),
                    "refundId": .string(reversal.refundID), "points": .int(reversal.points), "campaignId": .string(reversal.campaign),
                ])), to: Topics.pointsCommands.name)
        }
        for award in decision.awards {
            let value = CloudEvent.encode(
                id: "campaign-reward/\(award.campaign)/\(cause)", source: Self.source, type: "campaign.rewarded", time: time, subject: id,
                data: { award.write(member: id, to: &$0) })
            try batch.emit(topic: Topics.campaignRewards.name, key: id, value: value)
        }
        // A paid order restarts every dormancy clock: the member's dormant timers all go, in
        // one statement (also those of campaigns no longer defined, which would fire to nothing),
        // rather than one campaign at a time on every order.
        if decision.cancelsDormantTimers {
            try cancelTimers(member: id, kind: CampaignTimer.Kind.dormant.rawValue, batch)
        }
        for timer in decision.timers {
            if !(decision.cancelsDormantTimers && timer.kind == .dormant) {
                try cancelTimers(member: id, kind: timer.kind.rawValue, ref: timer.ref, batch)
            }
            try batch.schedule(TimerRequest(
                due: timer.due, rank: timer.kind == .birthday ? Rank.birthday : Rank.dormant, member: id,
                kind: timer.kind.rawValue, ref: timer.ref))
        }
    }

    public func finish(_ batch: Batch) throws {
        let database = batch.database
        let save = try database.prepare(
            "INSERT INTO campaign_members(member, state, tier, orders_apart, refunds_apart) VALUES(?, ?, ?, ?, ?) "
                + "ON CONFLICT(member) DO UPDATE SET state = excluded.state, tier = excluded.tier, "
                + "orders_apart = excluded.orders_apart, refunds_apart = excluded.refunds_apart")
        let saveOrder = try database.prepare(
            "INSERT INTO campaign_orders(member, order_id, time, paid_minor, refunded_minor, tier_bonus, tier_bonus_reversed, "
                + "bonus_campaign, bonus_paid_minor, bonus, bonus_reversed) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                + "ON CONFLICT(member, order_id) DO UPDATE SET refunded_minor = excluded.refunded_minor, "
                + "tier_bonus_reversed = excluded.tier_bonus_reversed, bonus_reversed = excluded.bonus_reversed")
        let saveRefundID = try database.prepare("INSERT OR IGNORE INTO campaign_refund_ids(member, refund_id) VALUES(?, ?)")
        let levels = rules.program.tiers.levels
        // The keys sorted, not the entries: a sort moves what it sorts, and a member's state is large.
        for key in members.keys.sorted() {
            guard let entry = members[key], entry.changed else { continue }
            let id = key.text
            // Orders read from apart stay there; the state's own beyond its share move there.
            var state = entry.member
            let found = apart[key] ?? ApartLookups()
            var ordersApart = found.ordersApart
            func moveApart(_ orderID: String, _ order: OrderApart) throws {
                try saveOrder.run(
                    .text(id), .text(orderID), .integer(order.tier.time.millis), .integer(order.tier.paidMinor), .integer(order.tier.refundedMinor),
                    .integer(order.tier.bonus), .integer(order.tier.bonusReversed), order.bonus.map { .text($0.campaign) } ?? .null,
                    order.bonus.map { .integer($0.paidMinor) } ?? .null, order.bonus.map { .integer($0.bonus) } ?? .null,
                    order.bonus.map { .integer($0.reversed) } ?? .null)
            }
            for (orderID, before) in found.ordersFound.sortedByID() {
                guard let tierOrder = state.tier.orders.removeValue(forID: orderID) else { continue }
                let order = OrderApart(tier: tierOrder, bonus: state.bonusOrders.removeValue(forID: orderID))
                if order != before { try moveApart(orderID, order) }
            }
            for orderID in KeptApart.overflowingOrders(state.tier.orders, time: { $0.time }) {
                guard let tierOrder = state.tier.orders.removeValue(forID: orderID) else { continue }
                try moveApart(orderID, OrderApart(tier: tierOrder, bonus: state.bonusOrders.removeValue(forID: orderID)))
                ordersApart = true
            }
            let refundIDsApart = try found.settleRefundIDs(&state.tier.refundIDs) { try saveRefundID.run(.text(id), .text($0)) }
            try save.run(.text(id), .blob(state.encoded()), .blob(state.tier.encoded(levels: levels)),
                         .integer(ordersApart ? 1 : 0), .integer(refundIDsApart ? 1 : 0))
        }
        if !touched.isEmpty {
            useTask(nil)
            let saveResults = try database.prepare(
                "INSERT INTO campaign_task_results(campaign, task, results) VALUES(?, ?, ?) "
                    + "ON CONFLICT(campaign, task) DO UPDATE SET results = excluded.results")
            for (key, time) in touched.sorted(by: { $0.key < $1.key }) {
                let (campaign, task) = (key.campaign, key.task)
                let results = otherTasksResults[task]?[campaign] ?? CampaignResults()
                let budget = registry.latest(campaign)?.definition?.budgetPoints
                // The stored form is the record's data: written once, for both.
                var data = JSONWriter()
                // With the keeper, what is left of a budget is the keeper's to say (`<campaign>/budget`).
                results.write(
                    campaign: campaign, task: task, tasks: batch.taskCount, budgetPoints: budget,
                    budgetGranted: budgets.topics == nil ? totals.budgetGranted[campaign] ?? 0 : nil, to: &data)
                try saveResults.run(.text(campaign), .integer(Int64(task)), .blob(data.bytes))
                let value = CloudEvent.encode(
                    id: "campaign-results/\(campaign)/task-\(task)/\(results.revision)", source: Self.source, type: "campaign.results",
                    time: time, subject: campaign, data: { $0.embed(serializedValue: data.bytes) })
                try batch.emit(topic: Topics.campaignResults.name, key: "\(campaign)/task-\(task)", value: value)
            }
        }
        forgetBatch()
    }

    public func abandon() {
        forgetBatch()
        // A definition applied in the rolled-back batch is read again from the database.
        registryLoaded = false
    }

    private func forgetBatch() {
        members.removeAll(keepingCapacity: true)
        apart.removeAll(keepingCapacity: true)
        totals = CampaignTotals()
        totalsTask = -1
        otherTasksResults.removeAll()
        totalsLoaded = false
        touched.removeAll()
        waiting.removeAll()
    }

    // MARK: Definitions

    public func applyBroadcast(_ record: ConsumedRecord, in batch: Batch) throws {
        try loadRegistryIfNeeded(batch.database)
        let entry: CampaignRegistry.Entry
        let raw: [UInt8]
        do {
            (entry, raw) = try decodeDefinition(record)
        } catch {
            try batch.deadLetter(record, reason: error)
            return
        }
        if batch.storeHoldsOneTask, budgets.topics == nil, let budget = entry.definition?.budgetPoints {
            return try batch.deadLetter(record, reason: Rejection(
                code: .budgetNeedsOneStore,
                detail: "campaign \(entry.campaign) version \(entry.version) has a budget (\(budget) points), which spans every task; "
                    + "a task's own store cannot count it: claim budgets of the keeper (BudgetDecisions.keeper), as the campaigns executable does"))
        }
        do {
            guard try registry.add(entry) == .added else { return }
        } catch {
            try batch.deadLetter(record, reason: Rejection(code: .invalidCampaign, detail: error.description))
            return
        }
        try batch.database.prepare(
            "INSERT INTO campaign_definitions(campaign, version, effective, definition) VALUES(?, ?, ?, ?)")
            .run(.text(entry.campaign), .integer(entry.version), .integer(entry.effective.millis), entry.definition == nil ? .null : .blob(raw))
    }

    /// A `campaign.defined` record (data: the definition) or `campaign.retired` record
    /// (data: `campaignId`, `version`); the record's time is when it takes effect.
    private func decodeDefinition(_ record: ConsumedRecord) throws(Rejection) -> (CampaignRegistry.Entry, [UInt8]) {
        let (event, _) = try record.cloudEvent()
        guard let campaign = event.subject, record.keyString == campaign else {
            throw Rejection(code: .keyMismatch, detail: "a campaign record is keyed by its campaign id, its subject")
        }
        // Definitions spend points: only an operator holding a command key may publish them.
        if let rejection = commandKeys.verify(event) { throw rejection }
        switch event.type {
        case "campaign.defined":
            let definition: CampaignDefinition
            do { definition = try CampaignDefinition.load(event.data, tiers: tierIDs) } catch {
                throw Rejection(code: .invalidCampaign, detail: error.description)
            }
            guard definition.id == campaign else {
                throw Rejection(code: .invalidCampaign, detail: "data.id \(definition.id) differs from subject \(campaign)")
            }
            return (CampaignRegistry.Entry(campaign: campaign, version: definition.version, effective: event.time, definition: definition),
                    Array(event.data.jsonString.utf8))
        case "campaign.retired":
            guard let version = event.data.objectValue?["version"]?.int64Value, version >= 1 else {
                throw Rejection(code: .invalidCampaign, detail: "data.version: a retirement names the new version, at least 1")
            }
            return (CampaignRegistry.Entry(campaign: campaign, version: version, effective: event.time, definition: nil), [])
        default:
            throw Rejection(code: .unknownType, detail: "the definitions topic carries campaign.defined and campaign.retired, not \(event.type)")
        }
    }

    func campaigns(inEffectAt time: EventTime) -> [CampaignDefinition] {
        if let span = inEffect, span.from <= time, time < span.until { return span.campaigns }
        let span = registry.inEffectSpan(at: time)
        inEffect = span
        return span.campaigns
    }

    /// The registry is the defaults plus every stored version, in the order they were added.
    private func loadRegistryIfNeeded(_ database: Database) throws {
        guard !registryLoaded else { return }
        var registry = CampaignRegistry(defaults: defaults)
        let rows = try database.prepare(
            "SELECT campaign, version, effective, definition FROM campaign_definitions ORDER BY seq"
        ).query { ($0.string(0), $0.int64(1), $0.int64(2), $0.optionalBlob(3)) }
        for (campaign, version, effective, raw) in rows {
            let definition = try raw.map { try CampaignDefinition.load(try JSONValue.parse($0), tiers: tierIDs) }
            // Stored versions were checked against the registry when they arrived; one refused now
            // means the defaults were changed under them at a restart: a configuration error.
            do {
                _ = try registry.add(CampaignRegistry.Entry(campaign: campaign, version: version, effective: EventTime(millis: effective), definition: definition))
            } catch {
                throw ConfigurationError(
                    variable: "LOYALTY_CAMPAIGNS_FILE",
                    problem: "the default campaigns conflict with version \(version) of \(campaign) stored from the definitions topic: \(error)")
            }
        }
        self.registry = registry
        registryLoaded = true
    }

    // MARK: State

    func load(_ id: String, _ database: Database, since: EventTime) throws -> CampaignMember {
        if let cached = members[ExactText(id)] { return cached.member }
        let stored = try database.prepare("SELECT state, tier, orders_apart, refunds_apart FROM campaign_members WHERE member = ?")
            .queryOne(.text(id)) { ($0.blob(0), $0.blob(1), $0.int64(2) != 0, $0.int64(3) != 0) }
        guard let (state, tier, ordersApart, refundIDsApart) = stored else { return CampaignMember(member: id, since: since) }
        let key = ExactText(id)
        if apart[key] == nil { apart[key] = ApartLookups(ordersApart: ordersApart, refundIDsApart: refundIDsApart) }
        let levels = rules.program.tiers.levels
        return try CampaignMember.decode(state, tier: try TierMember.decode(tier, levels: levels))
    }

    /// Puts the order an input names (its tier record and campaign bonus), and whether its
    /// refund id was accepted before, into the member from where they are kept apart (once a
    /// batch), as the rules expect to find them in the member's state. Called only right before
    /// the member's decision is recorded, so what was looked up is kept with the member.
    private func loadOrder(named input: CampaignInput, into member: inout CampaignMember, _ database: Database) throws {
        let reference: (orderID: String, refundID: String?)
        switch input {
        case .paid(let order): reference = (order.orderID, nil)
        case .refunded(let refund): reference = (refund.orderID, refund.refundID)
        case .registered, .refusedRegistration, .updated, .closed, .checkedIn, .referred, .answered, .ignored: return
        }
        let id = member.member
        guard var lookups = apart[ExactText(id)] else { return }
        if let order = try lookups.findOrder(reference.orderID, inState: member.tier.orders[reference.orderID] != nil, read: { orderID in
            try database.prepare(
                "SELECT time, paid_minor, refunded_minor, tier_bonus, tier_bonus_reversed, bonus_campaign, bonus_paid_minor, bonus, bonus_reversed "
                    + "FROM campaign_orders WHERE member = ? AND order_id = ?"
            ).queryOne(.text(id), .text(orderID)) { row in
                OrderApart(
                    tier: TierOrder(time: EventTime(millis: row.int64(0)), paidMinor: row.int64(1), refundedMinor: row.int64(2),
                                    bonus: row.int64(3), bonusReversed: row.int64(4)),
                    bonus: row.isNull(5) ? nil : BonusOrder(campaign: row.string(5), paidMinor: row.int64(6), bonus: row.int64(7), reversed: row.int64(8)))
            }
        }) {
            member.tier.orders[reference.orderID] = order.tier
            if let bonus = order.bonus { member.bonusOrders[reference.orderID] = bonus }
        }
        if let refundID = reference.refundID,
           try lookups.findRefundID(refundID, inState: member.tier.refundIDs.contains(refundID), isApart: { refundID in
               try database.prepare("SELECT 1 FROM campaign_refund_ids WHERE member = ? AND refund_id = ?").queryOne(.text(id), .text(refundID)) { $0.int64(0) } != nil
           }) {
            member.tier.refundIDs.insert(refundID)
        }
        apart[ExactText(id)] = lookups
    }

    /// Reads every task's results in the store, once per batch, and makes `task`'s those at hand.
    func loadTotals(for task: Int32, _ database: Database) throws {
        if !totalsLoaded {
            let rows = try database.prepare("SELECT campaign, task, results FROM campaign_task_results").query { ($0.string(0), $0.int64(1), $0.blob(2)) }
            for (campaign, task, raw) in rows {
                guard let object = try JSONValue.parse(raw).objectValue else { continue }
                let results = try CampaignResults.read(object)
                otherTasksResults[Int32(task), default: [:]][campaign] = results
                totals.budgetGranted[campaign] = totals.budgetGranted[campaign, default: 0].saturatingAdd(results.pointsGranted)
            }
            totalsLoaded = true
        }
        useTask(task)
    }

    /// Makes `task`'s results those at hand in `totals`, putting back the task's that were
    /// (nil: puts them back alone).
    private func useTask(_ task: Int32?) {
        guard task != totalsTask else { return }
        if totalsTask >= 0 { otherTasksResults[totalsTask] = totals.results }
        totals.results = task.flatMap { otherTasksResults.removeValue(forKey: $0) } ?? [:]
        totalsTask = task ?? -1
    }
}

/// A decoded input with the record it came from (kept when the event waits for a registration).
public struct CampaignRecord: Sendable {
    public var input: CampaignInput
    public var record: ConsumedRecord
}

/// What the campaigns service reads.
public enum CampaignInput: Sendable {
    case registered(JSONObject, referrer: String?)
    /// A registration whose profile campaigns cannot read: dead-lettered, its referral counted.
    case refusedRegistration(referrer: String?, Rejection)
    case updated(JSONObject)
    case closed
    case paid(OrderPaid)
    case refunded(OrderRefunded)
    /// A check-in (its streak day is counted when it is applied).
    case checkedIn
    /// A registration naming the member as its referrer (from this service's own commands).
    case referred(referee: String)
    /// The keeper's answer to the member's claim `claim`: the points each budget grants it.
    case answered(claim: String, granted: [String: Int64])
    /// A record of no interest to campaigns.
    case ignored
}

extension CampaignAward {
    /// The `data` of a `campaign.rewarded` event.
    func write(member: String, to w: inout JSONWriter) {
        w.beginObject()
        w.key("campaignId"); w.string(campaign)
        w.key("campaignVersion"); w.int(version)
        w.key("campaignName"); w.string(name)
        w.key("memberId"); w.string(member)
        w.key("trigger"); w.string(trigger)
        w.key("points"); w.int(points)
        if let multiplierTenths { w.key("multiplier"); w.raw(String(multiplierTenths / 10) + "." + String(multiplierTenths % 10)) }
        if let coupon { w.key("coupon"); w.string(coupon) }
        if let badge { w.key("badge"); w.string(badge) }
        if let orderID { w.key("orderId"); w.string(orderID) }
        w.endObject()
    }
}
