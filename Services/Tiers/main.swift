import ServiceKit
import TiersService

ServiceRunner.run(service: "tiers") { _, program in
    TiersProcessor(program: program)
}
