import LoyaltyService
import ServiceKit
import TiersService

ServiceRunner.run(service: "tiers") { configuration in
    TiersProcessor(program: try ProgramSource.load(configuration))
}
