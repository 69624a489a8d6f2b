import Foundation
import Basics
import Testing
@testable import ServiceKit

/// Where warm copies live (`STANDBY_REPLICAS`): every instance reads the same announcements and
/// must place each task's copies alike, never with its owner, on instances that are alive.
@Suite struct InstanceDirectoryTests {
    /// Standings after reading `announcements` (instance, tasks) of `points` in order.
    private func standings(_ announcements: [(String, [Int32])], service: String = "points") -> InstanceDirectory.Standings {
        var standings = InstanceDirectory.Standings(service: "points")
        for (instance, tasks) in announcements {
            let record = InstanceDirectory.announcement(service: service, address: nil, instance: instance, tasks: tasks)
            standings.read(key: record.key, value: record.value)
        }
        return standings
    }

    /// Which instances keep a copy of each task.
    private func holders(_ standings: InstanceDirectory.Standings, _ instances: [String], replicas: Int) -> [Int32: [String]] {
        var holders: [Int32: [String]] = [:]
        for instance in instances {
            for task in standings.standbyTasks(of: "points@\(instance)", replicas: replicas) { holders[task, default: []].append(instance) }
        }
        return holders.mapValues { $0.sorted() }
    }

    @Test func eachTaskIsCopiedOnTheInstancesAfterItsOwnerAndNeverOnItsOwner() {
        let directory = standings([("a", [0, 1, 2]), ("b", [3, 4]), ("c", [5, 6, 7])])
        #expect(directory.owners == [0: "points@a", 1: "points@a", 2: "points@a", 3: "points@b", 4: "points@b", 5: "points@c", 6: "points@c", 7: "points@c"])
        let one = holders(directory, ["a", "b", "c"], replicas: 1)
        #expect(one == [0: ["b"], 1: ["b"], 2: ["b"], 3: ["c"], 4: ["c"], 5: ["a"], 6: ["a"], 7: ["a"]])
        let two = holders(directory, ["a", "b", "c"], replicas: 2)
        #expect(two == [0: ["b", "c"], 1: ["b", "c"], 2: ["b", "c"], 3: ["a", "c"], 4: ["a", "c"], 5: ["a", "b"], 6: ["a", "b"], 7: ["a", "b"]])
        // More replicas than other instances: every other instance keeps one, the owner none.
        #expect(holders(directory, ["a", "b", "c"], replicas: 5) == two)
        #expect(holders(directory, ["a", "b", "c"], replicas: 0).isEmpty)
    }

    @Test func aLoneInstanceOrOneWithoutTasksKeepsNoCopy() {
        #expect(holders(standings([("a", [0, 1, 2, 3])]), ["a"], replicas: 1).isEmpty)
        // `d` announced no task (it starts, or there are more instances than tasks).
        let directory = standings([("a", [0, 1]), ("b", [2, 3]), ("d", [])])
        #expect(directory.standbyTasks(of: "points@d", replicas: 1).isEmpty)
        #expect(holders(directory, ["a", "b", "d"], replicas: 1) == [0: ["b"], 1: ["b"], 2: ["a"], 3: ["a"]])
    }

    /// A host that died without a word keeps its last announcement; once the others have
    /// announced its tasks, it owns none and leaves the ring, so copies go to the living.
    @Test func aDeadInstanceLeavesTheRingOnceItsTasksAreAnnouncedByOthers() {
        var directory = standings([("a", [0, 1]), ("b", [2, 3]), ("c", [4, 5])])
        #expect(directory.standbyTasks(of: "points@b", replicas: 1) == [0, 1])
        // `a` dies; `b` and `c` are given its tasks.
        for (instance, tasks) in [("b", [0, 2, 3] as [Int32]), ("c", [1, 4, 5])] {
            let record = InstanceDirectory.announcement(service: "points", address: nil, instance: instance, tasks: tasks)
            directory.read(key: record.key, value: record.value)
        }
        #expect(directory.owners == [0: "points@b", 1: "points@c", 2: "points@b", 3: "points@b", 4: "points@c", 5: "points@c"])
        #expect(holders(directory, ["a", "b", "c"], replicas: 1) == [0: ["c"], 1: ["b"], 2: ["c"], 3: ["c"], 4: ["b"], 5: ["b"]])
        // A task both claim goes to the later announcement.
        let late = InstanceDirectory.announcement(service: "points", address: nil, instance: "a", tasks: [1])
        directory.read(key: late.key, value: late.value)
        #expect(directory.owners[1] == "points@a")
    }

    @Test func anInstanceThatStopsAndOtherServicesLeaveNoMark() {
        var directory = standings([("a", [0, 1]), ("b", [2, 3])])
        let stopped = InstanceDirectory.announcement(service: "points", address: nil, instance: "b", tasks: [])
        directory.read(key: stopped.key, value: stopped.value)
        #expect(directory.standbyTasks(of: "points@a", replicas: 1).isEmpty, "alone again")
        let tiers = InstanceDirectory.announcement(service: "tiers", address: nil, instance: "c", tasks: [4, 5])
        directory.read(key: tiers.key, value: tiers.value)
        directory.read(key: Array("points@x".utf8), value: Array("not json".utf8))
        directory.read(key: Array("points@y".utf8), value: nil)
        #expect(directory.owners == [0: "points@a", 1: "points@a"])
    }

    /// An instance with an HTTP address announces under it, as member lookups expect, and the
    /// announcement's bytes are those it always had.
    @Test func anAnnouncementKeepsItsFormWithAnAddress() {
        let record = InstanceDirectory.announcement(service: "points", address: "10.0.0.7:8080", tasks: [3, 1])
        #expect(String(decoding: record.key, as: UTF8.self) == "points@10.0.0.7:8080")
        #expect(String(decoding: record.value, as: UTF8.self) == #"{"service":"points","address":"10.0.0.7:8080","tasks":[1,3]}"#)
        let named = InstanceDirectory.announcement(service: "points", address: nil, instance: "instance-1", tasks: [])
        #expect(String(decoding: named.key, as: UTF8.self) == "points@instance-1")
        #expect(String(decoding: named.value, as: UTF8.self) == #"{"service":"points","instance":"instance-1","tasks":[]}"#)
    }
}

/// Instances in the `task` layout may share a data directory, and so their task stores; an
/// instance keeping warm copies may not, since its copies are those files.
@Suite struct WarmCopiesDirectoryTests {
    @Test func anInstanceKeepingWarmCopiesHoldsItsDataDirectoryAlone() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        func loop(_ settings: [String: String]) throws -> ExactlyOnceLoop<CountingProcessor> {
            let environment = [
                "ACME_DATA_DIR": directory.path, "ACME_STORE_LAYOUT": "task", "ACME_CHANGELOG": "on", "ACME_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            ].merging(settings) { $1 }
            let configuration = try ServiceConfiguration.fromEnvironment(service: "counting", platform: .acme, environment: environment)
            let processor = CountingProcessor(inputTopics: ["in"], outputTopic: "out")
            processor.tasksAreIndependent = true
            return try ExactlyOnceLoop(configuration: configuration, processor: processor, logger: Logger(service: "counting", minimumLevel: .error), stop: StopSignal())
        }
        func refusal(_ settings: [String: String]) -> String? {
            do {
                _ = try loop(settings)
                return nil
            } catch let error as ConfigurationError {
                #expect(error.variable == "ACME_STANDBY_REPLICAS")
                return error.problem
            } catch {
                return "\(error)"
            }
        }
        var copying: ExactlyOnceLoop<CountingProcessor>? = try loop(["ACME_STANDBY_REPLICAS": "1"])
        #expect(refusal([:])?.contains("keeping warm copies holds the data directory") == true)
        #expect(refusal(["ACME_STANDBY_REPLICAS": "1"])?.contains("needs a data directory of its own") == true)
        _ = copying
        copying = nil
        // Without copies, instances share the directory; one with copies then cannot join them.
        let first = try loop([:])
        let second = try loop([:])
        #expect(refusal(["ACME_STANDBY_REPLICAS": "1"])?.contains("needs a data directory of its own") == true)
        withExtendedLifetime((first, second)) {}
    }
}
