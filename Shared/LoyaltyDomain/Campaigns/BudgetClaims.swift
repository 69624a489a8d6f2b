import Basics

/// How the campaign rules learn what a budget has left when they decide an award.
///
/// A budget spans every member. Where one store holds every grant of it, the rules count
/// (``counted``). Where members live in stores of their own (tasks on different hosts), a
/// trigger is decided in two halves (campaigns.md, "Budgets when tasks live on different
/// hosts"): the member's store works out everything the member decides (conditions, control
/// group, caps, which candidates a multiplier walk would try) and what it would ask of
/// budgets (``probing``, which yields a ``BudgetClaim``); the one keeper of all budgets decides
/// the claims in the order one store would apply their triggers (``BudgetKeeper``); and the
/// member's store applies the trigger again with the keeper's answer (``answered(_:)``). The
/// outcome is that of one store that counted.
public enum BudgetView: Sendable, Equatable {
    /// From ``CampaignTotals/budgetGranted``: this store holds every grant.
    case counted
    /// Nothing is granted from a budget: each budgeted award that would give points is noted
    /// in ``CampaignTotals/claim`` with the points the member's caps leave, and refused, so a
    /// multiplier walk goes on to the next candidate. What the rules decide this way is thrown
    /// away; only the claim is kept.
    case probing
    /// From the keeper's answer: the points it granted each campaign of the claim (none for a
    /// campaign it does not name).
    case answered([String: Int64])
}

/// What one trigger asks of budgets: the budgeted awards it would give, in the order the
/// rules try them.
public struct BudgetClaim: Sendable, Equatable {
    /// One budgeted award the trigger would give.
    public struct Ask: Sendable, Equatable {
        public var campaign: String
        /// The campaign's budget as the member's store knows its definition.
        public var budgetPoints: Int64
        /// The points the award would give, within the member's caps.
        public var points: Int64
        /// A candidate of the order's multiplier walk: of those, only the first with budget
        /// left is granted. Other awards are granted each on its own.
        public var inMultiplierWalk: Bool

        public init(campaign: String, budgetPoints: Int64, points: Int64, inMultiplierWalk: Bool) {
            self.campaign = campaign
            self.budgetPoints = budgetPoints
            self.points = points
            self.inMultiplierWalk = inMultiplierWalk
        }
    }

    public var asks: [Ask] = []

    public init(asks: [Ask] = []) {
        self.asks = asks
    }

    /// Whether the trigger asks nothing of any budget: it is decided in the member's store alone.
    public var isEmpty: Bool { asks.isEmpty }
}

/// The one keeper of every budget: the points each campaign has granted, and the decision of
/// each claim, taken in the order one store would apply the triggers. Pure.
public struct BudgetKeeper: Sendable, Equatable {
    /// By campaign: the points granted from its budget.
    public var granted: [String: Int64]

    public init(granted: [String: Int64] = [:]) {
        self.granted = granted
    }

    /// Grants what is left of each budget the claim asks of, as ``CampaignRules`` would with
    /// one store: the first multiplier candidate with budget left gets its points, cut to what
    /// is left, and the walk's later candidates nothing; every other award is cut on its own.
    /// Returns the points granted by campaign (0 for one refused), for ``BudgetView/answered(_:)``.
    public mutating func decide(_ claim: BudgetClaim) -> [String: Int64] {
        var answer: [String: Int64] = [:]
        var walkGranted = false
        for ask in claim.asks {
            let left = max(0, ask.budgetPoints - granted[ask.campaign, default: 0])
            let points = ask.inMultiplierWalk && walkGranted ? 0 : min(ask.points, left)
            answer[ask.campaign] = points
            guard points > 0 else { continue }
            granted[ask.campaign] = granted[ask.campaign, default: 0].saturatingAdd(points)
            if ask.inMultiplierWalk { walkGranted = true }
        }
        return answer
    }
}

extension BudgetClaim {
    /// The claim as the data of a `campaigns.budget-claim` event: `asks`, each with `campaign`,
    /// `budgetPoints`, `points` and `inMultiplierWalk`, in the order the rules tried them.
    public var json: JSONValue {
        .object(["asks": .array(asks.map { ask in
            .object([
                "campaign": .string(ask.campaign), "budgetPoints": .int(ask.budgetPoints), "points": .int(ask.points),
                "inMultiplierWalk": .bool(ask.inMultiplierWalk),
            ])
        })])
    }

    /// Reads a claim written by ``json``; the first field that is not as written is the error.
    public init(json data: JSONValue) throws(JSONFieldError) {
        guard let asks = data["asks"]?.arrayValue, !asks.isEmpty else { throw JSONFieldError(path: "asks", problem: "expected a non-empty array") }
        self.init()
        for (index, ask) in asks.enumerated() {
            let at = "asks[\(index)]"
            guard let campaign = ask["campaign"]?.stringValue, !campaign.isEmpty else { throw JSONFieldError(path: "\(at).campaign", problem: "expected a campaign id") }
            guard let budget = ask["budgetPoints"]?.int64Value, budget > 0 else { throw JSONFieldError(path: "\(at).budgetPoints", problem: "expected points above 0") }
            guard let points = ask["points"]?.int64Value, points > 0 else { throw JSONFieldError(path: "\(at).points", problem: "expected points above 0") }
            guard let walk = ask["inMultiplierWalk"]?.boolValue else { throw JSONFieldError(path: "\(at).inMultiplierWalk", problem: "expected true or false") }
            guard !self.asks.contains(where: { $0.campaign == campaign }) else { throw JSONFieldError(path: "\(at).campaign", problem: "\(campaign) is asked twice") }
            self.asks.append(Ask(campaign: campaign, budgetPoints: budget, points: points, inMultiplierWalk: walk))
        }
    }
}
