// The diff operations every driver gets from its layer directories (moby's NaiveDiffDriver):
// Diff, Changes, ApplyDiff and DiffSize against a parent, through DiffKit's one walker,
// one tar writer and one applier.
import ArchiveBridge
import DiffKit

extension Driver {
    /// Changes of `id` against `parent` (nil: against an empty tree).
    public func changes(id: String, parent: String?) throws -> [Change] {
        try withLayers(id, parent) { dir, parentDir in try TreeDiff.changes(base: parentDir, layer: dir) }
    }

    /// The layer as a tar of its changes against `parent` (a full tar without parent).
    public func diff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        var options = options
        options.idMap = idMap
        try withLayers(id, parent) { dir, parentDir in
            _ = try Layers.diff(base: parentDir, layer: dir, to: fd, name: name, options: options)
        }
    }

    /// Apply a layer tar onto layer `id` (which already holds its parent's content).
    public func applyDiff(id: String, from reader: TarReader, name: String, options: ApplyOptions) throws -> Int64 {
        let dir = try get(id: id)
        defer { try? put(id: id) }
        var options = options
        options.whiteouts = whiteoutForm
        if options.idMap.isIdentity { options.idMap = idMap }
        return try Applier(root: dir, options: options).apply(reader, archive: name)
    }

    public func diffSize(id: String, parent: String?) throws -> Int64 {
        Sizes.changesSize(try changes(id: id, parent: parent))
    }

    func withLayers<R>(_ id: String, _ parent: String?, _ body: ([UInt8], [UInt8]?) throws -> R) throws -> R {
        let dir = try get(id: id)
        defer { try? put(id: id) }
        guard let parent else { return try body(dir, nil) }
        let parentDir = try get(id: parent)
        defer { try? put(id: parent) }
        return try body(dir, parentDir)
    }
}
