import ReferenceProgram
import Testing
@testable import Basics
@testable import LoyaltyDomain

private func decoded(_ type: String, _ data: JSONValue, sourceLocation: SourceLocation = #_sourceLocation) -> PointsInput? {
    do {
        return try PointsInput.decode(type: type, data: data)
    } catch {
        Issue.record("\(type) \(data) did not decode: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

private func decodeError(_ type: String, _ data: JSONValue, sourceLocation: SourceLocation = #_sourceLocation) -> InputError? {
    do {
        let input = try PointsInput.decode(type: type, data: data)
        Issue.record("expected \(type) \(data) to be refused, got \(input)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Expects an `invalid-event` whose detail names `field` (a path such as `data.lines[1].paidMinor`).
private func expectInvalid(
    _ type: String, _ data: JSONValue, naming field: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let error = decodeError(type, data, sourceLocation: sourceLocation) else { return }
    #expect(error.code.rawValue == "invalid-event", sourceLocation: sourceLocation)
    #expect(error.detail.contains(field), "detail \"\(error.detail)\" should name \(field)", sourceLocation: sourceLocation)
}

@Suite struct PointsDecodingTests {
    // MARK: Every event type

    @Test func memberEventsDecode() {
        #expect(decoded("member.registered", [:]) == .registered(referrerID: nil))
        #expect(decoded("member.registered", ["referrerId": "m2", "locale": "en"]) == .registered(referrerID: "m2"))
        #expect(decoded("member.registered", ["referrerId": nil]) == .registered(referrerID: nil))
        #expect(decoded("member.updated", ["locale": "en"]) == .memberUpdated)
        #expect(decoded("member.closed", [:]) == .memberClosed)
    }

    @Test func orderEventsDecode() {
        #expect(decoded("order.paid", ["orderId": "o1", "paidMinor": 19_999]) == .orderPaid(OrderPaid(orderID: "o1", paidMinor: 19_999)))
        let withLines: JSONValue = [
            "orderId": "o2", "paidMinor": 12_345,
            "lines": [["category": "high-margin", "paidMinor": 10_000], ["paidMinor": 2_345], ["category": "apparel", "paidMinor": 0]],
        ]
        #expect(decoded("order.paid", withLines) == .orderPaid(OrderPaid(orderID: "o2", paidMinor: 12_345, lines: [
            OrderLine(category: "high-margin", paidMinor: 10_000), OrderLine(category: "", paidMinor: 2_345),
            OrderLine(category: "apparel", paidMinor: 0),
        ])))
        #expect(decoded("order.refunded", ["orderId": "o1", "refundId": "r1", "refundMinor": 500])
            == .orderRefunded(OrderRefunded(orderID: "o1", refundID: "r1", refundMinor: 500)))
    }

    @Test func engagementEventsDecode() {
        #expect(decoded("engagement.checked-in", [:]) == .checkedIn)
        #expect(decoded("engagement.review-posted", ["reviewId": "v1"]) == .reviewPosted)
        #expect(decoded("engagement.content-shared", [:]) == .contentShared)
        #expect(decoded("engagement.task-completed", ["task": "browse-5"]) == .taskCompleted(task: "browse-5"))
    }

    @Test func pointsCommandsDecode() {
        #expect(decoded("points.grant", ["component": "tier-bonus", "points": 40, "orderId": "o1"])
            == .grant(PointsGrant(component: .tierBonus, points: 40, orderID: "o1")))
        #expect(decoded("points.grant", ["component": "campaign-bonus", "points": 200, "orderId": "o1", "campaignId": "member-day"])
            == .grant(PointsGrant(component: .campaignBonus, points: 200, orderID: "o1", campaignID: "member-day")))
        #expect(decoded("points.grant", ["component": "campaign-reward", "points": 100, "campaignId": "birthday"])
            == .grant(PointsGrant(component: .campaignReward, points: 100, campaignID: "birthday")))
        #expect(decoded("points.reverse", ["component": "tier-bonus", "points": 5, "orderId": "o1", "refundId": "r1"])
            == .reversal(PointsReversal(component: .tierBonus, points: 5, orderID: "o1", refundID: "r1")))
        #expect(decoded("points.referral-reward", ["refereeId": "m2", "registrationId": "e17"])
            == .referralReward(ReferralReward(refereeID: "m2", registrationID: "e17")))
    }

    // MARK: Invalid data

    @Test func wrongTypesAndMissingFieldsAreInvalidEventsNamingTheField() {
        expectInvalid("order.paid", ["paidMinor": 100], naming: "data.orderId")
        expectInvalid("order.paid", ["orderId": 7, "paidMinor": 100], naming: "data.orderId")
        expectInvalid("order.paid", ["orderId": "", "paidMinor": 100], naming: "data.orderId")
        expectInvalid("order.paid", ["orderId": "o1"], naming: "data.paidMinor")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": "100"], naming: "data.paidMinor")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": .number("100.5")], naming: "data.paidMinor")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 100, "lines": "none"], naming: "data.lines")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 100, "lines": [5]], naming: "data.lines[0]")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 100, "lines": [["paidMinor": 50], ["paidMinor": .number("1.5")]]],
                      naming: "data.lines[1].paidMinor")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 100, "lines": [["category": 3, "paidMinor": 50]]],
                      naming: "data.lines[0].category")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 100, "lines": [["paidMinor": -1]]], naming: "data.lines[0].paidMinor")
        expectInvalid("order.refunded", ["refundId": "r1", "refundMinor": 100], naming: "data.orderId")
        expectInvalid("order.refunded", ["orderId": "o1", "refundMinor": 100], naming: "data.refundId")
        expectInvalid("engagement.task-completed", [:], naming: "data.task")
        expectInvalid("engagement.task-completed", ["task": 1], naming: "data.task")
        expectInvalid("member.registered", ["referrerId": 5], naming: "data.referrerId")
        expectInvalid("member.registered", ["referrerId": ""], naming: "data.referrerId")
        expectInvalid("points.grant", ["points": 5, "orderId": "o1"], naming: "data.component")
        expectInvalid("points.grant", ["component": "loyalty-bonus", "points": 5, "orderId": "o1"], naming: "data.component")
        expectInvalid("points.grant", ["component": "tier-bonus", "orderId": "o1"], naming: "data.points")
        expectInvalid("points.grant", ["component": "tier-bonus", "points": 0, "orderId": "o1"], naming: "data.points")
        expectInvalid("points.grant", ["component": "tier-bonus", "points": -5, "orderId": "o1"], naming: "data.points")
        expectInvalid("points.reverse", ["component": "tier-bonus", "points": 5, "orderId": "o1"], naming: "data.refundId")
        expectInvalid("points.reverse", ["component": "tier-bonus", "points": 5, "refundId": "r1"], naming: "data.orderId")
        expectInvalid("points.referral-reward", ["registrationId": "e1"], naming: "data.refereeId")
        expectInvalid("points.referral-reward", ["refereeId": "m2"], naming: "data.registrationId")
    }

    @Test func dataThatIsNotAnObjectIsInvalid() {
        for data: JSONValue in [[1, 2], "order", 5, true] {
            #expect(decodeError("order.paid", data)?.code.rawValue == "invalid-event")
            #expect(decodeError("engagement.checked-in", data)?.code.rawValue == "invalid-event")
        }
    }

    @Test func paidMinorMustBePositive() {
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": 0], naming: "data.paidMinor")
        expectInvalid("order.paid", ["orderId": "o1", "paidMinor": -100], naming: "data.paidMinor")
        #expect(decoded("order.paid", ["orderId": "o1", "paidMinor": 1]) == .orderPaid(OrderPaid(orderID: "o1", paidMinor: 1)))
    }

    @Test func orderGrantWithoutOrderIsInvalid() {
        expectInvalid("points.grant", ["component": "tier-bonus", "points": 5], naming: "data.orderId")
        expectInvalid("points.grant", ["component": "campaign-bonus", "points": 5, "campaignId": "double-11"], naming: "data.orderId")
        expectInvalid("points.grant", ["component": "tier-bonus", "points": 5, "orderId": nil], naming: "data.orderId")
        // A campaign reward needs no order.
        #expect(decoded("points.grant", ["component": "campaign-reward", "points": 5])
            == .grant(PointsGrant(component: .campaignReward, points: 5)))
    }

    @Test func unknownTypeIsUnknownType() {
        for type in ["order.shipped", "points.redeem-ish", "", "member.Registered"] {
            let error = decodeError(type, ["orderId": "o1"])
            #expect(error?.code.rawValue == "unknown-type", "\(type)")
        }
    }

    @Test func nonIntegerRefundAmountDecodesToNilAndIsRefusedAsInvalidAmount() throws {
        let amounts: [JSONValue?] = [.number("12.5"), .number("1e3"), "500", nil, .null, true, .number("99999999999999999999")]
        for amount in amounts {
            var data: JSONObject = ["orderId": "o1", "refundId": "r1"]
            if let amount { data["refundMinor"] = amount }
            #expect(decoded("order.refunded", .object(data)) == .orderRefunded(OrderRefunded(orderID: "o1", refundID: "r1", refundMinor: nil)),
                    "refundMinor \(String(describing: amount))")
        }
        // Zero and negative integers are kept as sent.
        #expect(decoded("order.refunded", ["orderId": "o1", "refundId": "r1", "refundMinor": 0])
            == .orderRefunded(OrderRefunded(orderID: "o1", refundID: "r1", refundMinor: 0)))
        #expect(decoded("order.refunded", ["orderId": "o1", "refundId": "r1", "refundMinor": -5])
            == .orderRefunded(OrderRefunded(orderID: "o1", refundID: "r1", refundMinor: -5)))

        // The rule then refuses it as invalid-amount (a refusal, not a dead letter).
        var m = PointsHarness.registered(at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 10_000, at: "2026-03-02T10:00:00+08:00")
        let input = try #require(decoded("order.refunded", ["orderId": "o1", "refundId": "r1", "refundMinor": .number("12.5")]))
        let before = m.account
        #expect(onlyRefusal(m.apply(input, at: "2026-03-03T10:00:00+08:00"))?.reason.rawValue == "invalid-amount")
        #expect(m.account == before)
    }

    // MARK: Stored account

    @Test func richAccountRoundTripsThroughItsStoredForm() throws {
        var m = PointsHarness.registered("m1", at: "2026-03-01T09:00:00+08:00", rules: try referenceRules())
        m.pay("o1", 25_000, at: "2026-03-02T10:00:00+08:00",
              lines: [OrderLine(category: "high-margin", paidMinor: 10_000), OrderLine(category: "apparel", paidMinor: 15_000)])
        m.grant(.tierBonus, 70, order: "o1", at: "2026-03-02T10:00:00+08:00")
        m.grant(.campaignBonus, 30, order: "o-early", at: "2026-03-02T11:00:00+08:00")  // an order not yet seen
        m.pay("o0", 99, at: "2026-03-02T12:00:00+08:00")  // a component of 0, no lot
        m.release("L1", at: "2026-03-09T10:00:00+08:00")
        m.refund("o1", "rf1", 5_000, at: "2026-03-10T10:00:00+08:00")
        m.reverse(.tierBonus, 14, order: "o1", refund: "rf1", at: "2026-03-10T10:00:00+08:00")
        m.refund("o1", "rf0", 0, at: "2026-03-10T11:00:00+08:00")  // refused
        for day in 10...12 { m.apply(.checkedIn, at: "2026-03-\(day)T08:00:00+08:00") }
        m.apply(.reviewPosted, at: "2026-03-12T09:00:00+08:00")
        m.apply(.reviewPosted, at: "2026-03-12T09:30:00+08:00")
        m.apply(.contentShared, at: "2026-03-12T10:00:00+08:00")
        m.apply(.taskCompleted(task: "newcomer"), at: "2026-03-12T11:00:00+08:00")
        m.apply(.taskCompleted(task: "member-day"), at: "2026-03-18T11:00:00+08:00")
        m.apply(.taskCompleted(task: "browse-5"), at: "2026-03-18T12:00:00+08:00")
        m.apply(.referralReward(ReferralReward(refereeID: "m7", registrationID: "reg-m7")), at: "2026-03-19T10:00:00+08:00")
        m.grant(.campaignReward, 100, campaign: "birthday", at: "2026-03-20T00:00:00+08:00")
        m.apply(.memberClosed, at: "2026-03-21T10:00:00+08:00")
        let account = try #require(m.account)
        #expect(account.closed)
        #expect(account.lots.contains { $0.pending })
        #expect(account.lots.contains { !$0.pending })
        #expect(account.orders.count == 3)
        #expect(account.lastCheckInDay != nil)
        #expect(account.taskPeriods.count == 3)
        #expect(account.acceptedRefundIDs == ["rf1"])

        let bytes = account.encoded()
        let decoded = try PointsAccount.decode(bytes)
        #expect(decoded == account)
        #expect(decoded.encoded() == bytes)
        // A store written by an earlier build holds the JSON form: it still reads, and the
        // compact form is far smaller.
        let json = account.encodedAsJSON()
        #expect(try PointsAccount.decode(json) == account)
        #expect(bytes.count * 2 < json.count, "compact \(bytes.count) bytes, JSON \(json.count)")
        // Damaged state is an error, never a trap.
        for cut in [1, bytes.count / 3, bytes.count - 1] {
            #expect(throws: CompactFormError.self) { try PointsAccount.decode(Array(bytes.prefix(cut))) }
        }
        #expect(throws: CompactFormError.self) { try PointsAccount.decode(bytes + [0]) }
        // Numbers at the limits, and one longer than any this writes.
        var writer = CompactWriter(tag: 0x01)
        for value in [Int64.min, -1, 0, 1, Int64.max] { writer.int(value) }
        var reader = try CompactReader(writer.bytes, tag: 0x01, what: "numbers")
        #expect(try [reader.int(), reader.int(), reader.int(), reader.int(), reader.int()] == [Int64.min, -1, 0, 1, Int64.max])
        var overLong = try CompactReader([0x01] + Array(repeating: 0xFF, count: 9) + [0x02], tag: 0x01, what: "numbers")
        #expect(throws: CompactFormError.self) { try overLong.int() }

        // Debt, too (it cannot arise from earning alone).
        var inDebt = account
        inDebt.lots.removeAll { !$0.pending }
        inDebt.balance = Balance(available: 0, pending: inDebt.lots.reduce(0) { $0 + $1.remaining }, debt: 12)
        #expect(try PointsAccount.decode(inDebt.encoded()) == inDebt)

        // Redemptions waiting for their reward's task, after everything else: an account
        // without any has the bytes it had before they existed.
        var holding = account
        holding.heldRedemptions = [
            HeldRedemption(requestID: "r1", time: at("2026-03-22T10:00:00+08:00"), rewardID: "tea-set", source: "goods", quantity: 2, points: 6_000),
            HeldRedemption(requestID: "r2", time: at("2026-03-22T10:00:00+08:00"), rewardID: "mug", source: "goods", quantity: 1, points: 900),
        ]
        let holdingBytes = holding.encoded()
        #expect(try PointsAccount.decode(holdingBytes) == holding)
        #expect(Array(holdingBytes.prefix(bytes.count)) == bytes)
        #expect(throws: CompactFormError.self) { try PointsAccount.decode(holdingBytes + [0]) }
        #expect(throws: CompactFormError.self) { try PointsAccount.decode(Array(holdingBytes.dropLast())) }
    }

    @Test func freshAccountRoundTrips() throws {
        let account = PointsAccount(member: "m-ü 1", registeredAt: at("2026-03-01T09:00:00.123+08:00"))
        let decoded = try PointsAccount.decode(account.encoded())
        #expect(decoded == account)
        #expect(decoded.lastCheckInDay == nil)
        #expect(decoded.lastPaidOrderAt == nil)
    }
}
