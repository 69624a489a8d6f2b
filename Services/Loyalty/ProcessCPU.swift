import Foundation

/// CPU time a process has used, as Linux reports it (`utime` + `stime` in `/proc/<pid>/stat`),
/// for the whole process and for its main thread (the service's loop). It leaves out the time
/// a process waited for a core, so other work on the machine moves CPU time an event less than
/// events a second (a slower host still moves both).
struct ProcessCPU {
    /// Seconds of CPU of every thread of the process.
    var process: Double
    /// Seconds of CPU of the main thread, where a service runs its loop.
    var mainThread: Double

    /// `pid`'s CPU time so far; nil where it cannot be read.
    static func of(_ pid: Int32) -> ProcessCPU? {
        guard let process = seconds("/proc/\(pid)/stat"), let main = seconds("/proc/\(pid)/task/\(pid)/stat") else { return nil }
        return ProcessCPU(process: process, mainThread: main)
    }

    /// The difference from an earlier reading.
    static func - (later: ProcessCPU, earlier: ProcessCPU) -> ProcessCPU {
        ProcessCPU(process: later.process - earlier.process, mainThread: later.mainThread - earlier.mainThread)
    }

    /// Fields 14 and 15 (utime, stime) of a `stat` file, in seconds. The command name (field 2)
    /// is in parentheses and may hold spaces, so fields are counted after its closing one.
    fileprivate static func seconds(_ path: String) -> Double? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

extension ProcessCPU {
    /// Seconds of CPU `pid`'s threads have used so far, added up by what they do: `loop` (the
    /// main thread), `librdkafka` (its `rdk:` threads), and otherwise the thread's name
    /// (`decode-ahead`, `apply-1`, …). Empty where `/proc` cannot be read.
    static func byThread(of pid: Int32) -> [String: Double] {
        let directory = "/proc/\(pid)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [:] }
        var seconds: [String: Double] = [:]
        for thread in threads {
            guard let used = Self.seconds("\(directory)/\(thread)/stat") else { continue }
            let name = ((try? String(contentsOfFile: "\(directory)/\(thread)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let group = thread == String(pid) ? "loop" : name.hasPrefix("rdk:") ? "librdkafka" : name
            seconds[group, default: 0] += used
        }
        return seconds
    }
}
