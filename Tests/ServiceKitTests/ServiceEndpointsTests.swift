import Foundation
import LoyaltyDomain
import Messaging
import Storage
import Testing

@testable import ServiceKit

/// The member routes of the HTTP API, without a server: who may see what.
@Suite struct ServiceEndpointsTests {
    static func endpoints(token: String?, directory: URL) -> ServiceEndpoints {
        let status = ServiceStatus(service: "test", metricPrefix: "acme_")
        status.update { snapshot in
            snapshot.partitionCount = 1
            snapshot.partitions[TopicPartition(topic: "t", partition: 0)] = .init(committed: 0, end: nil, reachedEnd: false, streamTime: nil)
        }
        return ServiceEndpoints(
            status: status, databasePath: { [path = directory.appendingPathComponent("test.sqlite").path] _ in path }, token: token, tokenVariable: "ACME_HTTP_TOKEN",
            memberView: { member, _, _ in JSONValue.object(["member": .string(member)]).serialized() },
            memberResource: { member, resource, _ in
                resource == "contacts/sms" ? .found(["address": "13800138000"]) : member == "gone" ? .gone("erased") : .notFound("no \(resource)")
            })
    }

    static func get(_ endpoints: ServiceEndpoints, _ path: String, token: String? = nil) -> Int {
        endpoints.handle(HTTPRequest(path: path, query: [:], headers: token.map { ["authorization": "Bearer \($0)"] } ?? [:])).status
    }

    @Test func memberResourcesNeedATokenAndAnswerFoundMissingOrGone() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("endpoints-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let open = Self.endpoints(token: nil, directory: directory)
        #expect(Self.get(open, "/members/m") == 200, "a member view, as before")
        #expect(Self.get(open, "/members/m/contacts/sms") == 403, "an address is never served without a token")
        let guarded = Self.endpoints(token: "s3cret", directory: directory)
        #expect(Self.get(guarded, "/members/m/contacts/sms") == 401)
        #expect(Self.get(guarded, "/members/m/contacts/sms", token: "s3cret") == 200)
        #expect(Self.get(guarded, "/members/m/contacts/fax", token: "s3cret") == 404)
        #expect(Self.get(guarded, "/members/gone/contacts/email", token: "s3cret") == 410)
        #expect(Self.get(guarded, "/members/m/", token: "s3cret") == 400)
    }

    /// With a store per task, a member is read from the store of the member's task.
    @Test func aMemberIsReadFromTheStoreOfItsTask() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("endpoints-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func path(_ task: Int32) -> String { directory.appendingPathComponent("test.task-\(task).sqlite").path }
        for task: Int32 in 0..<2 {
            let store = try Database(DatabaseConfiguration(path: path(task)))
            try store.execute("CREATE TABLE whose(task INTEGER NOT NULL); INSERT INTO whose VALUES(\(task))")
        }
        let status = ServiceStatus(service: "test", metricPrefix: "acme_")
        status.update { snapshot in
            snapshot.partitionCount = 2
            for task: Int32 in 0..<2 {
                snapshot.partitions[TopicPartition(topic: "t", partition: task)] = .init(committed: 0, end: nil, reachedEnd: false, streamTime: nil)
            }
        }
        let endpoints = ServiceEndpoints(
            status: status, databasePath: { [directory] task in directory.appendingPathComponent("test.task-\(task).sqlite").path },
            token: nil, tokenVariable: "ACME_HTTP_TOKEN",
            memberView: { _, database, _ in
                JSONValue.object(["store": .int(try database.prepare("SELECT task FROM whose").queryOne { $0.int64(0) } ?? -1)]).serialized()
            })
        let members = (0..<40).map { "member-\($0)" }
        for task: Int32 in 0..<2 {
            let member = try #require(members.first { Murmur2Partitioner.partition(of: Array($0.utf8), partitions: 2) == task })
            let answer = endpoints.handle(HTTPRequest(path: "/members/\(member)", query: [:], headers: [:]))
            #expect(answer.status == 200)
            #expect(String(decoding: answer.body, as: UTF8.self).contains("\"store\":\(task)"), "\(member) is task \(task)'s")
        }
    }

    /// An operator sees how many warm copies an instance keeps and how far each was behind
    /// its changelog when its last pass began.
    @Test func warmCopiesAndTheirLagAreMetrics() {
        let status = ServiceStatus(service: "counting", metricPrefix: "acme_")
        func lines() -> [Substring] { status.prometheusText().split(separator: "\n") }
        #expect(lines().contains("acme_warm_copies{service=\"counting\"} 0"))
        status.update { $0.warmCopyLag = [3: 12, 1: 0] }
        let text = lines()
        #expect(text.contains("acme_warm_copies{service=\"counting\"} 2"))
        let lags = text.filter { $0.hasPrefix("acme_warm_copy_lag_records{") }
        #expect(lags == ["acme_warm_copy_lag_records{service=\"counting\",task=\"1\"} 0", "acme_warm_copy_lag_records{service=\"counting\",task=\"3\"} 12"])
    }

    /// Metrics and answers carry the names of the platform the service belongs to.
    @Test func metricsAndAnswersAreNamedAfterThePlatform() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("endpoints-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let endpoints = Self.endpoints(token: "s3cret", directory: directory)
        let metrics = endpoints.handle(HTTPRequest(path: "/metrics", query: [:], headers: [:]))
        let lines = String(decoding: metrics.body, as: UTF8.self).split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("acme_records_applied_total{") })
        #expect(lines.allSatisfy { $0.hasPrefix("acme_") || $0.hasPrefix("# HELP acme_") || $0.hasPrefix("# TYPE acme_") })
        let refused = endpoints.handle(HTTPRequest(path: "/members/m", query: [:], headers: [:]))
        #expect(String(decoding: refused.body, as: UTF8.self).contains("ACME_HTTP_TOKEN"))
    }
}
