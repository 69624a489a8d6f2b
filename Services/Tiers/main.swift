import LoyaltyService
import ServiceKit
import TiersService

ServiceRunner.run(service: "tiers", platform: .loyalty) { configuration in
    TiersProcessor(program: try ProgramSource.load(configuration))
}
