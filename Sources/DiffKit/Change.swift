// A change between a layer and its parent, delivered in path order (parents first), which is
// the order a layer tar is written and applied in.

/// One change between a layer and its parent: added, modified or deleted, at a relative path.
public struct Change: Sendable, Equatable {
    /// Added (`A`), modified (`C`) or deleted (`D`).
    public enum Kind: Sendable, Equatable { case add, modify, delete }

    /// What happened to the path.
    public var kind: Kind
    /// Relative path in the layer, no leading `/`, as bytes (``name`` at the public boundary).
    package var path: [UInt8]
    /// The path in the layer.
    public var name: EntryPath {
        get { EntryPath(path) }
        set { path = newValue.bytes }
    }
    /// The entry in the layer (nil for deletions).
    public var info: FileInfo?
    /// An unchanged member of a hardlink group another member of which changed: exported as a
    /// link so the group stays a group (as containerd does), but not a change to report.
    public var isLinkPeer: Bool = false

    /// A change of `kind` at `name`, with the entry's stat when it exists in the layer.
    public init(_ kind: Kind, _ name: EntryPath, info: FileInfo? = nil, isLinkPeer: Bool = false) {
        self.init(kind, name.bytes, info: info, isLinkPeer: isLinkPeer)
    }

    /// A change of `kind` at the relative `path` (bytes).
    package init(_ kind: Kind, _ path: [UInt8], info: FileInfo? = nil, isLinkPeer: Bool = false) {
        self.kind = kind
        self.path = path
        self.info = info
        self.isLinkPeer = isLinkPeer
    }

    /// `A /path`, `C /path`, `D /path`, as moby prints changes.
    public var line: String {
        let letter: String
        switch kind {
        case .add: letter = "A"
        case .modify: letter = "C"
        case .delete: letter = "D"
        }
        return letter + " /" + String(decoding: path, as: UTF8.self)
    }

    /// Path order: byte order of the absolute path (moby's ExportChanges order: `/a-b` before `/a/b`).
    public static func pathOrder(_ a: Change, _ b: Change) -> Bool {
        a.path.lexicographicallyPrecedes(b.path)
    }
}
