// A layer of an engine's store as DiffKit sees it: the engine's name for it, its parent and
// recorded digests, and where the driver keeps its files.

/// The engines whose stores DiffKit opens in place.
public enum Engine: String, Sendable, CaseIterable {
    /// A docker data root (`/var/lib/docker`): `image/<driver>/layerdb` and the driver's directory.
    case docker
    /// A containers/storage root (`/var/lib/containers/storage`): `<driver>-layers/layers.json`
    /// and the driver's directory (podman, buildah, CRI-O).
    case containers
}

/// A layer of an adopted store.
public struct AdoptedLayer: Sendable, Equatable {
    /// The engine's name for it: docker's chain ID (`sha256:…`) or container ID, containers/storage's layer id.
    public var id: String
    /// The parent's id; nil for a base layer.
    public var parent: String?
    /// The diffID the engine recorded (SHA-256 of the layer's tar); nil for a container's layer.
    public var diffID: String?
    /// The size the engine recorded (docker's applied size, containers/storage's `diff-size`).
    public var size: Int64?
    /// Whether it is a container's writable layer rather than an image layer.
    public var isContainer: Bool
    /// The driver's name for the layer's directory (docker's cache ID or mount ID).
    public var driverID: String

    /// A layer of an adopted store.
    public init(id: String, parent: String?, diffID: String?, size: Int64?, isContainer: Bool, driverID: String) {
        self.id = id
        self.parent = parent
        self.diffID = diffID
        self.size = size
        self.isContainer = isContainer
        self.driverID = driverID
    }

    /// The id as a DiffKit store can keep it (docker's `sha256:` prefix dropped: ids are directory names).
    public var storeID: String { id.hasPrefix("sha256:") ? String(id.dropFirst(7)) : id }
}

/// What the engine's metadata says of a layer, beyond what callers see.
struct EngineLayerRecord: Sendable {
    var layer: AdoptedLayer
    /// The tar-split record, where the engine kept one.
    var tarSplit: [UInt8]?
    /// The driver id the layer's changes are taken against: its parent's, or for a docker
    /// container its init layer's (as `docker diff` and `docker commit` do); nil: a full tree.
    var diffBase: String?
}
