import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Storage
import Testing

@testable import CampaignsService

/// The keeper of budgets on a real database, through the exactly-once transaction: claims in,
/// answers and what is left of each budget out, budgets kept across batches and restarts.
@Suite struct BudgetKeeperProcessorTests {
    static let claims = "test.budget-claims"
    static let answers = "test.budget-answers"

    final class Harness {
        let directory: URL
        var applier: BatchApplier<BudgetKeeperProcessor>
        var offset: Int64 = 0

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("budget-keeper-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            applier = try Self.open(directory)
        }

        static func open(_ directory: URL) throws -> BatchApplier<BudgetKeeperProcessor> {
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("campaign-budgets.sqlite").path))
            let applier = try BatchApplier(
                database: database, processor: BudgetKeeperProcessor(claimsTopic: claims, answersTopic: answers, commandKeys: testKeys),
                timerMode: .streamTime, partitionCount: 1)
            applier.commandKeys = testKeys
            return applier
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        /// Applies `events` in one batch; returns what it published and the reasons of what it dead-lettered.
        func apply(_ events: [CloudEvent]) throws -> (published: [(topic: String, key: String?, event: CloudEvent)], refused: [String]) {
            let polled = events.map { event -> PolledRecord<BudgetKeeperProcessor.Claim> in
                offset += 1
                let record = ConsumedRecord(topic: BudgetKeeperProcessorTests.claims, partition: 0, offset: offset, key: Array(event.subject!.utf8), value: event.encoded())
                let decoded: Result<Decoded<BudgetKeeperProcessor.Claim>, Rejection>
                do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                return PolledRecord(record: record, decoded: decoded)
            }
            let rows = try applier.apply(polled).outbox
            var published: [(topic: String, key: String?, event: CloudEvent)] = []
            var refused: [String] = []
            for row in rows {
                let event = try CloudEvent.decode(row.value!)
                if row.topic == Topics.deadLetters.name { refused.append(event.data["reason"]?.stringValue ?? "") } else {
                    published.append((row.topic, row.key.map { String(decoding: $0, as: UTF8.self) }, event))
                }
            }
            return (published, refused)
        }
    }

    func claim(_ id: String, member: String, at time: Int64, rank: Int = Rank.platformCommand, _ asks: [BudgetClaim.Ask],
               source: String = "loyalty/campaigns") -> CloudEvent {
        var data = BudgetClaim(asks: asks).json.objectValue!
        data["rank"] = .int(Int64(rank))
        return testKeys.sign(CloudEvent(
            id: "budget-claim/\(id)", source: source, type: EventType.campaignsBudgetClaim, time: EventTime(millis: time), subject: member,
            data: .object(data)))
    }

    func granted(_ answer: CloudEvent) -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: (answer.data["granted"]?.objectValue?.members ?? []).map { ($0.key, $0.value.int64Value!) })
    }

    @Test func claimsAreAnsweredFromWhatIsLeftAndTheBudgetIsSpentToTheLastPoint() throws {
        let h = try Harness()
        let walk = { (points: Int64) -> [BudgetClaim.Ask] in
            [.init(campaign: "triple", budgetPoints: 100, points: points, inMultiplierWalk: true),
             .init(campaign: "double", budgetPoints: 50, points: points / 2, inMultiplierWalk: true),
             .init(campaign: "bonus", budgetPoints: 30, points: 20, inMultiplierWalk: false)]
        }
        let first = try h.apply([claim("o1", member: "m-1", at: 1_000, walk(60)), claim("o2", member: "m-2", at: 2_000, walk(60))])
        let answers = first.published.filter { $0.topic == Self.answers }
        #expect(answers.map(\.key) == ["m-1", "m-2"])
        #expect(answers.map { $0.event.id } == ["budget-answer/budget-claim/o1", "budget-answer/budget-claim/o2"])
        #expect(answers.map { $0.event.time.millis } == [1_000, 2_000], "an answer carries its claim's time")
        #expect(answers.allSatisfy { testKeys.verify($0.event) == nil }, "answers are signed commands")
        #expect(granted(answers[0].event) == ["triple": 60, "double": 0, "bonus": 20])
        #expect(granted(answers[1].event) == ["triple": 40, "double": 0, "bonus": 10], "the last grant is cut to what is left")
        let left = first.published.filter { $0.topic == Topics.campaignResults.name }
        #expect(left.map(\.key) == ["bonus/budget", "triple/budget"])
        #expect(left.map { $0.event.data["budgetLeft"]?.int64Value } == [0, 0])

        // A later batch, after a restart: spent budgets stay spent, the walk falls to the next.
        h.applier = try Harness.open(h.directory)
        let second = try h.apply([claim("o3", member: "m-3", at: 3_000, walk(60))])
        let answer = try #require(second.published.first { $0.topic == Self.answers })
        #expect(granted(answer.event) == ["triple": 0, "double": 30, "bonus": 0])
        #expect(second.published.filter { $0.topic == Topics.campaignResults.name }.map { $0.event.data["budgetLeft"]?.int64Value } == [20])

        // A claim read again (a restored task sends it again) is a duplicate: no second grant.
        let again = try h.apply([claim("o3", member: "m-3", at: 3_000, walk(60))])
        #expect(again.published.filter { $0.topic == Self.answers }.isEmpty)
    }

    @Test func forgedUnsignedAndMalformedClaimsAreRefusedWithTheirReason() throws {
        let h = try Harness()
        let ask = [BudgetClaim.Ask(campaign: "c", budgetPoints: 10, points: 5, inMultiplierWalk: false)]
        var unsigned = claim("u", member: "m", at: 1_000, ask)
        unsigned.signature = nil
        var malformed = claim("x", member: "m", at: 1_000, [])
        malformed = testKeys.sign(CloudEvent(
            id: "budget-claim/x", source: "loyalty/campaigns", type: EventType.campaignsBudgetClaim, time: EventTime(millis: 1_000),
            subject: "m", data: ["rank": 5, "asks": [["campaign": "c", "budgetPoints": 10, "points": -5, "inMultiplierWalk": false]]]))
        let outcome = try h.apply([claim("f", member: "m", at: 1_000, ask, source: "shop"), unsigned, malformed])
        #expect(outcome.refused.count == 3)
        #expect(Set(outcome.refused) == ["forbidden-source", "unauthenticated-command", "invalid-event"], "\(outcome.refused)")
        #expect(outcome.published.filter { $0.topic == Self.answers }.isEmpty, "nothing is granted for them")
    }
}
