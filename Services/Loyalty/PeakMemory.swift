import Foundation

/// A process's peak resident set, as Linux reports it (`VmHWM` in `/proc/<pid>/status`).
enum PeakMemory {
    /// The peak resident set of `pid` (this process when nil) in MiB; 0 where it cannot be read.
    static func mebibytes(of pid: Int32? = nil) -> Double {
        let path = "/proc/\(pid.map(String.init) ?? "self")/status"
        let status = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let kibibytes = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            .flatMap { Double($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        return kibibytes / 1024
    }
}
