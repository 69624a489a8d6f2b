// MARK: Compact stored form of an account

extension PointsAccount {
    /// The first byte of the compact form (never `{`, which starts the JSON form of earlier builds).
    static let compactFormTag: UInt8 = 0xB3

    /// The account as the points service stores it, read and written once per member and
    /// batch: the compact form (``CompactWriter``), lists and maps in a fixed order, so equal
    /// accounts have equal bytes.
    public func encoded() -> [UInt8] {
        var w = CompactWriter(tag: Self.compactFormTag, capacity: 128 + lots.count * 48 + orders.count * 64)
        w.string(member)
        w.int(registeredAt.millis)
        w.bool(closed)
        w.optional(importedFrom) { $0.string($1) }
        w.int(lifetime.imported)
        w.int(balance.available); w.int(balance.pending); w.int(balance.debt)
        for value in [lifetime.earned, lifetime.reversed, lifetime.redeemed, lifetime.cashOffset, lifetime.transferredOut,
                      lifetime.transferredIn, lifetime.givenBack, lifetime.expired, lifetime.deducted, lifetime.adjustedUp,
                      lifetime.adjustedDown] { w.int(value) }
        w.int(lotsCreated)
        w.int(entries)
        w.int(lots.count)
        for lot in lots {
            w.string(lot.id); w.string(lot.source); w.optional(lot.orderID) { $0.string($1) }
            w.int(lot.number); w.int(lot.earnedAt.millis); w.int(lot.availableAt.millis); w.int(lot.expiresAt.millis)
            w.int(lot.points); w.int(lot.remaining); w.bool(lot.pending)
        }
        w.int(orders.count)
        for (_, order) in orders.sortedByID() { order.write(to: &w) }
        w.int(acceptedRefundIDs.count)
        for id in acceptedRefundIDs.sorted() { w.string(id) }
        w.optional(lastPaidOrderAt) { $0.int($1.millis) }
        w.optional(lastCheckInDay) { $0.int($1) }
        w.int(streakLength)
        checkInDays.write(to: &w)
        reviewsByDay.write(to: &w)
        sharesByDay.write(to: &w)
        w.int(taskPeriods.count)
        for (task, periods) in taskPeriods.sorted(by: { $0.key < $1.key }) {
            w.string(task)
            periods.write(to: &w)
        }
        referralsByMonth.write(to: &w)
        w.int(referralsRewarded)
        transfersByDay.write(to: &w)
        w.optional(inactivityDue) { $0.int($1.millis) }
        // Last, and only when there are some: the bytes of every other account stay as they were.
        if !heldRedemptions.isEmpty {
            w.int(heldRedemptions.count)
            for held in heldRedemptions {
                w.string(held.requestID); w.int(held.time.millis); w.string(held.rewardID); w.string(held.source)
                w.int(held.quantity); w.int(held.points)
            }
        }
        return w.bytes
    }

    static func decodeCompact(_ bytes: [UInt8]) throws(CompactFormError) -> PointsAccount {
        var r = try CompactReader(bytes, tag: compactFormTag, what: "points account")
        var account = PointsAccount(member: try r.string(), registeredAt: EventTime(millis: try r.int()))
        account.closed = try r.bool()
        account.importedFrom = try r.optional { reader throws(CompactFormError) in try reader.string() }
        account.lifetime.imported = try r.int()
        account.balance = Balance(available: try r.int(), pending: try r.int(), debt: try r.int())
        account.lifetime.earned = try r.int()
        account.lifetime.reversed = try r.int()
        account.lifetime.redeemed = try r.int()
        account.lifetime.cashOffset = try r.int()
        account.lifetime.transferredOut = try r.int()
        account.lifetime.transferredIn = try r.int()
        account.lifetime.givenBack = try r.int()
        account.lifetime.expired = try r.int()
        account.lifetime.deducted = try r.int()
        account.lifetime.adjustedUp = try r.int()
        account.lifetime.adjustedDown = try r.int()
        account.lotsCreated = try r.int()
        account.entries = try r.int()
        let lotCount = try r.count()
        account.lots.reserveCapacity(lotCount)
        for _ in 0..<lotCount {
            account.lots.append(Lot(
                id: try r.string(), source: try r.string(), orderID: try r.optional { reader throws(CompactFormError) in try reader.string() },
                number: try r.int(), earnedAt: EventTime(millis: try r.int()), availableAt: EventTime(millis: try r.int()),
                expiresAt: EventTime(millis: try r.int()), points: try r.int(), remaining: try r.int(), pending: try r.bool()))
        }
        for _ in 0..<(try r.count()) {
            let order = try OrderRecord.read(&r)
            account.orders[order.id] = order
        }
        for _ in 0..<(try r.count()) { account.acceptedRefundIDs.insert(try r.string()) }
        account.lastPaidOrderAt = try r.optional { reader throws(CompactFormError) in EventTime(millis: try reader.int()) }
        account.lastCheckInDay = try r.optional { reader throws(CompactFormError) in try reader.int() }
        account.streakLength = try r.int()
        account.checkInDays = try PeriodCounts.read(&r)
        account.reviewsByDay = try PeriodCounts.read(&r)
        account.sharesByDay = try PeriodCounts.read(&r)
        for _ in 0..<(try r.count()) {
            let task = try r.string()
            account.taskPeriods[task] = try PeriodCounts.read(&r)
        }
        account.referralsByMonth = try PeriodCounts.read(&r)
        account.referralsRewarded = try r.int()
        account.transfersByDay = try PeriodCounts.read(&r)
        account.inactivityDue = try r.optional { reader throws(CompactFormError) in EventTime(millis: try reader.int()) }
        if !r.isAtEnd {
            let held = try r.count()
            // Written only when there are some: a zero is a byte too many, not an empty list.
            guard held > 0 else { throw CompactFormError(what: "points account", problem: "bytes left after the account") }
            for _ in 0..<held {
                account.heldRedemptions.append(HeldRedemption(
                    requestID: try r.string(), time: EventTime(millis: try r.int()), rewardID: try r.string(), source: try r.string(),
                    quantity: try r.int(), points: try r.int()))
            }
        }
        guard r.isAtEnd else { throw CompactFormError(what: "points account", problem: "bytes left after the account") }
        return account
    }
}

extension OrderRecord {
    /// The first byte of an order's compact form, stored apart from its member's account.
    static let compactFormTag: UInt8 = 0xB4

    /// The order as the points service stores it apart from the account: read only when an
    /// input names the order, so an account does not grow with every order its member made.
    public func encoded() -> [UInt8] {
        var w = CompactWriter(tag: Self.compactFormTag, capacity: 32 + components.count * 24)
        write(to: &w)
        return w.bytes
    }

    /// Reads an order's compact form.
    public static func decode(_ bytes: [UInt8]) throws(CompactFormError) -> OrderRecord {
        var r = try CompactReader(bytes, tag: compactFormTag, what: "order")
        let order = try read(&r)
        guard r.isAtEnd else { throw CompactFormError(what: "order", problem: "bytes left after the order") }
        return order
    }

    /// Id, acceptance, time, amounts, then the components by name.
    func write(to w: inout CompactWriter) {
        w.string(id); w.bool(accepted); w.int(time.millis); w.int(paidMinor); w.int(refundedMinor)
        w.int(components.count)
        for (name, component) in components.sorted(by: { $0.key < $1.key }) {
            w.string(name); w.int(component.points); w.int(component.reversed); w.optional(component.lotID) { $0.string($1) }
        }
    }

    static func read(_ r: inout CompactReader) throws(CompactFormError) -> OrderRecord {
        var order = OrderRecord(
            id: try r.string(), accepted: try r.bool(), time: EventTime(millis: try r.int()), paidMinor: try r.int(),
            refundedMinor: try r.int())
        for _ in 0..<(try r.count()) {
            let name = try r.string()
            order.components[name] = OrderComponent(
                points: try r.int(), reversed: try r.int(), lotID: try r.optional { reader throws(CompactFormError) in try reader.string() })
        }
        return order
    }
}

extension PeriodCounts {
    /// Retention, then the periods with their counts, ascending.
    func write(to w: inout CompactWriter) {
        w.int(retention)
        w.int(counts.count)
        for (period, count) in counts.sorted(by: { $0.key < $1.key }) {
            w.int(period)
            w.int(count)
        }
    }

    static func read(_ r: inout CompactReader) throws(CompactFormError) -> PeriodCounts {
        let retention = try r.int()
        var counts: [Int64: Int64] = [:]
        for _ in 0..<(try r.count()) {
            let period = try r.int()
            counts[period] = try r.int()
        }
        return PeriodCounts(retention: retention, counts: counts)
    }
}
