import LoyaltyDomain
import LoyaltyService
import NotificationsService
import ReferenceProgram
import ServiceKit

ServiceRunner.run(service: "notifications", platform: .loyalty) { configuration in
    let program = try ProgramSource.load(configuration)
    // The message templates: LOYALTY_TEMPLATES_FILE, or the reference templates. A template
    // naming a field its message type does not provide stops the service here.
    let bytes = try ConfiguredFile.bytes(variable: "LOYALTY_TEMPLATES_FILE", fallback: ReferenceProgram.templatesBytes)
    let templates: MessageTemplates
    do {
        templates = try MessageTemplates.load(json: bytes)
    } catch {
        throw ConfigurationError(variable: "LOYALTY_TEMPLATES_FILE", problem: "templates refused: \(error)")
    }
    var logger = Logger(service: "notifications")
    logger.minimumLevel = configuration.logLevel
    return { NotificationsProcessor(program: program, templates: templates, logger: logger) }
}
