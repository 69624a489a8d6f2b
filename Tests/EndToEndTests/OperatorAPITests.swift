import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Testing

extension EndToEndSecondLane {
    /// The HTTP API operators use, on the real executables: health, readiness, metrics, member
    /// views behind a token, and requests that must not hurt the service.
    @Suite struct OperatorAPITests {
        static func rawRequest(_ address: String, _ bytes: [UInt8]) throws -> String {
            let parts = address.split(separator: ":")
            var target = sockaddr_in()
            target.sin_family = sa_family_t(AF_INET)
            target.sin_port = UInt16(parts[1])!.bigEndian
            inet_pton(AF_INET, String(parts[0]), &target.sin_addr)
            let connection = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(connection) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: &target) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(connection, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard connected == 0 else { throw TestFailure("cannot connect to \(address)") }
            _ = bytes.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(connection, &buffer, buffer.count, 0)
                if count <= 0 { break }
                response.append(contentsOf: buffer[0..<count])
            }
            return String(decoding: response, as: UTF8.self)
        }

        @Test func healthReadinessMetricsAndMemberViewsOverHTTP() throws {
            let directory = try temporaryDirectory("http-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            func send(_ topic: TopicSpec, _ json: String) throws { try producer.send(topic: topic.name, key: Array("hana".utf8), value: Array(json.utf8)) }
            try send(Topics.members, #"{"specversion":"1.0","id":"hr","source":"shop","type":"member.registered","time":"2026-03-01T09:00:00+08:00","subject":"hana","data":{}}"#)
            try send(Topics.orders, #"{"specversion":"1.0","id":"ho1","source":"shop","type":"order.paid","time":"2026-03-02T10:00:00+08:00","subject":"hana","data":{"orderId":"H-1","paidMinor":12345}}"#)
            try send(Topics.engagement, #"{"specversion":"1.0","id":"hc1","source":"shop","type":"engagement.checked-in","time":"2026-03-10T10:00:00+08:00","subject":"hana","data":{}}"#)
            try send(Topics.pointsRequests, #"{"specversion":"1.0","id":"hx1","source":"shop","type":"points.redeem","time":"2026-03-11T10:00:00+08:00","subject":"hana","data":{"rewardId":"tea-set"}}"#)
            try send(Topics.orders, "not json")
            #expect(producer.flush(timeoutMilliseconds: 10_000))

            let points = ServiceProcess(name: "points", environment: [
                "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path,
                "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0", "LOYALTY_HTTP_TOKEN": "s3cret",
            ], log: directory.appendingPathComponent("points.log"))
            try points.start()
            defer { _ = points.stop() }
            var address: String?
            let deadline = Date().addingTimeInterval(60)
            while address == nil && Date() < deadline {
                address = (try? String(contentsOfFile: directory.appendingPathComponent("points.http").path, encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                usleep(100_000)
            }
            let api = try #require(address)
            #expect(try HTTPClient.get(api, "/health").status == 200)
            // Ready once assigned and read to the end.
            var ready = 0
            while ready != 200 && Date() < deadline {
                ready = try HTTPClient.get(api, "/ready").status
                usleep(200_000)
            }
            #expect(ready == 200)
            while serviceApplied(in: directory, "points") < 4 && Date() < deadline { usleep(100_000) }

            // Metrics: Prometheus text, every sample line `name{labels} value`.
            // (Timer counts are refreshed every 2 s.)
            var metrics = ""
            while Date() < deadline {
                metrics = String(decoding: try HTTPClient.get(api, "/metrics").body, as: UTF8.self)
                if metrics.contains("loyalty_timers_pending{") && metrics.contains("loyalty_records_applied_total{service=\"points\"} 4") { break }
                usleep(300_000)
            }
            var samples: [String: Double] = [:]
            for line in metrics.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 2, "a sample line: \(line)")
                let value = try #require(Double(parts[1]), "a number: \(line)")
                samples[String(parts[0])] = value
            }
            #expect(samples["loyalty_records_applied_total{service=\"points\"}"] == 4)
            #expect(samples["loyalty_dead_letters_total{service=\"points\",reason=\"not-json\"}"] == 1)
            #expect(samples["loyalty_points_refusals_total{service=\"points\",reason=\"insufficient-balance\"}"] == 1)
            #expect(samples.keys.contains { $0.hasPrefix("loyalty_partition_lag_records{") })
            #expect(samples.keys.contains { $0.hasPrefix("loyalty_commit_seconds_bucket{") })
            // Each record taken is timed once from its Kafka timestamp (the test's producer set it),
            // sent seconds before the service started: more than nothing, less than a minute.
            #expect(samples["loyalty_record_latency_seconds_count{service=\"points\"}"] == 5, "four applied and one dead-lettered")
            #expect(samples["loyalty_record_latency_seconds_bucket{service=\"points\",le=\"60\"}"] == 5)
            #expect(samples["loyalty_record_latency_seconds_sum{service=\"points\"}"].map { $0 > 0 } == true)
            #expect(samples.keys.contains { $0.hasPrefix("loyalty_timers_pending{") }, "the order's lot expiry and inactivity timers")
            #expect(samples.keys.filter { $0.hasPrefix("loyalty_timers_due{") }.allSatisfy { samples[$0] == 0 }, "stream mode fires what is due")

            // Member views need the token.
            #expect(try HTTPClient.get(api, "/members/hana").status == 401)
            #expect(try HTTPClient.get(api, "/members/hana", token: "wrong").status == 401)
            let view = try JSONValue.parse(try HTTPClient.get(api, "/members/hana", token: "s3cret").body)
            let ledgerSum = serviceCount(in: directory, "points", "SELECT SUM(points) FROM ledger WHERE member = 'hana'")
            #expect(view["balance"]?["net"]?.int64Value == ledgerSum)
            #expect(view["balance"]?["available"]?.int64Value == 124, "123 released after 7 days, 1 for the check-in")
            #expect(view["entries"]?.arrayValue?.map { $0["causeId"]?.stringValue } == ["ho1", "release/hana/L1", "hc1"], "the order, its release (a timer), the check-in")
            #expect(view["refusals"]?.arrayValue?.first?["reason"]?.stringValue == "insufficient-balance")
            // As of a past instant: before the release and the check-in.
            let before = try JSONValue.parse(try HTTPClient.get(api, "/members/hana?asOf=2026-03-05T00:00:00%2B08:00", token: "s3cret").body)
            #expect(before["balance"]?["pending"]?.int64Value == 123 && before["balance"]?["available"]?.int64Value == 0)
            #expect(before["lots"]?.arrayValue?.first?["pending"]?.boolValue == true)
            #expect(before["lots"]?.arrayValue?.first?["remaining"]?.int64Value == 123, "the lot's movements up to the instant: +123")
            #expect(try HTTPClient.get(api, "/members/nobody", token: "s3cret").status == 404)

            // Hostile requests get a 4xx and the service goes on.
            #expect(try Self.rawRequest(api, Array("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".utf8)).hasPrefix("HTTP/1.1 405"))
            #expect(try Self.rawRequest(api, Array("garbage\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400"))
            #expect(try Self.rawRequest(api, Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n").utf8)).hasPrefix("HTTP/1.1 431"))
            #expect(try Self.rawRequest(api, Array("GET /members/%ZZ HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400"))
            #expect(try HTTPClient.get(api, "/nothing").status == 404)
            #expect(points.isRunning)
            #expect(try HTTPClient.get(api, "/health").status == 200)

            // `loyalty member` assembles the page from the APIs it finds in the data directory.
            let cli = ServiceProcess(name: "loyalty", environment: ["LOYALTY_DATA_DIR": directory.path, "LOYALTY_HTTP_TOKEN": "s3cret"],
                                     log: directory.appendingPathComponent("member.json"))
            try cli.startWith(arguments: ["member", "hana", "--json"])
            cli.process?.waitUntilExit()
            let output = try String(contentsOf: directory.appendingPathComponent("member.json"), encoding: .utf8)
            let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("{") })
            let page = try JSONValue.parse(Array(line.utf8))
            #expect(page["points"]?["balance"]?["net"]?.int64Value == ledgerSum)
            #expect(page["problems"]?.arrayValue?.count == 3, "tiers, campaigns and notifications are not running")
        }
    }
}
