import Testing

/// The end-to-end suites, in two lanes that run side by side, each one test at a time: every
/// test starts real executables and an embedded broker of its own (its own ports and data
/// directories), and waits far more than it computes (for marks, rebalances, restarts), so two
/// at once finish the suite in much less time than one after the other, and a third would
/// mostly wait for the two cores. The lanes hold about the same time's worth of tests (about
/// 15 minutes each on an idle machine, 2026-12-05); a new suite goes in the shorter one.
@Suite(.serialized) enum EndToEnd {}

/// The second lane of end-to-end suites (see ``EndToEnd``).
@Suite(.serialized) enum EndToEndSecondLane {}
