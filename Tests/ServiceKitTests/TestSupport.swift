import Basics
import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Synchronization

@testable import ServiceKit

extension Platform {
    /// A platform that is not the loyalty one: the runtime takes every name it writes from it.
    static let acme = Platform(name: "acme", deadLetters: acmeDeadLetters.name, instances: "acme.instances", partitionCount: 6)
}

/// The test platform's dead-letter topic.
let acmeDeadLetters = TopicSpec(name: "acme.dead-letters", partitions: 6)

/// A minimal service for testing the runtime: adds `data.n` to a per-member total, and on
/// `count.remind` sets a timer that emits a reminder when it fires.
final class CountingProcessor: StreamProcessor {
    struct Body {
        var type: String
        var n: Int64
        /// The member a `count.pass` came from.
        var from: String? = nil
    }

    let name = "counting"
    let platform = Platform.acme
    let inputTopics: [String]
    let outputTopic: String
    var failOnMembers: Set<String> = []
    /// Whether a churned timer (``fireChurned(_:in:)``) has failed its batch.
    var failedFiring = false
    var sortedInputTopics: Set<String> = []
    var personalDataTopics: Set<String> = []
    var tasksAreIndependent = false
    /// The topics its own commands go to (signed), among its input topics.
    var commandTopics: Set<String> = []
    /// When set: every `count.add` whose `n` is a multiple of `every` passes `n + 1000` on to
    /// member `m<(n / every) % 40>`, on `topic`, as a `count.pass` command of the same time,
    /// ranked above it: a command from one task to another.
    var passing: (topic: String, every: Int64)?
    /// With `passing`: a pass that leaves its receiver's total odd bounces back to its sender
    /// as a `count.returned` of 1, ranked above the pass (a chain of two, as a points transfer's).
    var bouncing = false
    /// The links of its longest chain of commands (its peer marks carry as many figures).
    var longestCommandChain = 2
    /// Event ids the processor says send no other task a command (``mayCommandOtherTasks(_:)``).
    var saidToSendNone: Set<String> = []
    func mayCommandOtherTasks(_ input: Decoded<Body>) -> Bool { !saidToSendNone.contains(input.eventID) }
    /// Topics it publishes progress marks on, for services that would wait on it.
    var progressTopics: [String] = []
    /// One of them on which every task still owes something from (5, 7, `kept-<task>`): its
    /// marks there go no further (``progressBounds(of:in:)``).
    var heldTopic: String?
    func progressBounds(of tasks: [Int32], in database: Database) throws -> [Int32: [String: MergeKey]] {
        guard let heldTopic else { return [:] }
        return Dictionary(uniqueKeysWithValues: tasks.map { ($0, [heldTopic: MergeKey(time: 5, rank: 7, id: "kept-\($0)")]) })
    }
    /// Event types written by the platform's services rather than from outside (`isExternalInput` false).
    var platformTypes: Set<String> = []
    /// Event types that move no clock (`movesStreamTime` false), as another service's answers.
    var clocklessTypes: Set<String> = []
    var firesDueTimersAtBatchEnd = false
    /// Ids of the records applied, and those the runtime asked about (``hasApplied(_:in:)``).
    var appliedIDs: Set<String> = []
    var askedWhetherApplied: [String] = []
    func hasApplied(_ input: Decoded<Body>, in batch: Batch) throws -> Bool {
        askedWhetherApplied.append(input.eventID)
        return appliedIDs.contains(input.eventID)
    }
    /// The threads that decoded records (`pthread_self`).
    let decodingThreads = Mutex<Set<UInt>>([])
    /// Told the thread of every record applied, when set (shared by the processors of a loop's tasks).
    var applyingThreads: ThreadLog?
    func rank(of eventType: String) -> Int { eventType == "count.pass" ? 1 : eventType == "count.returned" ? 2 : 0 }
    /// A later release whose migration 101 moved `counts` to `tallies`; with
    /// `upgradesLoggedRows` it also reads the rows of `counts` a changelog holds from before.
    var renamedCounts = false
    var upgradesLoggedRows = false
    private var countsTable: String { renamedCounts ? "tallies" : "counts" }
    var migrations: [Migration] {
        [Migration(version: 100, name: "counts", sql: "CREATE TABLE counts(member TEXT PRIMARY KEY, total INTEGER NOT NULL, applied INTEGER NOT NULL);")]
            + (renamedCounts ? [Migration(version: 101, name: "tallies", sql: """
                CREATE TABLE tallies(member TEXT PRIMARY KEY, total INTEGER NOT NULL, applied INTEGER NOT NULL);
                INSERT INTO tallies SELECT member, total, applied FROM counts;
                DROP TABLE counts;
                """)] : [])
    }
    var loggedRowUpgrades: [LoggedRowUpgrade] {
        guard upgradesLoggedRows else { return [] }
        return [LoggedRowUpgrade(table: "counts", keyColumnCount: 1) { key, row in RowChange(table: "tallies", key: key, row: row) }]
    }

    init(inputTopics: [String], outputTopic: String) {
        self.inputTopics = inputTopics
        self.outputTopic = outputTopic
    }

    struct Failure: Error {}

    func decode(_ record: ConsumedRecord) throws(Rejection) -> Decoded<Body> {
        decodingThreads.withLock { _ = $0.insert(UInt(pthread_self())) }
        guard let value = record.value else { throw Rejection(code: .emptyPayload, detail: "no value") }
        let event: CloudEvent
        do { event = try CloudEvent.decode(value) } catch { throw Rejection(code: error.code, detail: error.detail) }
        guard let member = event.subject, let n = event.data["n"]?.int64Value else {
            throw Rejection(code: .invalidEvent, detail: "subject and data.n are required")
        }
        var decoded = Decoded(
            eventID: event.id, time: event.time, rank: rank(of: event.type), member: member, payloadHash: payloadHash(event.encoded()),
            body: Body(type: event.type, n: n, from: event.data["from"]?.stringValue))
        decoded.isExternalInput = !platformTypes.contains(event.type)
        decoded.movesStreamTime = !clocklessTypes.contains(event.type)
        return decoded
    }

    func apply(_ input: Decoded<Body>, in batch: Batch) throws {
        applyingThreads?.threads.withLock { _ = $0.insert(UInt(pthread_self())) }
        if failOnMembers.contains(input.member) { throw Failure() }
        appliedIDs.insert(input.eventID)
        if input.body.type == "count.remind" {
            try batch.schedule(TimerRequest(due: input.time.adding(milliseconds: input.body.n), rank: 0, member: input.member, kind: "remind", ref: input.eventID))
            return
        }
        if input.body.type.hasPrefix("count.churn") {
            return try churnTimers(seed: UInt64(input.body.n), at: input.time, takingAll: input.body.type == "count.churn-aside", in: batch)
        }
        if input.body.type == "count.take" {
            // The member's timers due by the record's time, taken and fired here, in order.
            while let timer = try batch.takeTimer(member: input.member, firingBefore: (input.time.millis, .max)) {
                try batch.emit(CloudEvent(
                    id: "taken/\(timer.ref)", source: "test", type: "count.taken", time: timer.due, subject: timer.member, data: .object([:])), to: outputTopic)
            }
            return
        }
        try batch.database.prepare(
            "INSERT INTO \(countsTable)(member, total, applied) VALUES(?, ?, 1) ON CONFLICT(member) DO UPDATE SET total = total + excluded.total, applied = applied + 1"
        ).run(.text(input.member), .integer(input.body.n))
        let total = try batch.database.prepare("SELECT total FROM \(countsTable) WHERE member = ?").queryOne(.text(input.member)) { $0.int64(0) } ?? 0
        let out = CloudEvent(
            id: "out/\(input.eventID)", source: "test", type: "count.total", time: input.time, subject: input.member,
            data: .object(JSONObject(["total": .int(total)])))
        try batch.emit(out, to: outputTopic)
        if let passing, input.body.type == "count.add", input.body.n % passing.every == 0 {
            try batch.emit(CloudEvent(
                id: "pass/\(input.eventID)", source: "test", type: "count.pass", time: input.time,
                subject: "m\((input.body.n / passing.every) % 40)",
                data: .object(JSONObject(["n": .int(input.body.n + 1000), "from": .string(input.member)]))), to: passing.topic)
        }
        if let passing, bouncing, input.body.type == "count.pass", total % 2 != 0, let from = input.body.from {
            try batch.emit(CloudEvent(
                id: "returned/\(input.eventID)", source: "test", type: "count.returned", time: input.time, subject: from,
                data: .object(JSONObject(["n": 1]))), to: passing.topic)
        }
    }

    func fire(_ timer: DueTimer, in batch: Batch) throws {
        if timer.kind.hasPrefix("churn") { return try fireChurned(timer, in: batch) }
        let out = CloudEvent(
            id: "reminder/\(timer.ref)", source: "test", type: "count.reminded", time: timer.due, subject: timer.member,
            data: .object(JSONObject(["streamTime": .int(batch.streamTime.millis)])))
        try batch.emit(out, to: outputTopic)
    }

    /// `count.churn`: a few timer operations drawn from `seed` on the members of the record's
    /// task (two of them alike but for their bytes): timers set (some already due; due times on
    /// a coarse grid, so that many tie), cancelled by ref or by kind, and taken; with
    /// `takingAll`, every member's timers due before the record are taken at the end.
    private func churnTimers(seed: UInt64, at time: EventTime, takingAll: Bool, in batch: Batch) throws {
        var random = SeededRandom(seed: seed)
        let members = ["a", "b", "Zo\u{E9}", "Zoe\u{301}"].map { "\($0)-\(batch.task)" }
        for _ in 0..<(1 + random.next() % 4) {
            let member = members[Int(random.next() % 4)]
            let kind = ["churn-x", "churn-y"][Int(random.next() % 2)]
            let ref = String(random.next() % 3)
            switch random.next() % 10 {
            case 0..<5:
                try batch.schedule(TimerRequest(
                    due: time.adding(milliseconds: Int64(random.next() % 20) * 100 - 500), rank: Int(random.next() % 2), member: member, kind: kind,
                    ref: ref, payload: [UInt8(random.next() % 4)]))
            case 5, 6: try batch.cancelTimers(member: member, kind: kind, ref: ref)
            case 7: try batch.cancelTimers(member: member, kind: kind)
            default:
                while let timer = try batch.takeTimer(member: member, firingBefore: (time.millis, Int(random.next() % 3))) {
                    try emitFired("taken", timer, in: batch)
                }
            }
        }
        guard takingAll else { return }
        for member in members {
            while let timer = try batch.takeTimer(member: member, firingBefore: (time.millis, 1)) { try emitFired("taken", timer, in: batch) }
        }
    }

    /// A churned timer fires: says so, and by its payload cancels the member's timers of the
    /// other kind (1), sets one due soon after it (2), or sets itself again (3).
    private func fireChurned(_ timer: DueTimer, in batch: Batch) throws {
        try emitFired("fired", timer, in: batch)
        // A member that fails fails here, its timer removed and the batch part done.
        if failOnMembers.contains(timer.member) {
            failedFiring = true
            throw Failure()
        }
        switch timer.payload.first {
        case 1: try batch.cancelTimers(member: timer.member, kind: timer.kind == "churn-x" ? "churn-y" : "churn-x")
        case 2:
            try batch.schedule(TimerRequest(
                due: timer.due.adding(milliseconds: 1), rank: timer.rank, member: timer.member, kind: timer.kind, ref: timer.ref + "'", payload: [0]))
        case 3:
            try batch.schedule(TimerRequest(due: timer.due, rank: timer.rank, member: timer.member, kind: timer.kind, ref: timer.ref, payload: [0]))
        default: break
        }
    }

    private func emitFired(_ how: String, _ timer: DueTimer, in batch: Batch) throws {
        try batch.emit(CloudEvent(
            id: "\(how)/\(timer.task)/\(timer.due.millis)/\(timer.rank)/\(timer.kind)/\(timer.ref)", source: "test", type: "count.\(how)",
            time: timer.due, subject: timer.member,
            data: .object(JSONObject(["payload": .array(timer.payload.map { .int(Int64($0)) }), "streamTime": .int(batch.streamTime.millis)]))),
            to: outputTopic)
    }

    func finish(_ batch: Batch) throws {}
    func abandon() {}
}

/// The threads that did something, as `pthread_self` values.
final class ThreadLog: Sendable {
    let threads = Mutex<Set<UInt>>([])
}

func countEvent(_ id: String, member: String, n: Int64, time: Int64, type: String = "count.add") -> [UInt8] {
    CloudEvent(id: id, source: "test", type: type, time: EventTime(millis: time), subject: member,
               data: .object(JSONObject(["n": .int(n)]))).encoded()
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("servicekit-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

extension Database {
    func count(_ sql: String) throws -> Int64 {
        try prepare(sql).queryOne { $0.int64(0) } ?? 0
    }
}
