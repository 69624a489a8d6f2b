/// A listener for readers that keep no offsets of their own: chosen partitions start at the
/// offsets given, every other partition at its beginning.
public final class StartingOffsets: RebalanceListener {
    private let offsets: [TopicPartition: Int64]

    public init(_ offsets: [TopicPartition: Int64] = [:]) {
        self.offsets = offsets
    }

    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        offsets.filter { partitions.contains($0.key) }
    }

    public func partitionsRevoked(_ partitions: [TopicPartition]) {}
}
