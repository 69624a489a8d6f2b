import Foundation
import LoyaltyDomain
import LoyaltyService
import Messaging
import ServiceKit

/// `loyalty`: the operator's command line.
let usage = """
    usage: loyalty <command> [options]

    commands:
      demo                 start the embedded broker and every service, publish a sample stream of
                           members, orders, refunds and check-ins, and print each member's balance
                           and ledger summary
      broker [--reset-state] [--fault SPEC]...
                           run the embedded broker (librdkafka's mock cluster) until Ctrl-C, with
                           every catalogue topic; its address goes to <data dir>/broker.address
      dev [--reset-state] [--fault SPEC]...
                           run the embedded broker and every service until Ctrl-C
      fault SPEC           inject a fault (latency, broker down, request errors) into the running
                           broker; `loyalty fault --help` lists them
      bench [--events N] [--members N] [--rate N] [--latency-seconds N] [--only SECTION]...
                           measure the points pipeline against the raw Kafka and SQLite ceilings,
                           the four services, simulate, scaling and a large store
                           (build with -c release first; `loyalty bench --help` lists the options)
      flood [--orders N] [--members N]
                           publish more orders than the embedded broker keeps while points runs, and
                           account for every one: read, or named as lost by the service
      publish <file>       publish CloudEvents (one JSON object per line) to the topic of their type
      adjust <member> <points> --reason TEXT --operator ID [--at TIME]
                           correct a member's points (either way), signed with the command key
      release-held <member> <request id> --reason TEXT --operator ID [--at TIME]
                           give back the points set aside for a redemption whose stock answer was
                           lost (dead-lettered); signed with the command key
      import-balances <file> --system NAME --operator ID --at TIME
                           bring members' balances over from the shop's earlier system, as lots
                           with their own expiry (signed; one per member; a re-run changes nothing)
      dlq list [--reason R] [--since TIME] | show <id> | redrive <id>... | --reason R
                           list dead letters, show one with its original record, send records
                           back to their topics once the cause is fixed
      status               per service and partition: stored offset, end, lag, stream time
      member <id> [--as-of TIME] [--json]
                           one member as the services see them (balance, lots, entries with their
                           causes, tier, campaigns, messages), from their HTTP APIs
      report [--as-of TIME] [--locale en|zh-CN] [--out FILE]
                           the points-health report as one HTML file: flows per month, liability and
                           its expiry forecast, tiers, campaigns' cost and uplift, dead letters
      replay <service> [--store FILE] [--into DIR]
                           rebuild a service's store from the topics and compare it with the store
                           in use, table by table: "the same", or the first difference
      simulate --history FILE|kafka [--program FILE] [--campaigns FILE] [--baseline in-force] [--out DIR]
                           run a history through all four services' rules in this process, with the
                           rules in force or proposed ones, beside a baseline; figures and end states
      contact <member> <channel>
                           the address a sender delivers a message to (messages carry none); fails
                           once the member was closed and their contact data erased
      campaigns publish <file> [--from <time>] | retire <id> [--from <time>] | list | show <id>
                           publish, retire and list campaign definitions; show a campaign's results
      tail <topic>         print a topic's records from the beginning until Ctrl-C
      topics               list the topic catalogue

    environment: LOYALTY_DATA_DIR (default .loyalty), LOYALTY_BOOTSTRAP_SERVERS (default: the
    embedded broker's address file), LOYALTY_COMMAND_KEYS (default: <data dir>/command-keys);
    see docs/operations.md.
    """

/// Writes a line at once (unbuffered), so `loyalty dev` and `broker` report as things happen
/// even into a pipe or a file.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let arguments = Array(CommandLine.arguments.dropFirst())
let dataDirectory = ProcessInfo.processInfo.environment["LOYALTY_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? ".loyalty"

/// The keys the CLI signs operator commands with: LOYALTY_COMMAND_KEYS, or the data directory's.
func commandKeys() throws -> CommandKeys {
    try CommandKeys.fromEnvironment(ProcessInfo.processInfo.environment, dataDirectory: dataDirectory, platform: .loyalty)
}

func bootstrapServers() throws -> String {
    if let servers = ProcessInfo.processInfo.environment["LOYALTY_BOOTSTRAP_SERVERS"], !servers.isEmpty { return servers }
    if let address = EmbeddedBrokerAddress.read(dataDirectory: dataDirectory) { return address }
    throw CLIError("no broker address: start `loyalty broker` or set LOYALTY_BOOTSTRAP_SERVERS")
}

/// Blocks until SIGINT or SIGTERM.
func waitForStop(_ stop: StopSignal, whileChildrenRun children: ChildProcesses? = nil) {
    while !stop.isRequested {
        if let exited = children?.exited {
            FileHandle.standardError.write(Data("loyalty: \(exited.name) exited with status \(exited.status)\n".utf8))
            return
        }
        usleep(100_000)
    }
}

/// Each command's help: `loyalty <command> --help` prints it and does nothing else.
let commandHelp: [String: String] = [
    "demo": "usage: loyalty demo\n  start an embedded broker and every service in a temporary directory, publish a sample stream,\n  print each member's balance, tier, campaigns, messages and ledger, and stop everything",
    "bench": Bench.usage + "\n  measure the points pipeline, and all four services together (in bulk, then at a steady rate), against the raw Kafka and SQLite ceilings; then loyalty simulate, one instance against two, and the points service with a million members (build with -c release first)",
    "broker": BrokerCommand.brokerUsage,
    "dev": BrokerCommand.devUsage,
    "flood": Flood.usage,
    "fault": BrokerCommand.faultUsage,
    "publish": "usage: loyalty publish <file>\n  publish CloudEvents (one JSON object per line) to the input topic of their type, keyed by subject;\n  every line is checked first, and nothing is sent if one is wrong",
    "adjust": Adjust.usage,
    "release-held": ReleaseHeld.usage + "\n  give back the points set aside for a redemption of a stocked reward whose reservation or answer was\n  dead-lettered (the request id is in `loyalty member <id>`'s heldRedemptions); signed with the command key",
    "import-balances": ImportBalances.usage,
    "campaigns": CampaignCommands.usage,
    "dlq": DeadLetterCommands.usage,
    "status": "usage: loyalty status\n  per service and partition: stored offset, lag and stream time, from each service's /metrics",
    "member": MemberCommand.usage,
    "contact": ContactCommand.usage,
    "report": ReportCommand.usage,
    "replay": ReplayCommand.usage,
    "simulate": SimulateCommand.usage,
    "tail": "usage: loyalty tail <topic>\n  print a topic's records from the beginning until Ctrl-C (`loyalty topics` lists them)",
    "probe": "usage: loyalty probe <path>\n  GET <path> (e.g. /ready) from the service API at LOYALTY_HTTP_ADDRESS; exit 0 on 200 (container healthchecks)",
    "topics": "usage: loyalty topics\n  list the topic catalogue: name, partitions, compacted or stream, key, summary",
]

do {
    if let command = arguments.first, let help = commandHelp[command], arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
        print(help)
        exit(0)
    }
    switch arguments.first {
    case "demo":
        try Demo.run()
    case "bench":
        try Bench.run(arguments: Array(arguments.dropFirst()))
    case "broker":
        guard let options = try BrokerCommand.parse(Array(arguments.dropFirst()), usage: BrokerCommand.brokerUsage) else { break }
        let stop = StopSignal()
        stop.install()
        let broker = try BrokerCommand.startBroker(options, dataDirectory: dataDirectory, stop: stop)
        say("embedded broker on \(broker.bootstrapServers) (written to \(EmbeddedBrokerAddress.path(dataDirectory: dataDirectory))); Ctrl-C stops it")
        waitForStop(stop)
        BrokerCommand.stopBroker(dataDirectory: dataDirectory)
    case "dev":
        guard let options = try BrokerCommand.parse(Array(arguments.dropFirst()), usage: BrokerCommand.devUsage) else { break }
        let stop = StopSignal()
        stop.install()
        let broker = try BrokerCommand.startBroker(options, dataDirectory: dataDirectory, stop: stop)
        say("embedded broker on \(broker.bootstrapServers)")
        let children = ChildProcesses()
        for name in ServiceExecutables.names {
            // Each service's API on a free local port, written to <data dir>/<service>.http for `loyalty member`.
            try children.start(name, environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": dataDirectory, "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0",
            ], log: nil)
            say("started \(name)")
        }
        say("running; Ctrl-C stops everything")
        waitForStop(stop, whileChildrenRun: children)
        let failed = children.stopAll()
        BrokerCommand.stopBroker(dataDirectory: dataDirectory)
        if !failed.isEmpty { throw CLIError("services that did not stop cleanly: \(failed.joined(separator: ", "))") }
    case "flood":
        try Flood.run(arguments: Array(arguments.dropFirst()))
    case "fault":
        try BrokerCommand.fault(Array(arguments.dropFirst()), dataDirectory: dataDirectory)
    case "publish":
        guard arguments.count == 2 else { throw CLIError(commandHelp["publish"]!) }
        guard FileManager.default.isReadableFile(atPath: arguments[1]) else { throw CLIError("cannot read \(arguments[1])") }
        let published = try Publisher.publishFile(arguments[1], bootstrapServers: try bootstrapServers())
        print("published \(published) events")
    case "adjust":
        let adjustment = try Adjust.parse(Array(arguments.dropFirst()))
        try OperatorCommand.publish(Adjust.event(adjustment), keys: try commandKeys(), bootstrapServers: try bootstrapServers())
        print("published adjustment \(adjustment.id): \(adjustment.points) points for \(adjustment.member)")
    case "release-held":
        let release = try ReleaseHeld.parse(Array(arguments.dropFirst()))
        try OperatorCommand.publish(ReleaseHeld.event(release), keys: try commandKeys(), bootstrapServers: try bootstrapServers())
        print("published release \(release.id): the points set aside for \(release.requestID) of \(release.member)")
    case "import-balances":
        try ImportBalances.run(Array(arguments.dropFirst()), keys: commandKeys, bootstrapServers: bootstrapServers)
    case "dlq":
        try DeadLetterCommands.run(Array(arguments.dropFirst()), bootstrapServers: bootstrapServers)
    case "status":
        try StatusCommand.run(Array(arguments.dropFirst()), dataDirectory: dataDirectory)
    case "probe":
        // For container healthchecks: GET a path of this container's service API, 0 on 200.
        guard arguments.count == 2, arguments[1].hasPrefix("/") else { throw CLIError(commandHelp["probe"]!) }
        guard let address = ProcessInfo.processInfo.environment["LOYALTY_HTTP_ADDRESS"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw CLIError("probe: LOYALTY_HTTP_ADDRESS is not set")
        }
        let (status, body) = try HTTPClient.get(address, arguments[1], timeoutSeconds: 4)
        guard status == 200 else { throw CLIError("probe: \(arguments[1]) answered \(status): \(String(decoding: body, as: UTF8.self))") }
    case "member":
        try MemberCommand.run(Array(arguments.dropFirst()), dataDirectory: dataDirectory)
    case "contact":
        try ContactCommand.run(Array(arguments.dropFirst()), dataDirectory: dataDirectory)
    case "report":
        try ReportCommand.run(Array(arguments.dropFirst()), bootstrapServers: bootstrapServers)
    case "replay":
        exit(try ReplayCommand.run(Array(arguments.dropFirst()), dataDirectory: dataDirectory, bootstrapServers: bootstrapServers))
    case "simulate":
        try SimulateCommand.run(Array(arguments.dropFirst()), dataDirectory: dataDirectory, bootstrapServers: bootstrapServers)
    case "campaigns":
        try CampaignCommands.run(Array(arguments.dropFirst()), bootstrapServers: bootstrapServers)
    case "tail":
        guard arguments.count == 2 else { throw CLIError(commandHelp["tail"]!) }
        guard Topics.spec(named: arguments[1]) != nil else {
            throw CLIError("no topic \(arguments[1]) in the catalogue; `loyalty topics` lists them")
        }
        let stop = StopSignal()
        stop.install()
        try Tail.run(topic: arguments[1], bootstrapServers: try bootstrapServers(), stop: stop)
    case "topics":
        for topic in Topics.all {
            print("\(topic.name)\t\(topic.partitions) partitions\t\(topic.compacted ? "compacted" : "stream")\tkey: \(topic.key)\t\(topic.summary)")
        }
    case "help", "--help", "-h", nil:
        print(usage)
    default:
        throw CLIError("unknown command \(arguments[0])\n\n\(usage)")
    }
} catch {
    FileHandle.standardError.write(Data("loyalty: \(error)\n".utf8))
    exit(1)
}
