// Importing an image into a layer store: each layer's id is its chain ID (as docker's layer
// store names layers), so a layer already there is reused; every blob digest and every diffID is
// checked; a failure removes every layer this import made, so the store is as it was.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// How ``Drivers/LayerStore/importImage(_:options:)`` imports.
public struct ImageImportOptions: Sendable {
    /// Options of each layer's apply (ID map, limits, logger); `onProgress` is set per layer
    /// from ``progress``.
    public var apply: ApplyOptions
    /// The driver's layer options (`size`, …) for each new layer.
    public var createOptions: [String: String]
    /// Called as layer `layer` (0-based) is applied, with its bytes read and entries applied;
    /// from several threads at once when layers are applied concurrently.
    public var progress: (@Sendable (_ layer: Int, _ bytes: Int64, _ entries: Int) -> Void)?
    /// How many layers may be decompressed, checked and applied at once (at least 1), where the
    /// driver allows it (overlay2, aufs; vfs and btrfs apply one after the other). Default: the
    /// number of online cores.
    public var jobs: Int

    /// The number of online cores (the default of ``jobs``).
    public static var onlineCores: Int {
        max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Options with these apply options (default: the store's ID map).
    public init(apply: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:], jobs: Int = onlineCores,
                progress: (@Sendable (_ layer: Int, _ bytes: Int64, _ entries: Int) -> Void)? = nil) {
        self.apply = apply
        self.createOptions = createOptions
        self.jobs = max(1, jobs)
        self.progress = progress
    }
}

/// What ``Drivers/LayerStore/importImage(_:options:)`` did: the chain's top and each layer.
public struct ImportedImage: Sendable, Equatable {
    /// One layer of the chain.
    public struct Layer: Sendable, Equatable {
        /// Its id in the store (the chain ID's hex).
        public var id: String
        /// `sha256:<hex>` of its tar.
        public var diffID: String
        /// True when the store had it already and it was reused; false when this import made it.
        public var reused: Bool

        /// A layer of an imported chain.
        public init(id: String, diffID: String, reused: Bool) {
            self.id = id
            self.diffID = diffID
            self.reused = reused
        }
    }

    /// The top layer's id (nil for an image without layers).
    public var top: String? { layers.last?.id }
    /// The layers, base first.
    public var layers: [Layer]
    /// Whether the new layers could be applied at once (the driver keeps each layer's own
    /// changes in a directory of its own); false on vfs and btrfs, or when nothing was new.
    public var concurrent: Bool
    /// How many layers were being applied at once at most (0: none was new; 1: one at a time).
    public var mostAtOnce: Int
}

extension LayerStore {
    /// Import `image`'s layers as a chain: each layer's id is its chain ID's hex, its parent the
    /// layer below. A layer the store has is reused; each new one's blob digest (where the image
    /// gives one, checked as the blob streams in) and diffID are checked.
    ///
    /// Up to ``ImageImportOptions/jobs`` layers are decompressed, checked and applied at once
    /// where the driver keeps each layer's own changes in a directory of its own (overlay2,
    /// aufs); on vfs and btrfs, where a child starts as a copy or snapshot of its parent's
    /// content, one after the other. The chain is linked in order at the end.
    ///
    /// All or nothing: on any failure the other jobs stop, every layer this call made is removed
    /// and an ``ImageError`` naming the layer is thrown; the store is as it was.
    public func importImage(_ image: Image, options: ImageImportOptions = ImageImportOptions()) throws -> ImportedImage {
        let shown = image.layout.shown
        var reused: [ImportedImage.Layer] = []
        // The layers the store has: a prefix of the chain (a layer's parent cannot be removed
        // while it is there).
        var parent: String? = nil
        for layer in image.layers {
            let id = String(layer.chainID.dropFirst("sha256:".count))
            guard (try? record(id)) != nil else { break }
            reused.append(.init(id: id, diffID: layer.diffID, reused: true))
            parent = id
        }
        let first = reused.count
        let chain = image.layers[first...].enumerated().map { offset, layer in
            let i = first + offset
            var apply = options.apply
            if let progress = options.progress { apply.onProgress = { progress(i, $0, $1) } }
            return ChainLayer(id: String(layer.chainID.dropFirst("sha256:".count)), name: layer.blob.string, options: apply) { applyTar in
                try Self.importBlob(layer, number: i + 1, image: shown, applyTar)
            }
        }
        let made: ChainImport
        do {
            made = try importChain(chain, on: parent, jobs: options.jobs, createOptions: options.createOptions)
        } catch let e as ImageError {
            throw e
        } catch {
            // A failure before any tar was read (a layer busy, the driver's create).
            throw ImageError.layer(image: shown, layer: first + 1, blob: image.layers[first].blob, underlying: error)
        }
        return ImportedImage(
            layers: reused + zip(image.layers[first...], made.layers).map { .init(id: $1.id, diffID: $0.diffID, reused: false) },
            concurrent: made.concurrent, mostAtOnce: made.mostAtOnce)
    }

    /// Open one layer's blob, apply it (through `applyTar`), then check its digest and diffID.
    private static func importBlob(_ layer: Image.Layer, number: Int, image: String,
                                   _ applyTar: (LayerSource) throws -> LayerImport) throws -> LayerImport {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(layer.blob, .readOnly, options: .closeOnExec)
        } catch let e as Errno {
            throw ImageError.layer(image: image, layer: number, blob: layer.blob, underlying: SystemError("open", layer.blob.string, e))
        }
        defer { try? fd.close() }
        // The blob is hashed as it is read, not in a pass of its own before.
        let reader = layer.digest.map { _ in DigestingReader(fd, shown: Bytes.of(layer.blob)) }
        let made: LayerImport
        do {
            made = try applyTar(reader.map { .reader($0) } ?? .descriptor(fd))
        } catch {
            // A tar that does not parse may be a blob that is not the one the manifest names:
            // that is the failure to report, when it is so.
            if !(error is CancellationError), let reader, let want = layer.digest, let actual = try? reader.finish(), actual != want {
                throw ImageError.blobDigest(image: image, layer: number, blob: layer.blob, actual: actual, expected: want)
            }
            throw ImageError.layer(image: image, layer: number, blob: layer.blob, underlying: error)
        }
        if let reader, let want = layer.digest {
            let actual: String
            do {
                actual = try reader.finish()
            } catch {
                throw ImageError.layer(image: image, layer: number, blob: layer.blob, underlying: error)
            }
            guard actual == want else {
                throw ImageError.blobDigest(image: image, layer: number, blob: layer.blob, actual: actual, expected: want)
            }
        }
        guard made.diffID == layer.diffID else {
            throw ImageError.diffID(image: image, layer: number, actual: made.diffID, expected: layer.diffID)
        }
        return made
    }
}
