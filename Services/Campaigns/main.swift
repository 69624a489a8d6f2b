import CampaignsService
import LoyaltyDomain
import LoyaltyService
import ReferenceProgram
import ServiceKit

ServiceRunner.run(service: "campaigns", platform: .loyalty) { configuration in
    let program = try ProgramSource.load(configuration)
    // The default campaigns: LOYALTY_CAMPAIGNS_FILE, or the reference campaigns.
    let bytes = try ConfiguredFile.bytes(variable: "LOYALTY_CAMPAIGNS_FILE", fallback: ReferenceProgram.campaignsBytes)
    do {
        let defaults = try CampaignDefinition.loadFile(json: bytes, tiers: program.tiers.levels.map(\.id))
        return CampaignsProcessor(program: program, defaults: defaults, commandKeys: try configuration.commandKeys())
    } catch {
        throw ConfigurationError(variable: "LOYALTY_CAMPAIGNS_FILE", problem: "campaigns refused: \(error)")
    }
}
