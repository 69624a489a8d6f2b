import Testing
@testable import Basics
@testable import LoyaltyDomain

/// Parses `text`, expecting failure, and returns the error.
private func parseError(_ text: String) -> JSONError? {
    do {
        let value = try JSONValue.parse(text)
        Issue.record("expected \(text) to be rejected, got \(value)")
        return nil
    } catch {
        return error
    }
}

private func parseError(bytes: [UInt8]) -> JSONError? {
    do {
        let value = try JSONValue.parse(bytes)
        Issue.record("expected \(bytes) to be rejected, got \(value)")
        return nil
    } catch {
        return error
    }
}

@Suite struct JSONTests {
    // MARK: Parsing

    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONValue.parse(#" { "a" : [1, -2.50, 3e+2, true, false, null, "x"], "b": {} , "c": [] } "#)
        #expect(value == [
            "a": [.number("1"), .number("-2.50"), .number("3e+2"), true, false, nil, "x"],
            "b": .object(JSONObject()),
            "c": [],
        ])
    }

    @Test func parsesScalarsAtTopLevel() throws {
        #expect(try JSONValue.parse("0") == .number("0"))
        #expect(try JSONValue.parse("-0.0e-0") == .number("-0.0e-0"))
        #expect(try JSONValue.parse(" \"hi\"\n") == "hi")
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse("\t true \r\n") == true)
    }

    @Test func parsesFromByteCollectionsWithoutContiguousStorage() throws {
        let text = #"{"k":["v",1]}"#
        let fromArray = try JSONValue.parse(Array(text.utf8))
        let fromSlice = try JSONValue.parse(Array("xx\(text)".utf8)[2...])
        let fromLazy = try JSONValue.parse(text.utf8.lazy.map { $0 })  // not contiguous: exercises the fallback
        #expect(fromArray == ["k": ["v", 1]])
        #expect(fromSlice == fromArray)
        #expect(fromLazy == fromArray)
    }

    @Test func decodesEscapes() throws {
        let value = try JSONValue.parse(#""a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u4e2d\u0000""#)
        #expect(value == .string("a\"b\\c/d\u{08}e\u{0C}f\ng\rh\ti" + "A\u{E9}\u{4E2D}\u{0}"))
    }

    @Test func decodesSurrogatePairs() throws {
        #expect(try JSONValue.parse(#""\uD83D\uDE00""#) == "😀")
        #expect(try JSONValue.parse(#""x\ud83d\ude00y""#) == "x😀y")
        #expect(try JSONValue.parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
    }

    @Test func rejectsUnpairedSurrogates() {
        #expect(parseError(#""ab\uD83D""#)?.offset == 3)
        #expect(parseError(#""ab\uD83Dx""#)?.offset == 3)
        #expect(parseError(#""\uD83D\u0041""#)?.offset == 1)
        #expect(parseError(#""\uDE00""#)?.offset == 1)
        #expect(parseError(#""\uDE00""#)?.message == #"unpaired surrogate \uDE00 in string at byte 1"#)
    }

    @Test func keepsRawUTF8() throws {
        let text = #"{"名前":"zürich 😀"}"#
        let value = try JSONValue.parse(text)
        #expect(value["名前"] == "zürich 😀")
        #expect(value.jsonString == text)
    }

    @Test func rejectsInvalidUTF8() {
        let cases: [(bytes: [UInt8], offset: Int)] = [
            ([0x22, 0x61, 0xFF, 0x22], 2),              // never valid
            ([0x22, 0x80, 0x22], 1),                    // lone continuation byte
            ([0x22, 0xC3, 0x22], 1),                    // truncated two-byte sequence
            ([0x22, 0xC0, 0xAF, 0x22], 1),              // overlong "/"
            ([0x22, 0xE0, 0x80, 0xAF, 0x22], 1),        // overlong three-byte
            ([0x22, 0xED, 0xA0, 0x80, 0x22], 1),        // encoded surrogate U+D800
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1),  // beyond U+10FFFF
            ([0x22, 0x61, 0x62, 0xE4, 0xB8], 3),        // truncated at end of input
            ([0xC3, 0xA9], 0),                          // non-ASCII outside a string
        ]
        for (bytes, offset) in cases {
            #expect(parseError(bytes: bytes)?.offset == offset, "\(bytes)")
        }
        #expect(parseError(bytes: [0x22, 0x61, 0xFF, 0x22])?.message == "invalid UTF-8 byte 0xFF in string at byte 2")
    }

    @Test func rejectsTrailingCommas() {
        #expect(parseError("[1,2,]")?.offset == 4)
        #expect(parseError("[1,2,]")?.message == "trailing comma at byte 4")
        #expect(parseError(#"{"a":1 , }"#)?.offset == 7)
        #expect(parseError("[,1]")?.offset == 1)
    }

    @Test func rejectsComments() {
        #expect(parseError("[1] // note")?.offset == 4)
        #expect(parseError("/* c */ 1")?.offset == 0)
        #expect(parseError("[1, /* c */ 2]")?.offset == 4)
    }

    @Test func rejectsLeadingZeros() {
        #expect(parseError("01")?.offset == 0)
        #expect(parseError("[-007]")?.offset == 2)
        #expect(parseError("01")?.message == "leading zero in number at byte 0")
    }

    @Test func rejectsMalformedNumbers() {
        #expect(parseError("NaN")?.message == "unexpected character 'N' at byte 0 (expected a value)")
        #expect(parseError("[Infinity]")?.offset == 1)
        #expect(parseError("-Infinity")?.offset == 1)
        #expect(parseError("+1")?.offset == 0)
        #expect(parseError(".5")?.offset == 0)
        #expect(parseError("1.")?.message == "unexpected end of input at byte 2 (expected a digit after the decimal point)")
        #expect(parseError("1.e3")?.offset == 2)
        #expect(parseError("1e")?.offset == 2)
        #expect(parseError("1e+")?.offset == 3)
        #expect(parseError("-")?.offset == 1)
        #expect(parseError("0x1F")?.offset == 1)
    }

    @Test func rejectsControlCharactersInStrings() {
        #expect(parseError("\"a\nb\"")?.offset == 2)
        #expect(parseError("\"a\nb\"")?.message == "unescaped control character 0x0A in string at byte 2")
        #expect(parseError("\"\u{0}\"")?.offset == 1)
        #expect(parseError("\"tab\there\"")?.offset == 4)
    }

    @Test func rejectsBadEscapes() {
        #expect(parseError(#""a\x""#)?.offset == 2)
        #expect(parseError(#""a\x""#)?.message == #"invalid escape sequence '\x' at byte 2"#)
        #expect(parseError(#""\u12G4""#)?.offset == 5)
        #expect(parseError(#""\u12"#)?.offset == 5)
        #expect(parseError(#""\'""#)?.offset == 1)
    }

    @Test func rejectsUnterminatedInput() {
        #expect(parseError("")?.message == "unexpected end of input at byte 0 (expected a value)")
        #expect(parseError("   ")?.offset == 3)
        #expect(parseError(#""abc"#)?.message == "unterminated string at byte 4")
        #expect(parseError(#"{"a":1"#)?.offset == 6)
        #expect(parseError(#"{"a""#)?.offset == 4)
        #expect(parseError("[1")?.offset == 2)
        #expect(parseError("tru")?.message == "unexpected end of input at byte 3 (expected 'true')")
        #expect(parseError("nul1")?.offset == 3)
    }

    @Test func rejectsStructuralErrors() {
        #expect(parseError(#"{"a" 1}"#)?.message == "unexpected character '1' at byte 5 (expected ':' after the key)")
        #expect(parseError(#"{a:1}"#)?.offset == 1)
        #expect(parseError(#"{"a":1 "b":2}"#)?.offset == 7)
        #expect(parseError("[1 2]")?.offset == 3)
        #expect(parseError("{'a':1}")?.offset == 1)
        #expect(parseError("]")?.offset == 0)
    }

    @Test func rejectsTrailingContent() {
        #expect(parseError("1 x")?.message == "unexpected character 'x' after the JSON value at byte 2")
        #expect(parseError("{} {}")?.offset == 3)
        #expect(parseError("[1]]")?.offset == 3)
        #expect(parseError("\"a\"\u{0}")?.message == "unexpected byte 0x00 after the JSON value at byte 3")
    }

    @Test func rejectsDuplicateKeys() {
        let text = #"{"memberId":"M1","paidMinor":100,"paidMinor":200}"#
        #expect(parseError(text)?.offset == 33)
        #expect(parseError(text)?.message == #"duplicate key "paidMinor" at byte 33"#)
        // Equal after unescaping is still a duplicate.
        #expect(parseError(#"{"a":1,"\u0061":2}"#)?.offset == 7)
        // Nested objects have their own key spaces.
        #expect(throws: Never.self) { try JSONValue.parse(#"{"a":{"a":1},"b":{"a":2}}"#) }
    }

    @Test func rejectsDuplicateKeysInLargeObjects() throws {
        // Past the linear-scan limit the parser switches to a set; both paths must agree.
        let members = (0..<40).map { "\"k\($0)\":\($0)" }
        let unique = try JSONValue.parse("{" + members.joined(separator: ",") + "}")
        #expect(unique.objectValue?.members.count == 40)
        #expect(unique["k39"] == 39)

        let duplicated = "{" + members.joined(separator: ",") + ",\"k3\":0}"
        let error = parseError(duplicated)
        #expect(error?.message.hasPrefix(#"duplicate key "k3" at byte"#) == true)
        #expect(error?.offset == duplicated.utf8.count - 7)
    }

    @Test func limitsNestingDepth() throws {
        let deepest = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(throws: Never.self) { try JSONValue.parse(deepest) }

        let tooDeep = String(repeating: "[", count: 129) + String(repeating: "]", count: 129)
        #expect(parseError(tooDeep)?.offset == 128)
        #expect(parseError(tooDeep)?.message == "nesting deeper than 128 levels at byte 128")

        let mixed = String(repeating: #"{"a":["#, count: 65)
        #expect(parseError(mixed)?.offset == 64 * 6)

        // Far deeper input must fail cleanly rather than overflow the stack.
        #expect(parseError(String(repeating: "[", count: 100_000))?.offset == 128)
    }

    @Test func roundTripsThroughSerialization() throws {
        let texts = [
            #"{"id":"e-1","at":"2026-03-15T02:00:00Z","paidMinor":12500,"rate":1.5,"tags":["a","b"],"meta":{"x":null,"y":false,"z":-1e-3}}"#,
            #"[[],{},"",0,-0,"\u0001\u001f","\"\\\n\r\t\b\f",12345678901234567890]"#,
            #""日本語 😀 /slash""#,
        ]
        for text in texts {
            let first = try JSONValue.parse(text)
            let bytes = first.serialized()
            #expect(String(decoding: bytes, as: UTF8.self) == text)
            #expect(try JSONValue.parse(bytes) == first)
        }
    }

    @Test func canonicalizesWhitespaceAndEscapes() throws {
        let value = try JSONValue.parse(" { \"b\" : \"\\u0041\\/\\u00e9\\u001F\" ,\n \"a\" : [ 1 , 2 ] } ")
        #expect(value.jsonString == #"{"b":"A/é\u001f","a":[1,2]}"#)
    }

    // MARK: Writing

    @Test func writesCanonicalBytesForAKnownObject() {
        let value: JSONValue = [
            "z": 1,
            "a": "quote\" backslash\\ slash/ nl\n cr\r tab\t bs\u{08} ff\u{0C} nul\u{0} us\u{1F} del\u{7F} é",
            "n": nil,
            "t": true,
            "list": [.number("-3.50"), .int(Int64.min), [:]],
        ]
        let expected = #"{"z":1,"a":"quote\" backslash\\ slash/ nl\n cr\r tab\t bs\b ff\f nul\u0000 us\u001f del"#
            + "\u{7F} é\"," + #""n":null,"t":true,"list":[-3.50,-9223372036854775808,{}]}"#
        #expect(value.serialized() == Array(expected.utf8))
        #expect(value.description == expected)
    }

    @Test func writerHandlesCommasAndNesting() {
        var writer = JSONWriter(capacity: 64)
        writer.beginObject()
        writer.key("memberId"); writer.string("M-1")
        writer.key("paidMinor"); writer.int(Int64(1250))
        writer.key("count"); writer.int(-7)
        writer.key("rate"); writer.raw("1.5")
        writer.key("flags"); writer.beginArray(); writer.bool(true); writer.bool(false); writer.null(); writer.endArray()
        writer.key("nested"); writer.beginObject(); writer.endObject()
        writer.key("tree"); writer.value(["a": [1, "b"]])
        writer.key("empty"); writer.beginArray(); writer.endArray()
        writer.endObject()
        let expected = #"{"memberId":"M-1","paidMinor":1250,"count":-7,"rate":1.5,"flags":[true,false,null],"#
            + #""nested":{},"tree":{"a":[1,"b"]},"empty":[]}"#
        #expect(String(decoding: writer.bytes, as: UTF8.self) == expected)

        writer.reset()
        writer.beginArray(); writer.int(0); writer.int(Int64.max); writer.endArray()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "[0,9223372036854775807]")
    }

    @Test func aWriterGrowsFromASmallBufferWithoutLosingWhatItWrote() throws {
        // Every kind of write crosses the buffer's end somewhere: a long plain string, one whose
        // escape comes after its first 16 bytes, times, integers at both ends, literals.
        var tree = JSONObject()
        var writer = JSONWriter(capacity: 1)
        writer.beginObject()
        for index in 0..<40 {
            let plain = String(repeating: "k", count: index)
            let escaped = String(repeating: "é", count: index % 9) + "\"quoted\"\n" + plain
            writer.key(escaping: "plain\(index)"); writer.string(plain)
            writer.key(escaping: "escaped\(index)"); writer.string(escaped)
            writer.key(escaping: "min\(index)"); writer.int(Int64.min + Int64(index))
            writer.key(escaping: "max\(index)"); writer.int(Int64.max - Int64(index))
            writer.key(escaping: "flag\(index)"); writer.bool(index % 2 == 0)
            writer.key(escaping: "none\(index)"); writer.null()
            writer.key(escaping: "time\(index)"); writer.time(EventTime(millis: Int64(index) * 86_400_123))
            tree["plain\(index)"] = .string(plain)
            tree["escaped\(index)"] = .string(escaped)
            tree["min\(index)"] = .int(Int64.min + Int64(index))
            tree["max\(index)"] = .int(Int64.max - Int64(index))
            tree["flag\(index)"] = .bool(index % 2 == 0)
            tree["none\(index)"] = .null
            tree["time\(index)"] = .string(EventTime(millis: Int64(index) * 86_400_123).rfc3339)
        }
        writer.endObject()
        #expect(writer.bytes == JSONValue.object(tree).serialized())
        #expect(try JSONValue.parse(writer.bytes) == .object(tree))
    }

    @Test func keysInTheCodeAndKeysMadeAtRunTimeWriteTheBytesOfTheTree() {
        // From a one-byte buffer, so that every key crosses its end: a key of one scalar, short
        // and long ones, one in Chinese, and a key made at run time that must be escaped.
        var writer = JSONWriter(capacity: 1)
        writer.beginObject()
        writer.key("a"); writer.int(1)
        writer.key("memberId"); writer.string("m-1")
        writer.key("a key longer than sixteen bytes"); writer.bool(true)
        writer.key("会员"); writer.string("x")
        writer.key(escaping: "say \"hi\"\n"); writer.null()
        writer.endObject()
        let tree: JSONObject = ["a": 1, "memberId": "m-1", "a key longer than sixteen bytes": true, "会员": "x", "say \"hi\"\n": nil]
        #expect(writer.bytes == JSONValue.object(tree).serialized())
        #expect(String(decoding: writer.bytes, as: UTF8.self).hasSuffix(#","say \"hi\"\n":null}"#))
    }

    @Test func aCharacterToEscapeIsFoundWhereverItStands() {
        // The writer checks eight bytes at a time: each of these, at every offset of strings of
        // up to 19 bytes, must be written as a plain per-character escaper writes it.
        func reference(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u00" + (hex.count == 1 ? "0" + hex : hex)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let specials: [Character] = ["\"", "\\", "\u{00}", "\u{1F}", "\n", "\u{7F}", "é", " ", "!", "#", "[", "]", "~"]
        for length in 1...19 {
            for offset in 0..<length {
                for special in specials {
                    var characters = Array(repeating: Character("a"), count: length)
                    characters[offset] = special
                    let text = String(characters)
                    var writer = JSONWriter(capacity: 4)
                    writer.string(text)
                    #expect(String(decoding: writer.bytes, as: UTF8.self) == reference(text), "\(length) \(offset) \(special.unicodeScalars.first!.value)")
                }
            }
        }
    }

    @Test func aStringsEndEscapeOrOtherBytesAreFoundWhereverTheyStand() throws {
        // The parser scans eight bytes at a time: the quote ending a plain string, an escape, a
        // non-ASCII character or a raw control character (refused), at every offset of strings
        // of up to 19 characters, with and without more JSON after them.
        let specials: [(json: String, text: String?)] = [
            ("x", "x"), (#"\""#, "\""), (#"\\"#, "\\"), (#"\n"#, "\n"), (#"\u00e9"#, "é"), ("é", "é"), ("中", "中"), ("\u{01}", nil), ("\u{1F}", nil),
        ]
        for length in 1...19 {
            for offset in 0..<length {
                for special in specials {
                    let before = String(repeating: "a", count: offset)
                    let after = String(repeating: "b", count: length - offset - 1)
                    for tail in ["", #",1,"xxxxxxxxxxxxxxxxxxxx"]"#] {
                        let json = "[\"" + before + special.json + after + "\"" + (tail.isEmpty ? "]" : tail)
                        if let text = special.text {
                            let parsed = try JSONValue.parse(json).arrayValue?.first?.stringValue
                            #expect(parsed == before + text + after, "\(json)")
                        } else {
                            #expect(throws: JSONError.self, "\(json)") { try JSONValue.parse(json) }
                        }
                    }
                }
            }
        }
    }

    @Test func anEmbeddedSerializedValueGivesTheBytesOfItsTree() {
        let views: [(String, JSONValue)] = [("points", ["balance": 120, "lots": [["id": "l-1"]]]), ("tiers", ["tier": "gold"])]
        var tree = JSONObject()
        for (name, view) in views { tree[name] = view }
        tree["member"] = "M-\"1\""
        var writer = JSONWriter()
        writer.beginObject()
        for (name, view) in views {
            writer.key(escaping: name)
            writer.embed(serializedValue: view.serialized())
        }
        writer.key("member"); writer.string("M-\"1\"")
        writer.endObject()
        #expect(writer.bytes == JSONValue.object(tree).serialized())
        #expect(String(decoding: writer.bytes, as: UTF8.self).hasPrefix(#"{"points":{"balance":120,"#))
    }

    // MARK: Objects and literals

    @Test func objectSubscriptReplacesAppendsAndRemoves() {
        var object: JSONObject = ["a": 1, "b": 2]
        object["a"] = "one"
        object["c"] = .null
        #expect(object.members.map(\.key) == ["a", "b", "c"])
        #expect(object["a"] == "one")
        #expect(object["c"] == .null)
        object["b"] = nil
        object["missing"] = nil
        #expect(JSONValue.object(object).jsonString == #"{"a":"one","c":null}"#)
        #expect(JSONObject(["x": true, "w": false]).members.map(\.key) == ["x", "w"])
    }

    @Test func literalsAndConstructors() {
        #expect(JSONValue.int(Int64(-42)) == .number("-42"))
        #expect(JSONValue.int(7) == .number("7"))
        #expect((12 as JSONValue) == .number("12"))
        #expect((nil as JSONValue).isNull)
        #expect(("s" as JSONValue).stringValue == "s")
        let dictionary: JSONValue = ["second": 2, "first": 1]
        #expect(dictionary.objectValue?.members.map(\.key) == ["second", "first"])
    }

    @Test func accessorsReturnNilForOtherTypes() {
        let number: JSONValue = 5
        #expect(number.stringValue == nil)
        #expect(number.boolValue == nil)
        #expect(number.arrayValue == nil)
        #expect(number.objectValue == nil)
        #expect(!number.isNull)
        #expect(number["key"] == nil)
        #expect(JSONValue.string("5").int64Value == nil)
        #expect(JSONValue.bool(true).tenthsValue == nil)
        #expect(JSONValue.array([1]).boolValue == nil)
    }

    @Test(arguments: [
        ("12", 12 as Int64?), ("-0", 0), ("0", 0),
        ("9223372036854775807", Int64.max), ("-9223372036854775808", Int64.min),
        ("9223372036854775808", nil), ("-9223372036854775809", nil), ("99999999999999999999", nil),
        ("12.0", nil), ("1e3", nil), ("-1E0", nil), ("012", nil), ("", nil), ("-", nil), ("1a", nil), ("+1", nil),
    ])
    func int64Values(literal: String, expected: Int64?) {
        #expect(JSONValue.number(literal).int64Value == expected)
        #expect(JSONValue.number(literal).intValue == expected.map { Int($0) })
    }

    @Test(arguments: [
        ("2", 20 as Int64?), ("2.0", 20), ("1.5", 15), ("1.50", 15), ("1.500000", 15), ("-0.5", -5), ("-0", 0),
        ("0.1", 1), ("-12.3", -123), ("922337203685477580.7", Int64.max), ("-922337203685477580.8", Int64.min),
        ("922337203685477580.8", nil), ("922337203685477581", nil),
        ("1.25", nil), ("0.05", nil), ("1e1", nil), ("1.5e0", nil), ("1.", nil), (".5", nil), ("01.5", nil),
    ])
    func tenthsValues(literal: String, expected: Int64?) {
        #expect(JSONValue.number(literal).tenthsValue == expected)
    }

    @Test func validatesNumberLiterals() {
        for valid in ["0", "-0", "12", "1.5", "-0.0e-0", "1E+9", "123e45"] {
            #expect(JSONNumberLiteral.isValid(valid), "\(valid)")
        }
        for invalid in ["", "-", "01", "1.", ".5", "1e", "+1", "1e+", "NaN", "1 ", "0x1"] {
            #expect(!JSONNumberLiteral.isValid(invalid), "\(invalid)")
        }
    }

    // MARK: Typed fields

    @Test func readsTypedFields() throws {
        let object = try #require(JSONValue.parse(#"""
            {"id":"e1","n":42,"big":9223372036854775807,"flag":true,"rate":1.5,
             "payment":{"paidMinor":1250},"items":[1,2],"none":null}
            """#).objectValue)
        #expect(try object.string("id") == "e1")
        #expect(try object.int64("big") == Int64.max)
        #expect(try object.int("n") == 42)
        #expect(try object.bool("flag"))
        #expect(try object.tenths("rate") == 15)
        #expect(try object.tenths("n") == 420)
        #expect(try object.array("items") == [1, 2])
        #expect(try object.object("payment").int64("paidMinor", at: "payment") == 1250)

        #expect(try object.optionalString("absent") == nil)
        #expect(try object.optionalString("none") == nil)
        #expect(try object.optionalInt64("n") == 42)
        #expect(try object.optionalInt("none") == nil)
        #expect(try object.optionalBool("flag") == true)
        #expect(try object.optionalObject("absent") == nil)
        #expect(try object.optionalArray("items")?.count == 2)
        #expect(try object.optionalTenths("none") == nil)
    }

    @Test func reportsFieldErrorsWithPaths() throws {
        let object: JSONObject = ["id": 5, "rate": .number("1.25"), "amount": .number("12.0"), "none": nil]
        func fieldError(_ read: (JSONObject) throws(JSONFieldError) -> Void) -> JSONFieldError? {
            do {
                try read(object)
                return nil
            } catch {
                return error
            }
        }
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.string("missing") }
            == JSONFieldError(path: "missing", problem: "missing"))
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.string("id", at: "event") }
            == JSONFieldError(path: "event.id", problem: "expected a string"))
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.optionalString("id", at: "a.b") }?.description
            == "a.b.id: expected a string")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.int64("amount", at: "payment") }?.description
            == "payment.amount: expected an integer")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.int("none") }?.problem == "expected an integer")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.tenths("rate", at: "rules[0]") }?.description
            == "rules[0].rate: expected a number with at most one decimal place")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.bool("id") }?.problem == "expected a boolean")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.object("id") }?.problem == "expected an object")
        #expect(fieldError { o throws(JSONFieldError) in _ = try o.optionalArray("id") }?.problem == "expected an array")
    }

    @Test func writesATimeAsItsRFC3339String() {
        let times = [
            EventTime(millis: 0), EventTime(millis: 1_767_196_800_123), EventTime(millis: -1),
            EventTime(millis: .min), EventTime(millis: .max),  // written as the nearest end of years 1–9999
        ]
        for time in times {
            var direct = JSONWriter()
            direct.beginArray(); direct.time(time); direct.int(1); direct.endArray()
            var viaString = JSONWriter()
            viaString.beginArray(); viaString.string(time.rfc3339); viaString.int(1); viaString.endArray()
            #expect(direct.bytes == viaString.bytes, "\(time.millis)")
        }
        var writer = JSONWriter()
        writer.time(EventTime(millis: 1_767_196_800_123))
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "\"2025-12-31T16:00:00.123Z\"")
    }

    // MARK: Parsing a projection

    /// What a full parse gives, with only the members `projection` names.
    private func projected(_ value: JSONValue, _ projection: JSONProjection) -> JSONValue {
        guard let kept = projection.members, let object = value.objectValue else { return value }
        return .object(JSONObject(object.members.compactMap { member in
            kept.first { $0.name == member.key }.map { JSONMember(key: member.key, value: projected(member.value, $0.projection)) }
        }))
    }

    private let ledgerEntry = #"""
        {"specversion":"1.0","id":"s1/base","type":"points.earned","time":"2026-01-06T17:28:45.025Z","subject":"m\u00e934",
         "data":{"entryId":"s1/base","sequence":1,"kind":"earned","points":440,"delta":{"available":0,"pending":440,"n":[1,-2.5e3,true,false,null]},
         "lots":[{"lotId":"L1","delta":440,"expiresAt":"2027-01-31T16:00:00.000Z"}],"note":"caf\u00e9 \"x\" é"}}
        """#
    private let ledgerFields: JSONProjection = ["type": .whole, "subject": .whole, "data": JSONProjection(keeping: ["sequence", "points", "lots"])]

    @Test func aProjectionKeepsTheMembersItNamesAsAFullParseHasThem() throws {
        let full = try JSONValue.parse(ledgerEntry)
        let kept = try JSONValue.parse(Array(ledgerEntry.utf8), keeping: ledgerFields)
        #expect(kept == projected(full, ledgerFields))
        #expect(kept == [
            "type": "points.earned", "subject": "mé34",
            "data": ["sequence": 1, "points": 440, "lots": [["lotId": "L1", "delta": 440, "expiresAt": "2027-01-31T16:00:00.000Z"]]],
        ])
        // A key spelled with an escape is the key it decodes to.
        #expect(try JSONValue.parse(Array(#"{"\u0074ype":"x","b":1}"#.utf8), keeping: ["type": .whole]) == ["type": "x"])
        // A value that is not an object where the projection expects one is kept whole; so is a document.
        #expect(try JSONValue.parse(Array(#"{"data":[1,{"a":2}],"b":{}}"#.utf8), keeping: ledgerFields) == ["data": [1, ["a": 2]]])
        #expect(try JSONValue.parse(Array(#"{"b":{"type":1}}"#.utf8), keeping: ledgerFields) == [:])
        #expect(try JSONValue.parse(Array("[1,2]".utf8), keeping: ledgerFields) == [1, 2])
        #expect(try JSONValue.parse(Array(ledgerEntry.utf8), keeping: .whole) == full)
    }

    @Test func aProjectionRejectsWhatAFullParseRejectsWithTheSameErrorBarDuplicatesItDoesNotRead() throws {
        // Every byte of the entry replaced by bytes that break it somewhere, and the entry cut at
        // every byte: wherever the damage is, in a kept member or one passed over, both parses
        // agree. Only a duplicate key in a member passed over is not found, as it is not read.
        let bytes = Array(ledgerEntry.utf8)
        var variants: [[UInt8]] = (0...bytes.count).map { Array(bytes[..<$0]) }
        for index in bytes.indices {
            for replacement: UInt8 in [0x7D, 0x5D, 0x2C, 0x22, 0x5C, 0x78, 0x30, 0x01, 0xFF, 0xC3] {
                var variant = bytes
                variant[index] = replacement
                variants.append(variant)
            }
        }
        var rejected = 0
        for variant in variants {
            let full = Result { () throws(JSONError) in try JSONValue.parse(variant) }
            let kept = Result { () throws(JSONError) in try JSONValue.parse(variant, keeping: ledgerFields) }
            switch (full, kept) {
            case (.success(let value), .success(let keptValue)):
                #expect(keptValue == projected(value, ledgerFields), "\(String(decoding: variant, as: UTF8.self))")
            case (.failure(let error), .failure(let keptError)):
                rejected += 1
                #expect(keptError == error, "\(String(decoding: variant, as: UTF8.self))")
            case (.failure(let error), .success):
                #expect(error.message.hasPrefix("duplicate key"), "\(error): \(String(decoding: variant, as: UTF8.self))")
            case (.success, .failure(let keptError)):
                Issue.record("only the projection rejects \(String(decoding: variant, as: UTF8.self)): \(keptError)")
            }
        }
        #expect(rejected > variants.count / 2)
        // Nesting passed over counts against the limit as parsed nesting does (the object is
        // the first level), and leaving a container passed over gives its level back.
        for levels in [127, 128] {
            let nested = Array((#"{"id":"# + String(repeating: "[", count: levels) + String(repeating: "]", count: levels) + #","type":"t"}"#).utf8)
            let full = Result { () throws(JSONError) in try JSONValue.parse(nested) }
            let kept = Result { () throws(JSONError) in try JSONValue.parse(nested, keeping: ledgerFields) }
            switch (full, kept) {
            case (.success, .success(let value)): #expect(levels == 127 && value == ["type": "t"])
            case (.failure(let error), .failure(let keptError)): #expect(levels == 128 && keptError == error)
            default: Issue.record("the parses disagree at \(levels) levels: \(full), \(kept)")
            }
        }
        let siblings = Array((#"{"id":["# + Array(repeating: #"{"a":[[]]}"#, count: 200).joined(separator: ",") + #"],"type":"t"}"#).utf8)
        #expect(try JSONValue.parse(siblings, keeping: ledgerFields) == ["type": "t"])
        // A duplicate among the members kept is found as in a full parse.
        let duplicated = #"{"type":"a","id":1,"type":"b"}"#
        #expect(throws: JSONError(offset: 19, message: #"duplicate key "type" at byte 19"#)) {
            try JSONValue.parse(Array(duplicated.utf8), keeping: ledgerFields)
        }
        #expect(throws: Never.self) { try JSONValue.parse(Array(#"{"type":"a","id":1,"id":2}"#.utf8), keeping: ledgerFields) }
    }

    // MARK: Reading in place

    /// The projection `ledgerFields` read with a reader: the members it names, values kept whole.
    private func readLedgerFields(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        let root = JSONReader.Names(["type", "subject", "data"])
        let data = JSONReader.Names(["sequence", "points", "lots"])
        return try JSONReader.read(bytes) { (reader: inout JSONReader) throws(JSONError) -> JSONValue in
            var kept = JSONObject()
            let isObject = try reader.readObject(root) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                guard field == 2 else { return kept[["type", "subject"][field]] = try reader.value() }
                var keptData = JSONObject()
                let dataIsObject = try reader.readObject(data) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                    keptData[["sequence", "points", "lots"][field]] = try reader.value()
                }
                kept["data"] = dataIsObject ? .object(keptData) : "not an object"
            }
            return isObject ? .object(kept) : "not an object"
        }
    }

    @Test func aReaderTakesWhatAProjectionKeepsAndChecksWhatItPassesOver() throws {
        let bytes = Array(ledgerEntry.utf8)
        #expect(try readLedgerFields(bytes) == JSONValue.parse(bytes, keeping: ledgerFields))
        // Values taken as what they are, where they stand; as nil when they are something else.
        let document = Array(#"{"s":"caf\u00e9","n":-12,"f":1.5,"e":1e2,"t":"2026-01-06T17:28:45.025+08:00","w":"2026-01-06T09:28:45.025Z","o":{"a":[1]},"k\u0065y":true,"left":[{"a":1}]}"#.utf8)
        let names = JSONReader.Names(["s", "n", "f", "e", "t", "w", "o", "key"])
        let taken = try JSONReader.read(document) { (reader: inout JSONReader) throws(JSONError) -> [String] in
            var taken: [String] = []
            try reader.readObject(names) { (field: Int, reader: inout JSONReader) throws(JSONError) in
                switch field {
                case 0: taken.append("s=\(try reader.string() ?? "nil")")
                case 1, 2, 3: taken.append("\(field)=\(try reader.int64().map(String.init) ?? "nil")")
                case 4, 5: taken.append("\(field)=\(try reader.time()?.millis ?? -1)")
                case 6: taken.append("o=\(try reader.string() ?? "nil")")
                default: taken.append("key")
                }
            }
            return taken
        }
        #expect(taken == ["s=café", "1=-12", "2=nil", "3=nil", "4=1767691725025", "5=1767691725025", "o=nil", "key"])
        // What is not read is still checked, and nothing may follow the document.
        for bad in [#"{"a":[1,}"#, #"{"a":01}"#, #"{"a":"\x"}"#, #"{"a":1} x"#, #"{"a":1"#, #"{"a":{"b":1}"#] {
            #expect(throws: JSONError.self, "\(bad)") { try JSONReader.read(Array(bad.utf8)) { (_: inout JSONReader) throws(JSONError) in } }
        }
        // A key named twice is a duplicate, found at the second as a projection finds it; one
        // passed over twice is not read; others read whole are checked as a full parse checks them.
        #expect(throws: JSONError(offset: 19, message: #"duplicate key "type" at byte 19"#)) { try readLedgerFields(Array(#"{"type":"a","id":1,"type":"b"}"#.utf8)) }
        #expect(try readLedgerFields(Array(#"{"type":"a","id":1,"id":2}"#.utf8)) == ["type": "a"])
        // The duplicate is found before what follows its key, as a parse finds it.
        let broken = Array(#"{"type":"a","type"}"#.utf8)
        #expect(throws: JSONError(offset: 12, message: #"duplicate key "type" at byte 12"#)) { try readLedgerFields(broken) }
        #expect(throws: JSONError(offset: 12, message: #"duplicate key "type" at byte 12"#)) { try JSONValue.parse(broken, keeping: ledgerFields) }
        // A named member left unread, and an element left unread, are read whole.
        #expect(throws: JSONError.self) {
            try JSONReader.read(Array(#"{"a":{"c":1,"c":2}}"#.utf8)) { (reader: inout JSONReader) throws(JSONError) in try reader.readObject(JSONReader.Names(["a"])) { _, _ in } }
        }
        #expect(throws: JSONError.self) {
            try JSONReader.read(Array(#"[{"c":1,"c":2}]"#.utf8)) { (reader: inout JSONReader) throws(JSONError) in try reader.readArray { _ in } }
        }
        let twice = Array(#"{"a":1,"b":{"c":1,"c":2}}"#.utf8)
        #expect(throws: Never.self) { try JSONReader.read(twice) { (reader: inout JSONReader) throws(JSONError) in try reader.readObject(JSONReader.Names(["a"])) { _, _ in } } }
        #expect(throws: JSONError.self) {
            try JSONReader.read(twice) { (reader: inout JSONReader) throws(JSONError) in try reader.readObject(JSONReader.Names(["a"]), others: .readWhole) { _, _ in } }
        }
        #expect(throws: JSONError(offset: 13, message: #"duplicate key "b" at byte 13"#)) {
            try JSONReader.read(Array(#"{"b":1,"a":2,"b":3}"#.utf8)) { (reader: inout JSONReader) throws(JSONError) in
                try reader.readObject(JSONReader.Names(["a"]), others: .readWhole) { _, _ in }
            }
        }
    }

    @Test func aReaderRejectsWhatAProjectionRejectsAndReadsWhatItReads() throws {
        // The projection's test, for the reader: every byte of the entry broken, and the entry
        // cut at every byte; the same values, or the same error.
        let bytes = Array(ledgerEntry.utf8)
        var variants: [[UInt8]] = (0...bytes.count).map { Array(bytes[..<$0]) }
        for index in bytes.indices {
            for replacement: UInt8 in [0x7D, 0x5D, 0x2C, 0x22, 0x5C, 0x78, 0x30, 0x01, 0xFF, 0xC3, 0x7B, 0x5B] {
                var variant = bytes
                variant[index] = replacement
                variants.append(variant)
            }
        }
        var rejected = 0
        for variant in variants {
            let kept = Result { () throws(JSONError) in try JSONValue.parse(variant, keeping: ledgerFields) }
            let read = Result { () throws(JSONError) in try readLedgerFields(variant) }
            let text = String(decoding: variant, as: UTF8.self)
            switch (kept, read) {
            case (.success(var value), .success(let readValue)):
                // The reader lets go of what is not an object where it reads one; the
                // projection keeps it whole.
                if case .object(var object) = value {
                    if let data = object["data"], data.objectValue == nil { object["data"] = "not an object" }
                    value = .object(object)
                } else {
                    value = "not an object"
                }
                #expect(readValue == value, "\(text)")
            case (.failure(let error), .failure(let readError)):
                rejected += 1
                #expect(readError == error, "\(text): \(error) / \(readError)")
            default:
                Issue.record("the readings disagree on \(text): \(kept) / \(read)")
            }
        }
        #expect(rejected > variants.count / 2)
        // Nesting counts against the limit as parsed nesting does, taken or passed over.
        for levels in [127, 128] {
            let nested = Array((#"{"id":"# + String(repeating: "[", count: levels) + String(repeating: "]", count: levels) + #","type":"t"}"#).utf8)
            let kept = Result { () throws(JSONError) in try JSONValue.parse(nested, keeping: ledgerFields) }
            let read = Result { () throws(JSONError) in try readLedgerFields(nested) }
            switch (kept, read) {
            case (.success(let value), .success(let readValue)): #expect(levels == 127 && readValue == value)
            case (.failure(let error), .failure(let readError)): #expect(levels == 128 && readError == error)
            default: Issue.record("the readings disagree at \(levels) levels: \(kept), \(read)")
            }
        }
    }
}
