// Images: container images as documents and as chains of layers in a store.
//
// The image documents — an OCI descriptor, index and manifest, a `docker save` manifest.json
// entry, the image configuration — as their specifications name their fields, Codable both ways
// so a reader and a writer share them. Their JSON is DiffKitJSON's (no Foundation in the
// libraries): keys sorted and no insignificant space, so a document's bytes and digest are stable.
//
// Decoding is as strict as the specifications where a field is REQUIRED (a descriptor's
// mediaType, digest and size; an index's manifests; a manifest's config and layers), so a reader
// gets the document and the field named in the error; OPTIONAL fields are optionals, and an
// encoder leaves out those that are nil. Fields this model does not name are dropped on decoding:
// to keep a document byte for byte, copy its blob.
import DiffKitJSON

/// The media types an image's documents and layers use.
public enum MediaType {
    /// An OCI image index (`index.json`, or a multi-platform index blob).
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    /// An OCI image manifest.
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    /// An OCI image configuration.
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    /// An uncompressed OCI layer.
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    /// A gzip-compressed OCI layer.
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    /// A zstd-compressed OCI layer.
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    /// A Docker manifest list (the Docker form of an index).
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    /// A Docker image manifest, schema 2.
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    /// A Docker image configuration.
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    /// A gzip-compressed Docker layer.
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"

    /// Whether `mediaType` is an index (OCI) or a manifest list (Docker): a list of manifests.
    public static func isIndex(_ mediaType: String) -> Bool {
        mediaType == ociIndex || mediaType == dockerManifestList
            || mediaType.hasSuffix("image.index.v1+json") || mediaType.hasSuffix("manifest.list.v2+json")
    }
}

/// The annotation keys this module reads or writes.
public enum AnnotationKey {
    /// The tag an index gives one of its images (`org.opencontainers.image.ref.name`).
    public static let refName = "org.opencontainers.image.ref.name"
    /// When the image was made (RFC 3339).
    public static let created = "org.opencontainers.image.created"
    /// The image's whole name, `NAME:TAG`, beside the tag alone in `ref.name` (containerd's and
    /// docker's layouts).
    public static let imageName = "io.containerd.image.name"
}

/// An OCI content descriptor: what a blob is, its digest and size, and optionally the platform
/// it is for and annotations.
public struct Descriptor: Codable, Sendable, Equatable {
    // The digest first: decoding goes in this order, so a broken digest is the error reported.
    /// `sha256:<hex>` of the blob.
    public var digest: String
    /// The blob's media type (see ``MediaType``).
    public var mediaType: String
    /// The blob's size in bytes.
    public var size: Int64
    /// Other places the blob may be fetched from.
    public var urls: [String]?
    /// Free-form metadata (see ``AnnotationKey``).
    public var annotations: [String: String]?
    /// The platform a manifest is for, in an index.
    public var platform: Platform?
    /// The type of an artifact the descriptor points to.
    public var artifactType: String?

    /// A descriptor of a blob.
    public init(mediaType: String, digest: String, size: Int64, annotations: [String: String]? = nil,
                platform: Platform? = nil, urls: [String]? = nil, artifactType: String? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
        self.urls = urls
        self.artifactType = artifactType
    }

    /// The tag an index gives the image (`org.opencontainers.image.ref.name`), if any.
    public var refName: String? { annotations?[AnnotationKey.refName] }
}

/// What a manifest in an index is for: an operating system and an architecture (a variant of it).
public struct Platform: Codable, Sendable, Equatable, Hashable {
    /// The CPU architecture, as Go names it (`amd64`, `arm64`, `arm`, …).
    public var architecture: String
    /// The operating system (`linux`, `windows`).
    public var os: String
    /// The operating system's version (Windows images).
    public var osVersion: String?
    /// Operating system features required (Windows images).
    public var osFeatures: [String]?
    /// The architecture's variant (`v7` for 32-bit arm, `v8` for arm64 where given).
    public var variant: String?

    /// A platform; `os/architecture[/variant]` in messages.
    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    enum CodingKeys: String, CodingKey {
        case architecture, os, variant
        case osVersion = "os.version"
        case osFeatures = "os.features"
    }
}

/// An OCI image index (`index.json` of a layout, a multi-platform index blob), or a Docker
/// manifest list, which has the same shape.
public struct ImageIndex: Codable, Sendable, Equatable {
    /// 2 (required by the specification; read as nil where a document leaves it out).
    public var schemaVersion: Int?
    /// ``MediaType/ociIndex`` where given (it is optional in `index.json`).
    public var mediaType: String?
    /// The type of an artifact the index describes.
    public var artifactType: String?
    /// The images (or indexes) it lists.
    public var manifests: [Descriptor]
    /// Free-form metadata.
    public var annotations: [String: String]?

    /// An index of `manifests` (schema version 2).
    public init(manifests: [Descriptor], mediaType: String? = MediaType.ociIndex, annotations: [String: String]? = nil) {
        self.schemaVersion = 2
        self.mediaType = mediaType
        self.manifests = manifests
        self.annotations = annotations
    }
}

/// An OCI image manifest (a Docker schema 2 manifest has the same shape): the config blob and
/// the layer blobs, base first.
public struct ImageManifest: Codable, Sendable, Equatable {
    /// 2 (required by the specification; read as nil where a document leaves it out).
    public var schemaVersion: Int?
    /// ``MediaType/ociManifest`` (or the Docker one) where given.
    public var mediaType: String?
    /// The type of an artifact the manifest describes.
    public var artifactType: String?
    /// The image configuration's blob.
    public var config: Descriptor
    /// The layers' blobs, base first.
    public var layers: [Descriptor]
    /// The manifest this one refers to (an artifact's subject).
    public var subject: Descriptor?
    /// Free-form metadata.
    public var annotations: [String: String]?

    /// A manifest of `config` and `layers` (schema version 2).
    public init(config: Descriptor, layers: [Descriptor], mediaType: String? = MediaType.ociManifest,
                annotations: [String: String]? = nil) {
        self.schemaVersion = 2
        self.mediaType = mediaType
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }
}

/// One image of a `docker save` archive's `manifest.json` (an array of these): the config file,
/// the tags, the layer tars base first — paths inside the archive.
public struct DockerManifestEntry: Codable, Sendable, Equatable {
    /// The config file (`<hex>.json`, or `blobs/sha256/<hex>` in newer archives).
    public var config: String
    /// `NAME:TAG` of each tag the image was saved with (none: null or absent).
    public var repoTags: [String]?
    /// The layer tars, base first (`<id>/layer.tar`, or `blobs/sha256/<hex>`).
    public var layers: [String]
    /// Where a foreign layer can be fetched, by diffID.
    public var layerSources: [String: Descriptor]?

    /// An entry for `config` and `layers`, saved with `repoTags`.
    public init(config: String, repoTags: [String]?, layers: [String], layerSources: [String: Descriptor]? = nil) {
        self.config = config
        self.repoTags = repoTags
        self.layers = layers
        self.layerSources = layerSources
    }

    enum CodingKeys: String, CodingKey {
        case config = "Config", repoTags = "RepoTags", layers = "Layers", layerSources = "LayerSources"
    }
}

/// The image configuration: the platform, how to run it, its history and the layers' diffIDs.
public struct ImageConfig: Codable, Sendable, Equatable {
    /// How a container of the image runs (the `config` object).
    public struct Execution: Codable, Sendable, Equatable {
        /// `user`, `uid`, `user:group`, `uid:gid`.
        public var user: String?
        /// `port/proto` keys (`80/tcp`), each an empty object.
        public var exposedPorts: [String: EmptyObject]?
        /// `NAME=value` entries.
        public var env: [String]?
        /// The entry point's arguments.
        public var entrypoint: [String]?
        /// The default arguments.
        public var cmd: [String]?
        /// Volume paths as keys, each an empty object.
        public var volumes: [String: EmptyObject]?
        /// The working directory.
        public var workingDir: String?
        /// Labels.
        public var labels: [String: String]?
        /// The signal that stops the container (`SIGTERM`).
        public var stopSignal: String?
        /// The healthcheck (Docker), kept as given.
        public var healthcheck: Healthcheck?
        /// The shell of shell-form commands (Docker).
        public var shell: [String]?
        /// Build-time instructions run for images built on this one (Docker).
        public var onBuild: [String]?
        /// Argument escaping (Windows images, Docker).
        public var argsEscaped: Bool?

        /// An empty execution config.
        public init() {}

        enum CodingKeys: String, CodingKey {
            case user = "User", exposedPorts = "ExposedPorts", env = "Env", entrypoint = "Entrypoint", cmd = "Cmd"
            case volumes = "Volumes", workingDir = "WorkingDir", labels = "Labels", stopSignal = "StopSignal"
            case healthcheck = "Healthcheck", shell = "Shell", onBuild = "OnBuild", argsEscaped = "ArgsEscaped"
        }
    }

    /// Docker's healthcheck: the test command and its timings in nanoseconds.
    public struct Healthcheck: Codable, Sendable, Equatable {
        /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
        public var test: [String]?
        /// Between checks.
        public var interval: Int64?
        /// A check's limit.
        public var timeout: Int64?
        /// Grace after start.
        public var startPeriod: Int64?
        /// Between checks during the grace period.
        public var startInterval: Int64?
        /// Failures before unhealthy.
        public var retries: Int?

        /// A healthcheck running `test`.
        public init(test: [String]?) { self.test = test }

        enum CodingKeys: String, CodingKey {
            case test = "Test", interval = "Interval", timeout = "Timeout", startPeriod = "StartPeriod"
            case startInterval = "StartInterval", retries = "Retries"
        }
    }

    /// `{}`: the value of a set-like map (exposed ports, volumes).
    public struct EmptyObject: Codable, Sendable, Equatable, Hashable {
        /// `{}`.
        public init() {}
    }

    /// The layers, as diffIDs (`rootfs`).
    public struct RootFS: Codable, Sendable, Equatable {
        /// `layers`.
        public var type: String
        /// `sha256:<hex>` of each layer's uncompressed tar, base first.
        public var diffIDs: [String]

        /// `layers` with these diffIDs.
        public init(diffIDs: [String]) {
            self.type = "layers"
            self.diffIDs = diffIDs
        }

        enum CodingKeys: String, CodingKey { case type, diffIDs = "diff_ids" }
    }

    /// One step of the image's history (one per layer, plus the steps that made none).
    public struct History: Codable, Sendable, Equatable {
        /// When (RFC 3339).
        public var created: String?
        /// The command that made it.
        public var createdBy: String?
        /// Who.
        public var author: String?
        /// A comment.
        public var comment: String?
        /// True for a step that made no layer.
        public var emptyLayer: Bool?

        /// A history entry.
        public init(created: String? = nil, createdBy: String? = nil, author: String? = nil, comment: String? = nil,
                    emptyLayer: Bool? = nil) {
            self.created = created
            self.createdBy = createdBy
            self.author = author
            self.comment = comment
            self.emptyLayer = emptyLayer
        }

        enum CodingKeys: String, CodingKey {
            case created, author, comment
            case createdBy = "created_by", emptyLayer = "empty_layer"
        }
    }

    /// When the image was made (RFC 3339).
    public var created: String?
    /// Who made it.
    public var author: String?
    /// The CPU architecture (`amd64`, …).
    public var architecture: String?
    /// The operating system (`linux`).
    public var os: String?
    /// The operating system's version (Windows images).
    public var osVersion: String?
    /// Operating system features (Windows images).
    public var osFeatures: [String]?
    /// The architecture's variant.
    public var variant: String?
    /// How a container of it runs.
    public var config: Execution?
    /// The layers' diffIDs. (Required by the specification; a config without it reads as nil,
    /// and an import then says how many diffIDs it lacks.)
    public var rootfs: RootFS?
    /// How the image was made, oldest first.
    public var history: [History]?

    /// A config for `platform` with these layers.
    public init(platform: Platform, diffIDs: [String], created: String? = nil, config: Execution? = nil,
                history: [History]? = nil) {
        self.architecture = platform.architecture
        self.os = platform.os
        self.variant = platform.variant
        self.osVersion = platform.osVersion
        self.osFeatures = platform.osFeatures
        self.rootfs = RootFS(diffIDs: diffIDs)
        self.created = created
        self.config = config
        self.history = history
    }

    enum CodingKeys: String, CodingKey {
        case created, author, architecture, os, variant, config, rootfs, history
        case osVersion = "os.version", osFeatures = "os.features"
    }
}

/// The `oci-layout` file of a layout directory.
public struct OCILayoutFile: Codable, Sendable, Equatable {
    /// `1.0.0`.
    public var imageLayoutVersion: String

    /// Version 1.0.0.
    public init(imageLayoutVersion: String = "1.0.0") { self.imageLayoutVersion = imageLayoutVersion }
}
