// vfs (moby's daemon/graphdriver/vfs): every layer is a full copy of its parent under `home/dir/<id>`.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

/// The vfs driver: every layer a full copy of its parent under `dir/ID`; nothing is mounted.
public final class VFSDriver: Driver {
    /// `vfs`.
    public let name = "vfs"
    /// The driver's directory (`dir/` below it).
    public var home: FilePath { FilePath(bytes: homeDir) }
    /// `home` as bytes.
    package let homeDir: [UInt8]
    /// The store's ID map; new layer roots are owned by its root pair.
    public let idMap: IDMap
    private let ignoreChownErrors: Bool

    /// Driver options: `vfs.ignore_chown_errors=BOOL` (containers/storage); anything else is refused.
    package init(home: [UInt8], options: [String: String] = [:], idMap: IDMap = .identity) throws {
        self.homeDir = home
        self.idMap = idMap
        var ignoreChownErrors = false
        for (k, v) in options {
            switch k {
            case "vfs.ignore_chown_errors", ".ignore_chown_errors":
                guard let b = parseBool(v) else {
                    throw DriverError.invalidOption(driver: "vfs", key: k, reason: "expected true or false")
                }
                ignoreChownErrors = b
            case "vfs.mountopt":
                throw DriverError.invalidOption(driver: "vfs", key: k, reason: "vfs does not mount")
            default:
                throw DriverError.invalidOption(driver: "vfs", key: k, reason: "unknown option")
            }
        }
        self.ignoreChownErrors = ignoreChownErrors
        let root = idMap.rootPair
        try makeDirectory(home, mode: 0o710, uid: geteuid(), gid: root.gid)
        try makeDirectory(dirs, mode: 0o710, uid: geteuid(), gid: root.gid)
    }

    var dirs: [UInt8] { homeDir + Bytes.of("/dir") }
    func dir(_ id: String) -> [UInt8] { dirs + Bytes.of("/" + id) }

    /// Create layer `id` as a copy of `parent` (empty without one); storage options are refused.
    public func create(id: String, parent: String?, options: [String: String]) throws {
        if let k = options.keys.first {
            throw DriverError.invalidOption(driver: "vfs", key: k, reason: "storage options are not supported for vfs on read-only layers")
        }
        try createReadWrite(id: id, parent: parent, options: [:])
    }

    /// Create layer `id` as a copy of `parent`; refuses an owner outside the ID map and any option.
    public func createReadWrite(id: String, parent: String?, options: [String: String]) throws {
        try validate(id: id)
        for k in options.keys {
            // moby's vfs accepts `size` only with project quotas, which this driver does not manage.
            throw DriverError.invalidOption(driver: "vfs", key: k, reason: k == "size"
                ? "a size needs project quota support, which vfs does not provide here"
                : "unknown storage option")
        }
        if exists(id: id) { throw DriverError.layerExists(id) }
        var parentDir: [UInt8]? = nil
        if let parent {
            guard exists(id: parent) else { throw DriverError.parentNotFound(id: id, parent: parent) }
            parentDir = dir(parent)
        }
        let root = idMap.rootPair
        let path = dir(id)
        try Sys.mkdir(path, mode: 0o755)
        do {
            try Sys.lchown(path, uid: root.uid, gid: root.gid)
            try Sys.chmod(path, mode: 0o755)
            if let parentDir {
                try TreeCopy.copy(from: parentDir, to: path, inUserNamespace: ApplyOptions.detectUserNamespace(), idMap: idMap)
                // The child's root looks like the parent's root (mode, owner inside the map, times).
                let st = try Sys.fstatat(AT_FDCWD, parentDir)
                let owner = idMap.insideOwner(uid: st.st_uid, gid: st.st_gid)
                try? Sys.lchown(path, uid: owner.uid, gid: owner.gid)
                try? Sys.chmod(path, mode: st.st_mode & 0o7777)
            }
        } catch {
            try? removeTree(AT_FDCWD, path)
            throw error
        }
    }

    /// Remove the layer's directory and everything below it.
    public func remove(id: String) throws {
        try validate(id: id)
        try removeTree(AT_FDCWD, dir(id))
    }

    /// The layer's directory; throws `DriverError.layerNotFound` if it has none.
    public func get(id: String) throws -> FilePath { FilePath(bytes: try layerRoot(id)) }

    /// The layer's root as bytes (``get(id:)``).
    package func layerRoot(_ id: String) throws -> [UInt8] {
        let path = dir(id)
        guard let st = try? Sys.fstatat(AT_FDCWD, path), st.st_mode & S_IFMT == S_IFDIR else {
            throw DriverError.layerNotFound(id)
        }
        return path
    }

    /// Nothing is mounted: nothing to release.
    public func put(id: String) throws {}

    /// Whether layer `id` has a directory in this store.
    public func exists(id: String) -> Bool {
        (try? validate(id: id)) != nil && (try? Sys.fstatat(AT_FDCWD, dir(id))) != nil
    }

    /// Name/value pairs for `difftool status`: the backing filesystem.
    public func status() -> [(String, String)] {
        [("Backing Filesystem", backingFilesystem(homeDir))]
    }

    /// The layer's directory (`Dir`).
    public func metadata(id: String) throws -> [String: String] {
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        return ["Dir": Bytes.string(dir(id))]
    }

    /// Nothing to release: vfs does not mount.
    public func cleanup() throws {}
}

func parseBool(_ s: String) -> Bool? {
    switch s.lowercased() {
    case "1", "t", "true", "yes": return true
    case "0", "f", "false", "no": return false
    default: return nil
    }
}


/// mkdir -p the last component with a mode and owner; existing directories are left alone.
func makeDirectory(_ path: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32) throws {
    var prefix: [UInt8] = []
    let comps = path.split(separator: LayerPath.slash).map(Array.init)
    for (i, c) in comps.enumerated() {
        prefix += [LayerPath.slash] + c
        if path.first != LayerPath.slash && i == 0 { prefix = c }
        let r = Sys.tryMkdir(prefix, mode: i == comps.count - 1 ? mode : 0o755)
        if r == 0 {
            if i == comps.count - 1 {
                try? Sys.lchown(prefix, uid: uid, gid: gid)
                try? Sys.chmod(prefix, mode: mode)
            }
        } else if r != EEXIST {
            throw SystemError("mkdir", prefix, errno: r)
        }

    }
}

/// The name of the filesystem `path` is on — or, where it does not exist yet, the one it will be
/// made on (its nearest existing ancestor's).
func backingFilesystem(_ path: [UInt8]) -> String {
    var probe = path
    while (try? Sys.fstatat(AT_FDCWD, probe)) == nil, probe.count > 1 {
        probe = LayerPath.split(probe).0
        if probe.isEmpty { probe = [LayerPath.slash] }
    }
    guard let fd = try? Sys.open(probe, O_RDONLY | O_DIRECTORY) else { return "unknown" }
    defer { Sys.close(fd) }
    let names: [Int64: String] = [
        0xEF53: "extfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
        0x794C7630: "overlayfs", 0x61756673: "aufs", 0x2FC12FC1: "zfs", 0x65735546: "fuse", 0xF15F: "ecryptfs",
    ]
    guard let t = Sys.filesystemType(fd) else { return "unknown" }
    return names[t] ?? "0x" + String(t, radix: 16)
}
