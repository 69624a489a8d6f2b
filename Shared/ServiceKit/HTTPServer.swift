import Foundation
import Basics
import Synchronization

/// A request the HTTP server accepted: GET only, no body.
public struct HTTPRequest: Sendable {
    /// The path without the query, percent-decoded.
    public var path: String
    /// Query parameters, percent-decoded; the last of a repeated name wins.
    public var query: [String: String]
    /// Header names in lower case.
    public var headers: [String: String]
}

/// A response: status, content type and body. The connection closes after it.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A JSON error body `{"error": …}`.
    public static func error(_ status: Int, _ message: String) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(JSONValue.object(["error": .string(message)]).jsonString.utf8) + [10])
    }
}

/// A small read-only HTTP/1.1 server on POSIX sockets, for health, metrics and lookups: one
/// connection at a time on a thread of its own, GET only, bounded request size, a read
/// timeout, `Connection: close`. Anything else gets a 4xx and the server goes on.
public final class HTTPServer: @unchecked Sendable {
    // The listening socket is touched by the serving thread and by `stop`, which only closes it.
    /// The largest request head accepted.
    public static let maximumHeadBytes = 8 * 1024
    /// How long a client may take to send its request.
    public static let readTimeoutSeconds = 5

    private let socket: Int32
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let stopped = Atomic<Bool>(false)
    /// The address actually bound (the port the system chose for port 0).
    public let boundAddress: String

    /// Binds `address` (`host:port`; port 0 lets the system choose) and starts serving.
    /// `variable` names the setting the address came from, for errors.
    public init(address: String, variable: String = "HTTP address", handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        let (host, socketAddress) = try ipv4SocketAddress(address, variable: variable)
        var bindAddress = socketAddress
        let listener = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw ConfigurationError(variable: variable, problem: "socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &bindAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            let problem = String(cString: strerror(errno))
            close(listener)
            throw ConfigurationError(variable: variable, problem: "cannot listen on \(address): \(problem)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        boundAddress = "\(host):\(UInt16(bigEndian: actual.sin_port))"
        socket = listener
        self.handler = handler
        let thread = Thread { [self] in serve() }
        thread.name = "http"
        thread.start()
    }

    /// Stops accepting connections.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            let connection = accept(socket, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            setTimeouts(connection, seconds: Self.readTimeoutSeconds)
            let response = respond(readHead(connection))
            send(response, on: connection)
            close(connection)
        }
    }

    /// The request head, or the error response it deserves.
    private func readHead(_ connection: Int32) -> Result<[UInt8], HTTPResponseError> {
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        let terminator: [UInt8] = [13, 10, 13, 10]
        while true {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count <= 0 { return .failure(HTTPResponseError(response: .error(408, "the request did not arrive in time"))) }
            head.append(contentsOf: buffer[0..<count])
            if let end = head.firstRange(of: terminator) {
                return .success(Array(head[..<end.lowerBound]))
            }
            if head.count > Self.maximumHeadBytes {
                return .failure(HTTPResponseError(response: .error(431, "the request head is over \(Self.maximumHeadBytes) bytes")))
            }
        }
    }

    private func respond(_ head: Result<[UInt8], HTTPResponseError>) -> HTTPResponse {
        let bytes: [UInt8]
        switch head {
        case .failure(let error): return error.response
        case .success(let value): bytes = value
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .error(400, "the request head is not UTF-8") }
        let lines = text.components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1."), requestLine[1].hasPrefix("/") else {
            return .error(400, "expected a request line: METHOD /path HTTP/1.1")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return .error(400, "a header line without ':'") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard requestLine[0] == "GET" else { return .error(405, "only GET is served here") }
        if let length = headers["content-length"], length != "0" { return .error(413, "a GET carries no body") }
        if headers["transfer-encoding"] != nil { return .error(400, "a GET carries no body") }
        let target = requestLine[1]
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = String(pathPart[0]).removingPercentEncoding else { return .error(400, "the path is not valid percent-encoding") }
        var query: [String: String] = [:]
        if pathPart.count == 2 {
            for pair in pathPart[1].split(separator: "&") {
                let nameValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = String(nameValue[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding,
                      let value = (nameValue.count == 2 ? String(nameValue[1]) : "").replacingOccurrences(of: "+", with: " ").removingPercentEncoding
                else { return .error(400, "the query is not valid percent-encoding") }
                query[name] = value
            }
        }
        return handler(HTTPRequest(path: path, query: query, headers: headers))
    }

    private func send(_ response: HTTPResponse, on connection: Int32) {
        let reason = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
                      413: "Content Too Large", 421: "Misdirected Request", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
                      503: "Service Unavailable"][response.status] ?? "Status"
        var bytes = Array("HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\nConnection: close\r\n\r\n".utf8)
        bytes += response.body
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return }
            sent += count
        }
    }
}

struct HTTPResponseError: Error {
    var response: HTTPResponse
}

/// A minimal HTTP/1.1 GET over a POSIX socket, for the CLI and tests: no dependency, no TLS
/// (the service API listens on a private address).
public enum HTTPClient {
    /// GETs a member's data: when the instance asked answers 421 (another instance owns the
    /// member's task), asks the owner it names.
    public static func getFollowingOwner(_ address: String, _ path: String, token: String? = nil) throws -> (status: Int, body: [UInt8]) {
        let answer = try get(address, path, token: token)
        guard answer.status == 421, let owner = (try? JSONValue.parse(answer.body))?["owner"]?.stringValue else { return answer }
        return try get(owner, path, token: token)
    }

    /// GETs `path` from `address` (`host:port`): the status and the body.
    public static func get(_ address: String, _ path: String, token: String? = nil, timeoutSeconds: Int = 10) throws -> (status: Int, body: [UInt8]) {
        var (host, target) = try ipv4SocketAddress(address, variable: "address")
        // A server listening on every interface is reached on loopback.
        if host == "0.0.0.0" { inet_pton(AF_INET, "127.0.0.1", &target.sin_addr) }
        let connection = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard connection >= 0 else { throw ConfigurationError(variable: "address", problem: "socket: \(String(cString: strerror(errno)))") }
        defer { close(connection) }
        setTimeouts(connection, seconds: timeoutSeconds)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(connection, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ConfigurationError(variable: "address", problem: "cannot connect to \(address): \(String(cString: strerror(errno)))") }
        var request = "GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n"
        if let token { request += "Authorization: Bearer \(token)\r\n" }
        request += "\r\n"
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw ConfigurationError(variable: "address", problem: "could not send the request to \(address)")
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        guard let end = response.firstRange(of: [13, 10, 13, 10]),
              let statusLine = String(validating: response[..<end.lowerBound], as: UTF8.self)?.split(separator: "\r\n").first,
              let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { throw ConfigurationError(variable: "address", problem: "no HTTP response from \(address)") }
        return (status, Array(response[end.upperBound...]))
    }
}

/// `host:port` as an IPv4 socket address (an empty host is every interface).
func ipv4SocketAddress(_ address: String, variable: String) throws -> (host: String, address: sockaddr_in) {
    let parts = address.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let port = UInt16(parts[1]) else {
        throw ConfigurationError(variable: variable, problem: "expected host:port, got \(address)")
    }
    let host = parts[0].isEmpty ? "0.0.0.0" : String(parts[0])
    var socketAddress = sockaddr_in()
    socketAddress.sin_family = sa_family_t(AF_INET)
    socketAddress.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host, &socketAddress.sin_addr) == 1 else {
        throw ConfigurationError(variable: variable, problem: "expected an IPv4 address, got \(host)")
    }
    return (host, socketAddress)
}

/// How long a socket's reads and writes may block.
func setTimeouts(_ socket: Int32, seconds: Int) {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
}
