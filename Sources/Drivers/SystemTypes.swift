// The public boundary of Drivers: host paths are swift-system's FilePath, descriptors its
// FileDescriptor. Each converts once here and calls the byte-path form the package works with
// (paths [UInt8], descriptors Int32).
@_exported import SystemPackage
import DiffKitArchive
import DiffKitSystem
import DiffKit

extension LayerStore {
    /// Open (or create) a store of `driverName` at `home`. `driverOptions` are the driver's own
    /// (`vfs.*`, …). Layers left incomplete by an interrupted import are removed here.
    public convenience init(driverName: String, home: FilePath, driverOptions: [String: String] = [:], idMap: IDMap = .identity) throws {
        try self.init(driverName: driverName, home: Bytes.of(home), driverOptions: driverOptions, idMap: idMap)
    }

    /// Create layer `id` on `parent` and apply the tar from `fd` to it (see the `LayerSource` form).
    public func importLayer(id: String, parent: String?, from fd: FileDescriptor, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> LayerImport {
        try importLayer(id: id, parent: parent, from: .descriptor(fd), name: name, options: options, createOptions: createOptions)
    }

    /// The layer's changes against its parent as a tar on `fd`.
    /// - An imported layer whose files are as the import left them gives back the imported tar
    ///   byte for byte (same diffID), unless `regenerate`; if anything changed, a fresh tar is
    ///   made (and the result says why), never a mix.
    /// - `naive`: compare the mounted trees even where the driver has a native diff.
    /// - `options.reproducibleTime`: the canonical form — the trees compared (the one definition
    ///   every driver shares), mtimes clamped, no names — so equal content gives equal bytes on
    ///   every driver.
    @discardableResult
    public func export(id: String, to fd: FileDescriptor, name: String, options: ExportOptions = ExportOptions(), naive: Bool = false,
                       regenerate: Bool = false) throws -> ExportSource {
        try export(id: id, to: fd.rawValue, name: name, options: options, naive: naive, regenerate: regenerate)
    }

    /// The layer's changes against its parent (as `export(id:to:name:options:naive:regenerate:)`
    /// makes them) written to `fd` in `compression`, digested while they stream.
    /// `progress` is called with (uncompressed bytes so far, 0) from the hashing thread.
    /// On failure (cancellation included) nothing is returned; what reached `fd` is the caller's
    /// to discard.
    @discardableResult
    public func export(id: String, to fd: FileDescriptor, name: String, compression: Compression,
                       options: ExportOptions = ExportOptions(), naive: Bool = false, regenerate: Bool = false,
                       progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerExport {
        try export(id: id, to: fd.rawValue, name: name, compression: compression, options: options, naive: naive,
                   regenerate: regenerate, progress: progress)
    }

    /// `export(id:to:name:compression:…)` for an async caller; cancelling the task stops the
    /// export before its next entry (or segment of a byte-exact export) with `CancellationError`
    /// (what reached `fd` is unfinished).
    @discardableResult
    public func export(id: String, to fd: FileDescriptor, name: String, compression: Compression,
                       options: ExportOptions = ExportOptions(), naive: Bool = false, regenerate: Bool = false,
                       progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerExport {
        try await export(id: id, to: fd.rawValue, name: name, compression: compression, options: options, naive: naive,
                         regenerate: regenerate, progress: progress)
    }
}

extension ConformanceSuite {
    /// Run every scenario on a store of `driver` made in `home` (which must not exist yet).
    public static func run(driver name: String, home: FilePath, options: [String: String] = [:]) throws -> [Result] {
        try run(driver: name, home: Bytes.of(home), options: options)
    }
}

extension VFSDriver {
    /// Driver options: `vfs.ignore_chown_errors=BOOL` (containers/storage); anything else is refused.
    public convenience init(home: FilePath, options: [String: String] = [:], idMap: IDMap = .identity) throws {
        try self.init(home: Bytes.of(home), options: options, idMap: idMap)
    }
}

extension Overlay2Driver {
    /// Driver options: `overlay2.override_kernel_check=BOOL` (accepted, no effect: the kernel's
    /// features are probed), `overlay2.size=SIZE` (needs xfs project quotas),
    /// `overlay2.mountopt=OPTIONS` (extra options of every layer mount, such as
    /// `redirect_dir=on,metacopy=on`). `overlay.` works as the prefix too (containers/storage).
    /// Anything else is refused.
    public convenience init(home: FilePath, options: [String: String] = [:], idMap: IDMap = .identity) throws {
        try self.init(home: Bytes.of(home), options: options, idMap: idMap)
    }
}

extension BtrfsDriver {
    /// Driver options: `btrfs.min_space=SIZE`; `btrfs.mountopt` and anything else are refused.
    public convenience init(home: FilePath, options: [String: String] = [:], idMap: IDMap = .identity) throws {
        try self.init(home: Bytes.of(home), options: options, idMap: idMap)
    }
}

extension AufsDriver {
    /// Driver options: `aufs.mountopt=OPTS` (extra mount options, containers/storage); anything
    /// else is refused. A home on aufs, btrfs or ecryptfs is refused (aufs cannot stack on them).
    public convenience init(home: FilePath, options: [String: String] = [:], idMap: IDMap = .identity) throws {
        try self.init(home: Bytes.of(home), options: options, idMap: idMap)
    }
}
