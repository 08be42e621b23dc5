// One image as a reader found it: its config, and its layer blobs base first, each with the
// digest it must have (where the layout names blobs by digest) and the diffID its tar must have.
import DiffKitArchive
import DiffKitSystem
import SystemPackage

/// An image read from a layout (``ImageLayout/image(reference:platform:)``): what importing it
/// needs, and the documents it came from.
public struct Image: Sendable {
    /// One layer: its blob and what it must hash to.
    public struct Layer: Sendable, Equatable {
        /// The blob's path (in the layout directory).
        public var blob: FilePath
        /// `sha256:<hex>` the blob must have; nil where none is given (a `docker save` layer of
        /// the older form is the plain tar, whose digest is its diffID).
        public var digest: String?
        /// The blob's media type, from the manifest (nil for a `docker save` layer).
        public var mediaType: String?
        /// `sha256:<hex>` of the uncompressed tar, from the config's `rootfs.diff_ids`.
        public var diffID: String
        /// The chain ID of the image's layers up to this one (docker's layer store names layers
        /// by it, so an image sharing layers with another reuses them).
        public var chainID: String
    }

    /// The layout it was read from (errors name its `shown`).
    public var layout: ImageLayout
    /// The manifest (nil for a `docker save` archive of the older form, which has none).
    public var manifest: ImageManifest?
    /// The image configuration.
    public var config: ImageConfig
    /// The layers, base first.
    public var layers: [Layer]

    /// The chain's top: the last layer's chain ID (nil for an image without layers).
    public var topChainID: String? { layers.last?.chainID }

    /// `chainID(1) = diffID(1)`, `chainID(n) = sha256(chainID(n-1) + " " + diffID(n))`.
    public static func chainIDs(_ diffIDs: [String]) -> [String] {
        var chain: String? = nil
        return diffIDs.map { diffID in
            chain = chain.map { SHA256.hex(Bytes.of($0 + " " + diffID)) } ?? diffID
            return chain!
        }
    }

    init(layout: ImageLayout, manifest: ImageManifest?, config: ImageConfig, layers: [(FilePath, String?)],
         mediaTypes: [String]?) throws {
        let diffIDs = config.rootfs?.diffIDs ?? []
        guard diffIDs.count == layers.count else {
            throw ImageError.layerCount(layout: layout.directory, layers: layers.count, diffIDs: diffIDs.count)
        }
        self.layout = layout
        self.manifest = manifest
        self.config = config
        let chains = Self.chainIDs(diffIDs)
        self.layers = layers.indices.map { i in
            Layer(blob: layers[i].0, digest: layers[i].1, mediaType: mediaTypes?[i], diffID: diffIDs[i], chainID: chains[i])
        }
    }
}
