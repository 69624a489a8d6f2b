import LoyaltyService
import PointsService
import ServiceKit

ServiceRunner.run(service: "points", platform: .loyalty) { configuration in
    PointsProcessor(
        program: try ProgramSource.load(configuration), commandKeys: try configuration.commandKeys(),
        adjustmentLimit: Int64(try ServiceConfiguration.integer("LOYALTY_ADJUSTMENT_LIMIT", default: 100_000, range: 1...1_000_000_000)))
}
