/// The stored form of a member's tier state, and the JSON of the tier outputs.
extension TierMember {
    static let compactFormTag: UInt8 = 0xB6

    /// The member as the tiers (and campaigns) service stores it, in the compact form
    /// (``CompactWriter``): the fields of the JSON form, in its order; the level by its id, so
    /// that a program whose ladder changed still reads it (`levels` maps ids to the current ladder).
    public func encoded(levels: [TierPolicy.Level]) -> [UInt8] {
        var w = CompactWriter(tag: Self.compactFormTag, capacity: 64 + (payments.count + refunds.count) * 8 + orders.count * 40)
        w.string(member)
        w.string(levels[level].id)
        w.int(statusVersion)
        w.int(levelSince.millis)
        for amounts in [payments, refunds] {
            w.int(amounts.count)
            for amount in amounts { w.int(amount.time.millis); w.int(amount.amountMinor) }
        }
        ordersByMonth.write(to: &w)
        w.int(orders.count)
        for (id, order) in orders.sortedByID() {
            w.string(id); w.int(order.paidMinor); w.int(order.refundedMinor); w.int(order.bonus); w.int(order.bonusReversed)
            w.int(order.time.millis)
        }
        w.int(refundIDs.count)
        for id in refundIDs.sorted() { w.string(id) }
        return w.bytes
    }

    /// The JSON stored form of earlier builds (version 1), which ``decode(_:levels:)`` still reads.
    public func encodedAsJSON(levels: [TierPolicy.Level]) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("v"); w.int(1)
        w.key("member"); w.string(member)
        w.key("level"); w.string(levels[level].id)
        w.key("statusVersion"); w.int(statusVersion)
        w.key("since"); w.int(levelSince.millis)
        w.key("payments"); Self.write(payments, to: &w)
        w.key("refunds"); Self.write(refunds, to: &w)
        w.key("orders"); ordersByMonth.write(to: &w)
        w.key("known"); w.beginArray()
        for (id, order) in orders.sortedByID() {
            w.beginArray()
            w.string(id); w.int(order.paidMinor); w.int(order.refundedMinor); w.int(order.bonus); w.int(order.bonusReversed)
            w.int(order.time.millis)
            w.endArray()
        }
        w.endArray()
        w.key("refundIds"); w.beginArray()
        for id in refundIDs.sorted() { w.string(id) }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    private static func write(_ amounts: [TimedAmount], to w: inout JSONWriter) {
        w.beginArray()
        for amount in amounts { w.int(amount.time.millis); w.int(amount.amountMinor) }
        w.endArray()
    }

    private static func read(_ value: JSONValue?) throws -> [TimedAmount] {
        guard let numbers = value?.arrayValue?.compactMap(\.int64Value), numbers.count % 2 == 0 else {
            throw JSONFieldError(path: "tier member", problem: "expected time and amount pairs")
        }
        return stride(from: 0, to: numbers.count, by: 2).map { TimedAmount(time: EventTime(millis: numbers[$0]), amountMinor: numbers[$0 + 1]) }
    }

    /// Reads a member stored by `encoded(levels:)` or, from an earlier build, as JSON. A level
    /// no longer on the ladder reads as the first.
    public static func decode(_ bytes: [UInt8], levels: [TierPolicy.Level]) throws -> TierMember {
        if bytes.first == compactFormTag { return try decodeCompact(bytes, levels: levels) }
        guard let root = try JSONValue.parse(bytes).objectValue, root["v"]?.int64Value == 1 else {
            throw JSONFieldError(path: "tier member", problem: "not a stored tier member of version 1")
        }
        var member = TierMember(member: try root.string("member"), since: EventTime(millis: try root.int64("since")))
        let levelID = try root.string("level")
        member.level = levels.firstIndex { $0.id == levelID } ?? 0
        member.statusVersion = try root.int64("statusVersion")
        member.payments = try read(root["payments"])
        member.refunds = try read(root["refunds"])
        member.ordersByMonth = try PeriodCounts.read(root["orders"])
        for raw in try root.array("known") {
            // Earlier builds stored no time: such an order reads as paid at 0, the oldest.
            guard let f = raw.arrayValue, f.count == 5 || f.count == 6, let id = f[0].stringValue,
                  let paid = f[1].int64Value, let refunded = f[2].int64Value, let bonus = f[3].int64Value, let reversed = f[4].int64Value,
                  let time = f.count == 6 ? f[5].int64Value : 0 else {
                throw JSONFieldError(path: "tier member.known", problem: "expected [id, paid, refunded, bonus, reversed, time]")
            }
            member.orders[id] = TierOrder(time: EventTime(millis: time), paidMinor: paid, refundedMinor: refunded, bonus: bonus, bonusReversed: reversed)
        }
        member.refundIDs = IDSet(try root.array("refundIds").compactMap(\.stringValue))
        return member
    }

    private static func decodeCompact(_ bytes: [UInt8], levels: [TierPolicy.Level]) throws(CompactFormError) -> TierMember {
        var r = try CompactReader(bytes, tag: compactFormTag, what: "tier member")
        let memberID = try r.string()
        let levelID = try r.string()
        let statusVersion = try r.int()
        var member = TierMember(member: memberID, since: EventTime(millis: try r.int()))
        member.level = levels.firstIndex { $0.id == levelID } ?? 0
        member.statusVersion = statusVersion
        func amounts() throws(CompactFormError) -> [TimedAmount] {
            var amounts: [TimedAmount] = []
            for _ in 0..<(try r.count()) {
                let time = try r.int()
                amounts.append(TimedAmount(time: EventTime(millis: time), amountMinor: try r.int()))
            }
            return amounts
        }
        member.payments = try amounts()
        member.refunds = try amounts()
        member.ordersByMonth = try PeriodCounts.read(&r)
        for _ in 0..<(try r.count()) {
            let id = try r.string()
            let (paid, refunded, bonus, reversed) = (try r.int(), try r.int(), try r.int(), try r.int())
            member.orders[id] = TierOrder(time: EventTime(millis: try r.int()), paidMinor: paid, refundedMinor: refunded, bonus: bonus, bonusReversed: reversed)
        }
        for _ in 0..<(try r.count()) { member.refundIDs.insert(try r.string()) }
        guard r.isAtEnd else { throw CompactFormError(what: "tier member", problem: "bytes left after the member") }
        return member
    }
}

extension TierRules {
    /// The `data` of a member's tier status record: tier, since, qualifying spend, the next tier
    /// and the amount still needed for it, and the benefits of the current tier.
    public func writeStatus(of member: TierMember, at time: EventTime, to w: inout JSONWriter) {
        let level = policy.levels[member.level]
        let spend = qualifyingSpend(of: member, at: time)
        w.beginObject()
        w.key("memberId"); w.string(member.member)
        w.key("tier"); w.string(level.id)
        w.key("tierName"); w.string(level.name)
        w.key("since"); w.time(member.levelSince)
        w.key("multiplier"); w.raw(String(level.multiplierTenths / 10) + "." + String(level.multiplierTenths % 10))
        w.key("qualifyingSpendMinor"); w.int(spend)
        if member.level + 1 < policy.levels.count {
            let next = policy.levels[member.level + 1]
            w.key("nextTier"); w.string(next.id)
            w.key("amountToNextTierMinor"); w.int(max(0, next.qualifyingSpendMinor - spend))
        }
        w.key("benefits"); w.beginArray()
        for benefit in level.benefits { w.string(benefit) }
        w.endArray()
        w.endObject()
    }

    /// The `data` of a tier change event.
    public func write(_ change: TierChange, member: String, to w: inout JSONWriter) {
        w.beginObject()
        w.key("memberId"); w.string(member)
        w.key("change"); w.string(change.kind.rawValue)
        w.key("from"); w.string(change.from)
        w.key("to"); w.string(change.to)
        w.key("reason"); w.string(change.reason)
        w.key("qualifyingSpendMinor"); w.int(change.qualifyingSpendMinor)
        w.key("ordersThisMonth"); w.int(change.ordersThisMonth)
        w.endObject()
    }
}
