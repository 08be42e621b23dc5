// The diff operations every driver gets from its layer directories (moby's NaiveDiffDriver):
// Diff, Changes, ApplyDiff and DiffSize against a parent, through DiffKit's one walker,
// one tar writer and one applier.
import ArchiveBridge
import DiffKit

extension Driver {
    public func changes(id: String, parent: String?) throws -> [Change] { try naiveChanges(id: id, parent: parent) }

    public func diff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        try naiveDiff(id: id, parent: parent, to: fd, name: name, options: options)
    }

    public func applyDiff(id: String, from reader: TarReader, name: String, options: ApplyOptions) throws -> Int64 {
        try naiveApplyDiff(id: id, from: reader, name: name, options: options)
    }

    public func diffSize(id: String, parent: String?) throws -> Int64 { try naiveDiffSize(id: id, parent: parent) }

    /// Both trees mounted, compared (moby's ChangesDirs).
    public func naiveChanges(id: String, parent: String?) throws -> [Change] {
        try withLayers(id, parent) { dir, parentDir in try TreeDiff.changes(base: parentDir, layer: dir) }
    }

    /// The changes found by comparison, written as a layer (moby's ExportChanges).
    public func naiveDiff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        var options = options
        options.idMap = idMap
        try withLayers(id, parent) { dir, parentDir in
            _ = try Layers.diff(base: parentDir, layer: dir, to: fd, name: name, options: options)
        }
    }

    /// The tar applied to the layer's mounted view (which shows its parent's content): deletions
    /// are plain deletions there, whatever the driver keeps on disk.
    public func naiveApplyDiff(id: String, from reader: TarReader, name: String, options: ApplyOptions) throws -> Int64 {
        let dir = try get(id: id)
        defer { try? put(id: id) }
        var options = options
        options.whiteouts = .plain
        if options.idMap.isIdentity { options.idMap = idMap }
        return try Applier(root: dir, options: options).apply(reader, archive: name)
    }

    /// ChangesSize of the naive changes.
    public func naiveDiffSize(id: String, parent: String?) throws -> Int64 {
        Sizes.changesSize(try naiveChanges(id: id, parent: parent))
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
