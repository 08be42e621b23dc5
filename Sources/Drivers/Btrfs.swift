// btrfs (moby's daemon/graphdriver/btrfs): every layer is a subvolume, a child a snapshot of its parent.
//
//   home/subvolumes/<id>   the layer's root filesystem (a subvolume)
//   home/quotas/<id>       its size limit in bytes, when one was asked for
//   home/.send/<id>        a read-only snapshot of it kept for send diffs (`Btrfs+SendSnapshots.swift`)
//
// Nothing is mounted. Diffs come from btrfs send (`Btrfs+SendDiff.swift`); where send cannot
// be used, the naive ones, told that a child is a snapshot: a file with its parent's inode
// number and ctime is unchanged and is not read.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

/// The btrfs driver: each layer a subvolume `subvolumes/ID`, a child a writable snapshot of its
/// parent, sizes limited with qgroup quotas.
public final class BtrfsDriver: Driver {
    /// `btrfs`.
    public let name = "btrfs"
    /// The driver's directory, which must be on btrfs.
    public var home: FilePath { FilePath(bytes: homeDir) }
    /// `home` as bytes.
    package let homeDir: [UInt8]
    /// The store's ID map; new layer roots are owned by its root pair.
    public let idMap: IDMap
    /// `btrfs.min_space`: the smallest size a layer may be limited to; setting it turns quotas on.
    let minSpace: UInt64?
    /// Whether quotas are on, once known.
    private let quotaOn = Locked<Bool?>(nil)
    /// Send diffs in this process (`Btrfs+SendDiff.swift`).
    let sendState = BtrfsSendState()

    /// Always true: a child is a snapshot of its parent.
    public var layersAreSnapshots: Bool { true }

    /// Driver options: `btrfs.min_space=SIZE`; `btrfs.mountopt` and anything else are refused.
    package init(home: [UInt8], options: [String: String] = [:], idMap: IDMap = .identity) throws {
        var minSpace: UInt64? = nil
        for (key, value) in options {
            switch key.lowercased() {
            case "btrfs.min_space":
                guard let s = parseSize(value) else {
                    throw DriverError.invalidOption(driver: "btrfs", key: key, reason: "expected a size such as 10G")
                }
                minSpace = s
            case "btrfs.mountopt":
                throw DriverError.invalidOption(driver: "btrfs", key: key, reason: "the btrfs driver does not support mount options")
            default:
                throw DriverError.invalidOption(driver: "btrfs", key: key, reason: "unknown option")
            }
        }
        // The home, or the directory it will be made in, must be on btrfs.
        let fs = backingFilesystem(home)
        guard fs == "btrfs" else {
            throw DriverError.notSupported(driver: "btrfs", reason: "\(Bytes.string(home)) is on \(fs), not btrfs")
        }
        self.homeDir = home
        self.idMap = idMap
        self.minSpace = minSpace
        let root = idMap.rootPair
        try makeDirectory(home, mode: 0o710, uid: geteuid(), gid: root.gid)
        try makeDirectory(subvolumes, mode: 0o710, uid: geteuid(), gid: root.gid)
        try makeDirectory(home + Bytes.of("/quotas"), mode: 0o700, uid: geteuid(), gid: root.gid)
        if minSpace != nil { try enableQuota() }
    }

    var subvolumes: [UInt8] { homeDir + Bytes.of("/subvolumes") }
    func subvolume(_ id: String) -> [UInt8] { subvolumes + Bytes.of("/" + id) }
    func quotaFile(_ id: String) -> [UInt8] { homeDir + Bytes.of("/quotas/" + id) }

    // MARK: quotas

    private func withHome<R>(_ body: (Int32) throws -> R) throws -> R {
        let fd = try Sys.open(homeDir, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        return try body(fd)
    }

    /// Whether quotas are on (read once from the filesystem's qgroup status, as the seeds do).
    func quotaEnabled() throws -> Bool {
        try quotaOn.withLock { known in
            if let q = known { return q }
            let q = try withHome { try Btrfs.quotaEnabled($0, shown: homeDir) }
            known = q
            return q
        }
    }

    private func enableQuota() throws {
        if try quotaEnabled() { return }
        try withHome { try Btrfs.setQuota($0, enabled: true, shown: homeDir) }
        quotaOn.withLock { $0 = true }
    }

    /// Check a requested size against min_space, turn quotas on and limit the subvolume.
    private func limit(_ id: String, _ size: UInt64) throws {
        if let minSpace, size < minSpace {
            throw DriverError.invalidOption(driver: name, key: "size", reason: "storage size cannot be less than \(minSpace) bytes (btrfs.min_space)")
        }
        try enableQuota()
        let fd = try Sys.open(subvolume(id), O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        try Btrfs.limitReferenced(fd, bytes: size, shown: subvolume(id))
    }

    private func storedSize(_ id: String) -> UInt64? {
        (try? Sys.readFile(quotaFile(id))).flatMap { UInt64(String(decoding: $0, as: UTF8.self)) }
    }

    // MARK: create / remove

    /// Create layer `id`: a new subvolume, or a snapshot of `parent`'s; option `size` sets a quota.
    public func create(id: String, parent: String?, options: [String: String]) throws {
        try make(id: id, parent: parent, options: options)
    }

    /// The same as ``create(id:parent:options:)``: every btrfs layer is writable.
    public func createReadWrite(id: String, parent: String?, options: [String: String]) throws {
        try make(id: id, parent: parent, options: options)
    }

    /// A snapshot of the template (containers/storage's btrfs CreateFromTemplate).
    public func createFromTemplate(id: String, template: String, parent: String?, readWrite: Bool, options: [String: String]) throws {
        try make(id: id, parent: template, options: options)
    }

    /// Layer options: `size=SIZE` (a qgroup limit on referenced bytes; not below min_space) and
    /// `label=CONTEXT` (the SELinux file context of the layer root, where SELinux is enabled).
    private func make(id: String, parent: String?, options: [String: String]) throws {
        try validate(id: id)
        var size: UInt64? = nil
        var label = ""
        for (k, v) in options {
            switch k {
            case "size":
                guard let s = parseSize(v) else { throw DriverError.invalidOption(driver: name, key: k, reason: "expected a size such as 10G") }
                guard s > 0 else { throw DriverError.invalidOption(driver: name, key: k, reason: "invalid storage size 0") }
                size = s
            case "label":
                label = v
            default:
                throw DriverError.invalidOption(driver: name, key: k, reason: "unknown storage option")
            }
        }
        if let size, let minSpace, size < minSpace {
            throw DriverError.invalidOption(driver: name, key: "size", reason: "storage size cannot be less than \(minSpace) bytes (btrfs.min_space)")
        }
        if exists(id: id) { throw DriverError.layerExists(id) }
        if let parent, !exists(id: parent) { throw DriverError.parentNotFound(id: id, parent: parent) }
        let dfd = try Sys.open(subvolumes, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(dfd) }
        let path = subvolume(id)
        if let parent {
            let src = try Sys.open(subvolume(parent), O_RDONLY | O_DIRECTORY)
            defer { Sys.close(src) }
            try Btrfs.snapshot(src, into: dfd, id, shown: path)
        } else {
            try Btrfs.createSubvolume(dfd, id, shown: path)
        }
        do {
            if let size {
                try limit(id, size)
                try writeFileAtomically(quotaFile(id), Bytes.of(String(size)))
            }
            let root = idMap.rootPair
            if root.uid != 0 || root.gid != 0 { try Sys.lchown(path, uid: root.uid, gid: root.gid) }
            try SELinux.relabel(path, label)
        } catch {
            try? destroy(id)
            throw error
        }
    }

    /// Remove the layer's subvolume, the subvolumes made inside it, its qgroup and the read-only
    /// snapshot kept of it for send diffs.
    public func remove(id: String) throws {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        try? Sys.unlink(quotaFile(id))
        try? Sys.unlink(quotaFile(id) + Bytes.of(".tmp"))
        removeKeptSnapshots(of: id)

        try destroy(id)
    }

    /// Delete the layer's subvolume and every subvolume inside it. With quotas off, a refused
    /// ioctl falls back to removing the files (a subvolume's empty root can be rmdir'ed by its
    /// owner since Linux 4.18), as both seeds do.
    private func destroy(_ id: String) throws {
        let quota = (try? quotaEnabled()) ?? false
        let dfd = try Sys.open(subvolumes, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(dfd) }
        do {
            try deleteSubvolume(dfd, id, shown: subvolume(id), quota: quota)
        } catch let e as SystemError {
            if !quota, (try? removeTree(dfd, Bytes.of(id))) != nil {
                // removed file by file
            } else if e.errno == .notPermitted || e.errno == .permissionDenied {
                throw DriverError.notSupported(driver: name, reason:
                    "\(e) (in a user namespace btrfs deletes a subvolume only on a filesystem mounted with user_subvol_rm_allowed)")
            } else {
                throw e
            }
        }
        if quota { try withHome { try Btrfs.rescanQuota($0, shown: homeDir) } }
    }

    /// Nested subvolumes first (a directory whose inode number is 256 is a subvolume's root),
    /// then the qgroup, then the subvolume.
    private func deleteSubvolume(_ dirfd: Int32, _ name: String, shown: [UInt8], quota: Bool) throws {
        let fd = try Sys.openat(dirfd, Bytes.of(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: shown)
        do {
            try deleteNested(fd, shown: shown, quota: quota)
            if quota, let qgroup = try? Btrfs.subvolumeID(fd, shown: shown) {
                try? Btrfs.destroyQgroup(dirfd, qgroup, shown: shown)
            }
        } catch {
            Sys.close(fd)
            throw error
        }
        Sys.close(fd)
        try Btrfs.destroySubvolume(dirfd, name, shown: shown)
    }

    private func deleteNested(_ fd: Int32, shown: [UInt8], quota: Bool) throws {
        let dev = try Sys.fstat(fd, shown: shown).st_dev
        for e in try Sys.readDirectory(fd, shown: shown) where e.type == 4 /* DT_DIR */ {
            let child = shown + [LayerPath.slash] + e.name
            let st = try Sys.fstatat(fd, e.name, shown: child)
            if UInt64(st.st_ino) == Btrfs.subvolumeRootInode {
                try deleteSubvolume(fd, Bytes.string(e.name), shown: child, quota: quota)
            } else if st.st_dev == dev {
                let sub = try Sys.openat(fd, e.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: child)
                defer { Sys.close(sub) }
                try deleteNested(sub, shown: child, quota: quota)
            }
        }
    }

    /// Whether layer `id` has a subvolume in this store.
    public func exists(id: String) -> Bool {
        (try? validate(id: id)) != nil && (try? Sys.fstatat(AT_FDCWD, subvolume(id))) != nil
    }

    // MARK: get / put

    /// The subvolume's path (nothing is mounted); a stored size is applied again.
    public func get(id: String) throws -> FilePath { FilePath(bytes: try layerRoot(id)) }

    /// The layer's root as bytes (``get(id:)``).
    package func layerRoot(_ id: String) throws -> [UInt8] {
        try validate(id: id)
        let path = subvolume(id)
        guard let st = try? Sys.fstatat(AT_FDCWD, path), st.st_mode & S_IFMT == S_IFDIR else {
            throw DriverError.layerNotFound(id)
        }
        if let size = storedSize(id), size >= (minSpace ?? 0) { try limit(id, size) }
        return path
    }

    /// Nothing is mounted: nothing to release.
    public func put(id: String) throws {}

    /// Name/value pairs for `difftool status`: btrfs-progs versions, quota state, min space.
    public func status() -> [(String, String)] {
        var s = [("Build Version", Btrfs.buildVersion), ("Library Version", String(Btrfs.libraryVersion))]
        s.append(("Quota", String((try? quotaEnabled()) ?? false)))
        if let minSpace { s.append(("Min Space", String(minSpace))) }
        return s + sendStatus()
    }

    /// The layer's subvolume (`Dir`) and its quota size (`QuotaSize`) if it has one.
    public func metadata(id: String) throws -> [String: String] {
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        var m = ["Dir": Bytes.string(subvolume(id))]
        if let size = storedSize(id) { m["QuotaSize"] = String(size) }
        return m
    }

    /// Nothing is mounted. Quotas stay on (moby turns them off here, which would drop every
    /// layer's limit until its next get).
    public func cleanup() throws {}
}
