import Messaging

/// Reads subscribed topics from the beginning: the CLI's readers keep no offsets of their own.
final class ReadFromBeginning: RebalanceListener {
    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    func partitionsRevoked(_ partitions: [TopicPartition]) {}
}
