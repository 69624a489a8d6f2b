import Foundation
import Messaging
import Testing

@testable import ServiceKit

/// Settings an operator passes through the environment.
@Suite struct ConfigurationTests {
    @Test func kafkaSettingsComeFromLoyaltyKafkaVariablesAndABadOneIsNamed() throws {
        let settings = try ServiceConfiguration.kafkaSettings([
            "LOYALTY_KAFKA_CLIENT_ID": "points-eu-1", "LOYALTY_KAFKA_SOCKET_KEEPALIVE_ENABLE": "true", "LOYALTY_DATA_DIR": "x",
        ])
        #expect(settings == ["client.id": "points-eu-1", "socket.keepalive.enable": "true"])
        do {
            _ = try ServiceConfiguration.kafkaSettings(["LOYALTY_KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"])
            Issue.record("an invalid setting must stop the service")
        } catch let error as ConfigurationError {
            #expect(error.variable == "LOYALTY_KAFKA_SECURITY_PROTOCOL")
            #expect(error.problem.contains("security.protocol=carrier-pigeon"))
        }
        let configuration = try ServiceConfiguration.fromEnvironment(
            service: "points", environment: ["LOYALTY_KAFKA_CLIENT_ID": "points-eu-1", "LOYALTY_HTTP_ADDRESS": "127.0.0.1:0"])
        #expect(configuration.kafkaSettings["client.id"] == "points-eu-1")
        #expect(configuration.httpAddress == "127.0.0.1:0")
    }

    @Test func commandKeysAreParsedAndTheDataDirectoryKeyIsSharedByEveryone() throws {
        #expect(throws: ConfigurationError.self) { try CommandKeys.parse("short=abc") }
        #expect(throws: ConfigurationError.self) { try CommandKeys.parse("a=0123456789abcdef,a=0123456789abcdef") }
        #expect(throws: ConfigurationError.self) { try CommandKeys.parse("no-secret") }
        let keys = try CommandKeys.parse("new=0123456789abcdef-new, old=0123456789abcdef-old")
        #expect(keys.keys.map(\.id) == ["new", "old"])

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try CommandKeys.ofDataDirectory(directory.path)
        let second = try CommandKeys.ofDataDirectory(directory.path)
        #expect(first.keys.map(\.id) == second.keys.map(\.id) && first.keys[0].secret == second.keys[0].secret)
        #expect(first.keys[0].secret.count == 64)
        let attributes = try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("command-keys").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }
}
