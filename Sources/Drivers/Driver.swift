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
    var home: FilePath { get }
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
    func get(id: String) throws -> FilePath
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
    /// The layer's changes against `parent` as the filesystem knows them (btrfs send), given to
    /// `body` with the root to read the layer's files from (valid during `body`); nil where the
    /// driver has none, and the trees are compared.
    func withFilesystemChanges<R>(id: String, parent: String?, _ body: (_ changes: [Change], _ root: FilePath) throws -> R) throws -> R?
    /// A layer with the content of `template` and the parent `parent` (containers/storage's
    /// CreateFromTemplate): by default a child of the template.
    func createFromTemplate(id: String, template: String, parent: String?, readWrite: Bool, options: [String: String]) throws
    /// Bytes and inodes used by the layer's writable part (containers/storage's ReadWriteDiskUsage).
    func readWriteDiskUsage(id: String) throws -> DiskUsage
    /// An open descriptor (read-only) of the regular file at `path` in layer `id`'s view, resolved
    /// inside it (containers/storage's DiffGetter, for re-exporting a layer byte for byte).
    func openFile(id: String, path: EntryPath) throws -> FileDescriptor
    /// `openFile` for many files: `body` gets an opener valid for its duration.
    func withFiles<R>(id: String, _ body: ((_ path: EntryPath) throws -> FileDescriptor) throws -> R) throws -> R
}

extension Driver {
    /// ``get(id:)`` as bytes, for the package's byte-path code.
    package func getBytes(id: String) throws -> [UInt8] { Bytes.of(try get(id: id)) }
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
    public var directory: FilePath {
        get { FilePath(bytes: directoryBytes) }
        set { directoryBytes = Bytes.of(newValue) }
    }
    /// The form its deletions and opaque directories take.
    public var whiteouts: WhiteoutForm
    /// The directories below it, nearest first.
    public var lowers: [FilePath] {
        get { lowerBytes.map { FilePath(bytes: $0) } }
        set { lowerBytes = Bytes.of(newValue) }
    }
    /// `directory` as bytes.
    package var directoryBytes: [UInt8]
    /// `lowers` as bytes.
    package var lowerBytes: [[UInt8]]

    /// A change set in `directory` with deletions in `whiteouts` form, over `lowers`.
    public init(directory: FilePath, whiteouts: WhiteoutForm, lowers: [FilePath]) {
        self.init(directory: Bytes.of(directory), whiteouts: whiteouts, lowers: Bytes.of(lowers))
    }

    /// `init(directory:whiteouts:lowers:)` with byte paths.
    package init(directory: [UInt8], whiteouts: WhiteoutForm, lowers: [[UInt8]]) {
        self.directoryBytes = directory
        self.whiteouts = whiteouts
        self.lowerBytes = lowers
    }
}

/// Layer ids become directory names: no separators, no dot-only names.
func validate(id: String) throws {
    guard !id.isEmpty, id != ".", id != "..", id.count <= 255,
          id.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
              || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") })
    else { throw DriverError.invalidID(id) }
}
