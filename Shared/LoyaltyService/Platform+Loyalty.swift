import LoyaltyDomain
import ServiceKit

extension Platform {
    /// The loyalty platform: its name, dead-letter and instance-directory topics, and its
    /// partition count.
    public static let loyalty = Platform(
        name: "loyalty", deadLetters: Topics.deadLetters.name, instances: Topics.instances.name, partitionCount: Topics.partitionCount)
}
