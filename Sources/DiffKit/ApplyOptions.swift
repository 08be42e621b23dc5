// ApplyOptions: how an Applier writes a layer.
import DiffKitArchive
import DiffKitSystem
import SystemPackage
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How an ``Applier`` writes a layer: the ID map, the whiteout form of the target, limits,
/// where implicit parents take their attributes from, logging and progress.
public struct ApplyOptions: Sendable {
    /// Container → host map for the entries' owners; ``IDMap/identity`` keeps them as they are.
    public var idMap: IDMap = .identity
    /// The form deletions and opaque directories take in the target directory.
    public var whiteouts: WhiteoutForm = .plain
    /// Where a parent directory the stream does not carry is made, it takes the mode and owner
    /// of the same directory in the first of these trees that has it (the lower dirs, nearest
    /// first, when the root is an overlay upper: the merged view keeps the lower's attributes).
    /// Without one, or when none has it, it is made 0755 and owned by the map's root pair.
    /// Under an ID map, a lower's uid or gid outside the map is replaced by the root pair's.
    public var parentTemplates: [FilePath] = []
    /// Device nodes cannot be made in a user namespace: skip them (with a warning).
    public var inUserNamespace: Bool = ApplyOptions.detectUserNamespace()
    /// At most this many bytes of file data are written (the holes of sparse files are free);
    /// beyond it the apply fails. nil: no limit. A compressed or sparse layer can promise far
    /// more than its input's size, and this is what keeps it from filling the disk.
    public var maxBytes: Int64? = nil
    /// Where warnings go (skipped xattrs, devices skipped in a user namespace).
    public var logger: Logger = Logger(label: "diffkit")
    /// Called after each entry with (bytes read, entries applied), for a progress line.
    public var onProgress: (@Sendable (Int64, Int) -> Void)? = nil
    /// Asked before each entry; once it returns true the apply stops with `CancellationError`
    /// (what it applied so far stays). The async forms set it from the calling task.
    public var isCancelled: (@Sendable () -> Bool)? = nil

    /// Options with an ID map and a whiteout form; the rest keep their defaults.
    public init(idMap: IDMap = .identity, whiteouts: WhiteoutForm = .plain) {
        self.idMap = idMap
        self.whiteouts = whiteouts
    }

    /// Whether this process runs in a user namespace (its uid map is not the full identity).
    public static func detectUserNamespace() -> Bool {
        guard let text = try? Sys.readFile(Bytes.of("/proc/self/uid_map")) else { return false }
        let fields = String(decoding: text, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        return !(fields.count == 3 && fields[0] == "0" && fields[1] == "0" && fields[2] == "4294967295")
    }
}
