import Testing

/// Every end-to-end suite is nested here, so they run one at a time: each starts real
/// executables and an embedded broker, and running them side by side on a small machine would
/// test the machine's scheduling rather than the services.
@Suite(.serialized) enum EndToEnd {}
