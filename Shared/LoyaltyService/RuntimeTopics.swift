import LoyaltyDomain
import ServiceKit

extension RuntimeTopics {
    /// The platform's dead-letter and instance-directory topics, and its partition count.
    public static let loyalty = RuntimeTopics(
        deadLetters: Topics.deadLetters.name, instances: Topics.instances.name, partitionCount: Topics.partitionCount)
}
