import Foundation

/// A thread that runs one job at a time for its owner: the owner hands a job over, goes on
/// with its own work, and waits for the job before it hands over the next. The loop decodes
/// what it has just polled on one while it applies what it polled before.
///
/// The job runs on the thread alone, so whatever it captures that the owner also uses must
/// be left alone by the owner until ``wait()`` returns.
final class HandOffThread: @unchecked Sendable {
    private let condition = NSCondition()
    /// The job handed over and not yet taken (guarded by `condition`).
    private var job: (() -> Void)?
    /// A job is handed over or running (guarded by `condition`).
    private var busy = false
    /// Asked to stop (guarded by `condition`).
    private var stopping = false
    private var finished = false

    /// Starts the thread, called `name`, with a stack as large as a process's main thread
    /// usually gets. `around` runs on it, around all the jobs it will run (for what the
    /// thread needs set up, an alternate signal stack say). The thread holds on to the
    /// object until ``stop()``.
    init(name: String, around: @escaping @Sendable (_ serveJobs: () -> Void) -> Void = { $0() }) {
        let thread = Thread { [self] in
            nameCurrentThread(name)
            around { serve() }
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Runs `job` on the thread. The job before it must have been waited for.
    func handOver(_ job: @escaping () -> Void) {
        condition.lock()
        precondition(!busy, "a job is handed over before the one before it was waited for")
        precondition(!stopping, "a job is handed over to a stopped thread")
        self.job = job
        busy = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the job handed over has run (at once when none was).
    func wait() {
        condition.lock()
        while busy { condition.wait() }
        condition.unlock()
    }

    /// Lets the thread end once its job is done, and waits for that; stopping again does nothing.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func serve() {
        condition.lock()
        while true {
            while job == nil && !stopping { condition.wait() }
            guard let next = job else { break }
            job = nil
            condition.unlock()
            next()
            condition.lock()
            busy = false
            condition.broadcast()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Names the calling thread for the system (`top -H`, `/proc/<pid>/task/<tid>/comm`, profilers),
/// which Foundation's `Thread.name` does not do on Linux; at most 15 bytes are kept. Linux
/// only (through `/proc/thread-self/comm`); elsewhere it does nothing.
func nameCurrentThread(_ name: String) {
    let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count) }
    close(descriptor)
}
