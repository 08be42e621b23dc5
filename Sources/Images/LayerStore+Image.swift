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
    /// Called as layer `layer` (0-based) is applied, with its bytes read and entries applied.
    public var progress: (@Sendable (_ layer: Int, _ bytes: Int64, _ entries: Int) -> Void)?

    /// Options with these apply options (default: the store's ID map).
    public init(apply: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:],
                progress: (@Sendable (_ layer: Int, _ bytes: Int64, _ entries: Int) -> Void)? = nil) {
        self.apply = apply
        self.createOptions = createOptions
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
}

extension LayerStore {
    /// Import `image`'s layers as a chain: each layer's id is its chain ID's hex, its parent the
    /// layer below. A layer the store has is reused; each new one's blob digest (where the image
    /// gives one) and diffID are checked. All or nothing: on any failure every layer this call
    /// made is removed and an ``ImageError`` naming the layer is thrown.
    public func importImage(_ image: Image, options: ImageImportOptions = ImageImportOptions()) throws -> ImportedImage {
        let shown = image.layout.shown
        var result: [ImportedImage.Layer] = []
        var made: [String] = []
        do {
            var parent: String? = nil
            for (i, layer) in image.layers.enumerated() {
                let id = String(layer.chainID.dropFirst("sha256:".count))
                if (try? record(id)) != nil {
                    result.append(.init(id: id, diffID: layer.diffID, reused: true))
                    parent = id
                    continue
                }
                if let want = layer.digest {
                    let actual = try SHA256.ofFile(Bytes.of(layer.blob))
                    guard actual == want else {
                        throw ImageError.blobDigest(image: shown, layer: i + 1, blob: layer.blob, actual: actual, expected: want)
                    }
                }
                var apply = options.apply
                if let progress = options.progress { apply.onProgress = { progress(i, $0, $1) } }
                let imported: LayerImport
                do {
                    let fd = try FileDescriptor.open(layer.blob, .readOnly, options: .closeOnExec)
                    defer { try? fd.close() }
                    imported = try importLayer(id: id, parent: parent, from: .descriptor(fd), name: layer.blob.string,
                                               options: apply, createOptions: options.createOptions)
                } catch {
                    throw ImageError.layer(image: shown, layer: i + 1, blob: layer.blob, underlying: error)
                }
                made.append(id)
                guard imported.diffID == layer.diffID else {
                    throw ImageError.diffID(image: shown, layer: i + 1, actual: imported.diffID, expected: layer.diffID)
                }
                result.append(.init(id: id, diffID: layer.diffID, reused: false))
                parent = id
            }
        } catch {
            for id in made.reversed() { try? remove(id: id) }
            throw error
        }
        return ImportedImage(layers: result)
    }
}
