import Foundation
import LoyaltyDomain
import Messaging
import ServiceKit
import Testing

extension EndToEndSecondLane {
    /// With two instances of a service, a member lookup sent to the one that does not own the
    /// member's task is answered with the address of the one that does.
    @Suite struct MemberRoutingTests {
        @Test func aLookupAtTheWrongInstanceNamesTheOwner() throws {
            let directory = try temporaryDirectory("routing-e2e")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try EmbeddedBroker(topics: Topics.all)
            let producer = try KafkaProducer(ProducerConfiguration(bootstrapServers: broker.bootstrapServers))
            let members = (0..<12).map { "router-\($0)" }
            for member in members {
                try producer.send(topic: Topics.members.name, key: Array(member.utf8), value: Array(
                    #"{"specversion":"1.0","id":"reg-\#(member)","source":"shop","type":"member.registered","time":"2026-03-01T09:00:00+08:00","subject":"\#(member)","data":{}}"#.utf8))
            }
            #expect(producer.flush(timeoutMilliseconds: 10_000))
            let instances = (0..<2).map { index in
                ServiceProcess(name: "points", environment: [
                    "LOYALTY_BOOTSTRAP_SERVERS": broker.bootstrapServers, "LOYALTY_DATA_DIR": directory.path, "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0",
                ], log: directory.appendingPathComponent("points-\(index).log"))
            }
            for instance in instances { try instance.start() }
            defer { for instance in instances { _ = instance.stop() } }
            func address(_ index: Int) -> String? {
                guard let text = try? String(contentsOf: directory.appendingPathComponent("points-\(index).log"), encoding: .utf8),
                      let line = text.split(separator: "\n").first(where: { $0.contains("\"msg\":\"http listening\"") }),
                      let entry = try? JSONValue.parse(Array(line.utf8)) else { return nil }
                return entry["address"]?.stringValue
            }
            // Until each instance owns some tasks and all twelve members are applied.
            let deadline = Date().addingTimeInterval(90)
            func owned(_ api: String) -> [Int64] {
                guard let (status, body) = try? HTTPClient.get(api, "/members/none-such"), status == 421 || status == 404 else { return [] }
                return status == 404 ? [-1] : ((try? JSONValue.parse(body))?["ownedTasks"]?.arrayValue ?? []).compactMap(\.int64Value)
            }
            var apis: [String] = []
            while Date() < deadline {
                apis = (0..<2).compactMap(address)
                if apis.count == 2, serviceApplied(in: directory, "points") >= 12,
                   let metrics = try? apis.map({ String(decoding: try HTTPClient.get($0, "/metrics").body, as: UTF8.self) }),
                   metrics.allSatisfy({ $0.contains("loyalty_partition_offset{service=\"points\",topic=\"loyalty.members\"") }) { break }
                usleep(300_000)
            }
            try #require(apis.count == 2)
            var answered = 0
            var redirected = 0
            for member in members {
                let (status, body) = try HTTPClient.get(apis[0], "/members/\(member)")
                if status == 200 {
                    answered += 1
                    continue
                }
                #expect(status == 421, "\(member): \(String(decoding: body, as: UTF8.self))")
                let owner = try #require(try JSONValue.parse(body)["owner"]?.stringValue, "the answer names the owner")
                #expect(owner == apis[1])
                let (ownerStatus, ownerBody) = try HTTPClient.get(owner, "/members/\(member)")
                #expect(ownerStatus == 200)
                #expect(try JSONValue.parse(ownerBody)["member"]?.stringValue == member)
                redirected += 1
            }
            #expect(answered > 0 && redirected > 0, "both instances own members: \(answered) here, \(redirected) there")
        }
    }
}
