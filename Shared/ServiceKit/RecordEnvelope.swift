import Basics
import Messaging

extension ConsumedRecord {
    /// The record's CloudEvent and its bytes, or the rejection every service gives a record it
    /// cannot read (`empty-payload`, or the CloudEvents codec's reason).
    public func cloudEvent() throws(Rejection) -> (event: CloudEvent, raw: [UInt8]) {
        guard let value else { throw Rejection(code: .emptyPayload, detail: "the record has no value") }
        do {
            return (try CloudEvent.decode(value), value)
        } catch {
            throw Rejection(code: error.code, detail: error.detail)
        }
    }
}

extension CloudEvent {
    /// The member the event is about. The key places the member on its partition, so a key
    /// other than the subject would split the member's state: `key-mismatch`, byte for byte
    /// (`String`'s `==` finds canonically equivalent texts equal, whose bytes, and so
    /// partitions, differ).
    public func member(keyedBy key: String?) throws(Rejection) -> String {
        guard let subject else { throw Rejection(code: .missingAttribute, detail: "subject (the member id) is required") }
        guard let key, key.isExactly(subject) else {
            throw Rejection(code: .keyMismatch, detail: "record key \(key ?? "(none)") differs from subject \(subject)")
        }
        return subject
    }
}

extension ConsumedRecord {
    /// The CloudEvent id of the record when it has one, even if the service rejects the record.
    public var eventID: String? {
        guard let value, let object = try? JSONValue.parse(value).objectValue, let id = object["id"]?.stringValue, !id.isEmpty else {
            return nil
        }
        return id
    }
}
