/// What the owner of a task commits for other instances of its service that share its store
/// (docs/architecture.md, "Frontiers between instances").
public struct TaskFrontier: Sendable, Equatable {
    /// The merge key below which the task has nothing left to apply
    /// (``EventTimeMerger/frontier(of:)``): other instances apply nothing that sorts after it.
    public var key: MergeKey
    /// What the task can promise by itself (``ProgressMark/promise(of:streamTime:nextTimer:timersFireWithoutInput:)``),
    /// for the progress marks of the other instances: `none` for a service that publishes none.
    public var promise: TaskPromise

    public init(key: MergeKey, promise: TaskPromise) {
        self.key = key
        self.promise = promise
    }

    /// Nothing known: what a task given up in a rebalance has until its next owner commits.
    public static let unknown = TaskFrontier(key: .lowest, promise: .none)
}
