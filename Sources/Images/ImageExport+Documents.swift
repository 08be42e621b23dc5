// The JSON documents of an exported image — the config, the OCI manifest and index, `oci-layout`,
// the docker archive's manifest.json and repositories — made from the layers' digests with the
// shared document models (ImageDocuments.swift) and their encoding (keys sorted, slashes
// unescaped). Nothing depends on the host beyond the platform asked for, and the dates are the
// reproducible time when there is one, so equal content gives equal bytes.
import DiffKit
import DiffKitArchive
import DiffKitJSON
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// The documents of one exported image.
struct ExportDocuments {
    let layers: [ExportedLayer]
    let options: ImageExportOptions
    /// `created` of the config and its history, RFC 3339 in UTC.
    let created: String

    init(layers: [ExportedLayer], options: ImageExportOptions) {
        self.layers = layers
        self.options = options
        created = RFC3339.string(seconds: options.export.reproducibleTime ?? Self.now())
    }

    /// The image configuration: platform, diffIDs, a history entry per layer. Docker shows the
    /// config's digest as the image ID.
    func config() throws -> [UInt8] {
        let reproducible = options.export.reproducibleTime != nil
        return try JSONDocument.encode(ImageConfig(
            platform: options.platform, diffIDs: layers.map(\.digests.diffID), created: created, config: .init(),
            history: layers.map { l in
                // A layer's id names it in one store only: left out of the reproducible form.
                .init(created: created, createdBy: "difftool export-image", comment: reproducible ? nil : "layer \(l.id)")
            }))
    }

    /// The OCI image manifest: the config and each layer's blob.
    func manifest(config: ImageBlob) throws -> [UInt8] {
        try JSONDocument.encode(ImageManifest(
            config: Descriptor(mediaType: config.mediaType, digest: config.digest, size: config.size),
            layers: layers.map { Descriptor(mediaType: $0.digests.mediaType, digest: $0.digests.digest, size: $0.digests.size) }))
    }

    /// The layout's `index.json`: the manifest, tagged (the tag as `ref.name`, as skopeo, umoci
    /// and docker name an image of a layout; the whole name beside it).
    func index(manifest: ImageBlob) throws -> [UInt8] {
        let annotations = options.tag.map { [AnnotationKey.refName: $0.tag, AnnotationKey.imageName: $0.description] }
        return try JSONDocument.encode(ImageIndex(manifests: [
            Descriptor(mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations: annotations),
        ]))
    }

    /// `oci-layout`.
    func layoutFile() throws -> [UInt8] { try JSONDocument.encode(OCILayoutFile()) }

    /// A docker archive's `manifest.json`: one image, its config file, tags and layer tars.
    func dockerManifest(config: String, layers names: [String]) throws -> [UInt8] {
        try JSONDocument.encode([DockerManifestEntry(config: config, repoTags: options.tag.map { [$0.description] }, layers: names)])
    }

    /// A docker archive's `repositories` (`{NAME: {TAG: top layer}}`), for a tagged image with layers.
    func dockerRepositories(top: String?) throws -> [UInt8]? {
        guard let tag = options.tag, let top else { return nil }
        return try JSONDocument.encode([tag.name: [tag.tag: top]])
    }

    /// Now, in seconds since the epoch.
    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec)
    }
}
