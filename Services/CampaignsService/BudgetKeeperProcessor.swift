import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit
import Storage

/// The keeper of every campaign budget (campaigns.md, "Budgets when tasks live on different
/// hosts"): it reads the claims campaigns' tasks send for triggers that ask a budget, in the
/// order one store applies the triggers (it waits for campaigns' progress marks on the claims
/// topic), decides each with ``BudgetKeeper``, answers the member's task, and publishes what is
/// left of each budget. One store holds every budget (`figuresSpanTasks`). The
/// `campaign-budgets` executable runs it on the catalogue's topics; tests hand in their own.
public final class BudgetKeeperProcessor: StreamProcessor {
    /// A claim as read: the member it is for, and what it asks.
    public struct Claim {
        public var claim: BudgetClaim
        public var record: ConsumedRecord
    }
    public typealias Body = Claim

    public let name = "campaign-budgets"
    public let platform = Platform.loyalty
    public let claimsTopic: String
    public let answersTopic: String
    public var inputTopics: [String] { [claimsTopic] }
    /// Claims come from every campaigns task of the partition, out of order when a member's
    /// claim waited for an answer: sorted by their cause's key.
    public var sortedInputTopics: Set<String> { [claimsTopic] }
    /// A claim is decided once campaigns has promised past it: no earlier claim is still to come.
    public var upstreamProducers: [String: Set<String>] { [claimsTopic: ["campaigns"]] }
    public var commandTopics: Set<String> { [answersTopic] }
    /// A budget spans every member: one store keeps them all.
    public let figuresSpanTasks = true
    public var migrations: [Migration] {
        [Migration(version: 100, name: "budgets granted", sql: """
            -- By campaign: the points granted from its budget, and the budget as last claimed.
            CREATE TABLE budget_granted(campaign TEXT PRIMARY KEY, granted INTEGER NOT NULL, budget INTEGER NOT NULL) WITHOUT ROWID;
            """)]
    }

    public let commandKeys: CommandKeys
    static let campaignsSource = "loyalty/campaigns"
    static let source = "loyalty/campaign-budgets"

    /// The budgets read or changed in the current batch, written back in `finish`.
    private var keeper = BudgetKeeper()
    private var budgets: [String: Int64] = [:]
    private var read: Set<String> = []
    /// Campaigns whose budget changed this batch, with the time of the claim that changed it last.
    private var changed: [String: EventTime] = [:]

    public init(claimsTopic: String, answersTopic: String, commandKeys: CommandKeys) {
        self.claimsTopic = claimsTopic
        self.answersTopic = answersTopic
        self.commandKeys = commandKeys
    }

    /// A claim's rank is its cause's, which it carries: claims are taken in the order their
    /// triggers are. Answers rank as the returned commands they are.
    public func rank(of eventType: String) -> Int { eventType == EventType.campaignsBudgetAnswer ? Rank.returnedCommand : Rank.platformCommand }

    public func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<Claim> {
        let (event, _) = try record.cloudEvent()
        guard event.type == EventType.campaignsBudgetClaim else {
            throw Rejection(code: .unknownType, detail: "the keeper of budgets reads \(EventType.campaignsBudgetClaim) only, not \(event.type)")
        }
        // Only campaigns claims; a forged claim is refused, never granted.
        guard event.source == Self.campaignsSource else {
            throw Rejection(code: .forbiddenSource, detail: "\(record.topic) is written by \(Self.campaignsSource) only, not \(event.source)")
        }
        let canonical = canonicalForm(of: event)
        if let rejection = commandKeys.verify(event, canonicalForm: canonical) { throw rejection }
        let member = try event.member(keyedBy: record.keyString)
        guard let rank = event.data["rank"]?.int64Value, let bounded = Int(exactly: rank) else {
            throw Rejection(code: .invalidEvent, detail: "data.rank: expected the rank of the claim's cause")
        }
        let claim: BudgetClaim
        do { claim = try BudgetClaim(json: event.data) } catch { throw Rejection(code: .invalidEvent, detail: "data.\(error)") }
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: bounded, member: member, payloadHash: payloadHash(canonical),
            body: Claim(claim: claim, record: record))
        decoded.isExternalInput = false
        return decoded
    }

    public func apply(_ input: Decoded<Claim>, in batch: Batch) throws {
        try load(input.body.claim.asks.map(\.campaign), from: batch.database)
        for ask in input.body.claim.asks { budgets[ask.campaign] = ask.budgetPoints }
        let granted = keeper.decide(input.body.claim)
        for (campaign, points) in granted where points > 0 { changed[campaign] = input.time }
        try batch.emit(CloudEvent(
            id: "budget-answer/\(input.eventID)", source: Self.source, type: EventType.campaignsBudgetAnswer, time: input.time,
            subject: input.member,
            data: .object([
                "claim": .string(input.eventID),
                "granted": .object(JSONObject(granted.sorted { $0.key < $1.key }.map { JSONMember(key: $0.key, value: .int($0.value)) })),
            ])), to: answersTopic)
    }

    /// The keeper sets no timers.
    public func fire(_ timer: DueTimer, in batch: Batch) throws {}

    public func finish(_ batch: Batch) throws {
        let save = try batch.database.prepare(
            "INSERT INTO budget_granted(campaign, granted, budget) VALUES(?, ?, ?) "
                + "ON CONFLICT(campaign) DO UPDATE SET granted = excluded.granted, budget = excluded.budget")
        for campaign in read.sorted() {
            try save.run(.text(campaign), .integer(keeper.granted[campaign] ?? 0), .integer(budgets[campaign] ?? 0))
        }
        // What is left of each budget a claim took from, under `<campaign>/budget`, beside the
        // tasks' shares of the other figures.
        for (campaign, time) in changed.sorted(by: { $0.key < $1.key }) {
            let granted = keeper.granted[campaign] ?? 0, budget = budgets[campaign] ?? 0
            let value = CloudEvent(
                id: "campaign-budget/\(campaign)/\(granted)", source: Self.source, type: CampaignResultsBoard.budgetType, time: time, subject: campaign,
                data: .object(["campaign": .string(campaign), "budgetPoints": .int(budget), "pointsGranted": .int(granted),
                               "budgetLeft": .int(max(0, budget - granted))])).encoded()
            try batch.emit(topic: Topics.campaignResults.name, key: "\(campaign)/budget", value: value)
        }
        forgetBatch()
    }

    public func abandon() { forgetBatch() }

    /// What each of `campaigns` has granted, read once per batch.
    private func load(_ campaigns: [String], from database: Database) throws {
        let select = try database.prepare("SELECT granted, budget FROM budget_granted WHERE campaign = ?")
        for campaign in campaigns where !read.contains(campaign) {
            read.insert(campaign)
            if let (granted, budget) = try select.queryOne(.text(campaign), row: { ($0.int64(0), $0.int64(1)) }) {
                keeper.granted[campaign] = granted
                budgets[campaign] = budget
            }
        }
    }

    private func forgetBatch() {
        keeper = BudgetKeeper()
        budgets = [:]
        read = []
        changed = [:]
    }
}
