/// Every topic of the platform in one place: its name, what it carries, how it is keyed,
/// and how many partitions it has. Input topics a service reads together must have the same
/// partition count (they are co-partitioned by member id).
public enum Topics {
    /// The partition count every co-partitioned topic uses.
    public static let partitionCount: Int32 = 6

    /// Member lifecycle written by the shop: `member.registered`, `member.updated`, `member.closed`.
    public static let members = TopicSpec(
        name: "loyalty.members", partitions: partitionCount, compacted: false,
        key: "member id", summary: "member lifecycle events from the shop")
    /// Orders written by the shop: `order.paid`, `order.refunded`.
    public static let orders = TopicSpec(
        name: "loyalty.orders", partitions: partitionCount, compacted: false,
        key: "member id", summary: "paid and refunded orders from the shop")
    /// Engagement written by the shop: check-ins, reviews, shares, tasks.
    public static let engagement = TopicSpec(
        name: "loyalty.engagement", partitions: partitionCount, compacted: false,
        key: "member id", summary: "check-ins, reviews, shares and tasks from the shop")
    /// Members' requests to spend points, written by the shop: redemptions, cash offsets,
    /// transfers.
    public static let pointsRequests = TopicSpec(
        name: "loyalty.points.requests", partitions: partitionCount, compacted: false,
        key: "member id (the member who spends)",
        summary: "redemption, cash-offset and transfer requests from the shop")
    /// Signed commands to the points service from the platform itself: grants and reversals
    /// (tiers, campaigns), transfer legs and referral rewards (points), adjustments (the CLI).
    /// Shops have no write access here.
    public static let pointsCommands = TopicSpec(
        name: "loyalty.points.commands", partitions: partitionCount, compacted: false,
        key: "member id (the member whose points change)",
        summary: "signed grants, reversals, transfer legs, referral rewards and adjustments for the points service")
    /// Every ledger entry the points service makes.
    public static let pointsLedger = TopicSpec(
        name: "loyalty.points.ledger", partitions: partitionCount, compacted: false,
        key: "member id", summary: "points ledger events")
    /// The latest balance of each member.
    public static let pointsBalances = TopicSpec(
        name: "loyalty.points.balances", partitions: partitionCount, compacted: true,
        key: "member id", summary: "member balance records (compacted)")
    /// Tier changes: upgraded, downgraded, at risk.
    public static let tierChanges = TopicSpec(
        name: "loyalty.tiers.changes", partitions: partitionCount, compacted: false,
        key: "member id", summary: "tier changes with the figures that decided them")
    /// The latest tier status of each member.
    public static let tierStatus = TopicSpec(
        name: "loyalty.tiers.status", partitions: partitionCount, compacted: true,
        key: "member id", summary: "member tier status records (compacted)")
    /// Campaign definitions, one key per campaign: every instance of the campaigns service
    /// reads the whole topic (it is not split into tasks).
    public static let campaignDefinitions = TopicSpec(
        name: "loyalty.campaigns.definitions", partitions: 1, compacted: true,
        key: "campaign id", summary: "versioned campaign definitions and retirements (compacted)")
    /// Rewards campaigns give members: points, coupons, badges.
    public static let campaignRewards = TopicSpec(
        name: "loyalty.campaigns.rewards", partitions: partitionCount, compacted: false,
        key: "member id", summary: "campaign rewards given to members")
    /// Signed commands the campaigns service sends itself: a registration naming a referrer,
    /// counted on the referrer's task.
    public static let campaignCommands = TopicSpec(
        name: "loyalty.campaigns.commands", partitions: partitionCount, compacted: false,
        key: "member id (the referrer)", summary: "signed referrals the campaigns service sends to the referrer's task")
    /// Signed claims on campaign budgets, one per trigger that asks a budget for points: written
    /// by campaigns' task *p* on partition *p*, read by the keeper of budgets (campaigns.md,
    /// "Budgets when tasks live on different hosts").
    public static let campaignBudgetClaims = TopicSpec(
        name: "loyalty.campaigns.budget-claims", partitions: partitionCount, compacted: false,
        key: "member id (the member whose trigger asks)", summary: "signed claims of campaigns' tasks on campaign budgets, for the keeper of budgets")
    /// The keeper's signed answers to claims: the points each budget grants the trigger.
    public static let campaignBudgetAnswers = TopicSpec(
        name: "loyalty.campaigns.budget-answers", partitions: partitionCount, compacted: false,
        key: "member id", summary: "signed answers of the keeper of budgets: the points each budget grants a claim")
    /// The running results of each campaign, one record per task of the campaigns service.
    public static let campaignResults = TopicSpec(
        name: "loyalty.campaigns.results", partitions: 1, compacted: true,
        key: "<campaign id>/task-<p>", summary: "campaign results per task: reach, points, budget, uplift (compacted)")
    /// Outbound messages for the senders (SMS, e-mail, push and WeChat gateways run by others).
    public static let notifications = TopicSpec(
        name: "loyalty.notifications", partitions: partitionCount, compacted: false,
        key: "member id", summary: "outbound notifications for the senders, each with an idempotency key")
    /// Records no service could apply, with the reason.
    public static let deadLetters = TopicSpec(
        name: "loyalty.dead-letters", partitions: partitionCount, compacted: false,
        key: "the original record's key", summary: "records that could not be applied, with a reason code")

    /// Which instance of which service serves which tasks, and at which HTTP address: each
    /// instance announces itself when its assignment changes, so that any instance can send a
    /// member lookup to the one that owns the member.
    public static let instances = TopicSpec(
        name: "loyalty.instances", partitions: 1, compacted: true,
        key: "<service>@<HTTP address>", summary: "instances of the services, their tasks and HTTP addresses (compacted)")

    /// Each service's store changes, row by row, when it keeps a changelog (`LOYALTY_CHANGELOG=on`):
    /// what a lost store is restored from. Keyed by table and primary key; compacted, so each
    /// row's latest state stays. A partition per task: a task's store (`LOYALTY_STORE_LAYOUT=task`)
    /// writes its task's, in commit order; the one store of the `service` layout writes
    /// partition 0. Not CloudEvents: the runtime's binary row format.
    public static let changelogs: [TopicSpec] = ["points", "tiers", "campaigns", "campaign-budgets", "notifications"].map { service in
        TopicSpec(
            name: "loyalty.\(service).changelog", partitions: partitionCount, compacted: true,
            key: "table and primary key", summary: "the \(service) service's store, row by row, to restore it from (compacted)")
    }

    /// Every topic, in the order the embedded broker creates them.
    public static let all: [TopicSpec] = [
        members, orders, engagement, pointsRequests, pointsCommands, pointsLedger, pointsBalances, tierChanges, tierStatus,
        campaignDefinitions, campaignCommands, campaignRewards, campaignResults, notifications, deadLetters, instances,
        campaignBudgetClaims, campaignBudgetAnswers,
    ] + changelogs

    /// Looks a topic up by name.
    public static func spec(named name: String) -> TopicSpec? {
        all.first { $0.name == name }
    }
}

extension Topics {
    /// The shop's spending requests, which go on `pointsRequests`.
    public static let requestTypes: Set<String> = ["points.redeem", "points.cash-offset", "points.transfer"]

    /// The input topic an event type belongs on: `member.*`, `order.*`, `engagement.*`, the
    /// shop's spending requests, and the platform's own `points.*` commands.
    public static func inputTopic(forEventType type: String) -> TopicSpec? {
        if type.hasPrefix("member.") { return members }
        if type.hasPrefix("order.") { return orders }
        if type.hasPrefix("engagement.") { return engagement }
        if requestTypes.contains(type) { return pointsRequests }
        if type.hasPrefix("points.") { return pointsCommands }
        return nil
    }
}
