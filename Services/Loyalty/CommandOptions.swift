/// A command's arguments split into positional ones and `--name value` options, with the
/// options checked against the ones the command knows. (`--help` is handled before any
/// command runs.)
struct CommandOptions {
    var positional: [String] = []
    var values: [String: String] = [:]

    init(_ arguments: some Collection<String>, known: Set<String>, usage: String) throws {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard argument.hasPrefix("--") else {
                positional.append(argument)
                continue
            }
            let name = String(argument.dropFirst(2))
            guard known.contains(name) else { throw CLIError("unknown option \(argument)\n\(usage)") }
            guard let value = rest.popFirst() else { throw CLIError("\(argument) needs a value\n\(usage)") }
            values[name] = value
        }
    }

    subscript(name: String) -> String? { values[name] }
}
