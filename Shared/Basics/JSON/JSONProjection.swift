/// Which members of a JSON document a reader needs, for ``JSONValue/parse(_:keeping:)``: at
/// each object it names, the members to keep and what of each to keep. A value that is not
/// an object where the projection expects one is kept whole.
///
/// ```swift
/// // The type, and the data's points and lots.
/// let fields: JSONProjection = ["type": .whole, "data": ["points": .whole, "lots": .whole]]
/// ```
public struct JSONProjection: Sendable {
    /// A member to keep: its name, as text and as the UTF-8 a plain key is compared with.
    struct Member: Sendable {
        var name: String
        var key: [UInt8]
        var projection: JSONProjection
    }

    /// Nil for the whole value; else the members to keep of an object.
    let members: [Member]?

    private init(members: [Member]?) {
        self.members = members
    }

    /// The whole value, whatever it is.
    public static let whole = JSONProjection(members: nil)

    /// An object's members named in `keys`, each kept whole.
    public init(keeping keys: [String]) {
        self.init(members: keys.map { Member(name: $0, key: Array($0.utf8), projection: .whole) })
    }
}

extension JSONProjection: ExpressibleByDictionaryLiteral {
    /// An object's members, each kept as its projection says.
    public init(dictionaryLiteral elements: (String, JSONProjection)...) {
        self.init(members: elements.map { Member(name: $0.0, key: Array($0.0.utf8), projection: $0.1) })
    }
}
