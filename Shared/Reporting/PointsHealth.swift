import LoyaltyDomain
import Messaging

/// The figures of the points-health report, computed from what the platform published (the
/// ledger, tier changes, campaign definitions and results, dead letters) as of an instant.
/// Pure: the same events give the same figures.
public struct PointsHealth: Sendable {
    /// Points moved in one local month, by kind, and the liability at its end.
    public struct Month: Sendable, Equatable {
        /// `YYYY-MM` in the program's time zone.
        public var label: String
        public var issued: Int64 = 0
        public var redeemed: Int64 = 0
        public var expired: Int64 = 0
        public var deducted: Int64 = 0
        public var reversed: Int64 = 0
        public var adjusted: Int64 = 0
        /// Points outstanding at the month's end (available + pending − debt, all members).
        public var liability: Int64 = 0
    }

    /// Members moving between two tiers in one month.
    public struct TierFlow: Sendable, Equatable {
        public var month: String
        public var from: String
        public var to: String
        public var members: Int
    }

    /// One campaign's reach, cost and measured effect.
    public struct Campaign: Sendable {
        public struct Group: Sendable, Equatable {
            public var members: Int64 = 0
            public var triggers: Int64 = 0
            public var orders: Int64 = 0
            public var revenueMinor: Int64 = 0

            public init(members: Int64 = 0, triggers: Int64 = 0, orders: Int64 = 0, revenueMinor: Int64 = 0) {
                self.members = members
                self.triggers = triggers
                self.orders = orders
                self.revenueMinor = revenueMinor
            }
        }

        public var id: String
        public var name: String
        public var membersReached: Int64 = 0
        public var rewards: Int64 = 0
        /// Points granted less points reversed.
        public var pointsCost: Int64 = 0
        public var couponsIssued: Int64 = 0
        public var treated = Group()
        public var control = Group()
        /// Orders per trigger, treated minus control, with a 95 % interval; nil without a
        /// control group that was triggered.
        public var uplift: (estimate: Double, low: Double, high: Double)?
    }

    public var asOf: EventTime
    public var months: [Month] = []
    /// Points left in lots that expire in each of the twelve months after `asOf`.
    public var expiryForecast: [(month: String, points: Int64)] = []
    /// Points left in lots whose ledger entries predate `expiresAt` (an earlier version's).
    public var unknownExpiryPoints: Int64 = 0
    /// Members per tier id, in the program's order: every member seen in the ledger or a tier
    /// change, those with no change in the first tier.
    public var tiers: [(tier: String, name: String, members: Int)] = []
    public var tierFlows: [TierFlow] = []
    public var campaigns: [Campaign] = []
    /// Dead letters by reason and service (one bad record may be refused by several).
    public var deadLetters: [(reason: String, count: Int)] = []
    public var refusals: [(reason: String, count: Int)] = []

    public var totalIssued: Int64 { months.reduce(0) { $0 + $1.issued } }
    public var totalRedeemed: Int64 { months.reduce(0) { $0 + $1.redeemed } }
    public var totalExpired: Int64 { months.reduce(0) { $0 + $1.expired } }
    public var totalDeducted: Int64 { months.reduce(0) { $0 + $1.deducted } }
    public var liability: Int64 { months.last?.liability ?? 0 }
}

extension PointsHealth {
    /// What the figures take from one ledger event: a small fraction of the decoded event, so
    /// that a whole history's ledger can be held at once (a simulated year has hundreds of
    /// thousands of entries).
    public struct LedgerEntry: Sendable {
        public enum Role: Sendable {
            /// Points moved (earned, redeemed, expired, …).
            case movement
            /// A refusal, with its reason.
            case refusal(reason: String)
            /// Neither (an expiry warning).
            case other
        }

        public var time: EventTime
        public var sequence: Int64
        public var role: Role
        public var kind: String
        public var member: String
        public var points: Int64
        /// The lots the entry moved: each one's change and, when the entry names it, its expiry.
        public var lots: [(id: String, delta: Int64, expiresAt: EventTime?)]

        /// The entry of a `points.*` ledger event.
        public init(_ event: CloudEvent) {
            self.init(type: event.type, time: event.time, subject: event.subject, data: event.data)
        }

        /// The entry of a ledger record the points service published, from its bytes, reading
        /// only what an entry holds, where it stands (a simulation gathers every entry it
        /// publishes, most of what it publishes). Nil when the bytes are not JSON or have no
        /// type or time. The entry of the projection of what it holds, whatever the bytes
        /// (``init(projecting:)``), and so, for a record that decodes as an event, the entry of
        /// ``init(_:)``.
        public init?(publishedRecord bytes: [UInt8]) {
            var type: String?
            var time: EventTime?
            var subject: String?
            var sequence: Int64?
            var reason: String?
            var kind: String?
            var member: String?
            var points: Int64?
            var lots: [(id: String, delta: Int64, expiresAt: EventTime?)] = []
            let read: ()? = try? JSONReader.read(bytes) { (reader: inout JSONReader) throws(JSONError) in
                try reader.readObject(Self.recordMembers) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                    switch field {
                    case 0: type = try reader.string()
                    case 1: time = try reader.time()
                    case 2: subject = try reader.string()
                    default:
                        try reader.readObject(Self.dataMembers) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                            switch field {
                            case 0: sequence = try reader.int64()
                            case 1: reason = try reader.string()
                            case 2: kind = try reader.string()
                            case 3: member = try reader.string()
                            case 4: points = try reader.int64()
                            default:
                                try reader.readArray { (reader: inout JSONReader) throws(JSONError) in
                                    if let lot = try Self.readLot(&reader) { lots.append(lot) }
                                }
                            }
                        }
                    }
                }
            }
            guard read != nil, let type, let time else { return nil }
            self.time = time
            self.sequence = sequence ?? 0
            switch type {
            case "points.refused": role = .refusal(reason: reason ?? "?")
            case "points.expiry-warning": role = .other
            default: role = .movement
            }
            self.kind = kind ?? ""
            self.member = member ?? subject ?? ""
            self.points = points ?? 0
            self.lots = lots
        }

        /// A lot's change in the ledger's `lots` (nil, the element read whole, when it is not an
        /// object with a `lotId` string).
        private static func readLot(_ reader: inout JSONReader) throws(JSONError) -> (id: String, delta: Int64, expiresAt: EventTime?)? {
            var id: String?
            var delta: Int64?
            var expiresAt: EventTime?
            // Every member is read (a projection keeps the lots whole).
            let isObject = try reader.readObject(lotMembers, others: .readWhole) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                switch field {
                case 0: id = try reader.string()
                case 1: delta = try reader.int64()
                default: expiresAt = try reader.time()
                }
            }
            guard isObject, let id else { return nil }
            return (id, delta ?? 0, expiresAt)
        }

        /// The members an entry reads, at each level of a ledger record, in the order the
        /// readers above number them: those of ``fields``.
        private static let recordMembers = JSONReader.Names(["type", "time", "subject", "data"])
        private static let dataMembers = JSONReader.Names(["sequence", "reason", "kind", "memberId", "points", "lots"])
        private static let lotMembers = JSONReader.Names(["lotId", "delta", "expiresAt"])

        /// The entry read from the projection of what it holds (``fields``): the reading
        /// ``init(publishedRecord:)`` stands for, which the tests compare it with.
        init?(projecting bytes: [UInt8]) {
            guard let object = (try? JSONValue.parse(bytes, keeping: Self.fields))?.objectValue,
                  let type = object["type"]?.stringValue, let time = object["time"]?.stringValue.flatMap({ try? EventTime.parse($0) })
            else { return nil }
            self.init(type: type, time: time, subject: object["subject"]?.stringValue, data: object["data"] ?? .null)
        }

        /// What of a ledger event an entry is made of: every member the entry's initialiser
        /// below reads must be named here, and in the readers' ``recordMembers``,
        /// ``dataMembers`` and ``lotMembers`` (the lots are kept whole).
        private static let fields: JSONProjection = [
            "type": .whole, "time": .whole, "subject": .whole,
            "data": JSONProjection(keeping: ["sequence", "reason", "kind", "memberId", "points", "lots"]),
        ]

        private init(type: String, time: EventTime, subject: String?, data: JSONValue) {
            self.time = time
            sequence = data["sequence"]?.int64Value ?? 0
            switch type {
            case "points.refused": role = .refusal(reason: data["reason"]?.stringValue ?? "?")
            case "points.expiry-warning": role = .other
            default: role = .movement
            }
            kind = data["kind"]?.stringValue ?? ""
            member = data["memberId"]?.stringValue ?? subject ?? ""
            points = data["points"]?.int64Value ?? 0
            lots = (data["lots"]?.arrayValue ?? []).compactMap { change in
                guard let id = change["lotId"]?.stringValue else { return nil }
                let expiresAt = change["expiresAt"]?.stringValue.flatMap { try? EventTime.parse($0) }
                return (id, change["delta"]?.int64Value ?? 0, expiresAt)
            }
        }
    }

    /// The figures as of `asOf` from the published events of each topic (any order).
    public init(
        asOf: EventTime, program: Program, ledger: [CloudEvent], tierChanges: [CloudEvent],
        campaignDefinitions: [CloudEvent], campaignResults: [CloudEvent], deadLetters: [CloudEvent]
    ) {
        self.init(
            asOf: asOf, program: program, ledger: ledger.map(LedgerEntry.init), tierChanges: tierChanges,
            campaignDefinitions: campaignDefinitions, campaignResults: campaignResults, deadLetters: deadLetters)
    }

    /// The figures as of `asOf` from the ledger's entries and the published events of the
    /// other topics (any order).
    public init(
        asOf: EventTime, program: Program, ledger: [LedgerEntry], tierChanges: [CloudEvent],
        campaignDefinitions: [CloudEvent], campaignResults: [CloudEvent], deadLetters: [CloudEvent]
    ) {
        self.asOf = asOf
        let calendar = program.calendar
        func monthIndex(_ time: EventTime) -> Int64 { calendar.localDate(of: time).monthIndex }
        func label(_ index: Int64) -> String {
            let first = LocalDate.firstDay(ofMonthIndex: index)
            return "\(first.year)-\(first.month < 10 ? "0" : "")\(first.month)"
        }
        // Entries up to `asOf`, in time and sequence order.
        let entries = ledger.filter { entry in
            guard entry.time <= asOf, case .movement = entry.role else { return false }
            return true
        }.sorted { ($0.time, $0.sequence) < ($1.time, $1.sequence) }
        // Members and lots by their ids' bytes: two lookalike member ids are two members.
        var members = Set<ExactText>()
        var byMonth: [Int64: Month] = [:]
        // Lots: points left and expiry, by member and lot id.
        var lots: [ExactText: (left: Int64, expiresAt: EventTime?)] = [:]
        for entry in entries {
            let points = entry.points
            let member = entry.member
            members.insert(ExactText(member))
            let index = monthIndex(entry.time)
            var month = byMonth[index] ?? Month(label: label(index))
            switch entry.kind {
            case "earned", "imported": month.issued += points
            case "redeemed", "cash-offset": month.redeemed -= points
            case "expired": month.expired -= points
            case "deducted": month.deducted -= points
            case "reversed": month.reversed -= points
            case "adjusted": month.adjusted += points
            default: break
            }
            byMonth[index] = month
            for change in entry.lots {
                let key = ExactText(member + "\u{0}" + change.id)
                var state = lots[key] ?? (0, nil)
                state.left += change.delta
                if let time = change.expiresAt { state.expiresAt = time }
                lots[key] = state
            }
        }
        // Every month from the first entry to `asOf`, with the running liability.
        if let first = byMonth.keys.min() {
            var running: Int64 = 0
            let sums = entries.reduce(into: [Int64: Int64]()) { sums, entry in sums[monthIndex(entry.time), default: 0] += entry.points }
            for index in first...max(first, monthIndex(asOf)) {
                running += sums[index] ?? 0
                var month = byMonth[index] ?? Month(label: label(index))
                month.liability = running
                months.append(month)
            }
        }
        // The month of `asOf` (what is left of it) and the eleven after it.
        let nowIndex = monthIndex(asOf)
        var forecast: [Int64: Int64] = [:]
        for lot in lots.values where lot.left > 0 {
            guard let expiresAt = lot.expiresAt else {
                unknownExpiryPoints += lot.left
                continue
            }
            guard expiresAt > asOf else { continue }
            // A lot expiring at local 00:00 of the 1st is the previous month's last points.
            forecast[monthIndex(expiresAt.adding(milliseconds: -1)), default: 0] += lot.left
        }
        expiryForecast = (nowIndex..<(nowIndex + 12)).map { (label($0), forecast[$0] ?? 0) }

        // Tiers: each member's last change up to `asOf`; the flows per month.
        var tierOf: [ExactText: String] = [:]
        var flows: [String: Int] = [:]
        for change in tierChanges.filter({ $0.time <= asOf && ($0.type == "tier.upgraded" || $0.type == "tier.downgraded") })
            .sorted(by: { $0.time < $1.time }) {
            let member = change.data["memberId"]?.stringValue ?? change.subject ?? ""
            let from = change.data["from"]?.stringValue ?? "", to = change.data["to"]?.stringValue ?? ""
            tierOf[ExactText(member)] = to
            members.insert(ExactText(member))
            flows["\(label(monthIndex(change.time)))\u{0}\(from)\u{0}\(to)", default: 0] += 1
        }
        let levels = program.tiers.levels
        let lowest = levels.first?.id ?? ""
        var counts: [String: Int] = [:]
        for member in members where !member.text.isEmpty { counts[tierOf[member] ?? lowest, default: 0] += 1 }
        tiers = levels.map { ($0.id, $0.name, counts[$0.id] ?? 0) }
        tierFlows = flows.map { key, count in
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            return TierFlow(month: parts[0], from: parts[1], to: parts[2], members: count)
        }.sorted { ($0.month, $0.from, $0.to) < ($1.month, $1.from, $1.to) }

        // Campaigns: the newest results revision up to `asOf`, named by their definitions.
        var names: [String: String] = [:]
        for definition in campaignDefinitions where definition.type == "campaign.defined" {
            if let id = definition.data["id"]?.stringValue, let name = definition.data["name"]?.stringValue { names[id] = name }
        }
        var board = CampaignResultsBoard()
        for result in campaignResults where result.time <= asOf {
            guard let id = result.subject, let data = result.data.objectValue else { continue }
            board.add(campaign: id, type: result.type, data: data)
        }
        let newest = board.combined
        campaigns = newest.keys.sorted().map { id in
            let data = JSONValue.object(newest[id]!)
            func int(_ key: String) -> Int64 { data[key]?.int64Value ?? 0 }
            func group(_ key: String) -> Campaign.Group {
                let object = data[key]
                return Campaign.Group(
                    members: object?["members"]?.int64Value ?? 0, triggers: object?["triggers"]?.int64Value ?? 0,
                    orders: object?["orders"]?.int64Value ?? 0, revenueMinor: object?["revenueMinor"]?.int64Value ?? 0)
            }
            var campaign = Campaign(id: id, name: names[id] ?? id)
            campaign.membersReached = int("membersReached")
            campaign.rewards = int("rewards")
            campaign.pointsCost = int("pointsGranted") - int("pointsReversed")
            campaign.couponsIssued = int("couponsIssued")
            campaign.treated = group("treated")
            campaign.control = group("control")
            campaign.uplift = Self.uplift(treated: campaign.treated, control: campaign.control)
            return campaign
        }

        func tally(_ reasons: [String]) -> [(reason: String, count: Int)] {
            Dictionary(grouping: reasons) { $0 }.map { ($0.key, $0.value.count) }.sorted { ($1.count, $0.reason) < ($0.count, $1.reason) }
        }
        self.deadLetters = tally(deadLetters.filter { $0.time <= asOf }.map {
            "\($0.data["reason"]?.stringValue ?? "?") (\($0.data["service"]?.stringValue ?? "?"))"
        })
        refusals = tally(ledger.compactMap { entry in
            guard entry.time <= asOf, case .refusal(let reason) = entry.role else { return nil }
            return reason
        })
    }

    /// Orders per trigger, treated minus control, with a 95 % interval treating each group's
    /// order count as Poisson: `d ± 1.96 √(o_t/n_t² + o_c/n_c²)`.
    public static func uplift(treated: Campaign.Group, control: Campaign.Group) -> (estimate: Double, low: Double, high: Double)? {
        guard treated.triggers > 0, control.triggers > 0 else { return nil }
        let nt = Double(treated.triggers), nc = Double(control.triggers)
        let estimate = Double(treated.orders) / nt - Double(control.orders) / nc
        let error = 1.96 * (Double(treated.orders) / (nt * nt) + Double(control.orders) / (nc * nc)).squareRoot()
        return (estimate, estimate - error, estimate + error)
    }
}
