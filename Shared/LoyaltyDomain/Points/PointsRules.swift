/// What applying one input (or timer) decided.
public struct PointsDecision: Sendable, Equatable {
    public var entries: [LedgerEntry] = []
    public var refusals: [Refusal] = []
    /// Pending lots to release when their waiting period ends.
    public var releases: [PendingRelease] = []
    /// Commands for other members (their partitions apply them).
    public var commands: [PointsCommand] = []
    /// Expiry instants of lots created: each needs its expiry and warning timers.
    public var expiries: Set<EventTime> = []
    /// The member's next inactivity deduction, when it moved.
    public var inactivityDue: EventTime?
    public var warnings: [ExpiryWarning] = []
    /// The member is not registered: keep the event until it is.
    public var memberUnknown = false

    public init() {}
}

/// A pending lot's release, due at the end of its waiting period.
public struct PendingRelease: Sendable, Equatable {
    public var lotID: String
    public var due: EventTime
}

/// A command the points service sends itself for another member.
public enum PointsCommand: Sendable, Equatable {
    /// Reward `referrer` for the registration of `reward.refereeID`; carries the registration's time.
    case referralReward(referrer: String, reward: ReferralReward, time: EventTime)
    /// Credit a transfer to its recipient; carries the transfer's time.
    case transferCredit(recipient: String, leg: TransferLeg, time: EventTime)
    /// Give a transfer back to its sender (the recipient does not exist).
    case transferReturned(sender: String, leg: TransferLeg, time: EventTime)
    /// Ask a stocked reward's task for units of it; carries the redemption's time.
    case reserveStock(StockReservation, time: EventTime)
    /// Answer a reservation to the member's task; carries the reservation's time.
    case answerStock(member: String, StockAnswer, time: EventTime)
}

extension PointsCommand {
    /// The instant the command carries, which orders it among the receiver's records.
    public var time: EventTime {
        switch self {
        case .referralReward(_, _, let time), .transferCredit(_, _, let time), .transferReturned(_, _, let time),
             .reserveStock(_, let time), .answerStock(_, _, let time): time
        }
    }

    /// The command leaving no earlier than `instant`: a command sorts after the record that
    /// sends it, so one that a kept event of a member who just registered causes leaves at
    /// the registration.
    public func notBefore(_ instant: EventTime) -> PointsCommand {
        guard time < instant else { return self }
        switch self {
        case .referralReward(let referrer, let reward, _): return .referralReward(referrer: referrer, reward: reward, time: instant)
        case .transferCredit(let recipient, let leg, _): return .transferCredit(recipient: recipient, leg: leg, time: instant)
        case .transferReturned(let sender, let leg, _): return .transferReturned(sender: sender, leg: leg, time: instant)
        case .reserveStock(let reservation, _): return .reserveStock(reservation, time: instant)
        case .answerStock(let member, let answer, _): return .answerStock(member: member, answer, time: instant)
        }
    }
}

/// The points rules (DOMAIN.md, "Points: earning" and "Points: refunds"), as pure functions
/// of (account, input, program) → (account, decision).
public struct PointsRules: Sendable {
    public let program: Program

    public init(program: Program) {
        self.program = program
    }

    // MARK: Formulas

    /// The base component of a paid order:
    /// `floor(sum(line.paidMinor × categoryMultiplier) / 100)`, or `floor(paidMinor / 100)`
    /// without lines. Multipliers are exact tenths, so this is integer arithmetic.
    public func basePoints(_ order: OrderPaid) -> Int64 {
        let perPoint = program.earning.minorUnitsPerPoint
        guard !order.lines.isEmpty else { return order.paidMinor / perPoint }
        var weightedTenths: (high: Int64, low: UInt64) = (0, 0)
        for line in order.lines {
            let tenths = program.earning.categoryMultiplierTenths[line.category] ?? program.earning.defaultCategoryMultiplierTenths
            let product = line.paidMinor.multipliedFullWidth(by: tenths)
            let (low, carry) = weightedTenths.low.addingReportingOverflow(product.low)
            weightedTenths = (weightedTenths.high + product.high + (carry ? 1 : 0), low)
        }
        let (quotient, _) = (perPoint * 10).dividingFullWidth(weightedTenths)
        return quotient
    }

    /// How much of a component `refundedSoFar` reverses in total:
    /// `floor(component × refundedSoFar / paidMinor)`.
    public static func reversedSoFar(component: Int64, refundedSoFar: Int64, paidMinor: Int64) -> Int64 {
        precondition(paidMinor > 0)
        return paidMinor.dividingFullWidth(component.multipliedFullWidth(by: refundedSoFar)).quotient
    }

    /// When points that become available at `availableAt` expire: 00:00 local on the 1st of
    /// the month after the month `expiryMonthsAfterAvailable` months on.
    public func expiry(availableAt: EventTime) -> EventTime {
        let month = program.calendar.localDate(of: availableAt).monthIndex
        return program.calendar.startOfMonth(monthIndex: month + program.lots.expiryMonthsAfterAvailable + 1)
    }

    // MARK: Applying inputs

    /// Applies one input to the member's account (nil when the member is not registered).
    /// A stock reservation is not a member's input: it goes to ``reserve(_:taken:)``.
    /// An event that would take any of the member's figures past `PointsAccount.safeMagnitude`
    /// is refused `amount-out-of-range`, and the account is left as it was.
    public func apply(
        _ event: PointsEvent, to account: inout PointsAccount?
    ) -> PointsDecision {
        var working = account
        let decision = applyWithinBounds(event, to: &working)
        if let result = working, result.exceedsSafeMagnitude {
            var refused = PointsDecision()
            refused.refusals.append(refusal(
                event, subject: "points", reason: .amountOutOfRange,
                detail: "the member's points would pass \(PointsAccount.safeMagnitude)"))
            return refused
        }
        account = working
        return decision
    }

    /// `apply` for an account whose figures are within `safeMagnitude`: one event moves them by
    /// far less than the headroom to `Int64.max`, so nothing here can overflow.
    private func applyWithinBounds(
        _ event: PointsEvent, to account: inout PointsAccount?
    ) -> PointsDecision {
        var decision = PointsDecision()
        switch event.input {
        case .registered(let referrerID):
            if account != nil {
                decision.refusals.append(refusal(event, subject: "registration", reason: .alreadyRegistered))
                return decision
            }
            var member = PointsAccount(member: event.member, registeredAt: event.time)
            member.inactivityDue = event.time.adding(days: program.inactivity.afterDays)
            decision.inactivityDue = member.inactivityDue
            account = member
            if let referrerID {
                if referrerID.isExactly(event.member) {
                    decision.refusals.append(refusal(event, subject: "referral", reason: .selfReferral))
                } else {
                    decision.commands.append(.referralReward(
                        referrer: referrerID, reward: ReferralReward(refereeID: event.member, registrationID: event.id),
                        time: event.time))
                }
            }
            return decision
        case .referralReward(let reward):
            // Refusals of a referral are listed against the registration (the referee).
            guard var referrer = account, referrer.registeredAt <= event.time else {
                decision.refusals.append(Refusal(
                    id: "\(event.id)/refused", member: reward.refereeID, time: event.time, causeID: reward.registrationID,
                    subject: "referral", reason: .unknownReferrer, detail: "referrer \(event.member)"))
                return decision
            }
            rewardReferral(event, reward, &referrer, &decision)
            account = referrer
            return decision
        case .transferCredit(let leg):
            // A transfer to a member that does not exist (yet) goes back to its sender.
            guard var recipient = account, recipient.registeredAt <= event.time else {
                decision.commands.append(.transferReturned(
                    sender: leg.counterpart, leg: TransferLeg(counterpart: event.member, transferID: leg.transferID, points: leg.points),
                    time: event.time))
                return decision
            }
            credit(event, points: leg.points, kind: .transferredIn, source: "transfer", rule: "transfer-in",
                   details: [("from", leg.counterpart), ("transfer", leg.transferID)], &recipient, &decision)
            recipient.lifetime.transferredIn += leg.points
            account = recipient
            return decision
        default:
            guard var member = account else {
                decision.memberUnknown = true
                return decision
            }
            applyToMember(event, &member, &decision)
            applySpending(event, &member, &decision)
            account = member
            return decision
        }
    }

    private func applyToMember(_ event: PointsEvent, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        let calendar = program.calendar
        switch event.input {
        case .registered, .referralReward:
            break  // handled by `apply`
        case .memberUpdated:
            break
        case .memberClosed:
            account.closed = true
        case .orderPaid(let order):
            payOrder(event, order, &account, &decision)
        case .orderRefunded(let refund):
            refundOrder(event, refund, &account, &decision)
        case .checkedIn:
            let day = calendar.localDate(of: event.time).dayNumber
            guard let streakDay = EngagementRules.checkIn(
                on: day, days: &account.checkInDays, lastDay: &account.lastCheckInDay, streakLength: &account.streakLength)
            else {
                decision.refusals.append(refusal(event, subject: "check-in", reason: .alreadyCheckedInToday))
                return
            }
            let points = streakDay >= program.checkIn.streakBonusFromDay ? program.checkIn.streakPoints : program.checkIn.points
            credit(event, points: points, source: "check-in", rule: "check-in", details: [("streakDay", String(streakDay))], &account, &decision)
        case .reviewPosted:
            let day = calendar.localDate(of: event.time).dayNumber
            guard account.reviewsByDay.count(in: day) < program.reviews.dailyCap else {
                decision.refusals.append(refusal(event, subject: "review", reason: .reviewDailyCap))
                return
            }
            account.reviewsByDay.add(in: day)
            credit(event, points: program.reviews.points, source: "review", rule: "review", details: [], &account, &decision)
        case .contentShared:
            let day = calendar.localDate(of: event.time).dayNumber
            guard account.sharesByDay.count(in: day) < program.shares.dailyCap else {
                decision.refusals.append(refusal(event, subject: "share", reason: .shareDailyCap))
                return
            }
            account.sharesByDay.add(in: day)
            credit(event, points: program.shares.points, source: "share", rule: "share", details: [], &account, &decision)
        case .taskCompleted(let name):
            guard let task = program.tasks[name] else {
                decision.refusals.append(refusal(event, subject: "task", reason: .unknownTask, detail: name))
                return
            }
            let local = calendar.localDate(of: event.time)
            let period: Int64
            let reason: ReasonCode
            let retention: Int64
            switch task.limit {
            case .oncePerMember: (period, reason, retention) = (0, .taskAlreadyDone, 0)
            case .oncePerDay: (period, reason, retention) = (local.dayNumber, .taskDailyCap, PeriodCounts.dailyRetention)
            case .oncePerMonth: (period, reason, retention) = (local.monthIndex, .taskMonthlyCap, PeriodCounts.monthlyRetention)
            }
            var periods = account.taskPeriods[name] ?? PeriodCounts(retention: retention)
            if periods.count(in: period) > 0 {
                decision.refusals.append(refusal(event, subject: "task", reason: reason, detail: name))
                return
            }
            periods.add(in: period)
            account.taskPeriods[name] = periods
            credit(event, points: task.points, source: "task", rule: "task", details: [("task", name)], &account, &decision)
        case .grant(let grant):
            applyGrant(event, grant, &account, &decision)
        case .reversal(let reversal):
            applyReversal(event, reversal, &account, &decision)
        case .redeem, .cashOffset, .transfer, .adjust, .openingBalance, .transferCredit, .transferReturned, .stockAnswer, .releaseHeld:
            break  // spending: `applySpending`
        case .stockReservation:
            break  // the reward's task's: `reserve`
        }
    }

    private func payOrder(_ event: PointsEvent, _ order: OrderPaid, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        if let known = account.orders[order.orderID], known.accepted {
            decision.refusals.append(refusal(event, subject: "order", reason: .duplicateOrder, orderID: order.orderID))
            return
        }
        // A bonus grant may have arrived first; its components stay with the order.
        var record = account.orders[order.orderID]
            ?? OrderRecord(id: order.orderID, accepted: true, time: event.time, paidMinor: order.paidMinor)
        record.accepted = true
        record.time = event.time
        record.paidMinor = order.paidMinor
        account.lastPaidOrderAt = max(account.lastPaidOrderAt ?? event.time, event.time)
        // A paid order restarts the inactivity clock. The timer set for the old time stays: when
        // it fires early it re-arms itself for this one, which saves a timer write per order.
        account.inactivityDue = account.lastPaidOrderAt!.adding(days: program.inactivity.afterDays)
        let base = basePoints(order)
        var lotID: String?
        if base > 0 {
            lotID = creditOrderComponent(
                event, points: base, source: "base", orderID: order.orderID, rule: "base", details: [], &account, &decision)
        }
        record.components["base"] = OrderComponent(points: base, lotID: lotID)
        account.orders[order.orderID] = record
    }

    private func refundOrder(_ event: PointsEvent, _ refund: OrderRefunded, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        func refuse(_ reason: ReasonCode) {
            decision.refusals.append(refusal(event, subject: "refund", reason: reason, orderID: refund.orderID, refundID: refund.refundID))
        }
        if account.acceptedRefundIDs.contains(refund.refundID) { return refuse(.duplicateRefundId) }
        guard var order = account.orders[refund.orderID], order.accepted else { return refuse(.unknownOrder) }
        guard let amount = refund.refundMinor, amount > 0 else { return refuse(.invalidAmount) }
        guard amount <= order.paidMinor - order.refundedMinor else { return refuse(.refundExceedsOrder) }
        account.acceptedRefundIDs.insert(refund.refundID)
        order.refundedMinor += amount
        // The points service owns the base component; bonus owners send their own reversals.
        if var base = order.components["base"], base.points > 0 {
            let target = Self.reversedSoFar(component: base.points, refundedSoFar: order.refundedMinor, paidMinor: order.paidMinor)
            let delta = target - base.reversed
            if delta > 0 {
                base.reversed = target
                reverse(
                    event, points: delta, source: "base", ownLot: base.lotID, orderID: order.id, refundID: refund.refundID,
                    rule: "base-reversal", &account, &decision)
            }
            order.components["base"] = base
        }
        account.orders[order.id] = order
    }

    private func applyGrant(_ event: PointsEvent, _ grant: PointsGrant, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        var details: [(String, String)] = []
        if let campaign = grant.campaignID { details.append(("campaign", campaign)) }
        guard grant.component.belongsToOrder, let orderID = grant.orderID else {
            credit(event, points: grant.points, source: grant.component.rawValue, rule: grant.component.rawValue, details: details, &account, &decision)
            return
        }
        var order = account.orders[orderID] ?? OrderRecord(id: orderID, accepted: false, time: event.time, paidMinor: 0)
        if order.components[grant.component.rawValue] != nil {
            decision.refusals.append(refusal(
                event, subject: grant.component.rawValue, reason: .duplicateComponent, orderID: orderID))
            return
        }
        let lotID = creditOrderComponent(
            event, points: grant.points, source: grant.component.rawValue, orderID: orderID, rule: grant.component.rawValue,
            details: details, &account, &decision)
        order.components[grant.component.rawValue] = OrderComponent(points: grant.points, lotID: lotID)
        account.orders[orderID] = order
    }

    private func applyReversal(_ event: PointsEvent, _ reversal: PointsReversal, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        guard var order = account.orders[reversal.orderID], var component = order.components[reversal.component.rawValue] else {
            decision.refusals.append(refusal(
                event, subject: reversal.component.rawValue, reason: .unknownComponent, orderID: reversal.orderID,
                refundID: reversal.refundID))
            return
        }
        guard reversal.points <= component.points - component.reversed else {
            decision.refusals.append(refusal(
                event, subject: reversal.component.rawValue, reason: .reversalExceedsComponent, orderID: reversal.orderID,
                refundID: reversal.refundID))
            return
        }
        component.reversed += reversal.points
        order.components[reversal.component.rawValue] = component
        account.orders[reversal.orderID] = order
        reverse(
            event, points: reversal.points, source: reversal.component.rawValue, ownLot: component.lotID,
            orderID: reversal.orderID, refundID: reversal.refundID, rule: "\(reversal.component.rawValue)-reversal",
            &account, &decision)
    }

    private func rewardReferral(_ event: PointsEvent, _ reward: ReferralReward, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        guard EngagementRules.admitReferral(at: event.time, counts: &account.referralsByMonth, program: program) else {
            decision.refusals.append(Refusal(
                id: "\(event.id)/refused", member: reward.refereeID, time: event.time, causeID: reward.registrationID,
                subject: "referral", reason: .referralMonthlyCap, detail: "referrer \(account.member)"))
            return
        }
        account.referralsRewarded += 1
        credit(event, points: program.referral.referrerPoints, source: "referral", rule: "referral",
               details: [("referee", reward.refereeID)], &account, &decision)
    }

    // MARK: Timers

    /// Releases a pending lot at the end of its waiting period; debt is repaid from it first.
    public func release(lotID: String, at due: EventTime, account: inout PointsAccount) -> PointsDecision {
        var decision = PointsDecision()
        guard let index = account.lots.firstIndex(where: { $0.id == lotID }), account.lots[index].pending else {
            return decision  // fully reversed while pending: nothing left to release
        }
        var lot = account.lots[index]
        let amount = lot.remaining
        let repaid = min(account.balance.debt, amount)
        lot.pending = false
        lot.remaining -= repaid
        account.balance.pending -= amount
        account.balance.available += amount - repaid
        account.balance.debt -= repaid
        var changes: [LotChange] = []
        if repaid > 0 { changes.append(LotChange(lotID: lot.id, delta: -repaid)) }
        if lot.remaining == 0 { account.lots.remove(at: index) } else { account.lots[index] = lot }
        decision.entries.append(entry(
            account: &account, id: "release/\(account.member)/\(lot.id)", time: due, kind: .released, source: lot.source,
            causeID: "release/\(account.member)/\(lot.id)", orderID: lot.orderID, refundID: nil, points: 0,
            available: amount - repaid, pending: -amount, debt: -repaid, lots: changes, details: [("lot", lot.id)]))
        return decision
    }

    // MARK: Spending

    private func applySpending(_ event: PointsEvent, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        let spending = program.spending
        switch event.input {
        case .redeem(let redemption):
            func refuse(_ reason: ReasonCode) {
                decision.refusals.append(refusal(event, subject: "redemption", reason: reason, detail: redemption.rewardID))
            }
            guard let reward = program.catalogue[redemption.rewardID] else { return refuse(.unknownReward) }
            let cost = reward.points * redemption.quantity
            if cost < spending.minimumRedemptionPoints { return refuse(.belowMinimum) }
            if account.balance.debt > 0 { return refuse(.negativeBalance) }
            if account.spendable < cost { return refuse(.insufficientBalance) }
            let held = HeldRedemption(
                requestID: event.id, time: event.time, rewardID: reward.id, source: reward.kind.rawValue, quantity: redemption.quantity,
                points: cost)
            guard reward.stock != nil else { return redeem(held, &account, &decision) }
            // Stock is the reward's task's to decide (architecture.md, "Global figures"): the
            // points are set aside now, so that a request after this one sees them gone, and
            // the redemption is made or refused when the answer comes back.
            account.heldRedemptions.append(held)
            decision.commands.append(.reserveStock(
                StockReservation(rewardID: reward.id, quantity: redemption.quantity, member: account.member, requestID: event.id),
                time: event.time))
        case .stockAnswer(let answer):
            // An answer to no held redemption (one answered already) changes nothing.
            guard let index = account.heldRedemptions.firstIndex(where: { $0.requestID.isExactly(answer.requestID) }) else { return }
            let held = account.heldRedemptions.remove(at: index)
            if let reason = answer.refusal {
                decision.refusals.append(refusal(held.request(of: account.member), subject: "redemption", reason: reason, detail: held.rewardID))
            } else {
                redeem(held, &account, &decision)
            }
        case .releaseHeld(let release):
            // The request is refused as of the release; an answer that still comes finds
            // nothing set aside and changes nothing (units it took stay taken).
            guard let reason = release.reason else {
                return decision.refusals.append(refusal(event, subject: "release", reason: .missingReason))
            }
            guard let index = account.heldRedemptions.firstIndex(where: { $0.requestID.isExactly(release.requestID) }) else {
                return decision.refusals.append(refusal(event, subject: "release", reason: .notHeld, detail: release.requestID))
            }
            let held = account.heldRedemptions.remove(at: index)
            var request = held.request(of: account.member)
            request.time = event.time
            decision.refusals.append(refusal(request, subject: "redemption", reason: .releasedByOperator, detail: "\(held.rewardID): \(reason)"))
        case .cashOffset(let offset):
            func refuse(_ reason: ReasonCode) {
                decision.refusals.append(refusal(event, subject: "cash-offset", reason: reason, orderID: offset.orderID))
            }
            // 100 / pointsPerCNY fen per point: the program guarantees it divides.
            let valueMinor = offset.points * (100 / spending.cashOffsetPointsPerCNY)
            if valueMinor > offset.orderMinor * spending.cashOffsetMaxPercentOfOrder / 100 { return refuse(.exceedsOffsetLimit) }
            if account.balance.debt > 0 { return refuse(.negativeBalance) }
            if account.spendable < offset.points { return refuse(.insufficientBalance) }
            spend(event, points: offset.points, kind: .cashOffset, source: "checkout", orderID: offset.orderID, rule: "cash-offset",
                  details: [("valueMinor", String(valueMinor))], &account, &decision)
            account.lifetime.cashOffset += offset.points
        case .transfer(let transfer):
            func refuse(_ reason: ReasonCode) {
                decision.refusals.append(refusal(event, subject: "transfer", reason: reason, detail: transfer.recipient))
            }
            let day = program.calendar.localDate(of: event.time).dayNumber
            if transfer.recipient.isExactly(account.member) { return refuse(.selfTransfer) }
            if transfer.points < spending.transferMinimumPoints { return refuse(.belowMinimum) }
            if account.balance.debt > 0 { return refuse(.negativeBalance) }
            if account.transfersByDay.count(in: day) + transfer.points > spending.transferDailyLimitPoints { return refuse(.dailyLimit) }
            if account.spendable < transfer.points { return refuse(.insufficientBalance) }
            spend(event, points: transfer.points, kind: .transferredOut, source: "transfer", rule: "transfer-out",
                  details: [("to", transfer.recipient)], &account, &decision)
            account.transfersByDay.add(in: day, amount: transfer.points)
            account.lifetime.transferredOut += transfer.points
            decision.commands.append(.transferCredit(
                recipient: transfer.recipient, leg: TransferLeg(counterpart: account.member, transferID: event.id, points: transfer.points),
                time: event.time))
        case .transferReturned(let leg):
            // A fresh lot, with a fresh expiry, at the transfer's time.
            credit(event, points: leg.points, kind: .returned, source: "transfer", rule: "returned",
                   details: [("to", leg.counterpart), ("transfer", leg.transferID)], &account, &decision)
            account.lifetime.givenBack += leg.points
        case .adjust(let adjustment):
            guard let reason = adjustment.reason else {
                decision.refusals.append(refusal(event, subject: "adjustment", reason: .missingReason))
                return
            }
            if adjustment.points > 0 {
                credit(event, points: adjustment.points, kind: .adjusted, source: "adjustment", rule: "adjusted",
                       details: [("reason", reason)], &account, &decision)
                account.lifetime.adjustedUp += adjustment.points
            } else {
                spend(event, points: -adjustment.points, kind: .adjusted, source: "adjustment", rule: "adjusted",
                      details: [("reason", reason)], allowDebt: true, &account, &decision)
                account.lifetime.adjustedDown -= adjustment.points
            }
        case .openingBalance(let opening):
            guard account.importedFrom == nil else {
                decision.refusals.append(refusal(event, subject: "opening-balance", reason: .alreadyImported, detail: account.importedFrom))
                return
            }
            // All or nothing: a lot that expired before its import would make the balance
            // differ from the one the member was told.
            if let index = opening.lots.firstIndex(where: { $0.expiresAt <= event.time }) {
                decision.refusals.append(refusal(event, subject: "opening-balance", reason: .lotAlreadyExpired, detail: "lots[\(index)]"))
                return
            }
            for (index, lot) in opening.lots.enumerated() {
                credit(event, points: lot.points, kind: .imported, source: "opening-balance", rule: "imported/\(index + 1)",
                       details: [("system", opening.system)], expiresAt: lot.expiresAt, &account, &decision)
                account.lifetime.imported += lot.points
            }
            account.importedFrom = opening.system
            // The cut-over starts the member's life here: the inactivity clock runs from it (a
            // timer set for an earlier time re-arms itself when it fires).
            account.inactivityDue = max(account.inactivityDue ?? event.time, event.time.adding(days: program.inactivity.afterDays))
            // A lot expiring within the warning period is warned of at once, not never.
            for expiresAt in Set(opening.lots.map(\.expiresAt)).sorted() where warningTime(for: expiresAt) <= event.time {
                let points = account.lots.filter { $0.expiresAt == expiresAt }.reduce(0) { $0 + $1.remaining }
                if points > 0 {
                    decision.warnings.append(ExpiryWarning(member: account.member, expiresAt: expiresAt, points: points, time: event.time))
                }
            }
        default:
            break
        }
    }

    /// Spends a redemption's points, as of its request. The points were spendable then; for a
    /// stocked reward, a clawback or expiry at the same instant may have taken them since,
    /// and the rest becomes debt, as it would have had the redemption come first.
    private func redeem(_ held: HeldRedemption, _ account: inout PointsAccount, _ decision: inout PointsDecision) {
        spend(held.request(of: account.member), points: held.points, kind: .redeemed, source: held.source, rule: "redeemed",
              details: [("reward", held.rewardID), ("quantity", String(held.quantity))], allowDebt: true, &account, &decision)
        account.lifetime.redeemed += held.points
    }

    // MARK: Reward stock

    /// The reward's task deciding a reservation, in the order of its reservations: the units
    /// are taken while the program's stock lasts. `taken` is how many units of the reward
    /// reservations took so far. A reward the program no longer limits is never out of stock.
    public func reserve(_ reservation: StockReservation, taken: Int64) -> StockAnswer {
        var answer = StockAnswer(rewardID: reservation.rewardID, quantity: reservation.quantity, requestID: reservation.requestID, refusal: nil)
        guard let reward = program.catalogue[reservation.rewardID] else {
            answer.refusal = .unknownReward
            return answer
        }
        if let stock = reward.stock, stock - taken < reservation.quantity { answer.refusal = .outOfStock }
        return answer
    }

    /// Takes `points` from available lots, soonest-expiring first (then oldest); with
    /// `allowDebt`, what the lots cannot cover becomes debt.
    private func spend(
        _ event: PointsEvent, points: Int64, kind: EntryKind, source: String, orderID: String? = nil, rule: String,
        details: [(String, String)], allowDebt: Bool = false, _ account: inout PointsAccount, _ decision: inout PointsDecision
    ) {
        let (taken, changes) = takeFromAvailableLots(points, &account)
        let debt = allowDebt ? points - taken : 0
        account.balance.available -= taken
        account.balance.debt += debt
        decision.entries.append(entry(
            account: &account, id: "\(event.id)/\(rule)", time: event.time, kind: kind, source: source, causeID: event.id,
            orderID: orderID, refundID: nil, points: -(taken + debt), available: -taken, pending: 0, debt: debt,
            lots: changes, details: details))
    }

    /// Removes up to `points` from available lots in (expiry, creation) order.
    private func takeFromAvailableLots(_ points: Int64, _ account: inout PointsAccount) -> (taken: Int64, changes: [LotChange]) {
        var left = points
        var changes: [LotChange] = []
        let order = account.lots.indices
            .filter { !account.lots[$0].pending && account.lots[$0].remaining > 0 }
            .sorted { (account.lots[$0].expiresAt, account.lots[$0].number) < (account.lots[$1].expiresAt, account.lots[$1].number) }
        for index in order where left > 0 {
            let taken = min(left, account.lots[index].remaining)
            account.lots[index].remaining -= taken
            left -= taken
            changes.append(LotChange(lotID: account.lots[index].id, delta: -taken))
        }
        account.lots.removeAll { $0.remaining == 0 }
        return (points - left, changes)
    }

    // MARK: Expiry and inactivity

    /// Expires what is left of the lots that expire at `expiresAt`.
    public func expire(at expiresAt: EventTime, account: inout PointsAccount) -> PointsDecision {
        var decision = PointsDecision()
        var changes: [LotChange] = []
        var total: Int64 = 0
        for index in account.lots.indices where account.lots[index].expiresAt == expiresAt && !account.lots[index].pending {
            let amount = account.lots[index].remaining
            guard amount > 0 else { continue }
            account.lots[index].remaining = 0
            total += amount
            changes.append(LotChange(lotID: account.lots[index].id, delta: -amount))
        }
        account.lots.removeAll { $0.remaining == 0 }
        guard total > 0 else { return decision }
        account.balance.available -= total
        account.lifetime.expired += total
        // The sequence keeps the id unique when a late credit brings an expiry instant back.
        let id = "expiry/\(account.member)/\(expiresAt.millis)/\(account.entries + 1)"
        decision.entries.append(entry(
            account: &account, id: id, time: expiresAt, kind: .expired, source: "expiry", causeID: id, orderID: nil,
            refundID: nil, points: -total, available: -total, pending: 0, debt: 0, lots: changes, details: []))
        return decision
    }

    /// Warns of the points that will expire at `expiresAt`, if any are left.
    public func warnOfExpiry(at expiresAt: EventTime, warnedAt: EventTime, account: PointsAccount) -> PointsDecision {
        var decision = PointsDecision()
        let points = account.lots.filter { $0.expiresAt == expiresAt }.reduce(0) { $0 + $1.remaining }
        if points > 0 {
            decision.warnings.append(ExpiryWarning(member: account.member, expiresAt: expiresAt, points: points, time: warnedAt))
        }
        return decision
    }

    /// When the warning for an expiry is due.
    public func warningTime(for expiresAt: EventTime) -> EventTime {
        expiresAt.adding(days: -program.lots.expiryWarningDays)
    }

    /// Deducts `deductionPercent` of the available balance when the inactivity clock runs out,
    /// and sets the next deduction `afterDays` later. A timer that fires before the member's
    /// clock (a paid order restarted it) only re-arms itself for the new time.
    public func deductForInactivity(at due: EventTime, account: inout PointsAccount) -> PointsDecision {
        var decision = PointsDecision()
        guard let clock = account.inactivityDue, clock <= due else {
            decision.inactivityDue = account.inactivityDue
            return decision
        }
        let next = due.adding(days: program.inactivity.afterDays)
        account.inactivityDue = next
        decision.inactivityDue = next
        let amount = account.balance.available * program.inactivity.deductionPercent / 100
        guard amount > 0 else { return decision }
        let id = "inactivity/\(account.member)/\(due.millis)"
        let (taken, changes) = takeFromAvailableLots(amount, &account)
        account.balance.available -= taken
        account.lifetime.deducted += taken
        decision.entries.append(entry(
            account: &account, id: id, time: due, kind: .deducted, source: "inactivity", causeID: id, orderID: nil,
            refundID: nil, points: -taken, available: -taken, pending: 0, debt: 0, lots: changes, details: []))
        return decision
    }

    // MARK: Building blocks

    /// Credits an order component as a pending lot (available at once if the waiting period is 0).
    private func creditOrderComponent(
        _ event: PointsEvent, points: Int64, source: String, orderID: String, rule: String, details: [(String, String)],
        _ account: inout PointsAccount, _ decision: inout PointsDecision
    ) -> String? {
        let availableAt = event.time.adding(hours: program.earning.pendingHours)
        if availableAt <= event.time {
            return credit(event, points: points, source: source, orderID: orderID, rule: rule, details: details, &account, &decision)
        }
        let lot = newLot(&account, source: source, orderID: orderID, earnedAt: event.time, availableAt: availableAt, points: points, pending: true)
        noteExpiry(of: lot, account, &decision)
        account.lots.append(lot)
        account.balance.pending += points
        account.lifetime.earned += points
        decision.releases.append(PendingRelease(lotID: lot.id, due: availableAt))
        decision.entries.append(entry(
            account: &account, id: "\(event.id)/\(rule)", time: event.time, kind: .earned, source: source, causeID: event.id,
            orderID: orderID, refundID: nil, points: points, available: 0, pending: points, debt: 0,
            lots: [LotChange(lotID: lot.id, delta: points, expiresAt: lot.expiresAt)], details: details))
        return lot.id
    }

    /// Credits points available at once; debt is repaid from them first. Nothing for 0 points
    /// (a program may set a reward to 0): no entry, no lot.
    @discardableResult
    private func credit(
        _ event: PointsEvent, points: Int64, kind: EntryKind = .earned, source: String, orderID: String? = nil, rule: String,
        details: [(String, String)], expiresAt: EventTime? = nil, _ account: inout PointsAccount, _ decision: inout PointsDecision
    ) -> String? {
        guard points > 0 else { return nil }
        var lot = newLot(&account, source: source, orderID: orderID, earnedAt: event.time, availableAt: event.time, points: points, pending: false)
        if let expiresAt { lot.expiresAt = expiresAt }
        noteExpiry(of: lot, account, &decision)
        let repaid = min(account.balance.debt, points)
        lot.remaining -= repaid
        if lot.remaining > 0 { account.lots.append(lot) }
        account.balance.debt -= repaid
        account.balance.available += points - repaid
        if kind == .earned { account.lifetime.earned += points }
        decision.entries.append(entry(
            account: &account, id: "\(event.id)/\(rule)", time: event.time, kind: kind, source: source, causeID: event.id,
            orderID: orderID, refundID: nil, points: points, available: points - repaid, pending: 0, debt: -repaid,
            lots: [LotChange(lotID: lot.id, delta: points - repaid, expiresAt: lot.expiresAt)], details: details))
        return lot.id
    }

    /// Takes `points` back: from the component's own lot first (pending or available), then
    /// from other available lots soonest-expiring first, and the rest as debt.
    private func reverse(
        _ event: PointsEvent, points: Int64, source: String, ownLot: String?, orderID: String, refundID: String, rule: String,
        _ account: inout PointsAccount, _ decision: inout PointsDecision
    ) {
        var left = points
        var available: Int64 = 0
        var pending: Int64 = 0
        var changes: [LotChange] = []
        if let ownLot, let index = account.lots.firstIndex(where: { $0.id == ownLot }) {
            let taken = min(left, account.lots[index].remaining)
            if taken > 0 {
                account.lots[index].remaining -= taken
                left -= taken
                if account.lots[index].pending { pending -= taken } else { available -= taken }
                changes.append(LotChange(lotID: account.lots[index].id, delta: -taken))
            }
        }
        let (taken, others) = takeFromAvailableLots(left, &account)
        left -= taken
        available -= taken
        changes += others
        account.balance.available += available
        account.balance.pending += pending
        account.balance.debt += left
        account.lifetime.reversed += points
        decision.entries.append(entry(
            account: &account, id: "\(event.id)/\(rule)", time: event.time, kind: .reversed, source: source, causeID: event.id,
            orderID: orderID, refundID: refundID, points: -points, available: available, pending: pending, debt: left,
            lots: changes, details: []))
    }

    /// Asks for the expiry and warning timers of a new lot's expiry instant, unless a lot of
    /// the member already has them.
    private func noteExpiry(of lot: Lot, _ account: PointsAccount, _ decision: inout PointsDecision) {
        if !account.lots.contains(where: { $0.expiresAt == lot.expiresAt && $0.remaining > 0 }) {
            decision.expiries.insert(lot.expiresAt)
        }
    }

    private func newLot(
        _ account: inout PointsAccount, source: String, orderID: String?, earnedAt: EventTime, availableAt: EventTime,
        points: Int64, pending: Bool
    ) -> Lot {
        account.lotsCreated += 1
        return Lot(
            id: "L\(account.lotsCreated)", source: source, orderID: orderID, number: account.lotsCreated, earnedAt: earnedAt,
            availableAt: availableAt, expiresAt: expiry(availableAt: availableAt), points: points, remaining: points,
            pending: pending)
    }

    private func entry(
        account: inout PointsAccount, id: String, time: EventTime, kind: EntryKind, source: String, causeID: String,
        orderID: String?, refundID: String?, points: Int64, available: Int64, pending: Int64, debt: Int64,
        lots: [LotChange], details: [(String, String)]
    ) -> LedgerEntry {
        account.entries += 1
        return LedgerEntry(
            id: id, member: account.member, sequence: account.entries, time: time, kind: kind, source: source,
            causeID: causeID, orderID: orderID, refundID: refundID, points: points, availableDelta: available,
            pendingDelta: pending, debtDelta: debt, balanceAfter: account.balance, lots: lots,
            details: details.map { (key: $0.0, value: $0.1) })
    }

    private func refusal(
        _ event: PointsEvent, subject: String, reason: ReasonCode, orderID: String? = nil, refundID: String? = nil, detail: String? = nil
    ) -> Refusal {
        Refusal(
            id: "\(event.id)/refused", member: event.member, time: event.time, causeID: event.id, subject: subject,
            reason: reason, orderID: orderID, refundID: refundID, detail: detail)
    }
}
