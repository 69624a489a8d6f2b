import Foundation
import LoyaltyDomain
import Messaging
import Storage

/// The four services at a steady rate of orders in `loyalty bench`: each order timed from its
/// send until the notifications service has stored its offset past the order's `points.earned`
/// ledger entry. The services wait for each other's progress (`LOYALTY_WAIT_FOR`), so by then
/// tiers and campaigns have applied the order too and points has applied their grants before it:
/// the order's points, tier, campaign outcome and message decision are all out.
extension Bench {
    struct SteadyFigures {
        var rate: Int
        var secondsAsked: Int
        /// How long the rate was held: `secondsAsked`, or less when the services fell behind.
        var secondsHeld: Double
        var orders: Int
        /// Set when sending stopped early: why (the oldest order not through yet too old, or
        /// too many on their way).
        var fellBehind: String?
        var p50: Double
        var p99: Double
        var max: Double
        /// The four services' CPU while the orders went through, per order, in µs (set by the caller).
        var cpuMicrosPerOrder = Double.nan
    }

    /// An order not through yet is at most this old before the run stops sending.
    static let steadyGiveUpSeconds = 10.0

    /// Sends `rate` orders a second for `seconds` (orders `firstIndex` on, event times from
    /// `firstTime` on, one second apart) to services already running on `bootstrapServers`,
    /// and times each order through to notifications' store at `notificationsStore`. `ledgerEnds`
    /// are the ledger's ends before the first order: every entry of these orders comes after.
    /// Sending stops early when the services fall behind: when the oldest order on its way is
    /// older than ``steadyGiveUpSeconds``, or more than `maxOnTheirWay` orders are (the embedded
    /// broker keeps only about 5 MiB a partition, so the backlog must stay bounded).
    static func holdSteadyRate(
        rate: Int, seconds: Int, members: Int, firstIndex: Int, firstTime: Int64, bootstrapServers: String,
        ledgerEnds: [TopicPartition: Int64], maxOnTheirWay: Int, producer: KafkaProducer, notificationsStore: String, children: ChildProcesses
    ) throws -> SteadyFigures {
        let ledger = Topics.pointsLedger.name
        var settings = ConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: "bench-steady")
        settings.offsetResetPolicy = "error"
        let consumer = try KafkaConsumer(settings, listener: StartingOffsets())
        defer { consumer.close() }
        // Assigned, not subscribed: a group's join would hold the first orders' entries for seconds.
        try consumer.assign(ledgerEnds.mapValues { $0 })
        let store = try Database(DatabaseConfiguration(path: notificationsStore))
        defer { store.close() }
        let offsetsRead = try store.prepare("SELECT partition, next_offset FROM offsets WHERE topic = ?")

        /// By order (0 is `firstIndex`): when it was sent, and whether it is through.
        var sentAt: [Date] = []
        var through: [Bool] = []
        sentAt.reserveCapacity(rate * seconds)
        /// The earliest order not through yet.
        var oldest = 0
        /// Per ledger partition, the orders whose earned entry was read, in offset order, and
        /// how many of them are through.
        var waiting: [Int32: [(offset: Int64, order: Int)]] = [:]
        var taken: [Int32: Int] = [:]
        var latencies: [Double] = []
        latencies.reserveCapacity(rate * seconds)
        var fellBehind: String?
        var stall = StallGuard(seconds: 120)
        let causePrefix = "bench-order-"

        /// Reads the ledger on, and takes as through every order notifications has passed.
        func settle() throws {
            while let event = consumer.poll(timeoutMilliseconds: 0) {
                switch event {
                case .record(let record):
                    guard let value = record.value, let entry = try? CloudEvent.decode(value), entry.type == "points.earned",
                          let cause = entry.data["causeId"]?.stringValue, cause.hasPrefix(causePrefix),
                          let index = Int(cause.dropFirst(causePrefix.count)), index >= firstIndex, index - firstIndex < sentAt.count
                    else { continue }
                    waiting[record.partition, default: []].append((record.offset, index - firstIndex))
                case .error(let error, let partition?, let offset) where error.code == KafkaError.offsetOutOfRange:
                    throw CLIError("the embedded broker deleted ledger records of \(partition) from \(offset) on before the bench read them")
                default:
                    continue
                }
            }
            let now = Date()
            for (partition, next) in try offsetsRead.query(.text(ledger), row: { (Int32($0.int64(0)), $0.int64(1)) }) {
                guard let entries = waiting[partition] else { continue }
                var head = taken[partition] ?? 0
                while head < entries.count, entries[head].offset < next {
                    let order = entries[head].order
                    if !through[order] {
                        through[order] = true
                        latencies.append(now.timeIntervalSince(sentAt[order]) * 1000)
                    }
                    head += 1
                }
                taken[partition] = head
            }
            while oldest < through.count, through[oldest] { oldest += 1 }
        }
        /// Stops a run that can no longer end: a service gone, or nothing through for 120 s.
        func checkProgress() throws {
            if let exited = children.exited { throw CLIError("\(exited.name) exited with status \(exited.status)") }
            if let failed = producer.takeDeliveryReports().first(where: { $0.error != nil })?.error {
                throw CLIError("an order was not delivered: \(failed)")
            }
            try stall.check(latencies.count) { "four services at a steady rate: no order through for 120 s after \($0) of \(sentAt.count)" }
        }

        let start = Date()
        var lastSettle = Date.distantPast
        while true {
            // The last tick sends what the whole time is due.
            let elapsed = min(Date().timeIntervalSince(start), Double(seconds))
            if oldest < sentAt.count, Date().timeIntervalSince(sentAt[oldest]) > steadyGiveUpSeconds {
                fellBehind = String(format: "the oldest order on its way was %.1f s old", Date().timeIntervalSince(sentAt[oldest]))
                break
            }
            if sentAt.count - latencies.count > maxOnTheirWay {
                fellBehind = "\(sentAt.count - latencies.count) orders were on their way"
                break
            }
            let due = min(rate * seconds, Int(Double(rate) * elapsed))
            while sentAt.count < due {
                let index = firstIndex + sentAt.count
                let member = "bench-p\(index % members)"
                let event = order(index, member: member, time: firstTime + Int64(sentAt.count) * 1_000)
                sentAt.append(Date())
                through.append(false)
                try producer.send(topic: Topics.orders.name, key: Array(member.utf8), value: event.encoded())
            }
            producer.poll()
            if Date().timeIntervalSince(lastSettle) >= 0.01 {
                try settle()
                try checkProgress()
                lastSettle = Date()
            }
            guard elapsed < Double(seconds) else { break }
            Thread.sleep(forTimeInterval: 0.002)
        }
        let held = Date().timeIntervalSince(start)
        _ = producer.flush(timeoutMilliseconds: 30_000)
        while latencies.count < sentAt.count {
            try settle()
            try checkProgress()
            Thread.sleep(forTimeInterval: 0.01)
        }
        latencies.sort()
        return SteadyFigures(
            rate: rate, secondsAsked: seconds, secondsHeld: fellBehind == nil ? Double(seconds) : held, orders: sentAt.count,
            fellBehind: fellBehind, p50: percentile(0.5, of: latencies), p99: percentile(0.99, of: latencies), max: latencies.last ?? .nan)
    }

    static func steadyLine(_ figures: SteadyFigures) -> String {
        let held = figures.fellBehind.map {
            "not held: after " + String(format: "%.1f", figures.secondsHeld) + " s \($0), so sending stopped"
        } ?? "held for \(figures.secondsAsked) s"
        return "  four services at \(figures.rate) orders/s: \(held); \(figures.orders) orders, "
            + String(format: "order → through notifications p50 %.1f / p99 %.1f / max %.1f ms", figures.p50, figures.p99, figures.max)
            + "; the four services' CPU \(micros(figures.cpuMicrosPerOrder)) an order"
    }
}
