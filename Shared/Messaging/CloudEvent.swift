import Basics
import Foundation

/// A CloudEvents 1.0 event in structured JSON mode, the envelope of every record on the
/// platform's topics. `time` is required here: every rule is decided on event time.
public struct CloudEvent: Sendable, Equatable {
    public var id: String
    public var source: String
    public var type: String
    public var time: EventTime
    /// The member the event is about (also the record key).
    public var subject: String?
    public var data: JSONValue
    /// The `signature` extension attribute of a command one part of the platform sends
    /// another: `<key id>:<HMAC-SHA256 in hex>` over the event without it (ServiceKit's
    /// `CommandKeys`). Nil on shop events.
    public var signature: String?

    public init(id: String, source: String, type: String, time: EventTime, subject: String?, data: JSONValue, signature: String? = nil) {
        self.id = id
        self.source = source
        self.type = type
        self.time = time
        self.subject = subject
        self.data = data
        self.signature = signature
    }
}

/// Why a record is not a usable CloudEvent; `code` is the dead-letter reason code.
public struct CloudEventError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `not-json`, `not-an-object`, `bad-specversion`, `missing-attribute`, `bad-time`, `bad-data`.
    public var code: ReasonCode
    public var detail: String

    public init(code: ReasonCode, detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code): \(detail)" }
}

extension CloudEvent {
    /// Decodes a structured-mode CloudEvent.
    public static func decode(_ bytes: [UInt8]) throws(CloudEventError) -> CloudEvent {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw CloudEventError(code: .notJson, detail: error.description)
        }
        return try decode(value)
    }

    /// Decodes a structured-mode CloudEvent from parsed JSON.
    public static func decode(_ value: JSONValue) throws(CloudEventError) -> CloudEvent {
        guard let object = value.objectValue else {
            throw CloudEventError(code: .notAnObject, detail: "a CloudEvent is a JSON object")
        }
        guard object["specversion"]?.stringValue == "1.0" else {
            throw CloudEventError(code: .badSpecversion, detail: "specversion must be \"1.0\"")
        }
        func attribute(_ name: String) throws(CloudEventError) -> String {
            guard let text = object[name]?.stringValue, !text.isEmpty else {
                throw CloudEventError(code: .missingAttribute, detail: "\(name) must be a non-empty string")
            }
            return text
        }
        let id = try attribute("id")
        let source = try attribute("source")
        let type = try attribute("type")
        let timeText = try attribute("time")
        let time: EventTime
        do {
            time = try EventTime.parse(timeText)
        } catch {
            throw CloudEventError(code: .badTime, detail: error.description)
        }
        var subject: String?
        if let raw = object["subject"], !raw.isNull {
            guard let text = raw.stringValue, !text.isEmpty else {
                throw CloudEventError(code: .missingAttribute, detail: "subject must be a non-empty string")
            }
            subject = text
        }
        if let raw = object["datacontenttype"], !raw.isNull {
            // A media type, possibly with parameters: `application/json; charset=utf-8`. The
            // usual form is compared first: Foundation's trimming cost 1.4 % of the points loop.
            let text = raw.stringValue
            let mediaType = text == "application/json"
                ? text : text?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
            guard mediaType == "application/json" else {
                throw CloudEventError(code: .badData, detail: "datacontenttype must be application/json")
            }
        }
        var signature: String?
        if let raw = object["signature"], !raw.isNull {
            guard let text = raw.stringValue else { throw CloudEventError(code: .missingAttribute, detail: "signature must be a string") }
            signature = text
        }
        return CloudEvent(id: id, source: source, type: type, time: time, subject: subject, data: object["data"] ?? .null, signature: signature)
    }

    /// The event as structured-mode JSON, attributes in a fixed order so that the same event
    /// always has the same bytes.
    public func encoded() -> [UInt8] {
        Self.encode(id: id, source: source, type: type, time: time, subject: subject, signature: signature) { $0.value(data) }
    }

    /// Encodes an event whose data is written straight into the output, without building
    /// a `JSONValue` first (the fast path for services' outputs).
    public static func encode(
        id: String, source: String, type: String, time: EventTime, subject: String?, signature: String? = nil,
        data writeData: (inout JSONWriter) -> Void
    ) -> [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("specversion"); writer.string("1.0")
        writer.key("id"); writer.string(id)
        writer.key("source"); writer.string(source)
        writer.key("type"); writer.string(type)
        writer.key("time"); writer.time(time)
        if let subject {
            writer.key("subject"); writer.string(subject)
        }
        if let signature {
            writer.key("signature"); writer.string(signature)
        }
        writer.key("datacontenttype"); writer.string("application/json")
        writer.key("data")
        writeData(&writer)
        writer.endObject()
        return writer.bytes
    }
}
