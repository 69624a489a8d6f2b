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
    /// the broker's append time if the topic says so); nil when it has none.
    public var timestamp: Int64?
    /// Who set `timestamp`.
    public var timestampType: TimestampType

    /// Who set a record's Kafka timestamp: the writer (`CreateTime`, any value it likes) or
    /// the broker as it appended the record (the topic's `message.timestamp.type` is
    /// `LogAppendTime`), which no writer can move.
    public enum TimestampType: Sendable {
        case createTime, logAppendTime
    }

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, timestamp: Int64? = nil,
        timestampType: TimestampType = .createTime
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.timestampType = timestampType
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    /// The key as text, when it is valid UTF-8.
    public var keyString: String? {
        guard let key else { return nil }
        // ASCII, nearly every key, is UTF-8 as it stands: the standard library's validation,
        // not specialised for arrays, cost some 900 instructions a record.
        if key.allSatisfy({ $0 < 0x80 }) { return String(decoding: key, as: UTF8.self) }
        return String(validating: key, as: UTF8.self)
    }
}
