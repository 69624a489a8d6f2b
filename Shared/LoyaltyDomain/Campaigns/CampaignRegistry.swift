/// Every version of every campaign with the instant it takes effect, so that an event is
/// decided on the definitions in effect at its own event time, whenever it is applied.
public struct CampaignRegistry: Sendable, Equatable {
    /// A version of a campaign from `effective` on; `definition` is nil once retired.
    public struct Entry: Sendable, Equatable {
        public var campaign: String
        public var version: Int64
        public var effective: EventTime
        public var definition: CampaignDefinition?

        public init(campaign: String, version: Int64, effective: EventTime, definition: CampaignDefinition?) {
            self.campaign = campaign
            self.version = version
            self.effective = effective
            self.definition = definition
        }
    }

    /// What adding an entry did.
    public enum Outcome: Sendable, Equatable {
        case added
        /// The same version was added before (a re-read of the definitions topic).
        case alreadyKnown
    }

    /// Entries per campaign, in the order they were added (versions increasing).
    public private(set) var entries: [String: [Entry]] = [:]
    /// Every campaign id, sorted: kept rather than sorted again for every event.
    public private(set) var campaigns: [String] = []

    public init(defaults: [CampaignDefinition] = []) {
        for definition in defaults {
            entries[definition.id] = [Entry(campaign: definition.id, version: definition.version, effective: EventTime(millis: .min), definition: definition)]
        }
        campaigns = entries.keys.sorted()
    }

    /// Adds a version. A version not above the campaign's latest is refused, unless it is that
    /// very version again.
    public mutating func add(_ entry: Entry) throws(CampaignDefinitionError) -> Outcome {
        let known = entries[entry.campaign] ?? []
        if let same = known.first(where: { $0.version == entry.version }) {
            if same == entry { return .alreadyKnown }
            throw CampaignDefinitionError(
                campaign: entry.campaign, path: "version",
                problem: "version \(entry.version) is already defined differently; publish a higher version")
        }
        if let latest = known.last, entry.version < latest.version {
            throw CampaignDefinitionError(
                campaign: entry.campaign, path: "version",
                problem: "version \(entry.version) is older than version \(latest.version) already in effect")
        }
        if known.isEmpty { campaigns.insert(entry.campaign, at: campaigns.firstIndex { $0 > entry.campaign } ?? campaigns.endIndex) }
        entries[entry.campaign, default: []].append(entry)
        return .added
    }

    /// The campaigns in effect at `time`, by id: per campaign, the latest version whose
    /// effective instant is at or before `time`.
    public func inEffect(at time: EventTime) -> [CampaignDefinition] {
        var result: [CampaignDefinition] = []
        for id in campaigns {
            let current = entries[id]!.last { $0.effective <= time }
            if let definition = current?.definition { result.append(definition) }
        }
        return result
    }

    /// The campaigns in effect at `time` and the span of event time they stay in effect for:
    /// from the latest effective instant at or before `time` (of any version) until the first
    /// one after it. A caller keeps the span and asks again only for a time outside it.
    public func inEffectSpan(at time: EventTime) -> (campaigns: [CampaignDefinition], from: EventTime, until: EventTime) {
        var from = EventTime(millis: .min)
        var until = EventTime(millis: .max)
        for id in campaigns {
            for entry in entries[id]! {
                if entry.effective <= time {
                    if entry.effective > from { from = entry.effective }
                } else if entry.effective < until {
                    until = entry.effective
                }
            }
        }
        return (inEffect(at: time), from, until)
    }

    /// The campaign's latest version, whatever its effective time.
    public func latest(_ campaign: String) -> Entry? { entries[campaign]?.last }
}
