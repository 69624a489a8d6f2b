import LoyaltyService
import PointsService
import ServiceKit

ServiceRunner.run(service: "points", platform: .loyalty) { configuration in
    let program = try ProgramSource.load(configuration)
    let commandKeys = try configuration.commandKeys()
    let adjustmentLimit = Int64(try ServiceConfiguration.integer("LOYALTY_ADJUSTMENT_LIMIT", default: 100_000, range: 1...1_000_000_000))
    return { PointsProcessor(program: program, commandKeys: commandKeys, adjustmentLimit: adjustmentLimit) }
}
