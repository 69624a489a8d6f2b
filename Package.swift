// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Loyalty",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "points", targets: ["PointsMain"]),
        .executable(name: "tiers", targets: ["TiersMain"]),
        .executable(name: "campaigns", targets: ["CampaignsMain"]),
        .executable(name: "campaign-budgets", targets: ["CampaignBudgetsMain"]),
        .executable(name: "notifications", targets: ["NotificationsMain"]),
        .executable(name: "loyalty", targets: ["Loyalty"]),
    ],
    targets: [
        // C libraries, from the system (no SwiftPM package dependencies).
        .systemLibrary(
            name: "CRdKafka", path: "Shared/CRdKafka", pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"]), .brew(["librdkafka"])]),
        .systemLibrary(
            name: "CSQLite", path: "Shared/CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),

        // Shared modules.
        .target(name: "Basics", path: "Shared/Basics"),
        .target(name: "LoyaltyDomain", dependencies: ["Basics"], path: "Shared/LoyaltyDomain"),
        .target(
            name: "ReferenceProgram", path: "Shared/ReferenceProgram",
            resources: [.copy("Resources/reference-program.json"), .copy("Resources/reference-campaigns.json"), .copy("Resources/reference-templates.json"), .copy("Resources/event-schemas")]),
        .target(name: "Messaging", dependencies: ["CRdKafka", "Basics"], path: "Shared/Messaging"),
        .target(name: "Storage", dependencies: ["CSQLite"], path: "Shared/Storage"),
        .target(name: "Reporting", dependencies: ["LoyaltyDomain", "Messaging"], path: "Shared/Reporting"),
        .target(
            name: "ServiceKit",
            dependencies: ["Basics", "Messaging", "Storage"],
            path: "Shared/ServiceKit"),
        // What the loyalty services share on top of the runtime: their topics and rule files.
        .target(name: "LoyaltyService", dependencies: ["LoyaltyDomain", "ReferenceProgram", "ServiceKit"], path: "Shared/LoyaltyService"),

        // Services.
        .target(
            name: "PointsService", dependencies: ["LoyaltyDomain", "LoyaltyService", "Storage", "ServiceKit"],
            path: "Services/PointsService"),
        .executableTarget(
            name: "PointsMain", dependencies: ["PointsService", "LoyaltyService", "ServiceKit"], path: "Services/Points"),
        .target(
            name: "TiersService", dependencies: ["LoyaltyDomain", "LoyaltyService", "Storage", "ServiceKit"],
            path: "Services/TiersService"),
        .executableTarget(
            name: "TiersMain", dependencies: ["TiersService", "LoyaltyService", "ServiceKit"], path: "Services/Tiers"),
        .target(
            name: "CampaignsService", dependencies: ["LoyaltyDomain", "LoyaltyService", "Storage", "ServiceKit"],
            path: "Services/CampaignsService"),
        .executableTarget(
            name: "CampaignsMain", dependencies: ["CampaignsService", "LoyaltyService", "ServiceKit", "ReferenceProgram", "LoyaltyDomain"], path: "Services/Campaigns"),
        .executableTarget(
            name: "CampaignBudgetsMain", dependencies: ["CampaignsService", "LoyaltyService", "ServiceKit", "LoyaltyDomain"],
            path: "Services/CampaignBudgets"),
        .target(
            name: "NotificationsService", dependencies: ["LoyaltyDomain", "LoyaltyService", "Storage", "ServiceKit"],
            path: "Services/NotificationsService"),
        .executableTarget(
            name: "NotificationsMain", dependencies: ["NotificationsService", "LoyaltyService", "ServiceKit", "ReferenceProgram", "LoyaltyDomain"],
            path: "Services/Notifications"),
        .executableTarget(
            name: "Loyalty",
            dependencies: [
                "LoyaltyDomain", "LoyaltyService", "Messaging", "Storage", "ServiceKit", "ReferenceProgram", "PointsService", "TiersService", "CampaignsService",
                "NotificationsService", "Reporting",
            ],
            path: "Services/Loyalty"),

        // Tests.
        .testTarget(name: "LoyaltyDomainTests", dependencies: ["Basics", "LoyaltyDomain", "ReferenceProgram"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "CSQLite"]),
        .testTarget(name: "MessagingTests", dependencies: ["Messaging", "LoyaltyDomain"]),
        .testTarget(name: "ServiceKitTests", dependencies: ["ServiceKit", "Messaging", "Storage", "LoyaltyDomain", "ReferenceProgram"]),
        .testTarget(name: "PointsTests", dependencies: ["PointsService", "ServiceKit", "Storage", "LoyaltyDomain", "ReferenceProgram"]),
        .testTarget(name: "TiersTests", dependencies: ["TiersService", "ServiceKit", "Storage", "LoyaltyDomain", "ReferenceProgram"]),
        .testTarget(name: "CampaignsTests", dependencies: ["CampaignsService", "ServiceKit", "Storage", "LoyaltyDomain", "ReferenceProgram", "Messaging"]),
        .testTarget(name: "NotificationsTests", dependencies: ["NotificationsService", "ServiceKit", "Storage", "LoyaltyDomain", "ReferenceProgram", "Messaging"]),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["PointsService", "TiersService", "CampaignsService", "NotificationsService", "ServiceKit", "Storage", "LoyaltyDomain", "ReferenceProgram", "Messaging"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Messaging", "LoyaltyDomain", "Storage", "ReferenceProgram", "ServiceKit", "Reporting"]),
    ]
)
