import LoyaltyService
import ServiceKit
import TiersService

ServiceRunner.run(service: "tiers", platform: .loyalty) { configuration in
    let program = try ProgramSource.load(configuration)
    return { TiersProcessor(program: program) }
}
