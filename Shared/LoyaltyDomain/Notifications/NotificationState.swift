/// The stored form of a member's notification state: compact (``CompactWriter``), read and
/// written for every record of the member; the JSON form of earlier builds still reads.
extension NotificationMember {
    static let compactFormTag: UInt8 = 0xB5

    /// The compact stored form: the same fields as the JSON form, in its order, maps sorted by key.
    public func encoded() -> [UInt8] {
        var w = CompactWriter(tag: Self.compactFormTag, capacity: 96 + member.utf8.count + held.count * 96)
        w.string(member)
        w.bool(registered)
        w.bool(closed)
        w.string(profile.locale)
        w.bool(profile.marketingConsent)
        w.optional(profile.preferredChannel) { $0.string($1.rawValue) }
        let channels = Channel.allCases.compactMap { channel in profile.channels[channel].map { (channel, $0) } }
        w.int(channels.count)
        for (channel, address) in channels { w.string(channel.rawValue); w.string(address) }
        w.optional(lastDigestDay) { $0.int($1) }
        w.int(digests.count)
        for (day, digest) in digests.sorted(by: { $0.key < $1.key }) {
            w.int(day); w.int(digest.points)
            w.int(digest.causes.count)
            for cause in digest.causes { w.string(cause) }
        }
        w.int(marketingSent.count)
        for (day, count) in marketingSent.sorted(by: { $0.key < $1.key }) { w.int(day); w.int(count) }
        w.int(held.count)
        for message in held {
            w.string(message.type.rawValue)
            w.int(message.time.millis)
            w.int(message.causes.count)
            for cause in message.causes { w.string(cause) }
            w.int(message.fields.count)
            for (key, value) in message.fields.sorted(by: { $0.key < $1.key }) { w.string(key); w.string(value) }
        }
        return w.bytes
    }

    /// The JSON stored form of earlier builds (version 1), which ``decode(_:)`` still reads.
    public func encodedAsJSON() -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("v"); w.int(1)
        w.key("member"); w.string(member)
        w.key("registered"); w.bool(registered)
        w.key("closed"); w.bool(closed)
        w.key("locale"); w.string(profile.locale)
        w.key("consent"); w.bool(profile.marketingConsent)
        if let preferred = profile.preferredChannel { w.key("preferredChannel"); w.string(preferred.rawValue) }
        w.key("channels"); w.beginObject()
        for channel in Channel.allCases { if let address = profile.channels[channel] { w.key(escaping: channel.rawValue); w.string(address) } }
        w.endObject()
        if let lastDigestDay { w.key("lastDigestDay"); w.int(lastDigestDay) }
        w.key("digests"); w.beginArray()
        for (day, digest) in digests.sorted(by: { $0.key < $1.key }) {
            w.beginArray(); w.int(day); w.int(digest.points)
            for cause in digest.causes { w.string(cause) }
            w.endArray()
        }
        w.endArray()
        w.key("marketingSent"); w.beginArray()
        for (day, count) in marketingSent.sorted(by: { $0.key < $1.key }) { w.beginArray(); w.int(day); w.int(count); w.endArray() }
        w.endArray()
        w.key("held"); w.beginArray()
        for message in held {
            w.beginObject()
            w.key("type"); w.string(message.type.rawValue)
            w.key("time"); w.int(message.time.millis)
            w.key("causes"); w.beginArray(); for cause in message.causes { w.string(cause) }; w.endArray()
            w.key("fields"); w.beginObject()
            for (key, value) in message.fields.sorted(by: { $0.key < $1.key }) { w.key(escaping: key); w.string(value) }
            w.endObject()
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    /// Reads either stored form.
    public static func decode(_ bytes: [UInt8]) throws -> NotificationMember {
        if bytes.first == compactFormTag { return try decodeCompact(bytes) }
        guard let root = try JSONValue.parse(bytes).objectValue, root["v"]?.int64Value == 1 else {
            throw JSONFieldError(path: "notification member", problem: "not a stored notification member of version 1")
        }
        var member = NotificationMember(member: try root.string("member"))
        member.registered = try root.bool("registered")
        member.closed = try root.bool("closed")
        member.profile.locale = try root.string("locale")
        member.profile.marketingConsent = try root.bool("consent")
        member.profile.preferredChannel = try root.optionalString("preferredChannel").flatMap(Channel.init(rawValue:))
        for entry in try root.object("channels").members {
            if let channel = Channel(rawValue: entry.key), let address = entry.value.stringValue { member.profile.channels[channel] = address }
        }
        member.lastDigestDay = try root.optionalInt64("lastDigestDay")
        for raw in try root.array("digests") {
            guard let f = raw.arrayValue, f.count >= 2, let day = f[0].int64Value, let points = f[1].int64Value else {
                throw JSONFieldError(path: "notification member.digests", problem: "expected [day, points, causes…]")
            }
            member.digests[day] = PendingDigest(points: points, causes: f.dropFirst(2).compactMap(\.stringValue))
        }
        for raw in try root.array("marketingSent") {
            guard let f = raw.arrayValue, f.count == 2, let day = f[0].int64Value, let count = f[1].int64Value else {
                throw JSONFieldError(path: "notification member.marketingSent", problem: "expected [day, count]")
            }
            member.marketingSent[day] = count
        }
        for raw in try root.array("held") {
            guard let object = raw.objectValue, let type = MessageType(rawValue: try object.string("type")) else {
                throw JSONFieldError(path: "notification member.held", problem: "expected a held message")
            }
            var fields: [String: String] = [:]
            for entry in try object.object("fields").members { fields[entry.key] = entry.value.stringValue ?? "" }
            member.held.append(HeldMessage(
                type: type, fields: fields, causes: try object.array("causes").compactMap(\.stringValue),
                time: EventTime(millis: try object.int64("time"))))
        }
        return member
    }

    private static func decodeCompact(_ bytes: [UInt8]) throws(CompactFormError) -> NotificationMember {
        var r = try CompactReader(bytes, tag: compactFormTag, what: "notification member")
        func problem(_ text: String) -> CompactFormError { CompactFormError(what: "notification member", problem: text) }
        var member = NotificationMember(member: try r.string())
        member.registered = try r.bool()
        member.closed = try r.bool()
        member.profile.locale = try r.string()
        member.profile.marketingConsent = try r.bool()
        if let preferred = try r.optional({ reader throws(CompactFormError) in try reader.string() }) {
            guard let channel = Channel(rawValue: preferred) else { throw problem("no channel \(preferred)") }
            member.profile.preferredChannel = channel
        }
        for _ in 0..<(try r.count()) {
            let name = try r.string()
            guard let channel = Channel(rawValue: name) else { throw problem("no channel \(name)") }
            member.profile.channels[channel] = try r.string()
        }
        member.lastDigestDay = try r.optional { reader throws(CompactFormError) in try reader.int() }
        for _ in 0..<(try r.count()) {
            let day = try r.int()
            var digest = PendingDigest(points: try r.int())
            for _ in 0..<(try r.count()) { digest.causes.append(try r.string()) }
            member.digests[day] = digest
        }
        for _ in 0..<(try r.count()) {
            let day = try r.int()
            member.marketingSent[day] = try r.int()
        }
        for _ in 0..<(try r.count()) {
            let name = try r.string()
            guard let type = MessageType(rawValue: name) else { throw problem("no message type \(name)") }
            let time = EventTime(millis: try r.int())
            var causes: [String] = []
            for _ in 0..<(try r.count()) { causes.append(try r.string()) }
            var fields: [String: String] = [:]
            for _ in 0..<(try r.count()) {
                let key = try r.string()
                fields[key] = try r.string()
            }
            member.held.append(HeldMessage(type: type, fields: fields, causes: causes, time: time))
        }
        guard r.isAtEnd else { throw problem("bytes left after the member") }
        return member
    }
}
