/// A topic as the platform declares it: its name, what it carries, how it is keyed, and how
/// many partitions it has.
public struct TopicSpec: Sendable, Hashable {
    /// The Kafka topic name.
    public var name: String
    /// Number of partitions.
    public var partitions: Int32
    /// Whether the topic keeps only the latest record per key (a table, not a stream).
    public var compacted: Bool
    /// What the key is, for the event catalogue.
    public var key: String
    /// Who writes it and what it carries.
    public var summary: String

    public init(name: String, partitions: Int32, compacted: Bool = false, key: String = "", summary: String = "") {
        self.name = name
        self.partitions = partitions
        self.compacted = compacted
        self.key = key
        self.summary = summary
    }
}
