import Foundation
import Testing

/// The end-to-end suites, in two lanes that run side by side, each one test at a time: every
/// test starts real executables and an embedded broker of its own (its own ports and data
/// directories), and waits far more than it computes (for marks, rebalances, restarts), so two
/// at once finish the suite in much less time than one after the other, and a third would
/// mostly wait for the two cores. The lanes hold about the same time's worth of tests; a new
/// suite goes in the shorter one. A test that loads every core on purpose has the machine to
/// itself (``MachineUse``).
@Suite(.serialized, MachineUse.shared) enum EndToEnd {}

/// The second lane of end-to-end suites (see ``EndToEnd``).
@Suite(.serialized, MachineUse.shared) enum EndToEndSecondLane {}

/// Whether an end-to-end test shares the machine with the other lane's test or has it to
/// itself: a test that runs CPU hogs to show that a busy machine changes no output waits for
/// the other lane's test to end, and the other lane waits for it, so no test meets a hog it
/// did not ask for.
struct MachineUse: SuiteTrait, TestTrait, TestScoping {
    /// Whether the test has the machine to itself.
    let alone: Bool

    /// Every test of a lane shares the machine.
    static let shared = MachineUse(alone: false)
    /// The test has the machine to itself.
    static let alone = MachineUse(alone: true)

    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // A test inherits its lane's `shared` and may carry `alone` too: the lock is taken once,
        // by the trait that says what the test needs.
        let wantsAlone = test.traits.contains { ($0 as? MachineUse)?.alone == true }
        guard !test.isSuite, testCase != nil, wantsAlone == alone else { return try await function() }
        MachineLock.instance.acquire(alone: alone)
        defer { MachineLock.instance.release(alone: alone) }
        try await function()
    }
}

/// Many tests share the machine, or one has it alone; one waiting to be alone goes before
/// tests that arrive after it, so the other lane cannot keep it waiting for ever.
final class MachineLock: @unchecked Sendable {
    // Safe to share: every field is read and written under `condition`.
    static let instance = MachineLock()
    private let condition = NSCondition()
    private var sharing = 0
    private var isAlone = false
    private var waitingAlone = 0

    func acquire(alone: Bool) {
        condition.lock()
        defer { condition.unlock() }
        if alone {
            waitingAlone += 1
            while sharing > 0 || isAlone { condition.wait() }
            waitingAlone -= 1
            isAlone = true
        } else {
            while isAlone || waitingAlone > 0 { condition.wait() }
            sharing += 1
        }
    }

    func release(alone: Bool) {
        condition.lock()
        defer { condition.unlock() }
        if alone { isAlone = false } else { sharing -= 1 }
        condition.broadcast()
    }
}
