import Basics
import Messaging
import Storage

/// A decoded input record: the envelope fields the loop needs, and the service's own value.
public struct Decoded<Body> {
    /// The event id, for the inbox.
    public var eventID: String
    /// Event time: the order of application and the clock of every rule.
    public var time: EventTime
    /// Order among inputs of equal time (DOMAIN.md, "Order"): lower goes first.
    public var rank: Int
    /// The member the record is about.
    public var member: String
    /// Hash of the canonical payload, to tell re-sends from conflicts.
    public var payloadHash: Int64
    /// The service's decoded value.
    public var body: Body
    /// False for a record the service reads past (another service's output it has no use
    /// for): it moves the offsets only, without an inbox row, timers or `apply`.
    public var isRelevant = true
    /// False for records of another service's output (the points ledger read by campaigns):
    /// applied at their own time, they neither fire timers nor move the task's stream time,
    /// since they may run ahead of the shop's topics that the timers follow. Such a record's
    /// inbox row is dated by its own time, and not written when it is already older than the
    /// inbox keeps: a copy of it further behind than the horizon is told by `hasApplied`.
    public var movesStreamTime = true
    /// False for records written by the platform's services rather than from outside (a
    /// grant from tiers, the ledger): only outside input is refused when it is older than the
    /// inbox horizon; a service's record is never refused for how far behind its writer runs.
    public var isExternalInput = true
    /// For a record read past (`isRelevant` false): it still moves its task's stream time and
    /// fires the timers due before it. A service whose progress others wait for reads the
    /// shop's topics it has no other use for this way, so that its promise keeps up with its
    /// consumers' input (see ``ProgressMark``).
    public var onlyMovesStreamTime = false

    public init(eventID: String, time: EventTime, rank: Int, member: String, payloadHash: Int64, body: Body) {
        self.eventID = eventID
        self.time = time
        self.rank = rank
        self.member = member
        self.payloadHash = payloadHash
        self.body = body
    }
}

extension Decoded {
    /// A record the service reads past without parsing it (see `isRelevant`).
    public static func passedOver(_ record: ConsumedRecord, body: Body) -> Decoded {
        var decoded = Decoded(eventID: "", time: EventTime(millis: 0), rank: 0, member: record.keyString ?? "", payloadHash: 0, body: body)
        decoded.isRelevant = false
        return decoded
    }

    /// A record of a topic the service reads only for its clock (see `onlyMovesStreamTime`):
    /// its event time moves the task's stream time when it is a readable event that `counts`;
    /// anything else (a tombstone, a record the services that use it dead-letter) is passed over.
    public static func clockOnly(_ record: ConsumedRecord, body: Body, counts: (CloudEvent) -> Bool = { _ in true }) -> Decoded {
        var decoded = passedOver(record, body: body)
        guard let value = record.value, let event = try? CloudEvent.decode(value), counts(event) else { return decoded }
        decoded.time = event.time
        decoded.onlyMovesStreamTime = true
        return decoded
    }
}

/// Why a record cannot be applied; it goes to the dead-letter topic with this reason code.
public struct Rejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable, kebab-case reason code (docs/event-catalogue.md lists them).
    public var code: ReasonCode
    /// Details for a person.
    public var detail: String

    public init(code: ReasonCode, detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code): \(detail)" }
}

/// A service's part in the exactly-once loop: decoding records, applying them, firing timers.
/// Every call but `decode` happens inside the batch's one SQLite transaction.
public protocol StreamProcessor: AnyObject {
    associatedtype Body

    /// Service name, used in logs, dead letters and default names.
    var name: String { get }
    /// The platform the service belongs to: the topics the runtime writes for it (dead letters,
    /// the instance directory) and the name on what the runtime writes.
    var platform: Platform { get }
    /// The co-partitioned topics the service reads.
    var inputTopics: [String] { get }
    /// Input topics several writers interleave (a command topic): their partitions are
    /// buffered sorted by (time, rank, id) instead of in arrival order.
    var sortedInputTopics: Set<String> { get }
    /// Input topics written by services rather than shops (commands, another service's
    /// output): a partition of these read to its end does not hold the merge for the grace.
    /// Sorted topics are always among them.
    var serviceInputTopics: Set<String> { get }
    /// The service's own tables, versions 100 and up.
    var migrations: [Migration] { get }
    /// How rows its changelog holds in the shape of tables before a migration reshaped them
    /// read now: a restore by this release of a changelog an older one began. Default: none.
    var loggedRowUpgrades: [LoggedRowUpgrade] { get }
    /// Input topics whose records carry personal data (contact data, birthdays): their dead
    /// letters name the record's place but carry none of its value.
    var personalDataTopics: Set<String> { get }
    /// Whether the store keeps personal data: it is then opened with `secure_delete`, so that
    /// rows the service erases are overwritten in the file, not only unlinked.
    var storesPersonalData: Bool { get }
    /// Topics of commands other parts of the platform act on: every event the service sends
    /// to them is signed with the first of its `CommandKeys`.
    var commandTopics: Set<String> { get }
    /// Topics the service writes for other services that wait on its progress: after every
    /// batch it publishes a ``ProgressMark`` per task on that task's partition of each.
    var progressTopics: [String] { get }
    /// What tasks may still send on some progress topics beyond what the loop knows from their
    /// merge, timers and echoes: outputs the processor owes for records it keeps aside itself
    /// (a member's, until an answer comes), or for an answer still to come. By task, then by
    /// progress topic, the merge key nothing the task sends there from now on sorts before;
    /// the task's marks on that topic go no further (``ProgressMark/lowered(to:)``), exact
    /// within a millisecond. Read from `database` at the end of each batch, inside its
    /// transaction, and whenever the loop looks for a mark to publish. A bound lowers the marks
    /// of its own task only: what a task keeps aside must not send its other tasks commands.
    /// Default: none.
    func progressBounds(of tasks: [Int32], in database: Database) throws -> [Int32: [String: MergeKey]]
    /// Whether a timer set already due in a batch of no record that moves its task's clock (an
    /// answer that releases what the service kept aside) fires at the end of that batch rather
    /// than before the task's next record, which may never come. Default: false.
    var firesDueTimersAtBatchEnd: Bool { get }
    /// Input topics other services write, and the producers whose progress marks a record of
    /// a task waits for (narrowed by the `WAIT_FOR` setting).
    var upstreamProducers: [String: Set<String>] { get }
    /// Whether the service's tasks share nothing: every statement it runs is keyed by a key
    /// of the task at hand, and it sends itself no command. Then a task's progress marks
    /// promise for that task alone, and a batch refuses a record for one of the service's own
    /// input topics (``SelfCommandRefused``), which would tie one task to another. (Instances
    /// sharing a store still keep frontiers between tasks: the store's inbox and the
    /// time-out-of-range reference span tasks.)
    ///
    /// A service whose tasks are not independent may still keep a store per task, its tasks
    /// waiting for one another through ``PeerMark``s, if its commands to its own tasks go on
    /// one signed command topic among its sorted inputs (written by its own tasks and by the
    /// producers it waits for alone: a record of any other writer is covered by no mark),
    /// each ranks above the record that causes it (same time, higher rank), no chain of such
    /// commands is longer than ``longestCommandChain``, and its timers send none (the batch refuses those it can
    /// see: ``PeerCommandRefused``).
    var tasksAreIndependent: Bool { get }

    /// Whether applying `input` may send another of the service's tasks a command, itself or
    /// through what it sets off (records it releases, the command's own answer). With a store
    /// per task, a task's peer marks promise past its records that cannot, so tasks whose
    /// records seldom reach each other are not held in step. Saying false of a record that
    /// does is caught when it sends the command (``PeerCommandRefused``). Called on the loop's
    /// thread as records arrive, while `apply` may run on a task's: it must read nothing but
    /// `input` and the processor's immutable settings. Default: every record may.
    func mayCommandOtherTasks(_ input: Decoded<Body>) -> Bool

    /// The longest chain of commands between the service's tasks: a record's command (one
    /// link), a command it causes in turn (two), and so on. Each link past the first costs
    /// the peer marks one more figure (``PeerMarkBook/levels``), which a chain of that length
    /// needs (architecture.md, step 9). Default: 2.
    var longestCommandChain: Int { get }

    /// Whether every command a command causes goes back to the task that sent the cause (a
    /// transfer's credit given back, a reservation answered). Its sender's hold covers it
    /// (``PeerHold``), so with chains of two no other task waits for it, and peer marks carry
    /// each task's own promise alone (``peerMarkLevels``): a promise moving then sets off no
    /// mark from every task that read it. Default: false.
    var repliesGoBackToTheSender: Bool { get }

    /// Whether the service keeps figures that span its tasks (a stock, a budget shared by
    /// every member): a store per task would split them, so the `task` layout is refused.
    var figuresSpanTasks: Bool { get }

    /// The rank `decode` gives an event type; used for the commands the service sends itself.
    func rank(of eventType: String) -> Int

    /// Decodes a record; throws a rejection for records that cannot be applied. With
    /// `DECODE_AHEAD` on (the default) it is called on a thread of its own, at the same time
    /// as `apply`, `fire`, `finish` and the rest run on the loop's: it must read nothing but
    /// the processor's immutable settings.
    func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<Body>
    /// Whether the store already holds the effects of a platform record (`isExternalInput`
    /// false) whose inbox row may be pruned: one further behind the task's stream time than
    /// the inbox horizon, sent again by a writer that replayed its outbox (a restored task)
    /// long after the first copy was applied, or one that moves no stream time and came that
    /// late even the first time (its row is not written then). The record then counts as a
    /// duplicate. Outside records that old are refused instead, so only these are asked about.
    /// Default: false, the service's rules must tell a repeat themselves.
    func hasApplied(_ input: Decoded<Body>, in batch: Batch) throws -> Bool
    /// Applies one input. Throws only for failures of storage, which abort the batch.
    func apply(_ input: Decoded<Body>, in batch: Batch) throws
    /// Acts on a timer that came due.
    func fire(_ timer: DueTimer, in batch: Batch) throws
    /// Topics every instance reads whole, outside the group's tasks (campaign definitions):
    /// read to their end before the first task record, then applied as they arrive, each
    /// in a batch of its own.
    var broadcastTopics: [String] { get }
    /// Applies a record of a broadcast topic. Throws only for failures of storage.
    func applyBroadcast(_ record: ConsumedRecord, in batch: Batch) throws
    /// The service's view of a member (nil: unknown here), as of `asOf` when given. Called on
    /// the HTTP server's thread with a connection of its own: it must read nothing but that
    /// database and the processor's immutable settings.
    func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue?
    /// ``memberView(_:in:asOf:)`` as the bytes of its JSON, for callers that only pass it on
    /// (`GET /members/<id>`, a simulation's end states), under the same rules. The default
    /// serialises `memberView`; a service that writes the bytes itself makes `memberView` their
    /// parse, so that the two cannot differ.
    func serializedMemberView(_ member: String, in database: Database, asOf: EventTime?) throws -> [UInt8]?
    /// A part of a member for `GET /members/<id>/<resource>` (for example a contact address the
    /// senders fetch), under the same rules as ``memberView(_:in:asOf:)``.
    func memberResource(_ member: String, _ resource: String, in database: Database) throws -> MemberResource
    /// Service-specific metrics, as Prometheus text lines; asked on the loop's thread.
    func metricLines() -> [String]
    /// Called once per batch before commit: write what was kept in memory during it.
    func finish(_ batch: Batch) throws
    /// Called after a batch rolled back: forget what was kept in memory during it.
    func abandon()
}

extension StreamProcessor {
    public var serviceInputTopics: Set<String> { sortedInputTopics }
    public var broadcastTopics: [String] { [] }
    public var commandTopics: Set<String> { [] }
    public var progressTopics: [String] { [] }
    public var upstreamProducers: [String: Set<String>] { [:] }
    public func progressBounds(of tasks: [Int32], in database: Database) throws -> [Int32: [String: MergeKey]] { [:] }
    public var firesDueTimersAtBatchEnd: Bool { false }
    public var tasksAreIndependent: Bool { false }
    public var figuresSpanTasks: Bool { false }
    public func mayCommandOtherTasks(_ input: Decoded<Body>) -> Bool { true }
    public var longestCommandChain: Int { 2 }
    public var repliesGoBackToTheSender: Bool { false }

    /// How many figures of a peer mark the service's tasks wait on: one when replies go back
    /// to their sender and no chain is longer than two, else the longest chain's links.
    public var peerMarkLevels: Int { repliesGoBackToTheSender && longestCommandChain <= 2 ? 1 : longestCommandChain }
    public func hasApplied(_ input: Decoded<Body>, in batch: Batch) throws -> Bool { false }

    /// The service's input topics it also sends signed commands to: where its tasks' peer
    /// marks go.
    public var selfCommandTopics: [String] { inputTopics.filter { commandTopics.contains($0) } }
    public var personalDataTopics: Set<String> { [] }
    public var storesPersonalData: Bool { false }
    public var loggedRowUpgrades: [LoggedRowUpgrade] { [] }
    public func memberView(_ member: String, in database: Database, asOf: EventTime?) throws -> JSONValue? { nil }
    public func serializedMemberView(_ member: String, in database: Database, asOf: EventTime?) throws -> [UInt8]? {
        try memberView(member, in: database, asOf: asOf)?.serialized()
    }
    public func memberResource(_ member: String, _ resource: String, in database: Database) throws -> MemberResource {
        .notFound("no resource \(resource) of members here")
    }
    public func metricLines() -> [String] { [] }
    public func applyBroadcast(_ record: ConsumedRecord, in batch: Batch) throws {}
}

/// What `GET /members/<id>/<resource>` answers.
public enum MemberResource: Sendable, Equatable {
    /// 200 with this body.
    case found(JSONValue)
    /// 404, and why.
    case notFound(String)
    /// 410: it existed and was erased for good (a closed member's contact data).
    case gone(String)
}
