// DiffKitJSON: the parser, the writer (sorted keys, stable bytes), Codable both ways, base64 and
// RFC 3339 times; checked against FoundationEssentials' JSONDecoder on the same documents.
import DiffKitJSON
import FoundationEssentials
import TestSupport
import Testing

@Suite struct JSONTests {
    struct Descriptor: Codable, Equatable {
        var mediaType: String
        var digest: String
        var size: Int64
        var annotations: [String: String]?
        var platform: Platform?
        struct Platform: Codable, Equatable { var os: String; var architecture: String; var variant: String? }
    }

    struct Config: Codable, Equatable {
        struct RootFS: Codable, Equatable {
            var type: String
            var diffIDs: [String]
            enum CodingKeys: String, CodingKey { case type, diffIDs = "diff_ids" }
        }
        var rootfs: RootFS
        var history: [[String: String]]
        var big: UInt64
        var negative: Int
        var ratio: Double
        var flag: Bool
        var nothing: String?
    }

    @Test func parsesAndWritesWithSortedKeys() throws {
        let text = #"{ "b": [1, 2.5, -3e2, true, false, null], "a": {"y": "\u00e9\n\"q\"", "x": "\ud83d\ude00"}, "c": 18446744073709551615 }"#
        let v = try JSONValue.parse(Array(text.utf8))
        #expect(v["c"] == .number("18446744073709551615"))
        #expect(v["a"]?["x"] == .string("😀"))
        let out = String(decoding: v.serialized(), as: UTF8.self)
        #expect(out == #"{"a":{"x":"😀","y":"é\n\"q\""},"b":[1,2.5,-3e2,true,false,null],"c":18446744073709551615}"#)
        #expect(try JSONValue.parse(v.serialized()).serialized() == v.serialized())
    }

    @Test func refusesBrokenDocuments() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\u{1}\"", "\"\\ud800\"", "tru", "{} x", "[\"a\"", "-"] {
            #expect(throws: JSONError.self, "\(bad)") { _ = try JSONValue.parse(Array(bad.utf8)) }
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONError.self) { _ = try JSONValue.parse(Array(deep.utf8)) }
    }

    @Test func codableRoundTripMatchesFoundation() throws {
        let c = Config(rootfs: .init(type: "layers", diffIDs: ["sha256:aa", "sha256:bb"]),
                       history: [["created": "1970-01-01T00:00:00Z", "created_by": "difftool"]],
                       big: UInt64.max, negative: -42, ratio: 0.25, flag: true, nothing: nil)
        let ours = try JSONDocument.encode(c)
        #expect(try JSONDocument.decode(Config.self, from: ours) == c)
        #expect(try JSONDecoder().decode(Config.self, from: Data(ours)) == c)
        // Foundation's sorted output decodes the same with ours, and ours is sorted and compact.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let theirs = try encoder.encode(c)
        #expect(try JSONDocument.decode(Config.self, from: Array(theirs)) == c)
        #expect(ours == Array(theirs))
        let d = Descriptor(mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:00", size: 7,
                           annotations: ["org.opencontainers.image.ref.name": "v1"], platform: .init(os: "linux", architecture: "amd64", variant: nil))
        #expect(try JSONDocument.encode(d) == Array(try encoder.encode(d)))
        #expect(try JSONDocument.decode([Descriptor].self, from: JSONDocument.encode([d, d])) == [d, d])
    }

    @Test func decodingErrorsNameTheKeyPath() throws {
        let doc = Array(#"{"rootfs":{"type":"layers","diff_ids":["a",7]},"history":[],"big":1,"negative":1,"ratio":1,"flag":true}"#.utf8)
        let e = #expect(throws: JSONError.self) { _ = try JSONDocument.decode(Config.self, from: doc) }
        #expect(e?.description.contains("at .rootfs.diff_ids[1]: expected a string, found a number") == true, "\(e?.description ?? "")")
        let missing = Array(#"{"rootfs":{"type":"layers"}}"#.utf8)
        let m = #expect(throws: JSONError.self) { _ = try JSONDocument.decode(Config.self, from: missing) }
        #expect(m?.description.contains("at .rootfs.diff_ids: missing") == true, "\(m?.description ?? "")")
    }

    @Test func randomValuesRoundTrip() throws {
        var rng = SplitMix(seed: 7)
        func random(_ depth: Int) -> JSONValue {
            switch rng.below(depth > 3 ? 4 : 6) {
            case 0: return .null
            case 1: return .bool(rng.below(2) == 0)
            case 2: return .number(String(Int64(bitPattern: rng.next())))
            case 3: return .string(String(decoding: (0..<rng.below(12)).map { _ in UInt8(rng.below(128)) }, as: UTF8.self) + "é😀")
            case 4: return .array((0..<rng.below(5)).map { _ in random(depth + 1) })
            default:
                var keys = Set<String>()
                for _ in 0..<rng.below(5) { keys.insert("k\(rng.below(50))") }
                return .object(keys.sorted().map { ($0, random(depth + 1)) })
            }
        }
        for _ in 0..<300 {
            let v = random(0)
            let bytes = v.serialized()
            #expect(try JSONValue.parse(bytes) == v)
            // Foundation reads every document the writer makes.
            _ = try JSONDecoder().decode(AnyDecodable.self, from: Data(bytes))
        }
    }

    @Test func base64AndTimes() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, coded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == coded)
            #expect(Base64.decode(coded) == Array(plain.utf8))
        }
        let all = (0..<256).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all)) == all)
        #expect(Base64.decode("Zm9v!") == nil && Base64.decode("Zm9") == nil)
        #expect(RFC3339.string(seconds: 0) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.string(seconds: 1_700_000_000, nanoseconds: 120_000_000) == "2023-11-14T22:13:20.12Z")
    }
}

/// Anything JSON, decoded by walking it (to check that Foundation accepts a document).
struct AnyDecodable: Decodable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    init(from decoder: any Decoder) throws {
        if let c = try? decoder.container(keyedBy: Key.self) {
            for k in c.allKeys { _ = try c.decode(AnyDecodable.self, forKey: k) }
        } else if var a = try? decoder.unkeyedContainer() {
            while !a.isAtEnd { _ = try a.decode(AnyDecodable.self) }
        } else {
            let s = try decoder.singleValueContainer()
            if s.decodeNil() { return }
            if (try? s.decode(Bool.self)) != nil || (try? s.decode(String.self)) != nil { return }
            _ = try s.decode(Double.self)
        }
    }
}
