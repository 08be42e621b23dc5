// The diff operations every driver gets (moby's NaiveDiffDriver, and its native variants):
// Diff, Changes, ApplyDiff and DiffSize against a parent, through DiffKit's one walker, one tar
// writer and one applier. Where a driver keeps a layer's own change set on disk
// (`diffDirectory`), that directory is read instead of comparing the mounted trees.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

extension Driver {
    /// Default: nil, the mounted trees are compared.
    public func diffDirectory(id: String, parent: String?) throws -> LayerDiffDirectory? { nil }
    /// Default: nil, the tar is applied to the mounted layer.
    public func applyDirectory(id: String) throws -> LayerDiffDirectory? { nil }
    /// Default: nil, the driver keeps no branches.
    public func branch(id: String) throws -> LayerDiffDirectory? { nil }
    /// Default: false, a child's files are not snapshots of its parent's.
    public var layersAreSnapshots: Bool { false }
    /// Default: nil, the filesystem keeps no change list.
    public func withFilesystemChanges<R>(id: String, parent: String?, _ body: (_ changes: [Change], _ root: FilePath) throws -> R) throws -> R? { nil }
    /// Default: true, the driver does not mount.
    public func isMounted(id: String) -> Bool { true }

    /// Default: a child of the template (read-write if asked), with `template` as its parent.
    public func createFromTemplate(id: String, template: String, parent: String?, readWrite: Bool, options: [String: String]) throws {
        if readWrite {
            try createReadWrite(id: id, parent: template, options: options)
        } else {
            try create(id: id, parent: template, options: options)
        }
    }

    /// From the layer's branch, then the branches below (containers/storage's DiffGetter, no
    /// mount); without branches, from the mounted view.
    public func openFile(id: String, path: EntryPath) throws -> FileDescriptor {
        try withFiles(id: id) { openFile in try openFile(path) }
    }

    /// Run `body` with an opener of layer `id`'s regular files by path (read-only, resolved
    /// inside the layer): the branches' (or the mounted view's) root descriptors are opened once,
    /// so a caller opening many files (a byte-exact export) pays for the roots once.
    public func withFiles<R>(id: String, _ body: ((_ path: EntryPath) throws -> FileDescriptor) throws -> R) throws -> R {
        if let b = try branch(id: id) { return try Drivers.withFiles(inRoots: [b.directoryBytes] + b.lowerBytes, body) }
        let dir = try getBytes(id: id)
        defer { try? put(id: id) }
        return try Drivers.withFiles(inRoots: [dir], body)
    }

    /// The writable part: the layer's branch, else its mounted view.
    public func readWriteDiskUsage(id: String) throws -> DiskUsage {
        if let b = try branch(id: id) {
            let u = try Sizes.directoryUsage(b.directoryBytes)
            return DiskUsage(size: u.size, inodes: u.inodes)
        }
        let dir = try getBytes(id: id)
        defer { try? put(id: id) }
        let u = try Sizes.directoryUsage(dir)
        return DiskUsage(size: u.size, inodes: u.inodes)
    }

    /// Changes of `id` against `parent` (nil: against an empty tree), in path order.
    public func changes(id: String, parent: String?) throws -> [Change] {
        if let c = try withFilesystemChanges(id: id, parent: parent, { c, _ in c }) { return c }
        guard let d = try diffDirectory(id: id, parent: parent) else { return try naiveChanges(id: id, parent: parent) }
        // A plain directory cannot record deletions: only a union branch is a change set.
        if d.whiteouts == .plain { return try naiveChanges(id: id, parent: parent) }
        if let o = self as? Overlay2Driver, o.readsThroughViews { return try o.upperChanges(id: id, parent: parent, d) }
        return try BranchChanges.changes(upper: d.directoryBytes, lowers: d.lowerBytes, form: d.whiteouts)
    }

    /// The layer as a tar of its changes against `parent` (a full tar without parent).
    package func diff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        if try withFilesystemChanges(id: id, parent: parent, { (changes, root) -> Void in
            var options = options
            options.idMap = idMap
            try LayerWriter(tar: TarWriter(fd: fd, name: name), root: root, options: options).write(changes: changes)
        }) != nil { return }
        guard let d = try diffDirectory(id: id, parent: parent) else {
            return try naiveDiff(id: id, parent: parent, to: fd, name: name, options: options)
        }
        if let o = self as? Overlay2Driver { return try o.exportUpper(id: id, parent: parent, d, to: fd, name: name, options: options) }
        var options = options
        options.idMap = idMap
        try Layers.export(directory: d.directoryBytes, to: fd, name: name, options: options, whiteouts: d.whiteouts)
    }

    /// Apply a layer tar onto layer `id` (created on its parent); returns the applied size: the
    /// size of the change set's directory where it was written directly (as moby reports it),
    /// else Σ header sizes.
    public func applyDiff(id: String, from reader: TarReader, name: String, options: ApplyOptions) throws -> Int64 {
        guard let d = try applyDirectory(id: id) else {
            return try naiveApplyDiff(id: id, from: reader, name: name, options: options)
        }
        var options = options
        options.whiteouts = d.whiteouts
        options.parentTemplates = d.lowers
        options.idMap = try storeMap(options.idMap)
        _ = try Applier(root: d.directoryBytes, options: options).apply(reader, archive: name)
        return try Sizes.directorySize(d.directoryBytes)
    }

    /// The size of the layer's changes against `parent`.
    public func diffSize(id: String, parent: String?) throws -> Int64 {
        if let c = try withFilesystemChanges(id: id, parent: parent, { c, _ in c }) { return Sizes.changesSize(c) }
        guard let d = try diffDirectory(id: id, parent: parent) else { return try naiveDiffSize(id: id, parent: parent) }
        if let o = self as? Overlay2Driver, o.readsThroughViews { return Sizes.changesSize(try o.upperChanges(id: id, parent: parent, d)) }
        return try Sizes.directorySize(d.directoryBytes)
    }

    /// Both trees mounted, compared (moby's ChangesDirs).
    public func naiveChanges(id: String, parent: String?) throws -> [Change] {
        try withLayers(id, parent) { dir, parentDir in try TreeDiff.changes(base: parentDir, layer: dir, snapshots: layersAreSnapshots) }
    }

    /// The changes found by comparison, written as a layer (moby's ExportChanges).
    package func naiveDiff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        var options = options
        options.idMap = idMap
        try withLayers(id, parent) { dir, parentDir in
            _ = try Layers.diff(base: parentDir, layer: dir, to: fd, name: name, options: options, snapshots: layersAreSnapshots)
        }
    }

    /// The tar applied to the layer's mounted view (which shows its parent's content): deletions
    /// are plain deletions there, whatever the driver keeps on disk.
    public func naiveApplyDiff(id: String, from reader: TarReader, name: String, options: ApplyOptions) throws -> Int64 {
        let dir = try getBytes(id: id)
        defer { try? put(id: id) }
        var options = options
        options.whiteouts = .plain
        options.idMap = try storeMap(options.idMap)
        return try Applier(root: dir, options: options).apply(reader, archive: name)
    }

    /// An import applies under the driver's ID map, which made the layer's root: an identity
    /// map in the options means the store's, another map than the store's is refused (the layer
    /// would mix owners of two maps).
    func storeMap(_ requested: IDMap) throws -> IDMap {
        if requested.isIdentity || requested == idMap { return idMap }
        throw DiffKitError.unusableIDMap(reason: "the import's ID map is not the one the store was opened with")
    }

    /// ChangesSize of the naive changes.
    public func naiveDiffSize(id: String, parent: String?) throws -> Int64 {
        try withLayers(id, parent) { dir, parentDir in
            var size = Sizes.ChangesSize()
            try TreeDiff.forEachChange(base: parentDir, layer: dir, snapshots: layersAreSnapshots) { size.add($0) }
            return size.total
        }
    }

    func withLayers<R>(_ id: String, _ parent: String?, _ body: ([UInt8], [UInt8]?) throws -> R) throws -> R {
        let dir = try getBytes(id: id)
        defer { try? put(id: id) }
        guard let parent else { return try body(dir, nil) }
        let parentDir = try getBytes(id: parent)
        defer { try? put(id: parent) }
        return try body(dir, parentDir)
    }
}

/// A branch an import may write directly: empty, and not under a live mount (whose cached view
/// would not see the change).
func isFreshBranch(_ dir: [UInt8], mountPoint: [UInt8]) throws -> Bool {
    let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
    defer { Sys.close(fd) }
    return try Sys.readDirectory(fd, shown: dir).isEmpty && !Sys.isMountPoint(mountPoint)
}

/// Run `body` with an opener of regular files by path (read-only, not following a last symlink),
/// looked up in `roots` in order, the first that has the file winning (containers/storage's
/// DiffGetter over a branch and its lowers), each resolved inside its root. The roots are opened
/// once, so a caller opening many files (a byte-exact export) pays for them once.
package func withFiles<R>(inRoots roots: [[UInt8]], _ body: ((_ path: EntryPath) throws -> FileDescriptor) throws -> R) throws -> R {
    var fds: [Int32] = []
    defer { fds.forEach(Sys.close) }
    for root in roots { fds.append(try Sys.open(root, O_RDONLY | O_DIRECTORY)) }
    return try body { name in
        let path = name.bytes
        var last = ENOENT
        for rootfd in fds {
            let (fd, err) = Sys.openInRoot(rootfd, path, O_RDONLY | O_NOFOLLOW)
            if fd >= 0 { return FileDescriptor(rawValue: fd) }
            last = err
            if err != ENOENT { break }
        }
        throw SystemError("open", path, errno: last)
    }
}
