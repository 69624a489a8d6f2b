import Foundation
import CampaignsService
import LoyaltyDomain
import ReferenceProgram
import ServiceKit

ServiceRunner.run(service: "campaigns") { _, program in
    // The default campaigns: LOYALTY_CAMPAIGNS_FILE, or the reference campaigns.
    let bytes: [UInt8]
    if let path = ProcessInfo.processInfo.environment["LOYALTY_CAMPAIGNS_FILE"], !path.isEmpty {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(variable: "LOYALTY_CAMPAIGNS_FILE", problem: "cannot read \(path)")
        }
        bytes = Array(data)
    } else {
        bytes = try ReferenceProgram.campaignsBytes()
    }
    do {
        let defaults = try CampaignDefinition.loadFile(json: bytes, tiers: program.tiers.levels.map(\.id))
        return CampaignsProcessor(program: program, defaults: defaults)
    } catch {
        throw ConfigurationError(variable: "LOYALTY_CAMPAIGNS_FILE", problem: "campaigns refused: \(error)")
    }
}
