// Reading an image out of a directory: an OCI image layout (index.json → [index →] manifest →
// config + layers) or an unpacked `docker save` archive (manifest.json → config + layer tars).
// Several images, tagged differently (as umoci and skopeo leave a layout), are chosen by
// reference, never guessed; several platforms of one image by platform.
import DiffKit
import DiffKitArchive
import DiffKitJSON
import DiffKitSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A directory holding one image or several: an OCI image layout, or the unpacked contents of a
/// `docker save` archive (either format; `manifest.json` is read where there is one).
public struct ImageLayout: Sendable {
    /// The directory.
    public var directory: FilePath
    /// What errors call the layout: the path the user gave (an archive's, for an unpacked one).
    public var shown: String

    /// The layout in `directory`; `shown` (default: the directory) is what errors call it.
    public init(directory: FilePath, shown: String? = nil) {
        self.directory = directory
        self.shown = shown ?? directory.string
    }

    /// Run `body` on the layout at `path`: a directory as it is; a file (a `docker save` or OCI
    /// archive, tar in any compression) unpacked first into a scratch directory under
    /// `scratchParent`, as safely as any untrusted tar, and removed when `body` returns.
    public static func withLayout<R>(at path: FilePath, shown: String? = nil, scratchParent: FilePath = "/var/tmp",
                                     _ body: (ImageLayout) throws -> R) throws -> R {
        let shown = shown ?? path.string
        if let st = try Sys.lstatIfExists(AT_FDCWD, Bytes.of(path)), st.st_mode & S_IFMT == S_IFDIR {
            return try body(ImageLayout(directory: path, shown: shown))
        }
        let scratch = try Sys.makeTemporaryDirectory(Bytes.of(scratchParent) + Bytes.of("/difftool-image-XXXXXX"))
        defer { try? removeTree(AT_FDCWD, scratch) }
        let fd = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
        defer { try? fd.close() }
        _ = try Layers.apply(root: FilePath(Bytes.string(scratch)), from: fd, name: path.string,
                             options: ApplyOptions(idMap: .identity, whiteouts: .aufs))
        return try body(ImageLayout(directory: FilePath(Bytes.string(scratch)), shown: shown))
    }

    /// Whether the directory is a `docker save` archive's (it has a `manifest.json`).
    public var isDockerArchive: Bool { Sys.exists(Bytes.of(directory.appending("manifest.json"))) }

    /// The path of the blob named by `digest` (`blobs/sha256/<hex>`); only SHA-256 is read.
    public func blobPath(_ digest: String) throws -> FilePath {
        let parts = digest.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0] == "sha256", parts[1].count == 64,
              parts[1].utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw ImageError.unsupportedDigest(layout: directory, digest: digest)
        }
        return directory.appending("blobs").appending("sha256").appending(String(parts[1]))
    }

    /// The document at `relative` (inside the directory) decoded as `T`; a malformed one throws
    /// ``ImageError/invalidDocument(path:reason:)`` naming it.
    public func document<T: Decodable>(_ relative: FilePath, as type: T.Type) throws -> T {
        let path = directory.pushing(relative)
        let bytes = try Sys.readFile(Bytes.of(path))
        do {
            return try JSONDocument.decode(T.self, from: bytes)
        } catch let e as JSONError {
            throw ImageError.invalidDocument(path: path, reason: e.description)
        }
    }

    /// The image named by `reference` (a tag), or the only one; through an index, the manifest
    /// for `platform`. Throws an ``ImageError`` that lists what the layout holds when the
    /// reference or platform matches nothing, or when several images match.
    public func image(reference: String? = nil, platform: Platform = .host) throws -> Image {
        isDockerArchive ? try dockerImage(reference: reference) : try ociImage(reference: reference, platform: platform)
    }

    /// docker save: `[{"Config": "…", "RepoTags": […], "Layers": ["<id>/layer.tar" | "blobs/sha256/…"]}]`.
    private func dockerImage(reference: String?) throws -> Image {
        let all = try document("manifest.json", as: [DockerManifestEntry].self)
        let tags = all.map { $0.repoTags ?? [] }
        let entry: DockerManifestEntry
        if let reference {
            let named = all.filter { ($0.repoTags ?? []).contains { $0 == reference || $0.hasSuffix(":" + reference) } }
            guard named.count == 1 else {
                throw ImageError.noSuchReference(layout: shown, reference: reference, matching: named.count, tags: tags)
            }
            entry = named[0]
        } else {
            guard all.count <= 1 else { throw ImageError.ambiguous(layout: shown, tags: tags) }
            guard let only = all.first else { throw ImageError.noImage(path: directory.appending("manifest.json")) }
            entry = only
        }
        let manifestPath = directory.appending("manifest.json")
        // Paths inside the archive: a path out of it (absolute, or with `..`) is refused.
        func inside(_ file: String) throws -> FilePath {
            let p = FilePath(file)
            guard !p.isAbsolute, !p.components.contains(where: { $0.kind == .parentDirectory }), !p.isEmpty else {
                throw ImageError.invalidDocument(path: manifestPath, reason: "'\(file)' is not a path inside the archive")
            }
            return p
        }
        let config = try document(try inside(entry.config), as: ImageConfig.self)
        // A layer of an archive in the OCI form is named by its digest; one of the older form is
        // the plain tar, whose digest is the diffID the import checks anyway.
        let layers = try entry.layers.map { file -> (FilePath, String?) in
            let digest = file.hasPrefix("blobs/sha256/") ? "sha256:" + file.dropFirst("blobs/sha256/".count) : nil
            if let digest { _ = try blobPath(digest) }
            return (directory.pushing(try inside(file)), digest)
        }
        return try Image(layout: self, manifest: nil, config: config, layers: layers, mediaTypes: nil)
    }

    /// OCI layout: index.json → (index →) manifest → config + layers.
    private func ociImage(reference: String?, platform: Platform) throws -> Image {
        let top = try document("index.json", as: ImageIndex.self).manifests
        guard !top.isEmpty else { throw ImageError.noImage(path: directory.appending("index.json")) }
        let tags = top.map { $0.refName.map { [$0] } ?? [] }
        var candidates = top
        if let reference {
            candidates = top.filter { $0.refName == reference }
            guard !candidates.isEmpty else {
                throw ImageError.noSuchReference(layout: shown, reference: reference, matching: 0, tags: tags)
            }
        } else if Set(top.map { $0.refName ?? "" }).count > 1 {
            throw ImageError.ambiguous(layout: shown, tags: tags)
        }
        var descriptor = candidates.count == 1 ? candidates[0] : try platform.choose(candidates, in: shown)
        while MediaType.isIndex(descriptor.mediaType) {
            let index = try document(try relativeBlob(descriptor.digest), as: ImageIndex.self)
            descriptor = try platform.choose(index.manifests, in: shown)
        }
        let manifest = try document(try relativeBlob(descriptor.digest), as: ImageManifest.self)
        let config = try document(try relativeBlob(manifest.config.digest), as: ImageConfig.self)
        let layers = try manifest.layers.map { (try blobPath($0.digest), Optional($0.digest)) }
        return try Image(layout: self, manifest: manifest, config: config, layers: layers,
                         mediaTypes: manifest.layers.map(\.mediaType))
    }

    private func relativeBlob(_ digest: String) throws -> FilePath {
        _ = try blobPath(digest)
        return FilePath("blobs/sha256/" + digest.dropFirst("sha256:".count))
    }
}
