import Foundation

/// Why an event's data cannot be read; the service dead-letters it with `code`.
public struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `unknown-type` or `invalid-event`.
    public var code: ReasonCode
    public var detail: String

    public init(code: ReasonCode, detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code): \(detail)" }
}

extension PointsInput {
    /// The largest amount an order or refund may carry (one trillion CNY in fen): beyond any
    /// real order, and small enough that every points formula stays within 64-bit integers.
    public static let maximumAmountMinor: Int64 = 100_000_000_000_000

    /// Reads the data of an event of `type`.
    public static func decode(type: String, data: JSONValue) throws(InputError) -> PointsInput {
        let object = data.objectValue ?? JSONObject()
        if !data.isNull && data.objectValue == nil {
            throw InputError(code: .invalidEvent, detail: "data must be a JSON object")
        }
        do {
            return try decodeFields(type: type, object)
        } catch let error as InputError {
            throw error
        } catch let error as JSONFieldError {
            throw InputError(code: .invalidEvent, detail: "data.\(error.description)")
        } catch {
            throw InputError(code: .invalidEvent, detail: "\(error)")
        }
    }

    private static func decodeFields(type: String, _ data: JSONObject) throws -> PointsInput {
        switch type {
        case EventType.memberRegistered:
            return .registered(referrerID: try nonEmpty(data.optionalString("referrerId"), "referrerId"))
        case EventType.memberUpdated:
            return .memberUpdated
        case EventType.memberClosed:
            return .memberClosed
        case EventType.orderPaid:
            let orderID = try required(data.string("orderId"), "orderId")
            let paid = try data.int64("paidMinor")
            guard paid > 0, paid <= maximumAmountMinor else {
                throw InputError(code: .invalidEvent, detail: "data.paidMinor must be between 1 and \(maximumAmountMinor)")
            }
            var lines: [OrderLine] = []
            for (index, raw) in (try data.optionalArray("lines") ?? []).enumerated() {
                let path = "lines[\(index)]"
                guard let line = raw.objectValue else { throw InputError(code: .invalidEvent, detail: "data.\(path) must be an object") }
                let linePaid = try line.int64("paidMinor", at: path)
                guard linePaid >= 0, linePaid <= maximumAmountMinor else {
                    throw InputError(code: .invalidEvent, detail: "data.\(path).paidMinor must be between 0 and \(maximumAmountMinor)")
                }
                lines.append(OrderLine(category: try line.optionalString("category", at: path) ?? "", paidMinor: linePaid))
            }
            guard lines.count <= 10_000, lines.reduce(0, { $0 + $1.paidMinor }) <= maximumAmountMinor else {
                throw InputError(code: .invalidEvent, detail: "data.lines: at most 10000 lines adding up to at most \(maximumAmountMinor)")
            }
            return .orderPaid(OrderPaid(orderID: orderID, paidMinor: paid, lines: lines))
        case EventType.orderRefunded:
            return .orderRefunded(OrderRefunded(
                orderID: try required(data.string("orderId"), "orderId"),
                refundID: try required(data.string("refundId"), "refundId"),
                refundMinor: data["refundMinor"]?.int64Value))
        case EventType.checkedIn:
            return .checkedIn
        case EventType.reviewPosted:
            return .reviewPosted
        case EventType.contentShared:
            return .contentShared
        case EventType.taskCompleted:
            return .taskCompleted(task: try required(data.string("task"), "task"))
        case EventType.pointsGrant, EventType.pointsReverse:
            let componentText = try data.string("component")
            guard let component = GrantComponent(rawValue: componentText) else {
                throw InputError(code: .invalidEvent, detail: "data.component: unknown component \(componentText)")
            }
            let points = try data.int64("points")
            guard points > 0, points <= maximumAmountMinor else {
                throw InputError(code: .invalidEvent, detail: "data.points must be between 1 and \(maximumAmountMinor)")
            }
            if type == EventType.pointsGrant {
                let orderID = try nonEmpty(data.optionalString("orderId"), "orderId")
                if component.belongsToOrder && orderID == nil {
                    throw InputError(code: .invalidEvent, detail: "data.orderId is required for a \(component.rawValue) grant")
                }
                return .grant(PointsGrant(
                    component: component, points: points, orderID: orderID,
                    campaignID: try nonEmpty(data.optionalString("campaignId"), "campaignId")))
            }
            guard component.belongsToOrder else {
                throw InputError(code: .invalidEvent, detail: "data.component: only order components can be reversed")
            }
            return .reversal(PointsReversal(
                component: component, points: points, orderID: try required(data.string("orderId"), "orderId"),
                refundID: try required(data.string("refundId"), "refundId")))
        case EventType.referralReward:
            return .referralReward(ReferralReward(
                refereeID: try required(data.string("refereeId"), "refereeId"),
                registrationID: try required(data.string("registrationId"), "registrationId")))
        case EventType.redeem:
            return .redeem(Redemption(rewardID: try required(data.string("rewardId"), "rewardId"), quantity: try quantity(data)))
        case EventType.cashOffset:
            return .cashOffset(CashOffset(
                orderID: try required(data.string("orderId"), "orderId"),
                orderMinor: try amount(data.int64("orderMinor"), "orderMinor"),
                points: try amount(data.int64("points"), "points")))
        case EventType.transfer:
            return .transfer(Transfer(
                recipient: try required(data.string("toMemberId"), "toMemberId"), points: try amount(data.int64("points"), "points")))
        case EventType.adjust:
            let points = try data.int64("points")
            guard points != 0, abs(points) <= maximumAmountMinor else {
                throw InputError(code: .invalidEvent, detail: "data.points must be non-zero and at most \(maximumAmountMinor) either way")
            }
            return .adjust(Adjustment(points: points, reason: try operatorReason(data)))
        case EventType.releaseHeld:
            return .releaseHeld(HeldRelease(requestID: try required(data.string("requestId"), "requestId"), reason: try operatorReason(data)))
        case EventType.openingBalance:
            let system = try required(data.string("system"), "system")
            let raw = try data.optionalArray("lots") ?? []
            guard (1...OpeningBalance.maximumLots).contains(raw.count) else {
                throw InputError(code: .invalidEvent, detail: "data.lots: from 1 to \(OpeningBalance.maximumLots) lots")
            }
            var lots: [OpeningBalance.ImportedLot] = []
            for (index, value) in raw.enumerated() {
                let path = "lots[\(index)]"
                guard let lot = value.objectValue else { throw InputError(code: .invalidEvent, detail: "data.\(path) must be an object") }
                let points = try lot.int64("points", at: path)
                guard points > 0, points <= OpeningBalance.maximumLotPoints else {
                    throw InputError(code: .invalidEvent, detail: "data.\(path).points must be between 1 and \(OpeningBalance.maximumLotPoints)")
                }
                let expiresText = try lot.string("expiresAt", at: path)
                let expiresAt: EventTime
                do { expiresAt = try EventTime.parse(expiresText) } catch {
                    throw InputError(code: .invalidEvent, detail: "data.\(path).expiresAt: \(error)")
                }
                lots.append(.init(points: points, expiresAt: expiresAt))
            }
            return .openingBalance(OpeningBalance(system: system, lots: lots))
        case EventType.transferCredit, EventType.transferReturned:
            let counterpartField = type == EventType.transferCredit ? "fromMemberId" : "toMemberId"
            let leg = TransferLeg(
                counterpart: try required(data.string(counterpartField), counterpartField),
                transferID: try required(data.string("transferId"), "transferId"),
                points: try amount(data.int64("points"), "points"))
            return type == EventType.transferCredit ? .transferCredit(leg) : .transferReturned(leg)
        case EventType.stockReservation:
            return .stockReservation(StockReservation(
                rewardID: try required(data.string("rewardId"), "rewardId"), quantity: try quantity(data),
                member: try required(data.string("memberId"), "memberId"), requestID: try required(data.string("requestId"), "requestId")))
        case EventType.stockAnswer:
            // A refusal's reason is one the owner gives; anything else is no answer of its.
            let refusal = try nonEmpty(data.optionalString("refusal"), "refusal").map(ReasonCode.init(rawValue:))
            if let refusal, !StockAnswer.refusals.contains(refusal) {
                throw InputError(code: .invalidEvent, detail: "data.refusal: \(refusal) is not a reason a reward's task refuses for")
            }
            return .stockAnswer(StockAnswer(
                rewardID: try required(data.string("rewardId"), "rewardId"), quantity: try quantity(data),
                requestID: try required(data.string("requestId"), "requestId"), refusal: refusal))
        default:
            throw InputError(code: .unknownType, detail: "the points service does not know event type \(type)")
        }
    }

    /// Units of a reward: 1 when not given, at most 1,000.
    private static func quantity(_ data: JSONObject) throws -> Int64 {
        let quantity = try data.optionalInt64("quantity") ?? 1
        guard (1...1000).contains(quantity) else { throw InputError(code: .invalidEvent, detail: "data.quantity must be from 1 to 1000") }
        return quantity
    }

    /// An operator's `reason`, trimmed; nil when missing or blank (the rules refuse it
    /// `missing-reason`, so the refusal is on the ledger rather than a dead letter).
    private static func operatorReason(_ data: JSONObject) throws -> String? {
        let reason = try data.optionalString("reason")?.trimmingCharacters(in: .whitespacesAndNewlines)
        return reason?.isEmpty == true ? nil : reason
    }

    private static func required(_ text: String, _ field: String) throws -> String {
        guard !text.isEmpty else { throw InputError(code: .invalidEvent, detail: "data.\(field) must not be empty") }
        return text
    }

    private static func amount(_ value: Int64, _ field: String) throws -> Int64 {
        guard value > 0, value <= maximumAmountMinor else {
            throw InputError(code: .invalidEvent, detail: "data.\(field) must be between 1 and \(maximumAmountMinor)")
        }
        return value
    }

    private static func nonEmpty(_ text: String?, _ field: String) throws -> String? {
        guard let text else { return nil }
        return try required(text, field)
    }
}
