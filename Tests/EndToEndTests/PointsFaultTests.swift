import Foundation
import LoyaltyDomain
import Messaging
import ReferenceProgram
import Testing

extension EndToEnd {
    /// The real `points` executable replaying a year for 1,000 members while things go wrong:
    /// a slow and failing broker, a machine whose cores are all busy, instances joining and
    /// leaving, and crashes. Each run's ledger equals, record for record and byte for byte, that
    /// of an undisturbed run of the same history.
    @Suite struct PointsFaultTests {
        /// Runs `yes > /dev/null` on every core until `stop`.
        final class CPUHog {
            private var processes: [Process] = []

            init() throws {
                for _ in 0..<ProcessInfo.processInfo.activeProcessorCount {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: "/usr/bin/yes")
                    process.standardOutput = FileHandle.nullDevice
                    try process.run()
                    processes.append(process)
                }
            }

            func stop() {
                for process in processes where process.isRunning {
                    process.terminate()
                    process.waitUntilExit()
                }
            }

            deinit { stop() }
        }

        /// Calls each step once, the first time the replay has applied its share of the events.
        final class Timeline {
            private var steps: [(share: Double, action: (PointsReplay.Run) throws -> Void)]
            let total: Int

            init(total: Int, _ steps: [(Double, (PointsReplay.Run) throws -> Void)]) {
                self.total = total
                self.steps = steps.map { (share: $0.0, action: $0.1) }
            }

            func advance(_ run: PointsReplay.Run, applied: Int64) throws {
                while let step = steps.first, Double(applied) >= step.share * Double(total) {
                    steps.removeFirst()
                    try step.action(run)
                }
            }

            var isDone: Bool { steps.isEmpty }
        }

        @Test func aYearUnderFaultsGivesTheLedgerOfAnUndisturbedRun() throws {
            let scenario = YearScenario(members: 1_000, seed: 11)
            let inputs = scenario.events.count
            let undisturbed = try PointsReplay.run(scenario.records, inputs: inputs)
            #expect(undisturbed.events.count > inputs / 2, "the ledger has content")

            // (a)–(c) The broker: fetches delayed 2.5 s, then down for 10 s, then errors on fetch,
            // produce and offset-commit requests, then every response delayed 2 s for 5 s.
            let brokerFaults = Timeline(total: inputs, [
                (0.1, { $0.broker.inject(.requestLatency(.fetch, milliseconds: 2_500, count: 20)) }),
                (0.3, { $0.broker.schedule([ScheduledFault(.down, forMilliseconds: 10_000)]) }),
                (0.5, { run in
                    for request in [KafkaRequest.fetch, .produce, .offsetCommit] {
                        run.broker.inject(.requestErrors(request, error: try kafkaErrorCode(named: "NOT_LEADER_FOR_PARTITION"), count: 5))
                    }
                }),
                (0.7, { $0.broker.schedule([ScheduledFault(.latency(milliseconds: 2_000), forMilliseconds: 5_000)]) }),
            ])
            let faulted = try PointsReplay.run(scenario.records, inputs: inputs) { try brokerFaults.advance($0, applied: $1) }
            #expect(brokerFaults.isDone)
            #expect(try PointsReplay.distinctDifferences(undisturbed, faulted) == [], "a slow, failing broker changes nothing")

            // (d) Every core busy for the whole run.
            let hog = try CPUHog()
            let busy = try PointsReplay.run(scenario.records, inputs: inputs)
            hog.stop()
            #expect(PointsReplay.differences(undisturbed, busy) == [], "a busy machine changes nothing, not even a byte")

            // (e) and (f) A second and a third instance joining and leaving, and three SIGKILLs.
            let storm = Timeline(total: inputs, [
                (0.10, { try $0.startExtra() }),
                (0.15, { try $0.startExtra() }),
                (0.20, { try $0.killAndRestartMain() }),
                (0.30, { $0.stopExtra() }),
                (0.40, { try $0.startExtra() }),
                (0.45, { try $0.killAndRestartMain() }),
                (0.55, { $0.stopExtra() }),
                (0.65, { $0.stopExtra() }),
                (0.70, { try $0.killAndRestartMain() }),
            ])
            let stormy = try PointsReplay.run(scenario.records, inputs: inputs) { try storm.advance($0, applied: $1) }
            #expect(storm.isDone)
            #expect(try PointsReplay.distinctDifferences(undisturbed, stormy) == [], "rebalances and crashes change nothing")
        }
    }
}
