import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Storage

/// `loyalty broker` and `loyalty dev`: the embedded broker, its faults on demand, and the
/// service state of the data directory (which a new, empty broker makes stale).
enum BrokerCommand {
    static let brokerUsage = """
        usage: loyalty broker [--reset-state] [--fault SPEC]...

        Runs the embedded broker (librdkafka's mock cluster) until Ctrl-C, with every catalogue
        topic; its address goes to <data dir>/broker.address.

          --reset-state   remove the service databases of the data directory first (a new broker
                          is empty, so their offsets mean nothing there); refused while a service
                          has one open
          --fault SPEC    inject a fault, counted from start-up (repeatable); see `loyalty fault --help`

        While it runs, `loyalty fault SPEC` injects more faults into it.
        """

    static let devUsage = """
        usage: loyalty dev [--reset-state] [--fault SPEC]...

        Runs the embedded broker and every service until Ctrl-C. Options as for `loyalty broker`.
        """

    static let faultUsage = """
        usage: loyalty fault SPEC

        Injects a fault into the running `loyalty broker` of the data directory. SPEC is one of:

          latency=MS[,after=S][,for=S]                  every response delayed MS milliseconds
          latency=REQUEST:MS[,count=N][,after=S]        the next N requests of a type delayed
          down[,after=S][,for=S]                        the broker down (up again after `for`)
          errors=REQUEST:ERROR[,count=N][,after=S]      the next N requests of a type fail
          topic-error=TOPIC:ERROR[,after=S][,for=S]     metadata for the topic answers an error

        REQUEST: \(KafkaRequest.allCases.map(\.description).joined(separator: ", ")).
        ERROR: a librdkafka error name without RD_KAFKA_RESP_ERR_ (e.g. NOT_LEADER_FOR_PARTITION,
        REQUEST_TIMED_OUT, _TRANSPORT), or its number. A fault without `for` stays until the broker stops.
        """

    struct Options {
        var resetState = false
        var faults: [ScheduledFault] = []
    }

    static func parse(_ arguments: [String], usage: String) throws -> Options? {
        var options = Options()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            switch argument {
            case "--help", "-h":
                print(usage)
                return nil
            case "--reset-state":
                options.resetState = true
            case "--fault":
                guard let spec = rest.popFirst() else { throw CLIError("--fault needs a SPEC\n\n\(usage)") }
                options.faults.append(try ScheduledFault(parsing: spec))
            default:
                throw CLIError("unknown option \(argument)\n\n\(usage)")
            }
        }
        return options
    }

    /// The file `loyalty fault` appends to and the running broker watches.
    static func faultFile(dataDirectory: String) -> String { "\(dataDirectory)/broker.faults" }

    /// Starts the broker for `broker` and `dev`: state checked (or reset when asked), faults
    /// scheduled, the address published, the fault file watched.
    static func startBroker(_ options: Options, dataDirectory: String, stop: StopSignal) throws -> EmbeddedBroker {
        try checkServiceState(reset: options.resetState, dataDirectory: dataDirectory)
        let broker = try EmbeddedBroker(topics: Topics.all)
        try EmbeddedBrokerAddress.write(broker.bootstrapServers, dataDirectory: dataDirectory)
        broker.schedule(options.faults) { say($0) }
        let faults = faultFile(dataDirectory: dataDirectory)
        try? FileManager.default.removeItem(atPath: faults)
        _ = FileManager.default.createFile(atPath: faults, contents: nil)
        watchFaultFile(faults, broker: broker, stop: stop)
        return broker
    }

    /// Removes what `startBroker` published.
    static func stopBroker(dataDirectory: String) {
        try? FileManager.default.removeItem(atPath: EmbeddedBrokerAddress.path(dataDirectory: dataDirectory))
        try? FileManager.default.removeItem(atPath: faultFile(dataDirectory: dataDirectory))
    }

    /// A new embedded broker is empty: service databases left in the data directory hold offsets
    /// of an earlier one, and the services will refuse them. Say so, and remove them only when
    /// asked and when no running service has them open.
    static func checkServiceState(reset: Bool, dataDirectory: String) throws {
        // A service's one store, or its stores per task (`LOYALTY_STORE_LAYOUT=task`).
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory)) ?? []
        let databases = ServiceExecutables.names.flatMap { service in
            ["\(service).sqlite"] + files.filter { $0.hasPrefix("\(service).task-") && $0.hasSuffix(".sqlite") }.sorted()
        }
        .map { "\(dataDirectory)/\($0)" }
        .filter { FileManager.default.fileExists(atPath: $0) }
        guard !databases.isEmpty else { return }
        let open = databases.filter { FileUseLock.isInUse(path: $0) }
        if !open.isEmpty {
            throw CLIError("\(open.joined(separator: ", ")) \(open.count == 1 ? "is" : "are") open in a running service: stop it first "
                + "(a broker started under it would not hold its offsets)")
        }
        guard reset else {
            say("note: \(databases.joined(separator: ", ")) belong to an earlier broker; the services will refuse them. "
                + "Start with --reset-state to remove them, or use another LOYALTY_DATA_DIR")
            return
        }
        for database in databases {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
            say("removed \(database) (--reset-state)")
        }
    }

    /// Applies the faults appended to `path` while the broker runs, polling every 200 ms.
    static func watchFaultFile(_ path: String, broker: EmbeddedBroker, stop: StopSignal) {
        let thread = Thread {
            var consumed = 0
            while !stop.isRequested {
                usleep(200_000)
                guard let data = FileManager.default.contents(atPath: path), data.count > consumed else { continue }
                // Only whole lines: `loyalty fault` may be half-way through writing one.
                guard let end = data[consumed...].lastIndex(of: UInt8(ascii: "\n")) else { continue }
                let text = String(decoding: data[consumed..<end], as: UTF8.self)
                consumed = end + 1
                for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                    do {
                        broker.schedule([try ScheduledFault(parsing: String(line))]) { say($0) }
                    } catch {
                        say("ignored fault \(line): \(error)")
                    }
                }
            }
        }
        thread.name = "fault-file"
        thread.start()
    }

    /// `loyalty fault SPEC`: checks the SPEC and hands it to the running broker.
    static func fault(_ arguments: [String], dataDirectory: String) throws {
        guard arguments.count == 1 else { throw CLIError(faultUsage) }
        if arguments[0] == "--help" || arguments[0] == "-h" {
            print(faultUsage)
            return
        }
        let fault = try ScheduledFault(parsing: arguments[0])
        let path = faultFile(dataDirectory: dataDirectory)
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CLIError("no running `loyalty broker` in \(dataDirectory) (no \(path))")
        }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(Data((fault.description + "\n").utf8))
        print("sent to the broker: \(fault)")
    }
}
