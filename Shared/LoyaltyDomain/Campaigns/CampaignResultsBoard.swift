import Basics

/// A campaign's results as `loyalty.campaigns.results` carries them: each task of the campaigns
/// service publishes its own members' share, keyed `<campaign>/task-<p>`, so that no figure
/// spans tasks. The board keeps the newest record of each task (the highest `revision`) and
/// adds them up into one campaign's results, in the shape of a single record. Records are
/// added in the order they were read; the topic has one partition, so that is the order they
/// were written in.
///
/// Records written before results were kept per task carry no `task`: such a record is the
/// whole campaign as one store had it, which that store keeps on as task 0's results
/// (migration 103). It stands for task 0 until task 0 publishes.
///
/// What is left of a budget is the keeper of budgets' to say: its `campaign.budget` records
/// (`<campaign>/budget`) give `budgetPoints` and `budgetLeft` once there is one.
public struct CampaignResultsBoard: Sendable {
    /// The type of the keeper's records of what is left of a budget.
    public static let budgetType = "campaign.budget"

    private struct Entry: Sendable {
        var data: JSONObject
        /// Its place among the records read.
        var sequence: Int
        var revision: Int64 { data["revision"]?.int64Value ?? 0 }
    }

    /// By campaign, the newest record of each task (nil: a record from before tasks).
    private var newest: [String: [Int64?: Entry]] = [:]
    /// By campaign, the keeper's newest record of its budget.
    private var budgets: [String: Entry] = [:]
    private var read = 0

    public init() {}

    /// Adds a `campaign.results` record (its subject and data); an older revision of the same
    /// task's results than one already read changes nothing.
    public mutating func add(campaign: String, data: JSONObject) {
        add(campaign: campaign, type: "campaign.results", data: data)
    }

    /// Adds a record of the results topic by its type: a task's `campaign.results`, or the
    /// keeper's `campaign.budget` (the one with more granted is the newer).
    public mutating func add(campaign: String, type: String, data: JSONObject) {
        if type == Self.budgetType {
            read += 1
            let granted = { (entry: Entry) in entry.data["pointsGranted"]?.int64Value ?? 0 }
            let entry = Entry(data: data, sequence: read)
            if let known = budgets[campaign], granted(known) > granted(entry) { return }
            budgets[campaign] = entry
            return
        }
        read += 1
        let task = data["task"]?.int64Value
        let entry = Entry(data: data, sequence: read)
        if let known = newest[campaign]?[task], known.revision > entry.revision { return }
        newest[campaign, default: [:]][task] = entry
    }

    /// The campaigns with results, by id.
    public var campaigns: [String] { newest.keys.sorted() }

    /// Every campaign's results, combined.
    public var combined: [String: JSONObject] {
        var all: [String: JSONObject] = [:]
        for campaign in newest.keys { all[campaign] = combined(campaign) }
        return all
    }

    /// A campaign's results over all its tasks, in the fields of one record: the figures
    /// summed; `revision` the sum of the tasks' (it grows with every change anywhere);
    /// `budgetPoints` and `budgetLeft` from the keeper's newest record of the budget, else from
    /// the task record read last, since each said what was left of the whole budget when one
    /// store counted it; `tasks` how many tasks the service
    /// has and `tasksReporting` how many have results.
    public func combined(_ campaign: String) -> JSONObject? {
        guard let byTask = newest[campaign] else { return nil }
        var entries = byTask.filter { $0.key != nil }
        if entries[0] == nil, let legacy = byTask[nil] { entries[0] = legacy }
        guard let latest = entries.values.max(by: { $0.sequence < $1.sequence }) else { return nil }
        func sum(_ key: String, in group: String? = nil) -> JSONValue {
            .int(entries.values.reduce(Int64(0)) { total, entry in
                let object = group.map { entry.data[$0]?.objectValue ?? [:] } ?? entry.data
                return total.saturatingAdd(object[key]?.int64Value ?? 0)
            })
        }
        func groupSums(_ group: String) -> JSONValue {
            .object(["members": sum("members", in: group), "triggers": sum("triggers", in: group),
                     "orders": sum("orders", in: group), "revenueMinor": sum("revenueMinor", in: group)])
        }
        return [
            "campaignId": .string(campaign), "revision": sum("revision"),
            "tasks": latest.data["tasks"] ?? .int(1), "tasksReporting": .int(Int64(entries.count)),
            "membersReached": sum("membersReached"), "rewards": sum("rewards"),
            "pointsGranted": sum("pointsGranted"), "pointsReversed": sum("pointsReversed"),
            "budgetPoints": (budgets[campaign] ?? latest).data["budgetPoints"] ?? .null,
            "budgetLeft": (budgets[campaign] ?? latest).data["budgetLeft"] ?? .null,
            "couponsIssued": sum("couponsIssued"), "badgesAwarded": sum("badgesAwarded"),
            "treated": groupSums("treated"), "control": groupSums("control"),
        ]
    }
}
