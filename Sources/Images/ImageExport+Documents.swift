// The JSON documents of an exported image — the config, the OCI manifest and index, the docker
// archive's manifest.json and repositories — made from the layers' digests. Encoded with sorted
// keys and unescaped slashes, no host-dependent field, and dated with the reproducible time when
// there is one, so equal content gives equal bytes.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

struct ImageDocuments {
    static let configMediaType = "application/vnd.oci.image.config.v1+json"
    static let manifestMediaType = "application/vnd.oci.image.manifest.v1+json"
    static let indexMediaType = "application/vnd.oci.image.index.v1+json"
    /// The index annotation that tags an image in an OCI layout.
    static let refNameAnnotation = "org.opencontainers.image.ref.name"
    /// The index annotation holding the image's full name (containerd's and docker's, beside the tag).
    static let imageNameAnnotation = "io.containerd.image.name"

    let layers: [ExportedLayer]
    let options: ImageExportOptions
    /// `created` of the config and its history, RFC 3339 in UTC.
    let created: String

    init(layers: [ExportedLayer], options: ImageExportOptions) {
        self.layers = layers
        self.options = options
        created = Self.rfc3339(options.reproducibleTime ?? Self.now())
    }

    /// The image configuration: platform, diffIDs, a history entry per layer.
    func config() throws -> [UInt8] {
        let reproducible = options.reproducibleTime != nil
        return try Self.encode(ExportConfig(
            architecture: options.platform.architecture, os: options.platform.os, variant: options.platform.variant,
            created: created, config: .init(),
            rootfs: .init(type: "layers", diffIDs: layers.map(\.digests.diffID)),
            history: layers.map { l in
                // A layer's id names it in one store only: left out of the reproducible form.
                .init(created: created, createdBy: "difftool export-image", comment: reproducible ? nil : "layer \(l.id)")
            }))
    }

    /// The OCI image manifest: the config and each layer's blob.
    func manifest(config: ImageBlob) throws -> [UInt8] {
        try Self.encode(ExportManifest(
            schemaVersion: 2, mediaType: Self.manifestMediaType,
            config: .init(mediaType: config.mediaType, digest: config.digest, size: config.size),
            layers: layers.map { .init(mediaType: $0.digests.mediaType, digest: $0.digests.digest, size: $0.digests.size) }))
    }

    /// The layout's `index.json`: the manifest, tagged.
    func index(manifest: ImageBlob) throws -> [UInt8] {
        var annotations: [String: String]? = nil
        if let tag = options.tag {
            annotations = [Self.refNameAnnotation: tag.tag, Self.imageNameAnnotation: tag.description]
        }
        return try Self.encode(ExportIndex(
            schemaVersion: 2, mediaType: Self.indexMediaType,
            manifests: [.init(mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations: annotations)]))
    }

    /// `oci-layout`.
    func layoutFile() throws -> [UInt8] { try Self.encode(["imageLayoutVersion": "1.0.0"]) }

    /// A docker archive's `manifest.json`: one image, its config, tags and layer tars.
    func dockerManifest(config: String, layers names: [String]) throws -> [UInt8] {
        try Self.encode([ExportDockerManifest(config: config, repoTags: options.tag.map { [$0.description] }, layers: names)])
    }

    /// A docker archive's `repositories` (`{NAME: {TAG: top layer}}`), for a tagged image.
    func dockerRepositories(top: String?) throws -> [UInt8]? {
        guard let tag = options.tag, let top else { return nil }
        return try Self.encode([tag.name: [tag.tag: top]])
    }

    /// The chain ID of a layer on `parent`'s chain (nil: a base layer, whose chain ID is its diffID).
    static func chainID(parent: String?, diffID: String) -> String {
        parent.map { SHA256.hex(Bytes.of($0 + " " + diffID)) } ?? diffID
    }

    /// Now, in seconds since the epoch.
    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec)
    }

    /// `2006-01-02T15:04:05Z`.
    static func rfc3339(_ seconds: Int64) -> String {
        var t = time_t(seconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = String(Int(tm.tm_year) + 1900)
        return String(repeating: "0", count: max(0, 4 - year.count)) + year
            + "-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }

    /// JSON with sorted keys and unescaped slashes: the same value gives the same bytes.
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try encoder.encode(value))
    }
}

// Stand-ins for the shared document models (to be replaced by them).
struct ExportDescriptor: Encodable {
    var mediaType: String
    var digest: String
    var size: Int64
    var annotations: [String: String]? = nil
}

struct ExportConfig: Encodable {
    struct Rootfs: Encodable {
        var type: String
        var diffIDs: [String]
        enum CodingKeys: String, CodingKey { case type, diffIDs = "diff_ids" }
    }
    struct History: Encodable {
        var created: String
        var createdBy: String
        var comment: String?
        enum CodingKeys: String, CodingKey { case created, createdBy = "created_by", comment }
    }
    struct Settings: Encodable {}
    var architecture: String
    var os: String
    var variant: String?
    var created: String
    var config: Settings
    var rootfs: Rootfs
    var history: [History]
}

struct ExportManifest: Encodable {
    var schemaVersion: Int
    var mediaType: String
    var config: ExportDescriptor
    var layers: [ExportDescriptor]
}

struct ExportIndex: Encodable {
    var schemaVersion: Int
    var mediaType: String
    var manifests: [ExportDescriptor]
}

struct ExportDockerManifest: Encodable {
    var config: String
    var repoTags: [String]?
    var layers: [String]
    enum CodingKeys: String, CodingKey { case config = "Config", repoTags = "RepoTags", layers = "Layers" }
}
