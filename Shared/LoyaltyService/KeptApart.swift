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
}

/// Of one member in the current batch: whether some of its orders and refund ids are kept
/// apart, which names were looked up there (each once a batch) and what was found, so that the
/// batch's end writes back only what changed.
public struct ApartLookups<Order: Equatable> {
    public var ordersApart: Bool
    public var refundIDsApart: Bool
    public private(set) var ordersLookedUp: Set<String> = []
    public private(set) var refundIDsLookedUp: Set<String> = []
    /// The orders as they were found apart.
    public private(set) var ordersFound: [String: Order] = [:]
    public private(set) var refundIDsFound: Set<String> = []

    public init(ordersApart: Bool = false, refundIDsApart: Bool = false) {
        self.ordersApart = ordersApart
        self.refundIDsApart = refundIDsApart
    }

    /// The order `id` from apart (`read`), when the state lacks it, some orders are apart and
    /// it was not looked up before this batch.
    public mutating func findOrder(_ id: String, inState: Bool, read: (String) throws -> Order?) rethrows -> Order? {
        guard ordersApart, !inState, ordersLookedUp.insert(id).inserted, let order = try read(id) else { return nil }
        ordersFound[id] = order
        return order
    }

    /// Whether the refund id `id` was accepted and is kept apart (`isApart`), looked up as orders are.
    public mutating func findRefundID(_ id: String, inState: Bool, isApart: (String) throws -> Bool) rethrows -> Bool {
        guard refundIDsApart, !inState, refundIDsLookedUp.insert(id).inserted, try isApart(id) else { return false }
        refundIDsFound.insert(id)
        return true
    }
}
