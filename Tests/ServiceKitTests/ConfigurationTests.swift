import Basics
import Foundation
import Messaging
import Testing

@testable import ServiceKit

/// Settings an operator passes through the environment.
@Suite struct ConfigurationTests {
    @Test func kafkaSettingsComeFromThePlatformsKafkaVariablesAndABadOneIsNamed() throws {
        let settings = try ServiceConfiguration.kafkaSettings([
            "ACME_KAFKA_CLIENT_ID": "points-eu-1", "ACME_KAFKA_SOCKET_KEEPALIVE_ENABLE": "true", "ACME_DATA_DIR": "x",
            "OTHER_KAFKA_CLIENT_ID": "not ours",
        ], platform: .acme)
        #expect(settings == ["client.id": "points-eu-1", "socket.keepalive.enable": "true"])
        do {
            _ = try ServiceConfiguration.kafkaSettings(["ACME_KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"], platform: .acme)
            Issue.record("an invalid setting must stop the service")
        } catch let error as ConfigurationError {
            #expect(error.variable == "ACME_KAFKA_SECURITY_PROTOCOL")
            #expect(error.problem.contains("security.protocol=carrier-pigeon"))
        }
        let configuration = try ServiceConfiguration.fromEnvironment(
            service: "points", platform: .acme,
            environment: ["ACME_KAFKA_CLIENT_ID": "points-eu-1", "ACME_HTTP_ADDRESS": "127.0.0.1:0", "ACME_RULES_FILE": " rules.json ", "OTHER_GROUP_ID": "x"])
        #expect(configuration.kafkaSettings["client.id"] == "points-eu-1")
        #expect(configuration.httpAddress == "127.0.0.1:0")
        // Defaults and settings of the platform's own are named after it too.
        #expect(configuration.groupID == "acme-points")
        #expect(configuration.dataDirectory == ".acme")
        #expect(configuration.setting("RULES_FILE") == "rules.json")
        #expect(configuration.setting("PROGRAM_FILE") == nil)
        do {
            _ = try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: ["ACME_TIMERS": "sundial"])
            Issue.record("a bad setting must stop the service")
        } catch let error as ConfigurationError {
            #expect(error.variable == "ACME_TIMERS")
        }
    }

    @Test func theStoresPageCacheIsSetInMebibytesWithinBounds() throws {
        #expect(try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: [:]).cacheMiB == 16)
        #expect(try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: ["ACME_CACHE_MB": "64"]).cacheMiB == 64)
        for text in ["0", "-1", "lots"] {
            do {
                _ = try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: ["ACME_CACHE_MB": text])
                Issue.record("a cache of \(text) MiB must stop the service")
            } catch let error as ConfigurationError {
                #expect(error.variable == "ACME_CACHE_MB")
            }
        }
    }

    @Test func aStandbyNeedsTheChangelog() throws {
        let standby = try ServiceConfiguration.fromEnvironment(
            service: "points", platform: .acme, environment: ["ACME_STANDBY": "ON", "ACME_CHANGELOG": "on"])
        #expect(standby.standby && standby.changelog)
        #expect(try !ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: [:]).standby)
        for environment in [["ACME_STANDBY": "on"], ["ACME_STANDBY": "maybe", "ACME_CHANGELOG": "on"]] {
            do {
                _ = try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: environment)
                Issue.record("\(environment) must stop the service")
            } catch let error as ConfigurationError {
                #expect(error.variable == "ACME_STANDBY")
            }
        }
    }

    @Test func warmCopiesNeedStoresPerTaskAndTheirChangelog() throws {
        let copies = try ServiceConfiguration.fromEnvironment(
            service: "points", platform: .acme,
            environment: ["ACME_STANDBY_REPLICAS": "2", "ACME_STORE_LAYOUT": "task", "ACME_CHANGELOG": "on"])
        #expect(copies.standbyReplicas == 2)
        #expect(try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: [:]).standbyReplicas == 0)
        let refused: [([String: String], String)] = [
            (["ACME_STANDBY_REPLICAS": "1", "ACME_CHANGELOG": "on"], "ACME_STORE_LAYOUT=task"),
            (["ACME_STANDBY_REPLICAS": "1", "ACME_STORE_LAYOUT": "task"], "ACME_CHANGELOG=on"),
            (["ACME_STANDBY_REPLICAS": "1", "ACME_STORE_LAYOUT": "task", "ACME_CHANGELOG": "on", "ACME_STANDBY": "on"], "copies every task"),
            (["ACME_STANDBY_REPLICAS": "-1", "ACME_STORE_LAYOUT": "task", "ACME_CHANGELOG": "on"], "whole number"),
        ]
        for (environment, reason) in refused {
            do {
                _ = try ServiceConfiguration.fromEnvironment(service: "points", platform: .acme, environment: environment)
                Issue.record("\(environment) must stop the service")
            } catch let error as ConfigurationError {
                #expect(error.variable == "ACME_STANDBY_REPLICAS")
                #expect(error.problem.contains(reason), "\(error.problem)")
            }
        }
    }

    @Test func commandKeysShowTheirIDsButNeverTheirBytes() throws {
        let keys = try CommandKeys.parse("k1=0123456789abcdef-secret")
        var dumped = ""
        dump(keys, to: &dumped)
        let secretBytes = Array("0123456789abcdef-secret".utf8).map(String.init).joined(separator: ", ")
        for text in [dumped, "\(keys)", String(reflecting: keys), "\(keys.keys)", "\(HMACSHA256.Key(keys.keys[0].secret))"] {
            #expect(text.contains("redacted"), "\(text)")
            #expect(!text.contains("0123456789abcdef") && !text.contains(secretBytes) && !text.contains("- 48\n- 49"), "\(text)")
        }
        #expect("\(keys.keys[0])" == "CommandKeys.Key(id: k1, secret: 23 bytes, redacted)")
        // The words of the prepared hash states are as good as the secret: none is shown.
        var words = ""
        dump(HMACSHA256.Key(keys.keys[0].secret), to: &words)
        #expect(!words.contains("UInt32") && words.split(separator: "\n").count == 1, "\(words)")
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
