/// One partition of one topic.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A record read from Kafka, with its payload copied out of librdkafka's buffers.
public struct ConsumedRecord: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    /// The record key; nil when the record has none.
    public var key: [UInt8]?
    /// The record value; nil for a tombstone.
    public var value: [UInt8]?
    /// The record's Kafka timestamp in milliseconds since 1970 (the producer's send time, or
    /// the broker's append time if the topic says so); nil when it has none. Only for
    /// measuring how long records take: it is the writer's to set, so nothing decides on it.
    public var timestamp: Int64?

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, timestamp: Int64? = nil) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    /// The key as text, when it is valid UTF-8.
    public var keyString: String? {
        key.flatMap { String(validating: $0, as: UTF8.self) }
    }
}
