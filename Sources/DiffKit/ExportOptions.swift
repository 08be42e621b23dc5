// ExportOptions, with the header profile and whiteout form it chooses: how a LayerWriter writes a layer tar.
import DiffKitArchive
import DiffKitSystem
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How headers are filled where moby's and containerd's writers differ.
public enum HeaderProfile: String, Sendable, CaseIterable {
    /// moby and containers/storage: S_IF* type bits in the mode field, user/group names looked up.
    case moby
    /// containerd: permission bits only, no names.
    case containerd
}

/// How deletions and opaque directories look on disk (the exporter reads it, the applier writes it).
public enum WhiteoutForm: Sendable, Equatable {
    /// Deletions are absent files (vfs, btrfs, any plain tree).
    case plain
    /// overlayfs: 0/0 character devices and the `<prefix>overlay.opaque` xattr (prefix `trusted.` or `user.`).
    case overlay(xattrPrefix: String)
    /// aufs: the tar form itself, `.wh.` files kept on disk.
    case aufs
}

/// How a ``LayerWriter`` fills headers: the ID map, the header profile, whiteout times,
/// reproducible output and logging.
public struct ExportOptions: Sendable {
    /// Host → container map for the owners written into headers.
    public var idMap: IDMap = .identity
    /// moby's or containerd's way of filling the mode field and user/group names.
    public var profile: HeaderProfile = .moby
    /// mtime of naive-diff whiteouts; moby uses the time of the export.
    public var whiteoutTime: Int64
    /// Reproducible output (`--reproducible`): mtimes clamped to this time (SOURCE_DATE_EPOCH),
    /// whiteouts dated with it, no user or group names. nil: the files' own metadata.
    public var reproducibleTime: Int64? = nil {
        didSet { if let t = reproducibleTime { whiteoutTime = t } }
    }
    /// Where warnings go (attributes or entries that cannot be exported).
    public var logger: Logger
    /// Asked before each entry; once it returns true the export stops with `CancellationError`
    /// (the tar is left unfinished). The async forms set it from the calling task.
    public var isCancelled: (@Sendable () -> Bool)? = nil

    /// Options with an ID map, a header profile and a whiteout time (seconds; nil: now).
    public init(idMap: IDMap = .identity, profile: HeaderProfile = .moby, whiteoutTime: Int64? = nil,
                logger: Logger = Logger(label: "diffkit")) {
        self.idMap = idMap
        self.profile = profile
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.whiteoutTime = whiteoutTime ?? (Int64(now.tv_sec) + (now.tv_nsec >= 500_000_000 ? 1 : 0))
        self.logger = logger
    }
}
