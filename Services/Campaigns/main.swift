import CampaignsService
import LoyaltyDomain
import LoyaltyService
import ReferenceProgram
import ServiceKit

ServiceRunner.run(service: "campaigns", platform: .loyalty) { configuration in
    let program = try ProgramSource.load(configuration)
    // The default campaigns: LOYALTY_CAMPAIGNS_FILE, or the reference campaigns.
    let bytes = try ConfiguredFile.bytes(variable: "LOYALTY_CAMPAIGNS_FILE", fallback: ReferenceProgram.campaignsBytes)
    let defaults: [CampaignDefinition]
    do {
        defaults = try CampaignDefinition.loadFile(json: bytes, tiers: program.tiers.levels.map(\.id))
    } catch {
        throw ConfigurationError(variable: "LOYALTY_CAMPAIGNS_FILE", problem: "campaigns refused: \(error)")
    }
    let commandKeys = try configuration.commandKeys()
    // Budgets are the keeper's (the campaign-budgets executable), in every layout.
    return { CampaignsProcessor(program: program, defaults: defaults, commandKeys: commandKeys, budgets: .keeperOfTheCatalogue) }
}
