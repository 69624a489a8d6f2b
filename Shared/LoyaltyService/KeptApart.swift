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
