import Foundation
import LoyaltyDomain
import Messaging
import Testing

extension EndToEndSecondLane {
    /// The same events, published to the input topics in two different interleavings, give
    /// byte-identical ledger output: the service applies its partitions in event-time order,
    /// whatever order the topics were written in.
    @Suite struct PointsDeterminismTests {
        @Test func twoInterleavingsGiveByteIdenticalLedgers() throws {
            let scenario = PointsScenario(members: 120, days: 40, seed: 7, duplicateShare: 0.01, badRecords: false, grants: true)
            // First: as the shop wrote them, in time order across topics.
            let inTimeOrder = scenario.records
            // Second: one topic after another, commands first, members last.
            let topicOrder = [Topics.pointsCommands.name, Topics.engagement.name, Topics.orders.name, Topics.members.name]
            let topicByTopic = topicOrder.flatMap { topic in scenario.records.filter { $0.topic == topic } }
            #expect(topicByTopic.count == inTimeOrder.count)
            #expect(topicByTopic.map(\.value) != inTimeOrder.map(\.value))
            #expect(scenario.derivedCommands > 0, "referrals exercise commands the service sends itself")

            let inputs = scenario.events.count + scenario.derivedCommands
            let first = try PointsReplay.run(inTimeOrder, inputs: inputs)
            let second = try PointsReplay.run(topicByTopic, inputs: inputs)
            #expect(first.events.count > scenario.events.count / 2, "the ledger has content")
            #expect(PointsReplay.differences(first, second) == [])
        }
    }
}
