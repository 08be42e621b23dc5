// The driver contract (moby's graphdriver.Driver, containers/storage's drivers.Driver). A driver is "where the layer directories are";
// the diff operations default to one shared implementation (NaiveDiff) on top of get/put,
// which a driver with native diffs (overlay2) uses whenever its own does not apply.
import DiffKitArchive
import DiffKitSystem
import DiffKit

/// A storage driver: where layer directories live and how a layer is made on its parent,
/// viewed, released and removed. The diff operations come from a shared default implementation.
public protocol Driver: AnyObject, Sendable {
    /// `vfs`, `overlay2`, `btrfs`, `aufs`.
    var name: String { get }
    /// The driver's own directory, below the store's home.
    var home: [UInt8] { get }
    /// Owner of layer roots (the ID map's root pair).
    var idMap: IDMap { get }

    /// Create an empty read-only layer `id` on `parent` (nil: a base layer). Throws a
    /// ``DriverError`` for a bad id, a missing parent, an existing layer or an unknown option.
    func create(id: String, parent: String?, options: [String: String]) throws
    /// Create a writable layer `id` on `parent` (nil: a base layer); throws as ``create(id:parent:options:)``.
    func createReadWrite(id: String, parent: String?, options: [String: String]) throws
    /// Remove layer `id` and everything the driver keeps for it.
    func remove(id: String) throws
    /// The layer's root directory, ready to read (mounted if needed); reference counted.
    func get(id: String) throws -> [UInt8]
    /// Release one reference taken by ``get(id:)`` (the last one unmounts, where the driver mounts).
    func put(id: String) throws
    /// Whether the layer's view is there without a new mount: always, for a driver that does
    /// not mount (vfs, btrfs) or a layer that needs none; otherwise whether it is mounted now.
    func isMounted(id: String) -> Bool
    /// Whether layer `id` exists in this driver's directory.
    func exists(id: String) -> Bool
    /// Name/value pairs describing the driver here, for `difftool status`.
    func status() -> [(String, String)]
    /// The layer's directories and settings by name, for `difftool metadata`; throws
    /// `DriverError.layerNotFound` for an unknown layer.
    func metadata(id: String) throws -> [String: String]
    /// Release what this process holds (mounts) before the driver is dropped.
    func cleanup() throws

    /// The layer's own change set against `parent`, where the driver keeps one on disk (an
    /// overlay upper dir whose nearest lower is the parent's); nil: the mounted trees are compared.
    func diffDirectory(id: String, parent: String?) throws -> LayerDiffDirectory?
    /// Where an import may write layer `id`'s change set directly (a fresh layer's own dir);
    /// nil: the tar is applied to the mounted layer.
    func applyDirectory(id: String) throws -> LayerDiffDirectory?
    /// Where the driver keeps each layer as a branch of a union (overlay2, aufs): the layer's own
    /// directory, its whiteout form and the branches below it, nearest first; nil otherwise.
    /// Files by path and the writable part's usage are read from it without a mount.
    func branch(id: String) throws -> LayerDiffDirectory?
    /// A child's tree is a snapshot of its parent's (btrfs): unchanged files keep their inodes.
    var layersAreSnapshots: Bool { get }
    /// A layer with the content of `template` and the parent `parent` (containers/storage's
    /// CreateFromTemplate): by default a child of the template.
    func createFromTemplate(id: String, template: String, parent: String?, readWrite: Bool, options: [String: String]) throws
    /// Bytes and inodes used by the layer's writable part (containers/storage's ReadWriteDiskUsage).
    func readWriteDiskUsage(id: String) throws -> DiskUsage
    /// An open descriptor (read-only) of the regular file at `path` in layer `id`'s view, resolved
    /// inside it (containers/storage's DiffGetter, for re-exporting a layer byte for byte).
    func openFile(id: String, path: [UInt8]) throws -> Int32
    /// `openFile` for many files: `body` gets an opener valid for its duration.
    func withFiles<R>(id: String, _ body: ((_ path: [UInt8]) throws -> Int32) throws -> R) throws -> R
}

/// What `readWriteDiskUsage` reports: bytes (each inode once) and the number of inodes.
public struct DiskUsage: Sendable, Equatable {
    /// Bytes of the files, each inode once.
    public var size: Int64
    /// Number of distinct inodes, directories included.
    public var inodes: Int64
}

/// A directory holding exactly what a layer changed: its deletions in `whiteouts` form, over
/// `lowers` (the directories below it, nearest first).
public struct LayerDiffDirectory: Sendable {
    /// The directory that holds the layer's changes.
    public var directory: [UInt8]
    /// The form its deletions and opaque directories take.
    public var whiteouts: WhiteoutForm
    /// The directories below it, nearest first.
    public var lowers: [[UInt8]]

    /// A change set in `directory` with deletions in `whiteouts` form, over `lowers`.
    public init(directory: [UInt8], whiteouts: WhiteoutForm, lowers: [[UInt8]]) {
        self.directory = directory
        self.whiteouts = whiteouts
        self.lowers = lowers
    }
}

/// The errors of drivers and the layer store; each names the layer, driver or option.
public enum DriverError: Error, CustomStringConvertible {
    /// A driver name that is not one of ``LayerStore/drivers``.
    case unknownDriver(String)
    /// An option the driver does not know or a value it refuses.
    case invalidOption(driver: String, key: String, reason: String)
    /// No layer of that id.
    case layerNotFound(String)
    /// A layer of that id exists already.
    case layerExists(String)
    /// An id that cannot be a directory name (letters, digits, `.`, `_` and `-` only).
    case invalidID(String)
    /// The parent named for a new layer does not exist.
    case parentNotFound(id: String, parent: String)
    /// A layer's parent chain leads back to it.
    case parentLoop(String)
    /// The driver cannot work here (wrong filesystem, missing kernel module, …).
    case notSupported(driver: String, reason: String)
    /// Not supported, found by trying: what was tried (`reason`) and the error it met.
    case notSupportedBecause(driver: String, reason: String, underlying: any Error)
    /// A layer would have more lower layers than the driver can mount.
    case maxDepthExceeded(id: String, limit: Int)
    /// The mount data of a layer does not fit the kernel's limit.
    case mountDataTooLarge(id: String, length: Int)
    /// A removal was asked with an empty id.
    case emptyID
    /// Another process holds the layer (an import, an export, a removal in flight).
    case busy(id: String, reason: String)
    /// A byte-exact export found a file whose content is no longer the imported one.
    case changedSinceImport(id: String, path: String)

    /// One line naming the layer, driver or option and the reason.
    public var description: String {
        switch self {
        case let .unknownDriver(n): return "unknown driver '\(n)' (known: \(LayerStore.drivers.joined(separator: ", ")))"
        case let .invalidOption(d, k, r): return "\(d): option '\(k)': \(r)"
        case let .layerNotFound(id): return "layer \(id): not found"
        case let .layerExists(id): return "layer \(id): already exists"
        case let .invalidID(id): return "invalid layer id '\(id)': use letters, digits, '.', '_' or '-'"
        case let .parentNotFound(id, p): return "layer \(id): parent \(p) not found"
        case let .parentLoop(id): return "layer \(id): its parent chain loops back to it"
        case let .notSupported(d, r): return "\(d) is not supported here: \(r)"
        case let .notSupportedBecause(d, r, u): return "\(d) is not supported here: \(r): \(u)"
        case let .maxDepthExceeded(id, n): return "layer \(id): max depth exceeded (at most \(n) lower layers)"
        case let .mountDataTooLarge(id, n): return "layer \(id): cannot mount layer, mount label too large \(n)"
        case .emptyID: return "refusing to remove the directories: id is empty"
        case let .busy(id, r): return "layer \(id): busy: \(r)"
        case let .changedSinceImport(id, p):
            return "layer \(id): \(p) changed since the import (its content no longer matches the recorded checksum); export with --regenerate"
        }
    }

    /// The error this one wraps, if it wraps one.
    public var underlying: (any Error)? {
        if case let .notSupportedBecause(_, _, u) = self { return u }
        return nil
    }
}

/// Layer ids become directory names: no separators, no dot-only names.
func validate(id: String) throws {
    guard !id.isEmpty, id != ".", id != "..", id.count <= 255,
          id.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
              || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") })
    else { throw DriverError.invalidID(id) }
}

/// The mounts of a driver's layers: a reference count per layer that follows the
/// kernel as containers/storage's does — a layer found mounted (by an earlier process, say) counts
/// as one reference, one found unmounted (externally) as none — under one lock, so two threads
/// never both mount or unmount a layer; and the set this process mounted, for cleanup. The
/// driver says how to mount and unmount one layer (`Mounter`), at each call.
final class MountTable: Sendable {
    /// How a driver mounts one layer.
    struct Mounter {
        var mountPoint: (String) -> [UInt8]
        var mount: (String) throws -> Void
        var unmount: (String) throws -> Void
    }

    private struct Counts {
        var counts: [String: Int] = [:]
        var mine = Set<String>()

        /// The count, corrected by what the kernel has mounted.
        func count(_ id: String, _ m: Mounter) -> Int {
            let n = counts[id, default: 0]
            let mounted = Sys.isMountPoint(m.mountPoint(id))
            return n == 0 && mounted ? 1 : n > 0 && !mounted ? 0 : n
        }

        mutating func setCount(_ id: String, _ n: Int) { counts[id] = n > 0 ? n : nil }

        mutating func drop(_ id: String, _ m: Mounter) throws {
            counts[id] = nil
            mine.remove(id)
            try m.unmount(id)
        }
    }
    private let state = Locked(Counts())

    init() {}

    /// The layer's mount point, mounted at the first reference (undone if mounting fails).
    func acquire(_ id: String, _ m: Mounter) throws -> [UInt8] {
        try state.withLock { s in
            let n = s.count(id, m) + 1
            if n > 1 {
                s.setCount(id, n)
                return m.mountPoint(id)
            }
            do {
                try m.mount(id)
            } catch {
                try? m.unmount(id)
                throw error
            }
            s.setCount(id, 1)
            s.mine.insert(id)
            return m.mountPoint(id)
        }
    }

    /// Drop one reference; the last unmounts.
    func release(_ id: String, _ m: Mounter) throws {
        try state.withLock { s in
            let n = max(0, s.count(id, m) - 1)
            s.setCount(id, n)
            if n > 0 { return }
            s.mine.remove(id)
            try m.unmount(id)
        }
    }

    /// Unmount whatever references remain (before the layer is removed).
    func forget(_ id: String, _ m: Mounter) throws { try state.withLock { try $0.drop(id, m) } }

    /// Unmount everything this process mounted.
    func releaseAll(_ m: Mounter) throws {
        try state.withLock { s in
            for id in s.mine.sorted() { try s.drop(id, m) }
        }
    }
}
