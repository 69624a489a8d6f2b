import Basics

/// How a member's stored state stays bounded while its history grows: the state keeps the latest
/// few of a growing collection (orders, refund ids) and the rest move to a table of their own,
/// read back only when an input names one. The rules still find what they look up in the state.
public enum KeptApart {
    /// How many of each collection a member's state keeps.
    public static let keptInState = 16

    /// The items beyond the `kept` last in `order`, first first: the ones to move apart. With an
    /// order that never changes for an item, the state keeps the same items however the inputs
    /// were batched.
    public static func overflow<Item>(
        _ items: some Collection<Item>, keeping kept: Int = keptInState, by order: (Item, Item) -> Bool
    ) -> [Item] {
        guard items.count > kept else { return [] }
        return Array(items.sorted(by: order).prefix(items.count - kept))
    }

    /// The order in which a member's orders move apart: the earliest first by time (which never
    /// changes for a paid order), then by id as bytes, as the tables apart key them. Orders are
    /// sorted by these two alone: sorting the orders themselves, through generic code, copies
    /// each through its type's value witnesses, and reads a key path's time through the runtime.
    public static func earliestFirst(_ left: (time: EventTime, id: String), _ right: (time: EventTime, id: String)) -> Bool {
        left.time != right.time ? left.time < right.time : left.id.exactlyPrecedes(right.id)
    }

    /// The ids of the orders beyond the `kept` latest (``earliestFirst(_:_:)``), earliest first.
    public static func overflowingOrders<Order>(
        _ orders: IDDictionary<Order>, keeping kept: Int = keptInState, movable: (Order) -> Bool = { _ in true }, time: (Order) -> EventTime
    ) -> [String] {
        guard orders.count > kept else { return [] }
        let keys = orders.compactMap { movable($0.value) ? (time: time($0.value), id: $0.key) : nil }
        return overflow(keys, keeping: kept, by: earliestFirst).map(\.id)
    }
}

/// Of one member in the current batch: whether some of its orders and refund ids are kept
/// apart, which names were looked up there (each once a batch) and what was found, so that the
/// batch's end writes back only what changed.
public struct ApartLookups<Order: Equatable> {
    public var ordersApart: Bool
    public var refundIDsApart: Bool
    /// By ids as bytes, as the tables apart key them.
    public private(set) var ordersLookedUp: IDSet = []
    public private(set) var refundIDsLookedUp: IDSet = []
    /// The orders as they were found apart.
    public private(set) var ordersFound: IDDictionary<Order> = [:]
    public private(set) var refundIDsFound: IDSet = []

    public init(ordersApart: Bool = false, refundIDsApart: Bool = false) {
        self.ordersApart = ordersApart
        self.refundIDsApart = refundIDsApart
    }

    /// The order `id` from apart (`read`), when the state lacks it, some orders are apart and
    /// it was not looked up before this batch.
    public mutating func findOrder(_ id: String, inState: Bool, read: (String) throws -> Order?) rethrows -> Order? {
        guard ordersApart, !inState, ordersLookedUp.insert(id), let order = try read(id) else { return nil }
        ordersFound[id] = order
        return order
    }

    /// Settles the orders a changed state is stored with: those found apart go back there (through
    /// `moveApart` only if they changed), and of the others, those `movable` beyond the state's
    /// share, the earliest first (``KeptApart/earliestFirst(_:_:)``), move there too. Returns
    /// whether the member has orders apart.
    public func settleOrders(
        _ orders: inout IDDictionary<Order>, movable: (Order) -> Bool = { _ in true }, time: (Order) -> EventTime,
        moveApart: (String, Order) throws -> Void
    ) rethrows -> Bool {
        for (id, found) in ordersFound.sortedByID() {
            if let kept = orders.removeValue(forID: id), kept != found { try moveApart(id, kept) }
        }
        var anyApart = ordersApart
        for id in KeptApart.overflowingOrders(orders, movable: movable, time: time) {
            guard let overflowing = orders.removeValue(forID: id) else { continue }
            try moveApart(id, overflowing)
            anyApart = true
        }
        return anyApart
    }

    /// Settles the refund ids a changed state is stored with, as `settleOrders` does orders: those
    /// found apart stay there, and beyond the state's share the first by id move there. Returns
    /// whether the member has refund ids apart.
    public func settleRefundIDs(_ ids: inout IDSet, moveApart: (String) throws -> Void) rethrows -> Bool {
        ids.subtract(refundIDsFound)
        var anyApart = refundIDsApart
        for id in KeptApart.overflow(Array(ids), by: { $0.exactlyPrecedes($1) }) {
            try moveApart(id)
            ids.remove(id)
            anyApart = true
        }
        return anyApart
    }

    /// Whether the refund id `id` was accepted and is kept apart (`isApart`), looked up as orders are.
    public mutating func findRefundID(_ id: String, inState: Bool, isApart: (String) throws -> Bool) rethrows -> Bool {
        guard refundIDsApart, !inState, refundIDsLookedUp.insert(id), try isApart(id) else { return false }
        refundIDsFound.insert(id)
        return true
    }
}
