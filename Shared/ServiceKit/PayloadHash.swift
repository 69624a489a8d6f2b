import Basics
import Messaging

/// A stable 64-bit FNV-1a hash of a payload, kept in the inbox to tell a harmless re-send
/// (same id, same payload) from a conflict (same id, different payload). Swift's `Hasher`
/// is seeded per process, so it cannot be stored.
public func payloadHash(_ bytes: [UInt8]) -> Int64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    return Int64(bitPattern: hash)
}

/// The hash every service keeps in its inbox for an event: of what the event says, not of how
/// its bytes were laid out. A re-send with other white space, another member order or another
/// spelling of a number or an instant (`1e2` and `100`, `+08:00` and `Z`) is the same event, so
/// every service treats it as a duplicate; any change of a value is a conflict.
public func canonicalPayloadHash(_ event: CloudEvent) -> Int64 {
    payloadHash(canonicalForm(of: event))
}

/// What the event says in one spelling (members sorted, numbers normalised, no signature):
/// the bytes its payload hash and its signature are both computed over, so a service that
/// needs both encodes them once.
public func canonicalForm(of event: CloudEvent) -> [UInt8] {
    CloudEvent.encode(id: event.id, source: event.source, type: event.type, time: event.time, subject: event.subject) {
        $0.canonical(event.data)
    }
}

extension JSONWriter {
    /// Writes `value` with object members sorted by key and numbers in one spelling.
    mutating func canonical(_ value: JSONValue) {
        switch value {
        case .object(let object):
            beginObject()
            for member in object.members.sorted(by: { $0.key < $1.key }) {
                key(escaping: member.key)
                canonical(member.value)
            }
            endObject()
        case .array(let elements):
            beginArray()
            for element in elements { canonical(element) }
            endArray()
        case .number(let literal):
            if let integer = Int64(literal) {
                int(integer)
            } else if let number = Double(literal), number.isFinite {
                if number == number.rounded(), abs(number) < 9.0e15 { int(Int64(number)) } else { raw("\(number)") }
            } else {
                raw(literal)
            }
        default:
            self.value(value)
        }
    }
}
