import ReferenceProgram
import Testing
@testable import Basics
@testable import LoyaltyDomain

// Shared helpers for the points rules tests. Expected values in the tests are worked out by
// hand from DOMAIN.md; these helpers only drive the rules and collect what they decide.

/// An instant from an RFC 3339 literal written in a test (a typo is a test bug).
func at(_ text: String) -> EventTime {
    do {
        return try EventTime.parse(text)
    } catch {
        fatalError("bad time literal in a test: \(text): \(error)")
    }
}

/// The reference program (DOMAIN.md's figures).
func referenceProgram() throws -> Program {
    try Program.load(json: ReferenceProgram.bytes())
}

/// The points rules of the reference program.
func referenceRules() throws -> PointsRules {
    PointsRules(program: try referenceProgram())
}

/// One member's account driven through the rules, with everything decided kept in order.
struct PointsHarness {
    let rules: PointsRules
    let member: String
    var account: PointsAccount?
    var entries: [LedgerEntry] = []
    var refusals: [Refusal] = []
    var releases: [PendingRelease] = []
    var commands: [PointsCommand] = []
    /// Units of stocked rewards given out by `redeem`'s round trips, by reward.
    var unitsTaken: [String: Int64] = [:]
    private var counter = 0
    /// When set, `checkInvariants` runs after every step.
    var checkEveryStep = false

    init(member: String = "m1", rules: PointsRules) {
        self.member = member
        self.rules = rules
    }

    /// A harness whose member registered at `registeredAt`.
    static func registered(_ member: String = "m1", at registeredAt: String, rules: PointsRules) -> PointsHarness {
        var harness = PointsHarness(member: member, rules: rules)
        harness.apply(.registered(referrerID: nil), at: registeredAt, id: "reg-\(member)")
        return harness
    }

    /// Applies `input` at `time`; the event id is `id` or a fresh `e1`, `e2`, ….
    @discardableResult
    mutating func apply(_ input: PointsInput, at time: String, id: String? = nil) -> PointsDecision {
        apply(input, at: at(time), id: id)
    }

    @discardableResult
    mutating func apply(_ input: PointsInput, at time: EventTime, id: String? = nil) -> PointsDecision {
        counter += 1
        let event = PointsEvent(id: id ?? "e\(counter)", time: time, member: member, input: input)
        let decision = rules.apply(event, to: &account)
        record(decision)
        return decision
    }

    /// Fires the release timer of `lotID` at `time`.
    @discardableResult
    mutating func release(_ lotID: String, at time: String) -> PointsDecision {
        release(lotID, at: at(time))
    }

    @discardableResult
    mutating func release(_ lotID: String, at time: EventTime) -> PointsDecision {
        guard var current = account else {
            Issue.record("release of \(lotID) for an unregistered member")
            return PointsDecision()
        }
        let decision = rules.release(lotID: lotID, at: time, account: &current)
        account = current
        record(decision)
        return decision
    }

    /// Fires every release timer collected so far that is due at or before `time` and not yet fired.
    mutating func releaseDue(upTo time: EventTime) {
        let due = releases.filter { $0.due <= time }.sorted { $0.due < $1.due }
        releases.removeAll { $0.due <= time }
        for release in due { self.release(release.lotID, at: release.due) }
    }

    private mutating func record(_ decision: PointsDecision) {
        entries += decision.entries
        refusals += decision.refusals
        releases += decision.releases
        commands += decision.commands
        if checkEveryStep { checkInvariants() }
    }

    /// The account, which must exist.
    var acct: PointsAccount {
        guard let account else {
            Issue.record("member \(member) is not registered")
            return PointsAccount(member: member, registeredAt: EventTime(millis: 0))
        }
        return account
    }

    var balance: Balance { acct.balance }

    func lot(_ id: String) -> Lot? { acct.lots.first { $0.id == id } }

    /// DOMAIN.md's invariants of a member's points:
    /// - available + pending − debt equals the sum of ledger entries;
    /// - entry sequences are 1, 2, 3, …; each entry's balanceAfter is the running balance;
    /// - the last entry's balanceAfter is the account's balance;
    /// - available > 0 and debt > 0 never hold together;
    /// - lots explain available and pending;
    /// - lifetime earned = sum of earned entries; lifetime reversed = sum of reversals.
    func checkInvariants(sourceLocation: SourceLocation = #_sourceLocation) {
        guard let account else { return }
        let sum = entries.reduce(Int64(0)) { $0 + $1.points }
        #expect(account.balance.net == sum, "net balance is the sum of ledger entries", sourceLocation: sourceLocation)
        #expect(entries.map(\.sequence) == (0..<entries.count).map { Int64($0 + 1) },
                "entry sequences are 1, 2, 3, …", sourceLocation: sourceLocation)
        #expect(account.entries == Int64(entries.count), sourceLocation: sourceLocation)
        var running: Int64 = 0
        for entry in entries {
            running += entry.points
            #expect(entry.balanceAfter.net == running, "entry \(entry.sequence) balanceAfter", sourceLocation: sourceLocation)
            #expect(entry.points == entry.availableDelta + entry.pendingDelta - entry.debtDelta,
                    "entry \(entry.sequence) deltas add up to its points", sourceLocation: sourceLocation)
            #expect(!(entry.balanceAfter.available > 0 && entry.balanceAfter.debt > 0),
                    "entry \(entry.sequence): available and debt both above 0", sourceLocation: sourceLocation)
        }
        if let last = entries.last {
            #expect(last.balanceAfter == account.balance, "last entry's balanceAfter is the balance", sourceLocation: sourceLocation)
        }
        #expect(!(account.balance.available > 0 && account.balance.debt > 0), sourceLocation: sourceLocation)
        #expect(account.balance.available >= 0 && account.balance.pending >= 0 && account.balance.debt >= 0,
                sourceLocation: sourceLocation)
        let availableInLots = account.lots.filter { !$0.pending }.reduce(Int64(0)) { $0 + $1.remaining }
        let pendingInLots = account.lots.filter(\.pending).reduce(Int64(0)) { $0 + $1.remaining }
        #expect(availableInLots == account.balance.available, "available = sum of available lots", sourceLocation: sourceLocation)
        #expect(pendingInLots == account.balance.pending, "pending = sum of pending lots", sourceLocation: sourceLocation)
        let earned = entries.filter { $0.kind == .earned }.reduce(Int64(0)) { $0 + $1.points }
        let reversed = entries.filter { $0.kind == .reversed }.reduce(Int64(0)) { $0 - $1.points }
        #expect(account.lifetime.earned == earned, "lifetime earned", sourceLocation: sourceLocation)
        #expect(account.lifetime.reversed == reversed, "lifetime reversed", sourceLocation: sourceLocation)
    }

    /// Stands in for a redemption (not part of these rules): takes `points` from the available
    /// lots soonest-expiring first (then by creation), as DOMAIN.md's spending rule says.
    /// It makes no ledger entry, so a test that uses it does not check the entry-sum invariant.
    mutating func spend(_ points: Int64) {
        guard var current = account else { return }
        precondition(current.balance.available >= points)
        var left = points
        let order = current.lots.indices.filter { !current.lots[$0].pending }
            .sorted { (current.lots[$0].expiresAt, current.lots[$0].number) < (current.lots[$1].expiresAt, current.lots[$1].number) }
        for index in order where left > 0 {
            let taken = min(left, current.lots[index].remaining)
            current.lots[index].remaining -= taken
            left -= taken
        }
        current.lots.removeAll { $0.remaining == 0 }
        current.balance.available -= points
        account = current
    }
}

extension PointsHarness {
    /// An order without lines.
    @discardableResult
    mutating func pay(_ orderID: String, _ paidMinor: Int64, at time: String, lines: [OrderLine] = []) -> PointsDecision {
        apply(.orderPaid(OrderPaid(orderID: orderID, paidMinor: paidMinor, lines: lines)), at: time, id: "pay-\(orderID)-\(time)")
    }

    @discardableResult
    mutating func refund(_ orderID: String, _ refundID: String, _ refundMinor: Int64?, at time: String) -> PointsDecision {
        apply(.orderRefunded(OrderRefunded(orderID: orderID, refundID: refundID, refundMinor: refundMinor)), at: time)
    }

    @discardableResult
    mutating func grant(_ component: GrantComponent, _ points: Int64, order: String? = nil, campaign: String? = nil, at time: String) -> PointsDecision {
        apply(.grant(PointsGrant(component: component, points: points, orderID: order, campaignID: campaign)), at: time)
    }

    @discardableResult
    mutating func reverse(_ component: GrantComponent, _ points: Int64, order: String, refund: String, at time: String) -> PointsDecision {
        apply(.reversal(PointsReversal(component: component, points: points, orderID: order, refundID: refund)), at: time)
    }
}

/// The one refusal of a decision, with no entries and nothing else (a refusal changes nothing).
func onlyRefusal(_ decision: PointsDecision, sourceLocation: SourceLocation = #_sourceLocation) -> Refusal? {
    #expect(decision.entries.isEmpty, "a refusal makes no ledger entry", sourceLocation: sourceLocation)
    #expect(decision.releases.isEmpty, sourceLocation: sourceLocation)
    #expect(decision.commands.isEmpty, sourceLocation: sourceLocation)
    #expect(decision.refusals.count == 1, "exactly one refusal, got \(decision.refusals.map(\.reason))", sourceLocation: sourceLocation)
    return decision.refusals.first
}

/// The one entry of a decision that refused nothing.
func onlyEntry(_ decision: PointsDecision, sourceLocation: SourceLocation = #_sourceLocation) -> LedgerEntry? {
    #expect(decision.refusals.isEmpty, "unexpected refusals \(decision.refusals.map(\.reason))", sourceLocation: sourceLocation)
    #expect(decision.entries.count == 1, "exactly one entry, got \(decision.entries.count)", sourceLocation: sourceLocation)
    return decision.entries.first
}

// MARK: Spending, expiry and inactivity

extension PointsHarness {
    /// Points available at once, as one lot: a campaign reward of `points` granted at `time`.
    @discardableResult
    mutating func earnAtOnce(_ points: Int64, at time: String) -> PointsDecision {
        grant(.campaignReward, points, campaign: "test-credit", at: time)
    }

    /// A redemption, and for a stocked reward its round trip as the service makes it: the
    /// reservation decided by the reward's task (with `stockLeft` units left, or else the
    /// program's stock less what this harness gave out) and its answer applied. The decision
    /// returned is the two together, without the reservation.
    @discardableResult
    mutating func redeem(_ rewardID: String, quantity: Int64 = 1, at time: String, id: String? = nil,
                         stockLeft: (String) -> Int64? = { _ in nil }) -> PointsDecision {
        var decision = apply(.redeem(Redemption(rewardID: rewardID, quantity: quantity)), at: time, id: id)
        guard case .reserveStock(let reservation, let reservedAt)? = decision.commands.first else { return decision }
        decision.commands.removeFirst()
        commands.removeLast()
        let stock = rules.program.catalogue[reservation.rewardID]?.stock ?? 0
        let taken = stockLeft(reservation.rewardID).map { stock - $0 } ?? unitsTaken[reservation.rewardID, default: 0]
        let answer = rules.reserve(reservation, taken: taken)
        if answer.refusal == nil { unitsTaken[reservation.rewardID, default: 0] += reservation.quantity }
        let answered = apply(.stockAnswer(answer), at: reservedAt, id: "stock-answer/\(reservation.requestID)")
        decision.entries += answered.entries
        decision.refusals += answered.refusals
        decision.commands += answered.commands
        return decision
    }

    @discardableResult
    mutating func cashOffset(_ points: Int64, order orderID: String, orderMinor: Int64, at time: String, id: String? = nil) -> PointsDecision {
        apply(.cashOffset(CashOffset(orderID: orderID, orderMinor: orderMinor, points: points)), at: time, id: id)
    }

    @discardableResult
    mutating func transfer(_ points: Int64, to recipient: String, at time: String, id: String? = nil) -> PointsDecision {
        apply(.transfer(Transfer(recipient: recipient, points: points)), at: time, id: id)
    }

    @discardableResult
    mutating func adjust(_ points: Int64, reason: String?, at time: String, id: String? = nil) -> PointsDecision {
        apply(.adjust(Adjustment(points: points, reason: reason)), at: time, id: id)
    }

    /// Applies a transfer command addressed to this member (a credit to the recipient, or a
    /// give-back to the sender) at the time it carries, as the points service does.
    @discardableResult
    mutating func deliver(_ command: PointsCommand, sourceLocation: SourceLocation = #_sourceLocation) -> PointsDecision {
        switch command {
        case .transferCredit(let recipient, let leg, let time):
            #expect(recipient == member, "credit for \(recipient) delivered to \(member)", sourceLocation: sourceLocation)
            return apply(.transferCredit(leg), at: time, id: "\(leg.transferID)/credit")
        case .transferReturned(let sender, let leg, let time):
            #expect(sender == member, "give-back for \(sender) delivered to \(member)", sourceLocation: sourceLocation)
            return apply(.transferReturned(leg), at: time, id: "\(leg.transferID)/returned")
        case .referralReward(let referrer, let reward, let time):
            #expect(referrer == member, sourceLocation: sourceLocation)
            return apply(.referralReward(reward), at: time)
        case .answerStock(let asker, let answer, let time):
            #expect(asker == member, sourceLocation: sourceLocation)
            return apply(.stockAnswer(answer), at: time, id: "stock-answer/\(answer.requestID)")
        case .reserveStock:
            Issue.record("a reservation goes to its reward's task, not to a member", sourceLocation: sourceLocation)
            return PointsDecision()
        }
    }

    /// Fires the expiry timer of `expiresAt`.
    @discardableResult
    mutating func expire(at expiresAt: String) -> PointsDecision {
        guard var current = account else {
            Issue.record("expiry for an unregistered member")
            return PointsDecision()
        }
        let decision = rules.expire(at: at(expiresAt), account: &current)
        account = current
        record(decision)
        return decision
    }

    /// Fires the expiry warning timer of `expiresAt` at `warnedAt`.
    func warn(of expiresAt: String, at warnedAt: String) -> PointsDecision {
        rules.warnOfExpiry(at: at(expiresAt), warnedAt: at(warnedAt), account: acct)
    }

    /// Fires an inactivity timer due at `due`.
    @discardableResult
    mutating func deduct(at due: String) -> PointsDecision {
        guard var current = account else {
            Issue.record("inactivity deduction for an unregistered member")
            return PointsDecision()
        }
        let decision = rules.deductForInactivity(at: at(due), account: &current)
        account = current
        record(decision)
        return decision
    }

    /// `checkInvariants`, plus what the spending, expiry and inactivity rules must keep:
    /// no lot below 0 (and no empty lot kept), and each lifetime figure equals its entries.
    func checkLifecycleInvariants(sourceLocation: SourceLocation = #_sourceLocation) {
        checkInvariants(sourceLocation: sourceLocation)
        guard let account else { return }
        #expect(account.lots.allSatisfy { $0.remaining > 0 && $0.remaining <= $0.points }, "lots hold 1…points",
                sourceLocation: sourceLocation)
        #expect(Set(account.lots.map(\.id)).count == account.lots.count, "lot ids are unique", sourceLocation: sourceLocation)
        func total(_ kind: EntryKind) -> Int64 { entries.filter { $0.kind == kind }.reduce(Int64(0)) { $0 + $1.points } }
        let lifetime = account.lifetime
        #expect(lifetime.redeemed == -total(.redeemed), "lifetime redeemed", sourceLocation: sourceLocation)
        #expect(lifetime.cashOffset == -total(.cashOffset), "lifetime cash offset", sourceLocation: sourceLocation)
        #expect(lifetime.transferredOut == -total(.transferredOut), "lifetime transferred out", sourceLocation: sourceLocation)
        #expect(lifetime.transferredIn == total(.transferredIn), "lifetime transferred in", sourceLocation: sourceLocation)
        #expect(lifetime.givenBack == total(.returned), "lifetime given back", sourceLocation: sourceLocation)
        #expect(lifetime.expired == -total(.expired), "lifetime expired", sourceLocation: sourceLocation)
        #expect(lifetime.deducted == -total(.deducted), "lifetime deducted", sourceLocation: sourceLocation)
        let adjusted = entries.filter { $0.kind == .adjusted }
        #expect(lifetime.adjustedUp == adjusted.filter { $0.points > 0 }.reduce(Int64(0)) { $0 + $1.points },
                "lifetime adjusted up", sourceLocation: sourceLocation)
        #expect(lifetime.adjustedDown == adjusted.filter { $0.points < 0 }.reduce(Int64(0)) { $0 - $1.points },
                "lifetime adjusted down", sourceLocation: sourceLocation)
    }
}
