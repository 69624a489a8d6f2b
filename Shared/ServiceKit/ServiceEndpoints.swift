import Foundation
import Basics
import Messaging
import Storage
import Synchronization

/// The HTTP API every service serves on its `HTTP_ADDRESS`: `/health`, `/ready`,
/// `/metrics`, and `/members/<id>` (the service's own view of a member, `?asOf=` a past
/// instant) with its parts `/members/<id>/<resource>`. Member data needs
/// `Authorization: Bearer <token>` when the service has an `HTTP_TOKEN`.
public final class ServiceEndpoints: @unchecked Sendable {
    // The database connection and the view are used only on the server's thread, one request
    // at a time (`lock`); the status is Sendable.
    private let status: ServiceStatus
    /// The path of the store that holds a task.
    private let databasePath: (Int32) -> String
    private let token: String?
    /// The variable that sets the token, for answers that ask for it.
    private let tokenVariable: String
    /// A member's view as the bytes of its JSON (nil: unknown here).
    private let memberView: (String, Database, EventTime?) throws -> [UInt8]?
    private let memberResource: (String, String, Database) throws -> MemberResource
    /// The HTTP address of the instance that owns a task, when another instance asks.
    private let owner: @Sendable (Int32) -> String?
    private let lock = Mutex(())
    /// Read connections to the stores, by path.
    private var databases: [String: Database] = [:]

    /// `memberView` runs on the server's thread with a connection of its own: it must read
    /// nothing but that database.
    public init(
        status: ServiceStatus, databasePath: @escaping @Sendable (Int32) -> String, token: String?, tokenVariable: String,
        memberView: @escaping (String, Database, EventTime?) throws -> [UInt8]?,
        memberResource: @escaping (String, String, Database) throws -> MemberResource = { _, resource, _ in .notFound("no resource \(resource)") },
        owner: @escaping @Sendable (Int32) -> String? = { _ in nil }
    ) {
        self.owner = owner
        self.status = status
        self.databasePath = databasePath
        self.token = token
        self.tokenVariable = tokenVariable
        self.memberView = memberView
        self.memberResource = memberResource
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        switch request.path {
        case "/health":
            return json(200, ["status": "live", "service": .string(status.snapshot.service)])
        case "/ready":
            let (ready, reasons) = status.readiness()
            return json(ready ? 200 : 503, ["ready": .bool(ready), "reasons": .array(reasons.map { .string($0) })])
        case "/metrics":
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4", body: Array(status.prometheusText().utf8))
        case let path where path.hasPrefix("/members/"):
            return member(String(path.dropFirst("/members/".count)), request)
        default:
            return .error(404, "no such endpoint; try /health, /ready, /metrics or /members/<id>")
        }
    }

    private func member(_ id: String, _ request: HTTPRequest) -> HTTPResponse {
        if let token {
            guard let given = request.headers["authorization"], given == "Bearer \(token)" else {
                return .error(401, "member data needs Authorization: Bearer <\(tokenVariable)>")
            }
        } else if id.contains("/") {
            // Parts of a member beyond the view (a contact address) are never open to anyone
            // who can reach the port.
            return .error(403, "member resources need \(tokenVariable) set on the service")
        }
        // `/members/<id>` or `/members/<id>/<resource>`: the first slash ends the member id.
        let parts = id.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let id = parts[0]
        let resource = parts.count > 1 ? parts[1] : nil
        guard !id.isEmpty, resource.map({ !$0.isEmpty }) ?? true else {
            return .error(400, "expected /members/<member id> or /members/<member id>/<resource>")
        }
        var asOf: EventTime?
        if let text = request.query["asOf"] {
            guard let time = try? EventTime.parse(text) else { return .error(400, "asOf: expected an RFC 3339 time, got \(text)") }
            asOf = time
        }
        let snapshot = status.snapshot
        guard snapshot.partitionCount > 0 else { return .error(503, "the service does not know its partition count yet; try again") }
        let task = Murmur2Partitioner.partition(of: Array(id.utf8), partitions: snapshot.partitionCount)
        guard snapshot.partitions.keys.contains(where: { $0.partition == task }) else {
            let owned = Set(snapshot.partitions.keys.map(\.partition)).sorted().map { JSONValue.int(Int64($0)) }
            var answer: JSONObject = [
                "error": "this instance does not own the member's task; ask the instance that does",
                "task": .int(Int64(task)), "ownedTasks": .array(owned),
            ]
            if let address = owner(task) { answer["owner"] = .string(address) }
            return json(421, answer)
        }
        return lock.withLock { _ in
            do {
                let path = databasePath(task)
                if databases[path] == nil { databases[path] = try Database(DatabaseConfiguration(path: path)) }
                let database = databases[path]
                if let resource {
                    switch try memberResource(id, resource, database!) {
                    case .found(let body): return HTTPResponse(status: 200, body: Array(body.jsonString.utf8) + [10])
                    case .notFound(let reason): return .error(404, reason)
                    case .gone(let reason): return .error(410, reason)
                    }
                }
                guard let view = try memberView(id, database!, asOf) else { return .error(404, "no member \(id) here") }
                return HTTPResponse(status: 200, body: view + [10])
            } catch {
                return .error(500, "\(error)")
            }
        }
    }

    private func json(_ status: Int, _ object: JSONObject) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(JSONValue.object(object).jsonString.utf8) + [10])
    }
}
