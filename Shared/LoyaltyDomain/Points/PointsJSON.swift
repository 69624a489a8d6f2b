/// JSON forms of the points outputs (the contract in docs/event-catalogue.md) and of the
/// account as the points service stores it. Field order is fixed, so equal values always
/// give equal bytes.
extension Balance {
    /// Writes the three figures as a JSON object, as ledger events and member views show them.
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("available"); writer.int(available)
        writer.key("pending"); writer.int(pending)
        writer.key("debt"); writer.int(debt)
        writer.endObject()
    }
}

extension LedgerEntry {
    /// The `data` of a ledger event.
    public var json: JSONValue {
        var writer = JSONWriter()
        write(to: &writer)
        // The writer's output is valid JSON by construction.
        return try! JSONValue.parse(writer.bytes)
    }

    /// Writes the `data` of a ledger event.
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("entryId"); writer.string(id)
        writer.key("memberId"); writer.string(member)
        writer.key("sequence"); writer.int(sequence)
        writer.key("kind"); writer.string(kind.rawValue)
        writer.key("source"); writer.string(source)
        writer.key("causeId"); writer.string(causeID)
        if let orderID { writer.key("orderId"); writer.string(orderID) }
        if let refundID { writer.key("refundId"); writer.string(refundID) }
        writer.key("points"); writer.int(points)
        writer.key("delta")
        Balance(available: availableDelta, pending: pendingDelta, debt: debtDelta).write(to: &writer)
        writer.key("balanceAfter")
        balanceAfter.write(to: &writer)
        writer.key("lots")
        writer.beginArray()
        for change in lots {
            writer.beginObject()
            writer.key("lotId"); writer.string(change.lotID)
            writer.key("delta"); writer.int(change.delta)
            if let expiresAt = change.expiresAt { writer.key("expiresAt"); writer.time(expiresAt) }
            writer.endObject()
        }
        writer.endArray()
        if !details.isEmpty {
            writer.key("details")
            writer.beginObject()
            for (key, value) in details { writer.key(escaping: key); writer.string(value) }
            writer.endObject()
        }
        writer.endObject()
    }

    /// The CloudEvents type of the ledger event.
    public var eventType: String { "points.\(kind.rawValue)" }
}

extension Refusal {
    /// The `data` of a `points.refused` event.
    public var json: JSONValue {
        var object = JSONObject()
        object["refusalId"] = .string(id)
        object["memberId"] = .string(member)
        object["subject"] = .string(subject)
        object["reason"] = .string(reason.rawValue)
        object["causeId"] = .string(causeID)
        if let orderID { object["orderId"] = .string(orderID) }
        if let refundID { object["refundId"] = .string(refundID) }
        if let detail { object["detail"] = .string(detail) }
        return .object(object)
    }
}

extension PointsAccount {
    /// The `data` of a member balance record.
    public var balanceJSON: JSONValue {
        var writer = JSONWriter()
        writeBalance(to: &writer)
        // The writer's output is valid JSON by construction.
        return try! JSONValue.parse(writer.bytes)
    }

    /// Writes the `data` of a member balance record.
    public func writeBalance(to w: inout JSONWriter) {
        w.beginObject()
        w.key("memberId"); w.string(member)
        w.key("available"); w.int(balance.available)
        w.key("pending"); w.int(balance.pending)
        w.key("debt"); w.int(balance.debt)
        if let next = nextExpiry {
            w.key("nextExpiry"); w.beginObject()
            w.key("at"); w.time(next.at)
            w.key("points"); w.int(next.points)
            w.endObject()
        }
        let figures: [(StaticString, Int64)] = [
            ("lifetimeEarned", lifetime.earned), ("lifetimeReversed", lifetime.reversed), ("lifetimeSpent", lifetime.spent),
            ("lifetimeRedeemed", lifetime.redeemed), ("lifetimeCashOffset", lifetime.cashOffset),
            ("lifetimeTransferredOut", lifetime.transferredOut), ("lifetimeTransferredIn", lifetime.transferredIn),
            ("lifetimeGivenBack", lifetime.givenBack), ("lifetimeExpired", lifetime.expired), ("lifetimeDeducted", lifetime.deducted),
            ("lifetimeAdjustedUp", lifetime.adjustedUp), ("lifetimeAdjustedDown", lifetime.adjustedDown), ("entries", entries),
        ]
        for (key, value) in figures { w.key(key); w.int(value) }
        // Only members who brought a balance over have this figure.
        if lifetime.imported != 0 { w.key("lifetimeImported"); w.int(lifetime.imported) }
        w.endObject()
    }
}

// MARK: Stored form of an account

extension PointsAccount {
    /// The account in the JSON stored form of earlier builds (version 2), which `decode` still
    /// reads: the service now stores the compact form (`encoded()`).
    public func encodedAsJSON() -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("v"); w.int(Self.storedFormVersion)
        w.key("member"); w.string(member)
        w.key("registeredAt"); w.int(registeredAt.millis)
        w.key("closed"); w.bool(closed)
        if let importedFrom {
            w.key("imported"); w.beginObject()
            w.key("from"); w.string(importedFrom)
            w.key("points"); w.int(lifetime.imported)
            w.endObject()
        }
        w.key("balance"); balance.write(to: &w)
        w.key("lifetime"); w.beginArray()
        for value in [lifetime.earned, lifetime.reversed, lifetime.redeemed, lifetime.cashOffset, lifetime.transferredOut,
                      lifetime.transferredIn, lifetime.givenBack, lifetime.expired, lifetime.deducted, lifetime.adjustedUp,
                      lifetime.adjustedDown] { w.int(value) }
        w.endArray()
        w.key("lotsCreated"); w.int(lotsCreated)
        w.key("entries"); w.int(entries)
        w.key("lots"); w.beginArray()
        for lot in lots {
            w.beginArray()
            w.string(lot.id); w.string(lot.source)
            if let order = lot.orderID { w.string(order) } else { w.null() }
            w.int(lot.number); w.int(lot.earnedAt.millis); w.int(lot.availableAt.millis); w.int(lot.expiresAt.millis)
            w.int(lot.points); w.int(lot.remaining); w.bool(lot.pending)
            w.endArray()
        }
        w.endArray()
        w.key("orders"); w.beginArray()
        for (_, order) in orders.sortedByID() {
            w.beginArray()
            w.string(order.id); w.bool(order.accepted); w.int(order.time.millis); w.int(order.paidMinor); w.int(order.refundedMinor)
            w.beginArray()
            for (name, component) in order.components.sorted(by: { $0.key < $1.key }) {
                w.beginArray()
                w.string(name); w.int(component.points); w.int(component.reversed)
                if let lot = component.lotID { w.string(lot) } else { w.null() }
                w.endArray()
            }
            w.endArray()
            w.endArray()
        }
        w.endArray()
        w.key("refundIds"); w.beginArray()
        for id in acceptedRefundIDs.sorted() { w.string(id) }
        w.endArray()
        if let lastPaidOrderAt { w.key("lastPaidOrderAt"); w.int(lastPaidOrderAt.millis) }
        if let lastCheckInDay { w.key("lastCheckInDay"); w.int(lastCheckInDay) }
        w.key("streak"); w.int(streakLength)
        w.key("checkIns"); checkInDays.write(to: &w)
        w.key("reviews"); reviewsByDay.write(to: &w)
        w.key("shares"); sharesByDay.write(to: &w)
        w.key("tasks"); w.beginObject()
        for (task, periods) in taskPeriods.sorted(by: { $0.key < $1.key }) { w.key(escaping: task); periods.write(to: &w) }
        w.endObject()
        w.key("referrals"); referralsByMonth.write(to: &w)
        w.key("referralsRewarded"); w.int(referralsRewarded)
        w.key("transfers"); transfersByDay.write(to: &w)
        if let inactivityDue { w.key("inactivityDue"); w.int(inactivityDue.millis) }
        w.endObject()
        return w.bytes
    }

    /// The version of the JSON stored form `encodedAsJSON()` writes.
    public static let storedFormVersion: Int64 = 2

    /// Reads an account stored by `encoded()`, or by an earlier build in JSON.
    public static func decode(_ bytes: [UInt8]) throws -> PointsAccount {
        if bytes.first == compactFormTag { return try decodeCompact(bytes) }
        guard let root = try JSONValue.parse(bytes).objectValue else {
            throw JSONFieldError(path: "account", problem: "expected an object")
        }
        guard root["v"]?.int64Value == storedFormVersion else {
            throw JSONFieldError(path: "account.v", problem: "stored form \(root["v"]?.jsonString ?? "none") is not \(storedFormVersion): written by another build")
        }
        func int(_ value: JSONValue?) throws -> Int64 {
            guard let number = value?.int64Value else { throw JSONFieldError(path: "account", problem: "expected an integer") }
            return number
        }
        func text(_ value: JSONValue?) throws -> String {
            guard let string = value?.stringValue else { throw JSONFieldError(path: "account", problem: "expected a string") }
            return string
        }
        func list(_ value: JSONValue?, count: Int) throws -> [JSONValue] {
            guard let array = value?.arrayValue, array.count == count else {
                throw JSONFieldError(path: "account", problem: "expected an array of \(count)")
            }
            return array
        }
        var account = PointsAccount(member: try root.string("member"), registeredAt: EventTime(millis: try root.int64("registeredAt")))
        account.closed = try root.bool("closed")
        let balance = try root.object("balance")
        account.balance = Balance(available: try balance.int64("available"), pending: try balance.int64("pending"), debt: try balance.int64("debt"))
        let totals = try list(root["lifetime"], count: 11).map { try int($0) }
        account.lifetime = LifetimeTotals(earned: totals[0], reversed: totals[1])
        account.lifetime.redeemed = totals[2]
        account.lifetime.cashOffset = totals[3]
        account.lifetime.transferredOut = totals[4]
        account.lifetime.transferredIn = totals[5]
        account.lifetime.givenBack = totals[6]
        account.lifetime.expired = totals[7]
        account.lifetime.deducted = totals[8]
        account.lifetime.adjustedUp = totals[9]
        account.lifetime.adjustedDown = totals[10]
        if let imported = root["imported"]?.objectValue {
            account.importedFrom = try imported.string("from")
            account.lifetime.imported = try imported.int64("points")
        }
        account.lotsCreated = try root.int64("lotsCreated")
        account.entries = try root.int64("entries")
        account.lots = try root.array("lots").map { raw in
            let f = try list(raw, count: 10)
            return Lot(
                id: try text(f[0]), source: try text(f[1]), orderID: f[2].stringValue, number: try int(f[3]),
                earnedAt: EventTime(millis: try int(f[4])), availableAt: EventTime(millis: try int(f[5])),
                expiresAt: EventTime(millis: try int(f[6])), points: try int(f[7]), remaining: try int(f[8]),
                pending: f[9].boolValue ?? false)
        }
        for raw in try root.array("orders") {
            let f = try list(raw, count: 6)
            var order = OrderRecord(
                id: try text(f[0]), accepted: f[1].boolValue ?? false, time: EventTime(millis: try int(f[2])),
                paidMinor: try int(f[3]), refundedMinor: try int(f[4]))
            for rawComponent in f[5].arrayValue ?? [] {
                let c = try list(rawComponent, count: 4)
                order.components[try text(c[0])] = OrderComponent(points: try int(c[1]), reversed: try int(c[2]), lotID: c[3].stringValue)
            }
            account.orders[order.id] = order
        }
        account.acceptedRefundIDs = IDSet(try root.array("refundIds").map { try text($0) })
        account.lastPaidOrderAt = try root.optionalInt64("lastPaidOrderAt").map(EventTime.init(millis:))
        account.lastCheckInDay = try root.optionalInt64("lastCheckInDay")
        account.streakLength = try root.int64("streak")
        account.checkInDays = try PeriodCounts.read(root["checkIns"])
        account.reviewsByDay = try PeriodCounts.read(root["reviews"])
        account.sharesByDay = try PeriodCounts.read(root["shares"])
        for member in try root.object("tasks").members { account.taskPeriods[member.key] = try PeriodCounts.read(member.value) }
        account.referralsByMonth = try PeriodCounts.read(root["referrals"])
        account.referralsRewarded = try root.int64("referralsRewarded")
        account.transfersByDay = try PeriodCounts.read(root["transfers"])
        account.inactivityDue = try root.optionalInt64("inactivityDue").map(EventTime.init(millis:))
        return account
    }
}

extension PeriodCounts {
    /// Stored as `[retention, period, count, period, count, …]`, periods ascending.
    func write(to w: inout JSONWriter) {
        w.beginArray()
        w.int(retention)
        for (period, count) in counts.sorted(by: { $0.key < $1.key }) {
            w.int(period)
            w.int(count)
        }
        w.endArray()
    }

    static func read(_ value: JSONValue?) throws -> PeriodCounts {
        guard let numbers = value?.arrayValue?.compactMap(\.int64Value), numbers.count % 2 == 1 else {
            throw JSONFieldError(path: "account", problem: "expected period counts")
        }
        var counts: [Int64: Int64] = [:]
        for index in stride(from: 1, to: numbers.count, by: 2) { counts[numbers[index]] = numbers[index + 1] }
        return PeriodCounts(retention: numbers[0], counts: counts)
    }
}
