// What difftool prints with --json: one Codable shape per command, encoded by one JSONEncoder.
// Keys are sorted (byte order) and slashes are not escaped, so the output is stable from run to
// run and paths and media types read as they are; one object or array per line.
import FoundationEssentials

enum JSONOutput {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }
}

/// `value` as one line of JSON on stdout.
func writeJSON<T: Encodable>(_ value: T) throws {
    try writeStdout(try JSONOutput.encode(value))
}

/// `changes --json`: `[{"kind": "A"|"C"|"D", "path": "/…"}, …]`.
struct ChangeJSON: Encodable {
    var kind: String
    var path: String
}

/// `size`, `apply --json`: `{"size": N}`.
struct SizeJSON: Encodable {
    var size: Int64
}

/// `usage --json`.
struct UsageJSON: Encodable {
    var size: Int64
    var inodes: Int64
}

/// `import --json`.
struct ImportJSON: Encodable {
    var id: String
    var size: Int64
    var diffID: String
}

/// `ls --json`: one per layer; `parent` is null for a base layer, `size` absent when unknown.
struct LayerJSON: Encodable {
    var id: String
    var parent: String?
    var size: Int64?

    enum CodingKeys: String, CodingKey { case id, parent, size }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(parent, forKey: .parent)  // null, not left out
        try c.encodeIfPresent(size, forKey: .size)
    }
}

/// `export --json`: the layer's OCI descriptor.
struct DescriptorJSON: Encodable {
    struct Annotations: Encodable {
        var diffID: String
        var uncompressedSize: String  // OCI annotations are strings
        var source: String

        enum CodingKeys: String, CodingKey {
            case diffID = "io.diffkit.diffID"
            case uncompressedSize = "io.diffkit.uncompressedSize"
            case source = "io.diffkit.source"
        }
    }

    var mediaType: String
    var digest: String
    var size: Int64
    var annotations: Annotations
}

/// `migrate --json`.
struct MigrateJSON: Encodable {
    var copied: Int
    var skipped: Int
}

/// `import-image --json`: the top layer's id (null for an image without layers) and each layer.
struct ImageJSON: Encodable {
    struct Layer: Encodable {
        var id: String
        var diffID: String
    }

    var top: String?
    var layers: [Layer]

    enum CodingKeys: String, CodingKey { case top, layers }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(top, forKey: .top)
        try c.encode(layers, forKey: .layers)
    }
}

/// `conformance --json`: `failure` is null for a passed scenario.
struct ConformanceJSON: Encodable {
    struct Scenario: Encodable {
        var name: String
        var failure: String?

        enum CodingKeys: String, CodingKey { case name, failure }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(failure, forKey: .failure)
        }
    }

    var driver: String
    var passed: Int
    var failed: Int
    var scenarios: [Scenario]
}

extension DecodingError {
    /// Where in the document and what: `at .manifests[0].digest: expected a string …`.
    var reason: String {
        let context: Context
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c): context = c
        @unknown default: return "\(self)"
        }
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
        let under = context.underlyingError.map { " (\($0))" } ?? ""
        return (path.isEmpty ? "" : "at \(path): ") + context.debugDescription + under
    }
}
