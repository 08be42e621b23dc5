// export-image: the chain of layers from a base to a top layer of a store, written as an OCI
// image layout or as the archive `docker save` writes. Each layer is exported once, compressed
// and digested while it streams (LayerOutput); the documents (config, manifest, index) are made
// from those digests. The output appears whole or not at all: it is written under a temporary
// name beside the destination, synced, and renamed into place at the end (StagedOutput).
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import SystemPackage

/// The form an exported image takes on disk.
public enum ImageFormat: String, Sendable, CaseIterable {
    /// An OCI image layout directory: `oci-layout`, `index.json`, `blobs/sha256/…` (the
    /// manifest, the config and a blob per layer).
    case oci
    /// The tar `docker save` writes (`manifest.json`, `repositories`, the config, a plain layer
    /// tar per layer), which `docker load` reads.
    case dockerArchive = "docker-archive"
}

/// How `LayerStore.exportImage(top:to:options:)` writes an image.
public struct ImageExportOptions: Sendable {
    /// OCI layout or docker save archive.
    public var format: ImageFormat
    /// The image's name and tag (an OCI index's `org.opencontainers.image.ref.name` gets the
    /// tag, `io.containerd.image.name` the whole; a docker archive's `RepoTags`); nil: untagged.
    public var tag: ImageTag?
    /// Compression of the layer blobs of an OCI layout. A docker archive holds plain tars, as
    /// `docker save` writes them: anything but `.none` is refused for it.
    public var compression: Compression
    /// Options of each layer's export: its header profile, ID map, logger, cancellation, and
    /// `reproducibleTime`. With a reproducible time, every layer is written in the canonical form
    /// with its mtimes clamped to it, the config and its history are dated with it and name no
    /// layer id, so the same content gives the same manifest digest on every driver and every
    /// run. Without one, an imported layer whose files are unchanged is written byte for byte
    /// (its diffID kept), the others regenerated, and the config is dated now.
    public var export: ExportOptions
    /// The platform the config names (its `os`, `architecture` and `variant`).
    public var platform: Platform
    /// Called from a hashing thread with (layer index from 0, number of layers, uncompressed
    /// bytes of that layer so far).
    public var progress: (@Sendable (_ layer: Int, _ layers: Int, _ bytes: Int64) -> Void)?

    /// Options for `format` (an OCI layout by default), untagged, uncompressed, with these layer
    /// export options (not reproducible by default), for this machine's platform.
    public init(format: ImageFormat = .oci, tag: ImageTag? = nil, compression: Compression = .none,
                export: ExportOptions = ExportOptions(), platform: Platform = .host) {
        self.format = format
        self.tag = tag
        self.compression = compression
        self.export = export
        self.platform = platform
    }
}

/// What an image export wrote.
public struct ImageExport: Sendable, Equatable {
    /// The form written.
    public var format: ImageFormat
    /// Where it is.
    public var path: FilePath
    /// The image manifest, as the OCI layout's index names it (its digest is the image's
    /// digest in a registry); nil for a docker archive, which has no manifest blob.
    public var manifest: ImageBlob?
    /// The image configuration (its digest is the image ID docker shows).
    public var config: ImageBlob
    /// Each layer, base first: its id in the store, digests and how its tar was made.
    public var layers: [ExportedLayer]

    /// An image export's result.
    public init(format: ImageFormat, path: FilePath, manifest: ImageBlob?, config: ImageBlob, layers: [ExportedLayer]) {
        self.format = format
        self.path = path
        self.manifest = manifest
        self.config = config
        self.layers = layers
    }
}

/// A blob of an exported image: its media type, digest and size.
public struct ImageBlob: Sendable, Equatable {
    /// `application/vnd.oci.image.manifest.v1+json`, `application/vnd.oci.image.config.v1+json`, …
    public var mediaType: String
    /// `sha256:<hex>` of its bytes.
    public var digest: String
    /// Its size in bytes.
    public var size: Int64

    /// A blob's description.
    public init(mediaType: String, digest: String, size: Int64) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
    }
}

/// One layer of an exported image.
public struct ExportedLayer: Sendable, Equatable {
    /// The layer's id in the store.
    public var id: String
    /// Its diffID, blob digest, sizes and media type.
    public var digests: LayerDigests
    /// The imported tar given back byte for byte, or a regenerated one (and why).
    public var source: ExportSource

    /// A layer's part of an image export.
    public init(id: String, digests: LayerDigests, source: ExportSource) {
        self.id = id
        self.digests = digests
        self.source = source
    }
}

extension LayerStore {
    /// The layers from the base of `top`'s chain to `top`, base first.
    /// Throws `DriverError.layerNotFound` when `top` is not in the store, and
    /// ``ImageExportError/brokenChain(layer:parent:)`` when a parent along the way is missing or
    /// the parents loop.
    public func layerChain(top: String) throws -> [LayerRecord] {
        var chain = [try record(top)]
        var seen: Set<String> = [top]
        while let parent = chain.last!.parent {
            guard seen.insert(parent).inserted, let r = try? record(parent) else {
                throw ImageExportError.brokenChain(layer: chain.last!.id, parent: parent)
            }
            chain.append(r)
        }
        return chain.reversed()
    }

    /// Write the image whose top layer is `top` (its chain from the base up, a layer per layer)
    /// at `path`, as an OCI layout directory or a docker save archive (`options.format`).
    ///
    /// Each layer is exported as `export(id:to:name:compression:options:naive:regenerate:progress:)`
    /// exports it — an imported layer whose files are unchanged byte for byte, unless
    /// `options.export.reproducibleTime` asks for the canonical form — and digested while it
    /// streams.
    /// Everything is written under a temporary name beside `path` (`PATH.difftool-PID.tmp`),
    /// synced and renamed to `path` at the end: on any failure (a missing layer, a broken chain,
    /// a full disk, cancellation) the temporary output is removed and nothing is left at `path`.
    /// An OCI layout is a new directory: `path` must not exist, or be an empty directory. A
    /// docker archive replaces a file at `path`.
    @discardableResult
    public func exportImage(top: String, to path: FilePath, options: ImageExportOptions = ImageExportOptions()) throws -> ImageExport {
        if options.format == .dockerArchive && options.compression != .none {
            throw ImageExportError.compressedDockerArchive
        }
        let chain = try layerChain(top: top)
        let output = try StagedOutput(destination: Bytes.of(path), directory: options.format == .oci)
        do {
            let written: ImageExport
            switch options.format {
            case .oci: written = try writeLayout(chain, to: output, options: options)
            case .dockerArchive: written = try writeArchive(chain, to: output, options: options)
            }
            try output.commit()
            return written
        } catch {
            output.discard()
            throw error
        }
    }

    /// ``exportImage(top:to:options:)`` for an async caller, on a thread of its own; cancelling
    /// the task stops it between entries with `CancellationError`, leaving nothing at `path`.
    @discardableResult
    public func exportImage(top: String, to path: FilePath, options: ImageExportOptions = ImageExportOptions()) async throws -> ImageExport {
        try await DedicatedThread.run { isCancelled in
            var o = options
            let outer = options.export.isCancelled
            o.export.isCancelled = { isCancelled() || outer?() == true }
            return try self.exportImage(top: top, to: path, options: o)
        }
    }

    /// Layer `index` of the chain exported to `fd` (a blob file, or the archive at its entry's
    /// data), digested while it streams. An error names the layer.
    func exportImageLayer(_ r: LayerRecord, index: Int, count: Int, to fd: Int32, name: String,
                          options: ImageExportOptions) throws -> ExportedLayer {
        let progress = options.progress.map { p in { @Sendable (bytes: Int64, _: Int) in p(index, count, bytes) } }
        let made: LayerExport
        do {
            made = try export(id: r.id, to: fd, name: name, compression: options.compression, options: options.export,
                              progress: progress)
        } catch let e as CancellationError {
            throw e
        } catch {
            throw ImageExportError.layerFailed(index: index, count: count, id: r.id, underlying: error)
        }
        // The imported tar was given back: it must be the one imported (each file's CRC was
        // checked on the way; this holds the whole stream to the recorded diffID).
        if made.source == .original, let recorded = r.diffID, recorded != made.digests.diffID {
            throw ImageExportError.diffIDChanged(id: r.id, recorded: recorded, exported: made.digests.diffID)
        }
        return ExportedLayer(id: r.id, digests: made.digests, source: made.source)
    }

    /// `hex` of a `sha256:hex` digest.
    static func hex(_ digest: String) -> String {
        digest.hasPrefix("sha256:") ? String(digest.dropFirst("sha256:".count)) : digest
    }
}

/// Why an image export failed (beyond the errors of the store and the system it passes on).
public enum ImageExportError: Error, CustomStringConvertible, Sendable {
    /// Layer `layer` names `parent`, which is not in the store (or the parents loop).
    case brokenChain(layer: String, parent: String)
    /// A docker archive was asked for with compressed layers.
    case compressedDockerArchive
    /// The destination of an OCI layout exists and is not an empty directory, or the
    /// destination of an archive is a directory or a special file.
    case destinationInUse(path: String, reason: String)
    /// Layer `index` (of `count`) failed to export; `underlying` says why.
    case layerFailed(index: Int, count: Int, id: String, underlying: any Error)
    /// An imported layer given back byte for byte has another diffID than the one recorded.
    case diffIDChanged(id: String, recorded: String, exported: String)
    /// `text` is not a `NAME:TAG` docker and registries take.
    case invalidTag(_ text: String, reason: String)

    /// One line naming what failed.
    public var description: String {
        switch self {
        case let .brokenChain(layer, parent):
            return "broken chain: layer \(layer) has parent \(parent), which is not in the store"
        case .compressedDockerArchive:
            return "a docker archive holds plain layer tars, as docker save writes them: --compress is for --format oci"
        case let .destinationInUse(path, reason):
            return "\(path): \(reason)"
        case let .layerFailed(index, count, id, underlying):
            return "layer \(index + 1)/\(count) (\(id)): \(underlying)"
        case let .diffIDChanged(id, recorded, exported):
            return "layer \(id): its imported tar came back with diffID \(exported), not the \(recorded) it was imported with"
        case let .invalidTag(text, reason):
            return "image tag '\(text)': \(reason)"
        }
    }
}
