import PointsService
import ServiceKit

ServiceRunner.run(service: "points") { _, program in
    PointsProcessor(program: program)
}
