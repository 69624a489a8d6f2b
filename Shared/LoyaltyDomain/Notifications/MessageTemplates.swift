/// The messages the platform sends (DOMAIN.md, "Notifications"), what each may say, and
/// whether it is marketing.
public enum MessageType: String, Sendable, CaseIterable, Hashable {
    case pointsDigest = "points-digest"
    case pointsExpiring = "points-expiring"
    case tierUp = "tier-up"
    case tierDown = "tier-down"
    case tierAtRisk = "tier-at-risk"
    case birthday
    case campaignReward = "campaign-reward"
    case winBack = "win-back"
    case redemptionDone = "redemption-done"
    case redemptionRefused = "redemption-refused"
    case transferReceived = "transfer-received"

    /// How a message is sent.
    public enum Category: String, Sendable {
        /// Needs consent, capped a day, held during quiet hours.
        case marketing
        /// Goes at once.
        case transactional
        /// The daily digest of points earned, at the digest hour.
        case digest
    }

    public var category: Category {
        switch self {
        case .birthday, .campaignReward, .winBack: .marketing
        case .pointsDigest: .digest
        default: .transactional
        }
    }

    /// The placeholders a template of this type may use.
    public var fields: Set<String> {
        switch self {
        case .pointsDigest: ["points", "entries", "date"]
        case .pointsExpiring: ["points", "lastDay"]
        case .tierUp, .tierDown: ["tier", "previousTier"]
        case .tierAtRisk: ["tier"]
        case .birthday: ["points"]
        case .campaignReward: ["campaign", "points", "coupon", "badge"]
        case .winBack: ["coupon"]
        case .redemptionDone: ["reward", "points"]
        case .redemptionRefused: ["reward", "reason"]
        case .transferReceived: ["points", "from"]
        }
    }
}

/// Why a template file was refused.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}

/// The message templates, per type and locale, checked when loaded: every type in every
/// locale, and only placeholders the type provides (docs/notifications.md).
public struct MessageTemplates: Sendable, Equatable {
    /// Goes into every message's idempotency key: a changed text is a new message.
    public let version: String
    private let templates: [MessageType: [String: [Piece]]]

    enum Piece: Sendable, Equatable {
        case text(String)
        case field(String)
    }

    /// Reads a template file: `{"version": "…", "templates": {"<type>": {"zh-CN": "…", "en": "…"}}}`.
    public static func load(json bytes: [UInt8]) throws(TemplateError) -> MessageTemplates {
        let root: JSONObject
        do {
            guard let object = try JSONValue.parse(bytes).objectValue else { throw TemplateError(path: "", problem: "expected a JSON object") }
            root = object
        } catch let error as TemplateError {
            throw error
        } catch {
            throw TemplateError(path: "", problem: "not valid JSON: \(error)")
        }
        guard let version = root["version"]?.stringValue, !version.isEmpty else {
            throw TemplateError(path: "version", problem: "expected a non-empty string")
        }
        guard let list = root["templates"]?.objectValue else { throw TemplateError(path: "templates", problem: "expected an object") }
        var templates: [MessageType: [String: [Piece]]] = [:]
        for member in list.members {
            guard let type = MessageType(rawValue: member.key) else {
                throw TemplateError(path: "templates.\(member.key)", problem: "unknown message type; known: \(MessageType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let locales = member.value.objectValue else { throw TemplateError(path: "templates.\(member.key)", problem: "expected an object of locales") }
            for locale in locales.members {
                let path = "templates.\(member.key).\(locale.key)"
                guard MemberProfile.locales.contains(locale.key) else {
                    throw TemplateError(path: path, problem: "unknown locale; use \(MemberProfile.locales.sorted().joined(separator: ", "))")
                }
                guard let text = locale.value.stringValue, !text.isEmpty else { throw TemplateError(path: path, problem: "expected a non-empty string") }
                templates[type, default: [:]][locale.key] = try parse(text, type: type, path: path)
            }
        }
        for type in MessageType.allCases {
            for locale in MemberProfile.locales.sorted() where templates[type]?[locale] == nil {
                throw TemplateError(path: "templates.\(type.rawValue).\(locale)", problem: "missing: every message type needs a template in every locale")
            }
        }
        return MessageTemplates(version: version, templates: templates)
    }

    /// Splits a template into text and `{field}` placeholders; `{{` and `}}` are literal braces.
    static func parse(_ text: String, type: MessageType, path: String) throws(TemplateError) -> [Piece] {
        var pieces: [Piece] = []
        var literal = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "{", next < text.endIndex, text[next] == "{" {
                literal.append("{")
                index = text.index(after: next)
            } else if character == "}", next < text.endIndex, text[next] == "}" {
                literal.append("}")
                index = text.index(after: next)
            } else if character == "{" {
                guard let close = text[next...].firstIndex(of: "}") else {
                    throw TemplateError(path: path, problem: "a { without a closing }")
                }
                let name = String(text[next..<close])
                guard type.fields.contains(name) else {
                    throw TemplateError(path: path, problem: "unknown field {\(name)}; \(type.rawValue) provides \(type.fields.sorted().map { "{\($0)}" }.joined(separator: ", "))")
                }
                if !literal.isEmpty { pieces.append(.text(literal)); literal = "" }
                pieces.append(.field(name))
                index = text.index(after: close)
            } else if character == "}" {
                throw TemplateError(path: path, problem: "a } without an opening {")
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty { pieces.append(.text(literal)) }
        return pieces
    }

    /// The text of a message of `type` in `locale` (the default locale when unknown).
    public func render(_ type: MessageType, locale: String, fields: [String: String]) -> String {
        let pieces = templates[type]?[locale] ?? templates[type]?[MemberProfile.defaultLocale] ?? []
        return pieces.map {
            switch $0 {
            case .text(let text): text
            case .field(let name): fields[name] ?? ""
            }
        }.joined()
    }
}
