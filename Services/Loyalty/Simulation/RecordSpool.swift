import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The bytes of the records a simulation has still to apply, kept in a scratch file rather
/// than in memory: the history's, and those of what the services published that a service
/// still to run reads (notifications reads points' whole ledger). The two were most of a run's
/// peak memory. A record's bytes are read back when the record becomes the head of its
/// partition, so memory holds a head per partition and each record's place, not every record
/// still to apply. The file is in the temporary directory (`TMPDIR`, else `/tmp`) and is
/// removed from it as soon as it is open: it takes disk space only while the spool lives, and
/// a run that is killed leaves nothing behind.
final class RecordSpool {
    /// Where one record's bytes are in the file.
    struct Place {
        var offset: Int64
        var count: Int
    }

    /// Where the file was made (it has no name once open).
    let path: String
    private let descriptor: Int32
    /// What is written but not yet in the file: appends are written a megabyte at a time.
    private var pending: [UInt8] = []
    private var written: Int64 = 0
    private static let flushAt = 1 << 20
    /// The first read or write that failed: the run stops with it after the batch that met it.
    private(set) var failure: CLIError?

    init() throws {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(directory)/loyalty-simulation-XXXXXX".utf8CString)
        descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard descriptor >= 0 else { throw CLIError("cannot create the simulation's scratch file in \(directory): \(String(cString: strerror(errno)))") }
        unlink(path)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }

    deinit { close(descriptor) }

    /// Appends `bytes`; where they are goes with the record.
    func append(_ bytes: [UInt8]) throws -> Place {
        let place = Place(offset: written + Int64(pending.count), count: bytes.count)
        pending += bytes
        if pending.count >= Self.flushAt { try flush() }
        return place
    }

    /// The bytes at `place`; nil if they cannot be read (``failure`` then says why).
    func read(_ place: Place) -> [UInt8]? {
        if place.offset + Int64(place.count) > written {
            do { try flush() } catch { return nil }
        }
        var bytes = [UInt8](repeating: 0, count: place.count)
        var done = 0
        while done < place.count {
            let count = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, place.count - done, off_t(place.offset) + off_t(done))
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                failure = failure ?? CLIError("cannot read the simulation's scratch file \(path): \(count < 0 ? String(cString: strerror(errno)) : "it ends early: it was changed while the run went on")")
                return nil
            }
            done += count
        }
        return bytes
    }

    private func flush() throws {
        var done = 0
        while done < pending.count {
            let count = pending.withUnsafeBytes { buffer in
                pwrite(descriptor, buffer.baseAddress! + done, pending.count - done, off_t(written) + off_t(done))
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                let error = CLIError("cannot write the simulation's scratch file \(path): \(count < 0 ? String(cString: strerror(errno)) : "nothing was written (is the disk full?)")")
                failure = failure ?? error
                throw error
            }
            done += count
        }
        written += Int64(pending.count)
        pending.removeAll(keepingCapacity: true)
    }
}
