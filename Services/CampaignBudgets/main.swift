import CampaignsService
import LoyaltyDomain
import LoyaltyService
import ServiceKit

// The keeper of campaign budgets: one store (the `service` layout), beside campaigns' tasks
// wherever they run (campaigns.md, "Budgets when tasks live on different hosts").
ServiceRunner.run(service: "campaign-budgets", platform: .loyalty) { configuration in
    let commandKeys = try configuration.commandKeys()
    return {
        BudgetKeeperProcessor(
            claimsTopic: Topics.campaignBudgetClaims.name, answersTopic: Topics.campaignBudgetAnswers.name, commandKeys: commandKeys)
    }
}
