import Foundation
import Testing

extension EndToEndSecondLane {
    /// The `loyalty` command line: help that does nothing else, errors that say what is wrong.
    @Suite struct CLITests {
        func run(_ arguments: [String], in directory: URL, environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
            let log = directory.deletingLastPathComponent().appendingPathComponent("cli-\(UUID().uuidString).log")
            defer { try? FileManager.default.removeItem(at: log) }
            let process = ServiceProcess(
                name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path, "LOYALTY_BOOTSTRAP_SERVERS": "127.0.0.1:1"].merging(environment) { $1 },
                log: log)
            try process.startWith(arguments: arguments)
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            let status = process.stop()
            return (status, try String(contentsOf: log, encoding: .utf8))
        }

        @Test func everyCommandsHelpExitsZeroAndChangesNothingOnDisk() throws {
            let parent = try temporaryDirectory("cli-help")
            defer { try? FileManager.default.removeItem(at: parent) }
            let directory = parent.appendingPathComponent("data")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try "keep".write(to: directory.appendingPathComponent("points.sqlite"), atomically: true, encoding: .utf8)
            let commands = ["demo", "bench", "broker", "dev", "flood", "fault", "publish", "adjust", "release-held", "import-balances", "campaigns", "dlq", "status", "member", "contact", "report", "probe", "tail", "topics"]
            for command in commands {
                for flag in ["--help", "-h"] {
                    let (status, output) = try run([command, flag], in: directory)
                    #expect(status == 0, "\(command) \(flag): \(output)")
                    #expect(output.contains("usage: loyalty \(command)"), "\(command) \(flag) prints its usage: \(output)")
                }
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["points.sqlite"], "nothing made, nothing removed")
            #expect(try String(contentsOf: directory.appendingPathComponent("points.sqlite"), encoding: .utf8) == "keep")
        }

        @Test func errorsNameWhatIsWrong() throws {
            let directory = try temporaryDirectory("cli-errors")
            defer { try? FileManager.default.removeItem(at: directory) }
            let missing = try run(["publish", "/nonexistent/events.jsonl"], in: directory)
            #expect(missing.status == 1 && missing.output.contains("cannot read /nonexistent/events.jsonl"), "\(missing.output)")
            let topic = try run(["tail", "no.such.topic"], in: directory)
            #expect(topic.status == 1 && topic.output.contains("no topic no.such.topic"), "\(topic.output)")
            let file = directory.appendingPathComponent("events.jsonl")
            try """
                {"specversion":"1.0","id":"e1","source":"shop","type":"order.paid","time":"2026-03-01T10:00:00+08:00","subject":"a","data":{"orderId":"O","paidMinor":100}}
                {"specversion":"1.0","id":"e2","source":"shop","type":"order.paid","time":"2026-03-01T10:00:00+08:00","subject":"a","data":{"orderId":"O2","paidMinor":-5}}
                """.write(to: file, atomically: true, encoding: .utf8)
            let invalid = try run(["publish", file.path], in: directory)
            #expect(invalid.status == 1 && invalid.output.contains("events.jsonl:2: does not match its schema (docs/schemas/loyalty.orders/order.paid.schema.json): data/paidMinor: -5 is less than 1"), "\(invalid.output)")
            let unknown = try run(["frobnicate"], in: directory)
            #expect(unknown.status == 1 && unknown.output.contains("unknown command frobnicate"))
            let adjust = try run(["adjust", "alice", "50"], in: directory)
            #expect(adjust.status == 1 && adjust.output.contains("--reason is required"), "\(adjust.output)")
            let release = try run(["release-held", "alice"], in: directory)
            #expect(release.status == 1 && release.output.contains("expected a member and the id of the redemption"), "\(release.output)")
            let anonymous = try run(["release-held", "alice", "x1", "--reason", "answer lost"], in: directory)
            #expect(anonymous.status == 1 && anonymous.output.contains("--operator is required"), "\(anonymous.output)")
        }
    }
}
