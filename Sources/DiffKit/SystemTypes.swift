// The public boundary of DiffKit: host paths are swift-system's FilePath, descriptors its
// FileDescriptor, errors of the system carry its Errno (SystemError). Each converts once here and
// calls the byte-path form the package works with (paths [UInt8], descriptors Int32).
@_exported import SystemPackage
import DiffKitArchive
import DiffKitSystem

extension Layers {
    /// The naive diff of `layer` against `base` (nil: empty base → full export) as a tar on `fd`.
    @discardableResult
    public static func diff(base: FilePath?, layer: FilePath, to fd: FileDescriptor, name: String,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false) throws -> LayerWriter {
        try diff(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer), to: fd.rawValue, name: name,
                 options: options, snapshots: snapshots)
    }

    /// Every entry of `directory` as a tar on `fd`; with the overlay form, `directory` is an overlay
    /// upper dir and this is the native diff (kernel whiteouts and opaque dirs in tar form).
    @discardableResult
    public static func export(directory: FilePath, to fd: FileDescriptor, name: String,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain) throws -> LayerWriter {
        try export(directory: Bytes.of(directory), to: fd.rawValue, name: name, options: options, whiteouts: whiteouts)
    }

    /// Apply the tar read from `fd` (any compression) onto `root`; returns Σ header sizes.
    public static func apply(root: FilePath, from fd: FileDescriptor, name: String, options: ApplyOptions = ApplyOptions()) throws -> Int64 {
        try apply(root: Bytes.of(root), from: .descriptor(fd), name: name, options: options)
    }

    /// Apply the tar read from `source` (a descriptor, bytes, or a caller's reader; any
    /// compression) onto `root`; returns Σ header sizes.
    public static func apply(root: FilePath, from source: LayerSource, name: String, options: ApplyOptions = ApplyOptions()) throws -> Int64 {
        try apply(root: Bytes.of(root), from: source, name: name, options: options)
    }

    /// Naive DiffSize: ChangesSize of the changes from `base` to `layer`.
    public static func diffSize(base: FilePath?, layer: FilePath) throws -> Int64 {
        try diffSize(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer))
    }

    /// The naive diff of `layer` against `base` (nil: a full export), written to `fd` in
    /// `compression`; returns its digests (diffID, blob digest, sizes, media type).
    @discardableResult
    public static func diff(base: FilePath?, layer: FilePath, to fd: FileDescriptor, name: String, compression: Compression,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false,
                            progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerDigests {
        try diff(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer), to: fd.rawValue, name: name, compression: compression,
                 options: options, snapshots: snapshots, progress: progress)
    }

    /// Every entry of `directory` as a tar (see `export(directory:to:name:options:whiteouts:)`),
    /// written to `fd` in `compression`; returns its digests.
    @discardableResult
    public static func export(directory: FilePath, to fd: FileDescriptor, name: String, compression: Compression,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain,
                              progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerDigests {
        try export(directory: Bytes.of(directory), to: fd.rawValue, name: name, compression: compression,
                   options: options, whiteouts: whiteouts, progress: progress)
    }

    /// `apply(root:from:name:options:)` for an async caller; cancelling the task stops the apply
    /// before its next entry (what was applied stays) with `CancellationError`.
    public static func apply(root: FilePath, from source: LayerSource, name: String,
                             options: ApplyOptions = ApplyOptions()) async throws -> Int64 {
        try await apply(root: Bytes.of(root), from: source, name: name, options: options)
    }

    /// `diff(base:layer:to:name:compression:…)` for an async caller; cancelling the task stops the
    /// export before its next entry with `CancellationError` (what reached `fd` is unfinished).
    @discardableResult
    public static func diff(base: FilePath?, layer: FilePath, to fd: FileDescriptor, name: String, compression: Compression,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false,
                            progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerDigests {
        try await diff(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer), to: fd.rawValue, name: name,
                       compression: compression, options: options, snapshots: snapshots, progress: progress)
    }

    /// `export(directory:to:name:compression:…)` for an async caller; cancellable as `diff` is.
    @discardableResult
    public static func export(directory: FilePath, to fd: FileDescriptor, name: String, compression: Compression,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain,
                              progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerDigests {
        try await export(directory: Bytes.of(directory), to: fd.rawValue, name: name, compression: compression,
                         options: options, whiteouts: whiteouts, progress: progress)
    }
}

extension Applier {
    /// An applier for the existing directory `root`. Throws `DiffKitError.unusableIDMap` for a map
    /// the ownership rule cannot hold under, or a `SystemError` when `root` cannot be opened.
    public convenience init(root: FilePath, options: ApplyOptions = ApplyOptions()) throws {
        try self.init(root: Bytes.of(root), options: options)
    }
}

extension LayerWriter {
    /// A writer of the files below `root` (the layer's directory) into `tar`.
    public convenience init(tar: TarWriter, root: FilePath, options: ExportOptions) {
        self.init(tar: tar, root: Bytes.of(root), options: options)
    }
}

extension TreeDiff {
    /// Changes that turn `base` into `layer`, sorted in path order. `base == nil` means an
    /// empty parent: everything in `layer` is added. `snapshots`: `layer` is a btrfs snapshot of
    /// `base` (or the reverse), so a file with the same inode number and ctime is unchanged and
    /// is not read.
    public static func changes(base: FilePath?, layer: FilePath, snapshots: Bool = false) throws -> [Change] {
        try changes(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer), snapshots: snapshots)
    }

    /// The changes of ``changes(base:layer:snapshots:)``, each passed to `body` as soon as it is
    /// known instead of collected: memory stays flat however large the trees. They come in path
    /// order, except that an unchanged member of a hardlink group (``Change/isLinkPeer``) met
    /// before the member that changed follows that change. An error thrown by `body` ends the walk.
    public static func forEachChange(base: FilePath?, layer: FilePath, snapshots: Bool = false,
                                     _ body: (Change) throws -> Void) throws {
        try forEachChange(base: base.map { Bytes.of($0) }, layer: Bytes.of(layer), snapshots: snapshots, body)
    }
}


extension TreeCopy {
    /// Copy everything below `source` into the existing directory `destination`, keeping owners,
    /// modes, xattrs, hardlinks and times. With an ID map (a store's), every owner met must be a
    /// host ID inside it; `inUserNamespace`: the caller runs in a user namespace (no
    /// `trusted.*` xattrs).
    public static func copy(from source: FilePath, to destination: FilePath, inUserNamespace: Bool = false,
                            idMap: IDMap = .identity) throws {
        try copy(from: Bytes.of(source), to: Bytes.of(destination), inUserNamespace: inUserNamespace, idMap: idMap)
    }
}

/// Remove `name` in the directory `directory` and everything below it, never following symlinks.
/// A missing name is not an error.
public func removeTree(_ directory: FileDescriptor, _ name: FilePath.Component) throws {
    try removeTree(directory.rawValue, Bytes.of(FilePath(root: nil, [name])))
}
