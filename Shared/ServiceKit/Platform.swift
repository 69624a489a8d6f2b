/// What the platform a service belongs to hands the runtime: the topics the runtime writes on
/// the service's behalf, and the name the runtime puts on what it writes and reads. The runtime
/// has no name of its own; every platform built on it passes one.
public struct Platform: Sendable, Equatable {
    /// The platform's name, in lower case (`shop`, say). Events the runtime writes come from
    /// `<name>/<service>`, dead letters have the type `<name>.dead-letter`, metrics start with
    /// `<name>_`, consumer groups are `<name>-<service>`, the default data directory is
    /// `.<name>`, and the environment variables start with `<NAME>_`.
    public var name: String
    /// Where records that cannot be applied go, each with its reason.
    public var deadLetters: String
    /// Where instances announce their tasks and HTTP addresses (a compacted topic).
    public var instances: String
    /// The partition count of the co-partitioned input topics until the cluster says otherwise.
    public var partitionCount: Int32

    public init(name: String, deadLetters: String, instances: String, partitionCount: Int32) {
        self.name = name
        self.deadLetters = deadLetters
        self.instances = instances
        self.partitionCount = partitionCount
    }

    /// The name of an environment variable: `variable("DATA_DIR")` is `SHOP_DATA_DIR` for `shop`.
    public func variable(_ setting: String) -> String { name.uppercased() + "_" + setting }

    /// The CloudEvents source of what a service of the platform writes.
    public func source(of service: String) -> String { "\(name)/\(service)" }

    /// The CloudEvents type of a dead letter.
    public var deadLetterType: String { "\(name).dead-letter" }

    /// The prefix of every metric name.
    public var metricPrefix: String { "\(name)_" }

    /// The compacted topic a service's store changes go to when it keeps a changelog
    /// (`<name>.<service>.changelog`), from which a lost store is restored.
    public func changelog(of service: String) -> String { "\(name).\(service).changelog" }

    /// The default consumer group of a service.
    public func groupID(of service: String) -> String { "\(name)-\(service)" }
}
