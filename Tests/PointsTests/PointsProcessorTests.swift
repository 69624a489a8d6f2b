import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import ServiceKit
import Storage
import Testing

@testable import PointsService

/// The points service's handlers on a real database, driven through the exactly-once
/// transaction without Kafka.
@Suite struct PointsProcessorTests {
    final class Harness {
        let directory: URL
        let applier: BatchApplier<PointsProcessor>
        var offsets: [String: Int64] = [:]
        let keys = try! CommandKeys.parse("current=points-test-secret-0001,retired=points-test-secret-0000")

        init(inboxHorizonDays: Int64? = nil) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("points-tests-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let database = try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path))
            let processor = PointsProcessor(program: try Program.load(json: ReferenceProgram.bytes()), commandKeys: keys, adjustmentLimit: 1_000)
            // One partition, so that every member's records, all on partition 0, share one task and stream time.
            applier = try BatchApplier(
                database: database, processor: processor, timerMode: .streamTime, partitionCount: 1,
                inboxHorizon: inboxHorizonDays.map { $0 * 86_400_000 })
            applier.commandKeys = keys
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        /// Applies events as one batch (all in partition 0 of their topics) and returns what went to the outbox.
        @discardableResult
        func apply(_ events: [CloudEvent]) throws -> [(topic: String, event: CloudEvent)] {
            let polled = events.map { event -> PolledRecord<PointsRecord> in
                let topic = Topics.inputTopic(forEventType: event.type)!.name
                let offset = offsets[topic, default: 0]
                offsets[topic] = offset + 1
                let record = ConsumedRecord(topic: topic, partition: 0, offset: offset, key: event.subject.map { Array($0.utf8) }, value: event.encoded())
                let decoded: Result<Decoded<PointsRecord>, Rejection>
                do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
                return PolledRecord(record: record, decoded: decoded)
            }
            let outcome = try applier.apply(polled)
            return try outcome.outbox.map { ($0.topic, try CloudEvent.decode($0.value!)) }
        }

        func count(_ sql: String) throws -> Int64 {
            try applier.database.prepare(sql).queryOne { $0.int64(0) } ?? 0
        }

        /// The member as `GET /members/<id>` shows them, as an object.
        func view(_ member: String) throws -> JSONObject? {
            try applier.processor.memberView(member, in: applier.database, asOf: nil)?.objectValue
        }
    }

    func event(_ id: String, _ type: String, _ member: String, _ time: String, _ data: JSONObject = JSONObject()) throws -> CloudEvent {
        CloudEvent(id: id, source: "test", type: type, time: try EventTime.parse(time), subject: member, data: .object(data))
    }

    @Test func eventsOfAnUnknownMemberWaitForItsRegistration() throws {
        let harness = try Harness()
        let early = try harness.apply([
            try event("o1", EventType.orderPaid, "dana", "2026-03-03T18:00:00+08:00", ["orderId": "D-1", "paidMinor": 8_800]),
            try event("c1", EventType.checkedIn, "dana", "2026-03-03T19:00:00+08:00"),
        ])
        #expect(early.isEmpty)
        #expect(try harness.count("SELECT COUNT(*) FROM parked_records") == 2)

        let registered = try harness.apply([try event("r1", EventType.memberRegistered, "dana", "2026-03-04T09:00:00+08:00")])
        let ledger = registered.filter { $0.topic == Topics.pointsLedger.name }.map(\.event)
        #expect(ledger.map(\.id) == ["o1/base", "c1/check-in"])
        #expect(ledger.first?.time.rfc3339 == "2026-03-03T10:00:00.000Z", "a kept event keeps its own time")
        #expect(try harness.count("SELECT COUNT(*) FROM parked_records") == 0)
        #expect(try harness.count("SELECT COUNT(*) FROM timers WHERE kind = 'unknown-member'") == 0)
        let balance = try #require(registered.last { $0.topic == Topics.pointsBalances.name }?.event)
        #expect(balance.data["pending"]?.int64Value == 88)
        #expect(balance.data["available"]?.int64Value == 1)
    }

    /// A task of tiers or campaigns restored from a changelog that lagged its outputs sends
    /// those outputs again, with their ids, maybe months of stream time later, when the inbox
    /// has pruned their rows: the ledger still knows them, and nothing is credited twice.
    @Test func commandsSentAgainAfterTheInboxForgotThemChangeNothing() throws {
        let harness = try Harness(inboxHorizonDays: 30)
        func signed(_ id: String, _ type: String, _ time: String, from source: String, _ data: JSONObject) throws -> CloudEvent {
            var command = try event(id, type, "m", time, data)
            command.source = source
            return harness.keys.sign(command)
        }
        let grant = try signed("g1", EventType.pointsGrant, "2026-03-02T10:05:00+08:00", from: "loyalty/tiers",
                               ["component": "tier-bonus", "points": 10, "orderId": "O1"])
        let reversal = try signed("v1", EventType.pointsReverse, "2026-03-03T10:00:00+08:00", from: "loyalty/tiers",
                                  ["component": "tier-bonus", "orderId": "O1", "refundId": "F1", "points": 5])
        // The rules alone would credit a reward without an order every time it came.
        let reward = try signed("c1", EventType.pointsGrant, "2026-03-04T10:00:00+08:00", from: "loyalty/campaigns",
                                ["component": "campaign-reward", "points": 300])
        try harness.apply([
            try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00"),
            try event("o1", EventType.orderPaid, "m", "2026-03-02T10:00:00+08:00", ["orderId": "O1", "paidMinor": 10_000]),
            grant, reversal, reward,
        ])
        let entries = try harness.count("SELECT COUNT(*) FROM ledger WHERE member = 'm'")
        #expect(entries == 4)
        // Two months of check-ins later the inbox has let them go.
        try harness.apply([try event("k", EventType.checkedIn, "m", "2026-05-10T09:00:00+08:00")])
        #expect(try harness.count("SELECT COUNT(*) FROM inbox WHERE event_id IN ('g1', 'v1', 'c1')") == 0)
        let late = try signed("c2", EventType.pointsGrant, "2026-03-05T10:00:00+08:00", from: "loyalty/campaigns",
                              ["component": "campaign-reward", "points": 7])
        let before = try harness.count("SELECT COUNT(*) FROM ledger WHERE member = 'm'")
        let again = try harness.apply([grant, reversal, reward, late])
        // The three sent again change nothing; a command that late but new is applied.
        #expect(again.filter { $0.topic == Topics.pointsLedger.name }.map(\.event.id) == ["c2/campaign-reward"])
        #expect(try harness.count("SELECT COUNT(*) FROM ledger WHERE member = 'm'") == before + 1)
        #expect(try harness.count("SELECT COUNT(*) FROM ledger WHERE cause_id = 'c1'") == 1)
        #expect(try harness.count("SELECT COUNT(*) FROM inbox WHERE event_id IN ('g1', 'v1', 'c1', 'c2')") == 4, "remembered again")
    }

    @Test func eventsOfAMemberThatNeverRegistersAreDeadLetteredAfterTheWait() throws {
        let harness = try Harness()
        try harness.apply([try event("o1", EventType.orderPaid, "ghost", "2026-03-01T10:00:00+08:00", ["orderId": "G-1", "paidMinor": 1_000])])
        // Stream time moves on: just under 168 hours later nothing happens, at 168 hours the event goes.
        let before = try harness.apply([try event("x1", EventType.memberRegistered, "other", "2026-03-08T09:59:59+08:00")])
        #expect(!before.contains { $0.topic == Topics.deadLetters.name })
        let after = try harness.apply([try event("x2", EventType.checkedIn, "other", "2026-03-08T10:00:00+08:00")])
        let letter = try #require(after.first { $0.topic == Topics.deadLetters.name }?.event)
        #expect(letter.data["reason"]?.stringValue == "member-not-registered")
        #expect(letter.subject == "ghost")
        #expect(try CloudEvent.decode(Array(letter.data["payload"]!.stringValue!.utf8)).id == "o1")
        #expect(try harness.count("SELECT COUNT(*) FROM parked_records") == 0)
        // Registering later does not bring it back.
        let late = try harness.apply([try event("r1", EventType.memberRegistered, "ghost", "2026-03-09T10:00:00+08:00")])
        #expect(!late.contains { $0.event.id == "o1/base" })
    }

    @Test func anEventDatedFarBeforeTheRegistrationIsDeadLetteredWhicheverCameFirst() throws {
        let harness = try Harness()
        try harness.apply([try event("r1", EventType.memberRegistered, "erin", "2026-03-10T10:00:00+08:00")])
        // Read after the registration, but dated eight days before it: past the week an unknown
        // member's event may wait, as it would have been had it come first. Six days is within.
        let out = try harness.apply([
            try event("c-far", EventType.checkedIn, "erin", "2026-03-02T10:00:00+08:00"),
            try event("c-near", EventType.checkedIn, "erin", "2026-03-04T10:00:00+08:00"),
        ])
        let letter = try #require(out.first { $0.topic == Topics.deadLetters.name }?.event)
        #expect(letter.data["reason"]?.stringValue == "member-not-registered")
        #expect(try CloudEvent.decode(Array(letter.data["payload"]!.stringValue!.utf8)).id == "c-far")
        #expect(out.filter { $0.topic == Topics.pointsLedger.name }.map(\.event.id) == ["c-near/check-in"])
    }

    @Test func profileUpdatesOfAnUnknownMemberAreNeverKept() throws {
        let harness = try Harness()
        let out = try harness.apply([try event("u1", EventType.memberUpdated, "finn", "2026-03-01T10:00:00+08:00",
                                               ["channels": ["sms": "13700137000"], "birthday": "05-06"])])
        #expect(out.isEmpty)
        #expect(try harness.count("SELECT COUNT(*) FROM parked_records") == 0, "a profile changes nothing here, so it waits for nothing")
    }

    @Test func aReferralTravelsAsACommandToTheReferrer() throws {
        let harness = try Harness()
        try harness.apply([try event("ra", EventType.memberRegistered, "alice", "2026-03-01T09:00:00+08:00")])
        let registration = try harness.apply([
            try event("rb", EventType.memberRegistered, "bob", "2026-03-02T10:00:00+08:00", ["referrerId": "alice"]),
        ])
        let command = try #require(registration.first { $0.topic == Topics.pointsCommands.name })
        #expect(command.event.type == EventType.referralReward)
        #expect(command.event.subject == "alice")
        #expect(command.event.time.rfc3339 == "2026-03-02T02:00:00.000Z")
        // The command comes back on the commands topic; the referrer earns 10.
        let reward = try harness.apply([command.event])
        let entry = try #require(reward.first { $0.topic == Topics.pointsLedger.name }?.event)
        #expect(entry.id == "referral/rb/referral")
        #expect(entry.data["points"]?.int64Value == 10)
        #expect(entry.data["details"]?["referee"]?.stringValue == "bob")
        // Re-delivered, it is applied once.
        let again = try harness.apply([command.event])
        #expect(again.isEmpty)
    }

    @Test func referralRewardsFromAnyoneButThePointsServiceAreRefused() throws {
        let harness = try Harness()
        try harness.apply([try event("ra", EventType.memberRegistered, "alice", "2026-03-01T09:00:00+08:00")])
        var forged = try event("f", EventType.referralReward, "alice", "2026-03-02T09:00:00+08:00", ["refereeId": "x", "registrationId": "y"])
        forged.source = "shop"
        let outputs = try harness.apply([forged])
        let letter = try #require(outputs.first { $0.topic == Topics.deadLetters.name }?.event)
        #expect(letter.data["reason"]?.stringValue == "forbidden-source")
        #expect(!outputs.contains { $0.topic == Topics.pointsLedger.name })
    }

    @Test func aLateCreditForAnExpiryThatAlreadyFiredExpiresUnderItsOwnID() throws {
        let harness = try Harness()
        try harness.apply([
            try event("r", EventType.memberRegistered, "m", "2026-01-01T09:00:00+08:00"),
            try event("c1", EventType.checkedIn, "m", "2026-01-02T09:00:00+08:00"),  // expires 2027-02-01
        ])
        let fired = try harness.apply([try event("x", EventType.memberRegistered, "other", "2027-02-02T09:00:00+08:00")])
        let first = try #require(fired.first { $0.event.type == "points.expired" }?.event)
        // A check-in for an earlier day arrives late: its lot has the same, already passed, expiry.
        let late = try harness.apply([try event("c0", EventType.checkedIn, "m", "2026-01-05T09:00:00+08:00")])
        let second = try #require(late.first { $0.event.type == "points.expired" }?.event)
        #expect(first.id != second.id)
        #expect(second.data["points"]?.int64Value == -1)
        #expect(!late.contains { $0.event.type == "points.expiry-warning" }, "no warning once its time has passed")
    }

    @Test func grantsAreAcceptedOnlyFromPlatformServices() throws {
        let harness = try Harness()
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00")])
        var forged = try event("g", EventType.pointsGrant, "m", "2026-03-02T09:00:00+08:00", ["component": "campaign-reward", "points": 1000])
        forged.source = "shop"
        let outputs = try harness.apply([forged])
        #expect(outputs.first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue == "forbidden-source")
        var genuine = try event("g2", EventType.pointsGrant, "m", "2026-03-02T09:00:00+08:00", ["component": "campaign-reward", "points": 10])
        genuine.source = "loyalty/campaigns"
        #expect(try harness.apply([harness.keys.sign(genuine)]).contains { $0.event.id == "g2/campaign-reward" })
    }

    @Test func commandsWithoutAValidSignatureAreDeadLetteredAndMintNothing() throws {
        let harness = try Harness()
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00")])
        func reason(_ event: CloudEvent) throws -> String? {
            try harness.apply([event]).first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue
        }
        // A grant claiming to be from a platform service, unsigned.
        var grant = try event("g1", EventType.pointsGrant, "m", "2026-03-02T09:00:00+08:00", ["component": "campaign-reward", "points": 1_000_000])
        grant.source = "loyalty/evil"
        #expect(try reason(grant) == "unauthenticated-command")
        // A transfer credit in the points service's own name, signed with a key it does not hold.
        var credit = try event("t1", EventType.transferCredit, "m", "2026-03-02T09:00:00+08:00",
                               ["fromMemberId": "x", "transferId": "T", "points": 100_000_000_000_000])
        credit.source = "loyalty/points"
        #expect(try reason(try CommandKeys.parse("current=someone-elses-secret-01").sign(credit)) == "unauthenticated-command")
        // A genuine signature on an event changed afterwards.
        var tampered = harness.keys.sign(try event("g2", EventType.pointsGrant, "m", "2026-03-02T09:00:00+08:00",
                                                   ["component": "campaign-reward", "points": 10]).withSource("loyalty/campaigns"))
        tampered.data = .object(["component": "campaign-reward", "points": 10_000])
        #expect(try reason(tampered) == "unauthenticated-command")
        // A referral reward nobody signed.
        var referral = try event("rr", EventType.referralReward, "m", "2026-03-02T09:00:00+08:00", ["refereeId": "x", "registrationId": "y"])
        referral.source = "loyalty/points"
        #expect(try reason(referral) == "unauthenticated-command")
        #expect(try harness.count("SELECT COUNT(*) FROM ledger WHERE member = 'm'") == 0, "nothing was credited")

        // Signed with the retired key (still listed, for rotation): accepted.
        let retired = try CommandKeys.parse("retired=points-test-secret-0000")
        let applied = try harness.apply([retired.sign(try event("g3", EventType.pointsGrant, "m", "2026-03-02T10:00:00+08:00",
                                                                 ["component": "campaign-reward", "points": 10]).withSource("loyalty/campaigns"))])
        #expect(applied.contains { $0.event.id == "g3/campaign-reward" })
    }

    @Test func aStockedRewardIsReservedFromItsRewardsTaskAndRedeemedOnlyOnItsAnswer() throws {
        let harness = try Harness()
        func opening(_ member: String, _ points: Int64, at time: String) throws -> CloudEvent {
            harness.keys.sign(try event("open-\(member)", EventType.openingBalance, member, time, [
                "system": "old-crm", "operator": "migration-1",
                "lots": [["points": .int(points), "expiresAt": "2028-01-01T00:00:00+08:00"]],
            ]).withSource("loyalty/cli"))
        }
        func commands(_ out: [(topic: String, event: CloudEvent)]) -> [CloudEvent] {
            out.filter { $0.topic == Topics.pointsCommands.name }.map(\.event)
        }
        try harness.apply([
            try event("ra", EventType.memberRegistered, "ann", "2026-03-01T09:00:00+08:00"),
            try event("rb", EventType.memberRegistered, "ben", "2026-03-01T09:00:00+08:00"),
            try opening("ann", 700_000, at: "2026-03-01T10:00:00+08:00"), try opening("ben", 10_000, at: "2026-03-01T10:00:00+08:00"),
        ])
        // Two requests of one instant for 201 of the 200 tea sets: each sets its points aside
        // and asks the reward's task; nothing is spent or refused yet.
        let asked = try harness.apply([
            try event("x1", EventType.redeem, "ann", "2026-03-02T10:00:00+08:00", ["rewardId": "tea-set", "quantity": 199]),
            try event("x2", EventType.redeem, "ben", "2026-03-02T10:00:00+08:00", ["rewardId": "tea-set", "quantity": 2]),
        ])
        #expect(!asked.contains { $0.topic == Topics.pointsLedger.name })
        let reservations = commands(asked)
        #expect(reservations.map(\.type) == [EventType.stockReservation, EventType.stockReservation])
        #expect(reservations.map(\.id) == ["stock-reservation/x1", "stock-reservation/x2"])
        #expect(reservations.allSatisfy { $0.subject == "reward/tea-set" && $0.time.rfc3339 == "2026-03-02T02:00:00.000Z" })
        #expect(reservations[0].data["memberId"]?.stringValue == "ann" && reservations[0].data["quantity"]?.int64Value == 199)
        #expect(try harness.count("SELECT COUNT(*) FROM reward_stock") == 0)

        // The reward's task gives the units in the order of its reservations.
        let answers = commands(try harness.apply(reservations))
        #expect(answers.map(\.id) == ["stock-answer/x1", "stock-answer/x2"])
        #expect(answers.map(\.subject) == ["ann", "ben"])
        #expect(answers[0].data["refusal"] == nil)
        #expect(answers[1].data["refusal"]?.stringValue == "out-of-stock")
        #expect(try harness.count("SELECT taken FROM reward_stock WHERE reward_id = 'tea-set'") == 199)
        #expect(commands(try harness.apply(reservations)).isEmpty, "a reservation read again is applied once")

        // The member's task spends on a grant and gives back on a refusal, as of the request.
        let settled = try harness.apply(answers)
        let entry = try #require(settled.first { $0.topic == Topics.pointsLedger.name && $0.event.type != "points.refused" }?.event)
        #expect(entry.subject == "ann" && entry.data["causeId"]?.stringValue == "x1" && entry.data["points"]?.int64Value == -597_000)
        #expect(entry.time.rfc3339 == "2026-03-02T02:00:00.000Z")
        let refusal = try #require(settled.first { $0.event.type == "points.refused" }?.event)
        #expect(refusal.id == "x2/refused" && refusal.subject == "ben" && refusal.data["reason"]?.stringValue == "out-of-stock")
        #expect(try harness.count("SELECT available FROM accounts WHERE member = 'ann'") == 103_000)
        #expect(try harness.count("SELECT available FROM accounts WHERE member = 'ben'") == 10_000)
        #expect(try harness.count("SELECT COUNT(*) FROM ledger WHERE member = 'ben'") == 1, "the opening balance alone")

        // Only the points service reserves or answers, signed.
        for forged in [answers[1].withSource("shop"), reservations[1].withSource("loyalty/points")] {
            let out = try harness.apply([CloudEvent(
                id: forged.id + "-again", source: forged.source, type: forged.type, time: forged.time, subject: forged.subject, data: forged.data)])
            #expect(["forbidden-source", "unauthenticated-command"].contains(out.first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue))
        }
        #expect(try harness.count("SELECT taken FROM reward_stock WHERE reward_id = 'tea-set'") == 199)
    }

    @Test func aStockReservationSentAgainAfterTheInboxForgotItTakesNoUnitsTwice() throws {
        let harness = try Harness(inboxHorizonDays: 30)
        try harness.apply([
            try event("ra", EventType.memberRegistered, "ann", "2026-03-01T09:00:00+08:00"),
            harness.keys.sign(try event("open-ann", EventType.openingBalance, "ann", "2026-03-01T10:00:00+08:00", [
                "system": "old-crm", "operator": "migration-1", "lots": [["points": 700_000, "expiresAt": "2028-01-01T00:00:00+08:00"]],
            ]).withSource("loyalty/cli")),
        ])
        let asked = try harness.apply([try event("x1", EventType.redeem, "ann", "2026-03-02T10:00:00+08:00", ["rewardId": "tea-set", "quantity": 50])])
        let reservation = try #require(asked.first { $0.topic == Topics.pointsCommands.name }?.event)
        let answers = try harness.apply([reservation]).filter { $0.topic == Topics.pointsCommands.name }
        #expect(answers.map(\.event.id) == ["stock-answer/x1"])
        // Two months later the inbox has let it go; a restored task sends it again.
        try harness.apply([try event("k", EventType.checkedIn, "ann", "2026-05-10T09:00:00+08:00")])
        #expect(try harness.count("SELECT COUNT(*) FROM inbox WHERE event_id = 'stock-reservation/x1'") == 0)
        #expect(try harness.apply([reservation]).filter { $0.topic == Topics.pointsCommands.name }.isEmpty)
        #expect(try harness.count("SELECT taken FROM reward_stock WHERE reward_id = 'tea-set'") == 50)
        // So the 150 sets left are still there for the next request.
        let next = try harness.apply([try event("x2", EventType.redeem, "ann", "2026-05-11T10:00:00+08:00", ["rewardId": "tea-set", "quantity": 150])])
        let answer = try #require(try harness.apply(next.filter { $0.topic == Topics.pointsCommands.name }.map(\.event))
            .first { $0.topic == Topics.pointsCommands.name }?.event)
        #expect(answer.id == "stock-answer/x2" && answer.data["refusal"] == nil)
    }

    @Test func anOperatorReleasesPointsSetAsideForAnAnswerThatWasLost() throws {
        let harness = try Harness()
        func release(_ id: String, _ request: String, operator name: String = "ops-1", at time: String, signed: Bool = true) throws -> CloudEvent {
            let command = try event(id, EventType.releaseHeld, "ann", time, ["requestId": .string(request), "reason": "answer dead-lettered", "operator": .string(name)])
                .withSource("loyalty/cli")
            return signed ? harness.keys.sign(command) : command
        }
        try harness.apply([
            try event("ra", EventType.memberRegistered, "ann", "2026-03-01T09:00:00+08:00"),
            harness.keys.sign(try event("open-ann", EventType.openingBalance, "ann", "2026-03-01T10:00:00+08:00", [
                "system": "old-crm", "operator": "migration-1", "lots": [["points": 10_000, "expiresAt": "2028-01-01T00:00:00+08:00"]],
            ]).withSource("loyalty/cli")),
        ])
        // The reservation is lost (dead-lettered at the reward's task, say): 3,000 points stay
        // set aside, and the member lookup names the request.
        let asked = try harness.apply([try event("x1", EventType.redeem, "ann", "2026-03-02T10:00:00+08:00", ["rewardId": "tea-set"])])
        let reservation = try #require(asked.first { $0.topic == Topics.pointsCommands.name }?.event)
        let held = try #require(try harness.view("ann")?["heldRedemptions"]?.arrayValue)
        #expect(held.count == 1 && held[0]["requestId"]?.stringValue == "x1" && held[0]["points"]?.int64Value == 3_000)
        let short = try harness.apply([try event("x2", EventType.redeem, "ann", "2026-03-03T10:00:00+08:00", ["rewardId": "tea-set", "quantity": 3])])
        #expect(short.first { $0.event.type == "points.refused" }?.event.data["reason"]?.stringValue == "insufficient-balance")

        // Unsigned, or without an operator: dead-lettered; for a request not held: refused.
        let unsigned = try harness.apply([try release("rel-0", "x1", at: "2026-03-04T10:00:00+08:00", signed: false)])
        #expect(unsigned.first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue == "unauthenticated-command")
        let anonymous = try harness.apply([try release("rel-1", "x1", operator: "", at: "2026-03-04T10:00:00+08:00")])
        #expect(anonymous.first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue == "invalid-event")
        let unknown = try harness.apply([try release("rel-2", "nope", at: "2026-03-04T10:00:00+08:00")])
        let notHeld = try #require(unknown.first { $0.event.type == "points.refused" }?.event)
        #expect(notHeld.id == "rel-2/refused" && notHeld.data["reason"]?.stringValue == "not-held")
        let reasonless = try harness.apply([harness.keys.sign(try event("rel-2b", EventType.releaseHeld, "ann", "2026-03-04T10:30:00+08:00", [
            "requestId": "x1", "reason": "  ", "operator": "ops-1"]).withSource("loyalty/cli"))])
        #expect(reasonless.first { $0.event.type == "points.refused" }?.event.data["reason"]?.stringValue == "missing-reason")

        // Released: the request is refused as of the release, and the points are spendable again.
        let released = try harness.apply([try release("rel-3", "x1", at: "2026-03-04T11:00:00+08:00")])
        let refusal = try #require(released.first { $0.event.type == "points.refused" }?.event)
        #expect(refusal.id == "x1/refused" && refusal.data["reason"]?.stringValue == "released-by-operator")
        #expect(refusal.time.rfc3339 == "2026-03-04T03:00:00.000Z")
        #expect(try harness.view("ann")?["heldRedemptions"] == nil)
        let again = try harness.apply([try event("x3", EventType.redeem, "ann", "2026-03-04T12:00:00+08:00", ["rewardId": "tea-set", "quantity": 3])])
        #expect(again.contains { $0.event.id == "stock-reservation/x3" })
        // An answer that still comes finds nothing set aside for x1 and changes nothing.
        let answer = try harness.apply([reservation]).filter { $0.topic == Topics.pointsCommands.name }.map(\.event)
        #expect(!(try harness.apply(answer)).contains { $0.topic == Topics.pointsLedger.name })
    }

    @Test func aCommandAKeptEventSendsLeavesAtItsMembersRegistration() throws {
        let harness = try Harness()
        try harness.apply([
            harness.keys.sign(try event("open", EventType.openingBalance, "cara", "2026-03-02T09:00:00+08:00", [
                "system": "old-crm", "operator": "migration-1", "lots": [["points": 5_000, "expiresAt": "2028-01-01T00:00:00+08:00"]],
            ]).withSource("loyalty/cli")),
            try event("x1", EventType.redeem, "cara", "2026-03-02T10:00:00+08:00", ["rewardId": "tea-set"]),
            try event("t1", EventType.transfer, "cara", "2026-03-02T10:05:00+08:00", ["toMemberId": "dan", "points": 100]),
        ])
        let registered = try harness.apply([try event("rc", EventType.memberRegistered, "cara", "2026-03-02T12:00:00+08:00")])
        let sent = registered.filter { $0.topic == Topics.pointsCommands.name }.map(\.event)
        #expect(sent.map(\.id) == ["stock-reservation/x1", "transfer-credit/t1"])
        // Both sort after the registration that sends them, not at the requests' times.
        #expect(sent.allSatisfy { $0.time.rfc3339 == "2026-03-02T04:00:00.000Z" })
        // The transfer's debit keeps its own time; the tea set's points wait for its answer.
        let debit = try #require(registered.first { $0.topic == Topics.pointsLedger.name && $0.event.data["causeId"]?.stringValue == "t1" }?.event)
        #expect(debit.time.rfc3339 == "2026-03-02T02:05:00.000Z")
        #expect(try harness.count("SELECT available FROM accounts WHERE member = 'cara'") == 4_900)
    }

    @Test func adjustmentsNameTheirOperatorAndStayWithinTheLimit() throws {
        let harness = try Harness()
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00")])
        func outcome(_ id: String, _ data: JSONObject) throws -> [(topic: String, event: CloudEvent)] {
            try harness.apply([harness.keys.sign(try event(id, EventType.adjust, "m", "2026-03-02T09:00:00+08:00", data))])
        }
        let anonymous = try outcome("a1", ["points": 50, "reason": "goodwill"])
        #expect(anonymous.first { $0.topic == Topics.deadLetters.name }?.event.data["detail"]?.stringValue?.contains("data.operator") == true)
        let large = try outcome("a2", ["points": -1_001, "reason": "goodwill", "operator": "ops-1"])
        #expect(large.first { $0.topic == Topics.deadLetters.name }?.event.data["reason"]?.stringValue == "adjustment-over-limit")
        let fine = try outcome("a3", ["points": 1_000, "reason": "goodwill", "operator": "ops-1"])
        #expect(!fine.contains { $0.topic == Topics.deadLetters.name })
        #expect(try harness.count("SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = 'm'") == 1_000)
    }

    @Test func anOpeningBalanceBecomesLotsWithTheirOwnExpiryOncePerMember() throws {
        let harness = try Harness()
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00")])
        func opening(_ id: String, system: String = "old-crm", lots: [(Int64, String)], signed: Bool = true) throws -> [(topic: String, event: CloudEvent)] {
            let data: JSONObject = [
                "system": .string(system), "operator": "migration-1",
                "lots": .array(lots.map { .object(["points": .int($0.0), "expiresAt": .string($0.1)]) }),
            ]
            let command = try event(id, EventType.openingBalance, "m", "2026-03-02T00:00:00+08:00", data).withSource("loyalty/cli")
            return try harness.apply([signed ? harness.keys.sign(command) : command])
        }
        func reason(_ out: [(topic: String, event: CloudEvent)]) -> String? {
            out.first { $0.topic == Topics.deadLetters.name || $0.event.type == "points.refused" }?.event.data["reason"]?.stringValue
        }
        #expect(reason(try opening("unsigned", lots: [(100, "2026-06-01T00:00:00+08:00")], signed: false)) == "unauthenticated-command")
        #expect(reason(try opening("stale", lots: [(100, "2026-06-01T00:00:00+08:00"), (50, "2026-03-01T00:00:00+08:00")])) == "lot-already-expired",
                "all or nothing")
        #expect(try harness.count("SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = 'm'") == 0)

        let imported = try opening("opening-balance/old-crm/m", lots: [(300, "2026-04-01T00:00:00+08:00"), (200, "2027-01-01T00:00:00+08:00")])
        let entries = imported.filter { $0.topic == Topics.pointsLedger.name && $0.event.type != "points.expiry-warning" }.map(\.event)
        #expect(entries.map(\.type) == ["points.imported", "points.imported"])
        #expect(imported.contains { $0.event.type == "points.expiry-warning" && $0.event.data["points"]?.int64Value == 300 }, "the lot expiring within 30 days")
        #expect(entries.map(\.id) == ["opening-balance/old-crm/m/imported/1", "opening-balance/old-crm/m/imported/2"])
        let balance = try #require(imported.last { $0.topic == Topics.pointsBalances.name }?.event)
        #expect(balance.data["available"]?.int64Value == 500 && balance.data["lifetimeImported"]?.int64Value == 500)
        #expect(balance.data["lifetimeEarned"]?.int64Value == 0, "imported, not earned here")
        #expect(balance.data["nextExpiry"]?["points"]?.int64Value == 300)

        #expect(try opening("opening-balance/old-crm/m", lots: [(300, "2026-04-01T00:00:00+08:00"), (200, "2027-01-01T00:00:00+08:00")]).isEmpty,
                "the same import again is a duplicate")
        #expect(reason(try opening("opening-balance/other/m", system: "other", lots: [(999, "2027-01-01T00:00:00+08:00")])) == "already-imported")

        // Each lot expires at its own time, not the program's.
        let later = try harness.apply([try event("c", EventType.checkedIn, "m", "2026-04-02T10:00:00+08:00")])
        let expired = try #require(later.first { $0.event.type == "points.expired" }?.event)
        let expiry = try EventTime.parse("2026-04-01T00:00:00+08:00")
        #expect(expired.data["points"]?.int64Value == -300 && expired.time == expiry)
        #expect(try harness.count("SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member = 'm'") == 201)
    }

    @Test func anOpeningBalanceWarnsOfLotsExpiringSoonAndRestartsTheInactivityClock() throws {
        let harness = try Harness()
        // Registered long ago in the old system, no order here yet.
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2025-01-01T09:00:00+08:00")])
        let data: JSONObject = [
            "system": "old-crm", "operator": "migration-1",
            "lots": [["points": 300, "expiresAt": "2025-12-20T00:00:00+08:00"], ["points": 700, "expiresAt": "2026-12-31T00:00:00+08:00"]],
        ]
        let imported = try harness.apply([harness.keys.sign(
            try event("opening-balance/old-crm/m", EventType.openingBalance, "m", "2025-12-01T00:00:00+08:00", data).withSource("loyalty/cli"))])
        let warning = try #require(imported.first { $0.event.type == "points.expiry-warning" }?.event, "a lot expiring within the warning period is warned of at once")
        let cutOver = try EventTime.parse("2025-12-01T00:00:00+08:00")
        #expect(warning.data["points"]?.int64Value == 300 && warning.time == cutOver)
        // The clock ran from the registration; the import restarts it: nothing is deducted until 90 days after it.
        let quiet = try harness.apply([try event("c1", EventType.checkedIn, "m", "2026-02-27T10:00:00+08:00")])
        #expect(!quiet.contains { $0.event.type == "points.deducted" })
        let later = try harness.apply([try event("c2", EventType.checkedIn, "m", "2026-03-02T10:00:00+08:00")])
        let deducted = try #require(later.first { $0.event.type == "points.deducted" }?.event)
        let due = try EventTime.parse("2026-03-01T00:00:00+08:00")
        #expect(deducted.time == due)
    }

    @Test func aStoreFromAnEarlierBuildKeepsItsWaitingEventsAndLosesTheProfilesItKept() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("points-upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("points.sqlite").path
        // The schema of the build before: an order and a profile waiting in points' own table.
        do {
            let old = try Database(DatabaseConfiguration(path: path))
            _ = try old.migrate(RuntimeSchema.migrations + PointsSchema.migrations.filter { $0.version <= 101 })
            let order = try event("o1", EventType.orderPaid, "zoe", "2026-03-01T10:00:00+08:00", ["orderId": "Z-1", "paidMinor": 5_000])
            let profile = try event("u1", EventType.memberUpdated, "zoe", "2026-03-01T11:00:00+08:00", ["channels": ["sms": "13600136000"]])
            for (index, waiting) in [order, profile].enumerated() {
                try old.prepare("INSERT INTO parked(member, event_id, time, rank, topic, partition, record_offset, key, value) VALUES(?, ?, ?, ?, ?, 0, ?, ?, ?)")
                    .run(.text("zoe"), .text(waiting.id), .integer(waiting.time.millis), .integer(Int64(Rank.of(eventType: waiting.type))),
                         .text(Topics.inputTopic(forEventType: waiting.type)!.name), .integer(Int64(index)), .blob(Array("zoe".utf8)),
                         // The shop's own spacing, kept as it came.
                         .blob(Array(String(decoding: waiting.encoded(), as: UTF8.self).replacingOccurrences(of: "\"type\":", with: "\"type\": ").utf8)))
                try old.prepare("INSERT INTO timers(task, due, rank, member, kind, ref) VALUES(0, ?, 10, 'zoe', 'unknown-member', ?)")
                    .run(.integer(waiting.time.adding(hours: 168).millis), .text(waiting.id))
            }
            old.close()
        }
        let keys = try CommandKeys.parse("current=points-test-secret-0001")
        let applier = try BatchApplier(
            database: try Database(DatabaseConfiguration(path: path)),
            processor: PointsProcessor(program: try Program.load(json: ReferenceProgram.bytes()), commandKeys: keys), timerMode: .streamTime, partitionCount: 1)
        func count(_ sql: String) throws -> Int64 { try applier.database.prepare(sql).queryOne { $0.int64(0) } ?? -1 }
        #expect(try count("SELECT COUNT(*) FROM parked_records") == 1, "the order waits on; the profile is gone")
        #expect(try count("SELECT COUNT(*) FROM timers WHERE kind = 'unknown-member'") == 1)
        #expect(try count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'parked'") == 0)
        let registration = try event("r1", EventType.memberRegistered, "zoe", "2026-03-02T09:00:00+08:00")
        let record = ConsumedRecord(topic: Topics.members.name, partition: 0, offset: 0, key: Array("zoe".utf8), value: registration.encoded())
        let out = try applier.apply([PolledRecord(record: record, decoded: .success(try applier.processor.decode(record)))])
        #expect(out.outbox.compactMap { try? CloudEvent.decode($0.value!) }.contains { $0.id == "o1/base" }, "applied at the registration")
    }

    @Test func theShopsActivityBeforeTheProgrammesStartIsDeadLetteredButMembersMayPredateIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("points-start-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var program = try Program.load(json: ReferenceProgram.bytes())
        program.startsAt = try EventTime.parse("2026-03-01T00:00:00+08:00")
        let applier = try BatchApplier(
            database: try Database(DatabaseConfiguration(path: directory.appendingPathComponent("points.sqlite").path)),
            processor: PointsProcessor(program: program, commandKeys: try CommandKeys.parse("k=points-test-secret-0001")), timerMode: .streamTime,
            partitionCount: 1)
        var offset: Int64 = 0
        func apply(_ event: CloudEvent) throws -> [CloudEvent] {
            offset += 1
            let record = ConsumedRecord(topic: Topics.inputTopic(forEventType: event.type)!.name, partition: 0, offset: offset, key: Array("m".utf8), value: event.encoded())
            let decoded: Result<Decoded<PointsRecord>, Rejection>
            do throws(Rejection) { decoded = .success(try applier.processor.decode(record)) } catch { decoded = .failure(error) }
            return try applier.apply([PolledRecord(record: record, decoded: decoded)]).outbox.map { try CloudEvent.decode($0.value!) }
        }
        #expect(try apply(try event("r", EventType.memberRegistered, "m", "2025-06-01T09:00:00+08:00")).isEmpty)
        #expect(try applier.database.prepare("SELECT COUNT(*) FROM accounts").queryOne { $0.int64(0) } == 1, "registered before the start")
        let early = try apply(try event("o1", EventType.orderPaid, "m", "2026-02-28T10:00:00+08:00", ["orderId": "M-1", "paidMinor": 10_000]))
        #expect(early.map { $0.data["reason"]?.stringValue } == ["before-program-start"])
        let onTime = try apply(try event("o2", EventType.orderPaid, "m", "2026-03-01T10:00:00+08:00", ["orderId": "M-2", "paidMinor": 10_000]))
        #expect(onTime.contains { $0.id == "o2/base" })
    }

    @Test func aReferralToAnUnknownReferrerIsRefusedAgainstTheReferee() throws {
        let harness = try Harness()
        let registration = try harness.apply([
            try event("rb", EventType.memberRegistered, "bob", "2026-03-02T10:00:00+08:00", ["referrerId": "nobody"]),
        ])
        let command = try #require(registration.first { $0.topic == Topics.pointsCommands.name }?.event)
        let refused = try harness.apply([command])
        let refusal = try #require(refused.first?.event)
        #expect(refusal.type == "points.refused")
        #expect(refusal.subject == "bob")
        #expect(refusal.data["reason"]?.stringValue == "unknown-referrer")
        #expect(try harness.count("SELECT COUNT(*) FROM parked_records") == 0, "a referral is not kept for a referrer that may never come")
    }

    @Test func anAccountKeepsItsLatestOrdersAndFindsOlderOnesApart() throws {
        let harness = try Harness()
        try harness.apply([try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00"),
                           try event("r2", EventType.memberRegistered, "light", "2026-03-01T09:00:00+08:00")])
        for number in 1...30 {
            try harness.apply([try event(
                "o\(number)", EventType.orderPaid, "m", "2026-03-02T10:\(String(format: "%02d", number)):00+08:00",
                ["orderId": .string("O\(number)"), "paidMinor": 10_000])])
        }
        try harness.apply((1...3).map { number in try event("lo\(number)", EventType.orderPaid, "light", "2026-03-02T10:0\(number):00+08:00",
                                                          ["orderId": .string("L\(number)"), "paidMinor": 10_000]) })
        func stored(_ member: String = "m") throws -> PointsAccount {
            try PointsAccount.decode(try #require(try harness.applier.database.prepare("SELECT state FROM accounts WHERE member = ?")
                .queryOne(.text(member)) { $0.blob(0) }))
        }
        func reason(_ outputs: [(topic: String, event: CloudEvent)]) -> String? {
            outputs.first { $0.event.type == "points.refused" }?.event.data["reason"]?.stringValue
        }
        var refunds = 0
        func refund(_ id: String, of order: String, _ minor: Int64, at time: String = "2026-03-03T10:00:00+08:00") throws -> [(topic: String, event: CloudEvent)] {
            refunds += 1
            return try harness.apply([try event("refund-\(refunds)", EventType.orderRefunded, "m", time,
                                         ["orderId": .string(order), "refundId": .string(id), "refundMinor": .int(minor)])])
        }
        #expect(try stored().orders.ids.sorted() == (15...30).map { "O\($0)" }.sorted(), "the latest 16 orders stay in the account")
        #expect(try harness.count("SELECT COUNT(*) FROM account_orders WHERE member = 'm'") == 14)
        #expect(try harness.count("SELECT orders_apart FROM accounts WHERE member = 'm'") == 1)
        #expect(try stored("light").orders.count == 3 && harness.count("SELECT COUNT(*) FROM account_orders WHERE member = 'light'") == 0,
                "a member with few orders keeps them all, and nothing is looked up apart")

        // Inputs naming an order kept apart find it, each in its own batch.
        #expect(try refund("F1", of: "O1", 5_000).contains { $0.event.data["points"]?.int64Value == -50 }, "half of O1's 100 points")
        #expect(reason(try refund("F1", of: "O2", 1_000)) == "duplicate-refund-id")
        #expect(reason(try harness.apply([try event("o5b", EventType.orderPaid, "m", "2026-03-03T12:00:00+08:00",
                                                   ["orderId": "O5", "paidMinor": 10_000])])) == "duplicate-order")
        #expect(reason(try refund("F3", of: "O1", 6_000)) == "refund-exceeds-order", "O1 remembers the 5,000 refunded")
        func tierBonus(_ id: String) throws -> CloudEvent {
            var grant = try event(id, EventType.pointsGrant, "m", "2026-03-02T10:03:00+08:00", ["component": "tier-bonus", "points": 10, "orderId": "O3"])
            grant.source = "loyalty/tiers"
            return harness.keys.sign(grant)
        }
        #expect(try harness.apply([try tierBonus("g1")]).contains { $0.event.id == "g1/tier-bonus" })
        #expect(reason(try harness.apply([try tierBonus("g2")])) == "duplicate-component")

        // Refund ids beyond the account's 16 move apart too, and a repeat is still found.
        for number in 1...17 { _ = try refund("R\(String(format: "%02d", number))", of: "O\(number + 5)", 100) }
        #expect(try stored().acceptedRefundIDs.count == 16)
        #expect(try harness.count("SELECT COUNT(*) FROM accepted_refunds WHERE member = 'm'") == 2)
        #expect(reason(try refund("F1", of: "O20", 100)) == "duplicate-refund-id")
        #expect(reason(try refund("R01", of: "O21", 100)) == "duplicate-refund-id")

        // An account an earlier build wrote carries every order and refund id in its state, none
        // apart: they are found there, and the oldest move apart with the account's next change.
        var legacy = try stored()
        for (id, state) in try harness.applier.database.prepare("SELECT order_id, state FROM account_orders WHERE member = 'm'")
            .query(row: { ($0.string(0), $0.blob(1)) }) {
            legacy.orders[id] = try OrderRecord.decode(state)
        }
        legacy.acceptedRefundIDs.formUnion(try harness.applier.database.prepare("SELECT refund_id FROM accepted_refunds").query(row: { $0.string(0) }))
        try harness.applier.database.execute("DELETE FROM account_orders; DELETE FROM accepted_refunds")
        try harness.applier.database.prepare("UPDATE accounts SET state = ?, orders_apart = 0, refunds_apart = 0 WHERE member = 'm'")
            .run(.blob(legacy.encoded()))
        #expect(reason(try refund("F1", of: "O2", 1_000, at: "2026-03-04T10:00:00+08:00")) == "duplicate-refund-id")
        #expect(try stored().orders.count == 16 && stored().acceptedRefundIDs.count == 16)
        #expect(try harness.count("SELECT COUNT(*) FROM account_orders WHERE member = 'm'") == 14)
        #expect(try harness.count("SELECT COUNT(*) FROM accepted_refunds WHERE member = 'm'") == 2)
        #expect(try refund("F5", of: "O1", 5_000, at: "2026-03-04T11:00:00+08:00").contains { $0.event.data["points"]?.int64Value == -50 },
                "the rest of O1, as the moved record remembers it")
    }

    @Test func whichOrdersAnAccountKeepsDoesNotDependOnBatching() throws {
        // A bonus for Z comes before Z is paid, 16 orders later; then refunds, some of old orders.
        func at(_ minute: Int) -> String { "2026-03-02T1\(minute / 60):\(String(format: "%02d", minute % 60)):00+08:00" }
        let keys = try Harness().keys
        var grant = try event("g", EventType.pointsGrant, "m", at(1), ["component": "tier-bonus", "points": 10, "orderId": "Z"])
        grant.source = "loyalty/tiers"
        var events = [try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00"), keys.sign(grant)]
        for number in 2...17 {
            events.append(try event("o\(number)", EventType.orderPaid, "m", at(number), ["orderId": .string("O\(number)"), "paidMinor": 10_000]))
        }
        events.append(try event("z", EventType.orderPaid, "m", at(18), ["orderId": "Z", "paidMinor": 10_000]))
        for number in 1...20 {
            events.append(try event("f\(number)", EventType.orderRefunded, "m", at(20 + number),
                                    ["orderId": .string("O\(number % 16 + 2)"), "refundId": .string("F\(number)"), "refundMinor": 100]))
        }
        let oneBatch = try Harness()
        let published = try oneBatch.apply(events).map(\.event.id)
        let eventByEvent = try Harness()
        var publishedOneByOne: [String] = []
        for event in events { publishedOneByOne += try eventByEvent.apply([event]).map(\.event.id) }
        // Balance records follow the batches (one per member and batch); every other output is the same.
        #expect(publishedOneByOne.filter { !$0.hasPrefix("balance/") } == published.filter { !$0.hasPrefix("balance/") })
        func stored(_ harness: Harness) throws -> [[UInt8]] {
            let accounts = try harness.applier.database.prepare("SELECT state, orders_apart, refunds_apart FROM accounts ORDER BY member")
                .query { $0.blob(0) + [UInt8($0.int64(1)), UInt8($0.int64(2))] }
            let orders = try harness.applier.database.prepare("SELECT order_id, state FROM account_orders ORDER BY member, order_id")
                .query { Array($0.string(0).utf8) + $0.blob(1) }
            let refunds = try harness.applier.database.prepare("SELECT refund_id FROM accepted_refunds ORDER BY member, refund_id")
                .query { Array($0.string(0).utf8) }
            return accounts + orders + refunds
        }
        #expect(try stored(oneBatch) == stored(eventByEvent))
        let account = try PointsAccount.decode(try #require(try oneBatch.applier.database.prepare("SELECT state FROM accounts").queryOne { $0.blob(0) }))
        #expect(account.orders.ids.sorted() == (["Z"] + (3...17).map { "O\($0)" }).sorted(), "the latest 16 paid orders, Z by its payment")
        #expect(try oneBatch.count("SELECT COUNT(*) FROM accepted_refunds") == 4)
    }

    @Test func lookalikeMemberIdsAreTwoAccountsWhicheverBatchTheyShare() throws {
        // "Zoé" with é as one scalar, and with e and a combining accent: one `String`, two record
        // keys and two rows of the accounts table.
        let composed = "Zo\u{E9}"
        let decomposed = "Zoe\u{301}"
        #expect(composed == decomposed && !composed.utf8.elementsEqual(decomposed.utf8))
        let events = [
            try event("r1", EventType.memberRegistered, composed, "2026-03-01T09:00:00+08:00"),
            try event("r2", EventType.memberRegistered, decomposed, "2026-03-01T09:01:00+08:00"),
            try event("o1", EventType.orderPaid, composed, "2026-03-01T10:00:00+08:00", ["orderId": "O1", "paidMinor": 50_000]),
            try event("o2", EventType.orderPaid, decomposed, "2026-03-01T10:01:00+08:00", ["orderId": "O2", "paidMinor": 20_000]),
        ]
        let oneBatch = try Harness()
        let published = try oneBatch.apply(events)
        let eventByEvent = try Harness()
        var publishedOneByOne: [(topic: String, event: CloudEvent)] = []
        for event in events { publishedOneByOne += try eventByEvent.apply([event]) }
        func balances(_ harness: Harness) throws -> [[UInt8]: Int64] {
            let rows = try harness.applier.database.prepare("SELECT member, available + pending FROM accounts").query { (Array($0.string(0).utf8), $0.int64(1)) }
            return Dictionary(rows, uniquingKeysWith: +)
        }
        let expected: [[UInt8]: Int64] = [Array(composed.utf8): 500, Array(decomposed.utf8): 200]
        #expect(try balances(oneBatch) == expected)
        #expect(try balances(eventByEvent) == expected)
        #expect(!published.contains { $0.topic == Topics.deadLetters.name || $0.event.type == "points.refused" }, "neither registration is a second one")
        let ledger = { (out: [(topic: String, event: CloudEvent)]) in
            out.filter { $0.topic == Topics.pointsLedger.name }.map { Array(($0.event.subject ?? "").utf8) + Array($0.event.id.utf8) }
        }
        #expect(ledger(published) == ledger(publishedOneByOne))
    }

    @Test func aLookalikeOfAnOrderKeptApartIsDecidedAsWhileItIsInTheAccount() throws {
        // O-Café composed is paid, then 16 later orders push it apart; then O-Café decomposed
        // (one `String`, two ids). Whether the first is still in the account (one batch) or
        // already apart (event by event), the second is an order of its own.
        func at(_ minute: Int) -> String { "2026-03-02T1\(minute / 60):\(String(format: "%02d", minute % 60)):00+08:00" }
        var events = [try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00"),
                      try event("o0", EventType.orderPaid, "m", at(0), ["orderId": "O-Caf\u{E9}", "paidMinor": 10_000])]
        for number in 1...16 {
            events.append(try event("o\(number)", EventType.orderPaid, "m", at(number), ["orderId": .string("O\(number)"), "paidMinor": 10_000]))
        }
        events.append(try event("o17", EventType.orderPaid, "m", at(17), ["orderId": "O-Cafe\u{301}", "paidMinor": 20_000]))
        let oneBatch = try Harness()
        let outputs = try oneBatch.apply(events)
        let published = outputs.filter { !$0.event.id.hasPrefix("balance/") }.map(\.event.id)
        let eventByEvent = try Harness()
        var publishedOneByOne: [String] = []
        for event in events { publishedOneByOne += try eventByEvent.apply([event]).filter { !$0.event.id.hasPrefix("balance/") }.map(\.event.id) }
        #expect(published == publishedOneByOne)
        #expect(published.contains("o17/base") && !outputs.contains { $0.event.type == "points.refused" }, "\(published)")
        for harness in [oneBatch, eventByEvent] {
            #expect(try harness.count("SELECT pending FROM accounts WHERE member = 'm'") == 17 * 100 + 200)
        }
    }

    @Test func theLedgerTableExplainsEveryBalance() throws {
        let harness = try Harness()
        try harness.apply([
            try event("r", EventType.memberRegistered, "m", "2026-03-01T09:00:00+08:00"),
            try event("o", EventType.orderPaid, "m", "2026-03-01T10:00:00+08:00", ["orderId": "O", "paidMinor": 50_000]),
            try event("f", EventType.orderRefunded, "m", "2026-03-02T10:00:00+08:00", ["orderId": "O", "refundId": "F", "refundMinor": 20_000]),
            try event("c", EventType.checkedIn, "m", "2026-03-09T10:00:00+08:00"),
        ])
        let sum = try harness.count("SELECT SUM(points) FROM ledger WHERE member = 'm'")
        let last = try harness.applier.database.prepare(
            "SELECT available_after + pending_after - debt_after, sequence FROM ledger WHERE member = 'm' ORDER BY sequence DESC LIMIT 1"
        ).queryOne { ($0.int64(0), $0.int64(1)) }
        let row = try harness.applier.database.prepare("SELECT available, pending, debt FROM accounts WHERE member = 'm'").queryOne { ($0.int64(0), $0.int64(1), $0.int64(2)) }
        // 500 earned, 200 reversed, released on 03-08, then 1 for the check-in.
        #expect(sum == 301)
        #expect(last?.0 == 301)
        #expect(last?.1 == 4)  // base, reversal, release, check-in
        #expect(row?.0 == 301 && row?.1 == 0 && row?.2 == 0)
    }

    @Test func recordsWithoutAMatchingKeyOrSubjectAreDeadLettered() throws {
        let harness = try Harness()
        let record = ConsumedRecord(
            topic: Topics.orders.name, partition: 0, offset: 0, key: Array("someone-else".utf8),
            value: try event("o", EventType.orderPaid, "m", "2026-03-01T10:00:00+08:00", ["orderId": "O", "paidMinor": 100]).encoded())
        #expect(throws: Rejection(code: .keyMismatch, detail: "record key someone-else differs from subject m")) {
            try harness.applier.processor.decode(record)
        }
        let noSubject = ConsumedRecord(
            topic: Topics.orders.name, partition: 0, offset: 1, key: nil,
            value: CloudEvent(id: "x", source: "s", type: EventType.orderPaid, time: EventTime(millis: 0), subject: nil, data: .object(JSONObject())).encoded())
        #expect(throws: Rejection.self) { try harness.applier.processor.decode(noSubject) }
    }
}

extension CloudEvent {
    func withSource(_ source: String) -> CloudEvent {
        var event = self
        event.source = source
        return event
    }
}
