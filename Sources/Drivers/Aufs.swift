// aufs (moby's daemon/graphdriver/aufs): the legacy store, in the seeds' layout so an existing
// /var/lib/docker/aufs works.
//
//   home/diff/<id>     the layer's branch: its files, deletions kept as `.wh.` files
//   home/layers/<id>   its ancestors, nearest first, one id a line (empty for a base layer)
//   home/mnt/<id>      the union mount point
//
// Without the aufs module (recent kernels) the store still opens: a layer's own branch is its
// change set in aufs form, so export, changes, sizes and import need no mount; only the view of
// a layer with parents does. With the module, get mounts the union.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The aufs driver: each layer a branch directory (`diff/ID`, deletions as `.wh.` files), its
/// ancestors listed in `layers/ID`, mounted as a union only when viewed with parents.
public final class AufsDriver: Driver {
    /// `aufs`.
    public let name = "aufs"
    /// The driver's directory (`diff`, `layers`, `mnt` below it).
    public var home: FilePath { FilePath(bytes: homeDir) }
    /// `home` as bytes.
    package let homeDir: [UInt8]
    /// The store's ID map; new layer roots are owned by its root pair.
    public let idMap: IDMap
    /// The kernel has aufs (listed in /proc/filesystems).
    public let moduleLoaded: Bool
    /// The module takes `dirperm1` (probed with a test mount).
    public let dirperm1: Bool
    let backingFS: String
    private let mountOptions: [String]
    private let mounts = MountTable()
    private var mounter: MountTable.Mounter {
        MountTable.Mounter(mountPoint: mountPoint, mount: { id in try self.mount(id, try self.parents(id)) }, unmount: unmount)
    }

    /// Driver options: `aufs.mountopt=OPTS` (extra mount options, containers/storage); anything
    /// else is refused. A home on aufs, btrfs or ecryptfs is refused (aufs cannot stack on them).
    package init(home: [UInt8], options: [String: String] = [:], idMap: IDMap = .identity) throws {
        var extra: [String] = []
        for (key, value) in options {
            switch key.lowercased() {
            case "aufs.mountopt", ".mountopt": extra = value.split(separator: ",").map(String.init)
            default: throw DriverError.invalidOption(driver: "aufs", key: key, reason: "unknown option")
            }
        }
        let fs = backingFilesystem(home)
        if ["aufs", "btrfs", "ecryptfs"].contains(fs) {
            throw DriverError.notSupported(driver: "aufs", reason: "\(Bytes.string(home)) is on \(fs), which aufs cannot be stacked on")
        }
        self.homeDir = home
        self.idMap = idMap
        backingFS = fs
        mountOptions = extra
        let root = idMap.rootPair
        try makeDirectory(home, mode: 0o710, uid: geteuid(), gid: root.gid)
        for d in ["mnt", "diff", "layers"] { try makeDirectory(home + Bytes.of("/" + d), mode: 0o710, uid: geteuid(), gid: root.gid) }
        // What an interrupted remove left behind.
        for d in ["mnt", "diff"] {
            let dir = home + Bytes.of("/" + d)
            let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
            defer { Sys.close(fd) }
            for e in try Sys.readDirectory(fd, shown: dir) where Bytes.string(e.name).hasSuffix("-removing") {
                try removeTree(fd, e.name)
            }
        }
        let fsList = (try? Sys.readFile(Bytes.of("/proc/filesystems"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        moduleLoaded = fsList.contains("\taufs\n") && !ApplyOptions.detectUserNamespace()
        dirperm1 = moduleLoaded && AufsDriver.probeDirperm1(home)
    }

    func diffDir(_ id: String) -> [UInt8] { homeDir + Bytes.of("/diff/" + id) }
    func mountPoint(_ id: String) -> [UInt8] { homeDir + Bytes.of("/mnt/" + id) }
    func layersFile(_ id: String) -> [UInt8] { homeDir + Bytes.of("/layers/" + id) }

    /// The layer's ancestors, nearest first.
    func parents(_ id: String) throws -> [String] {
        let text = try Sys.readFile(layersFile(id))
        return String(decoding: text, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    // MARK: create / remove

    /// Create layer `id` on `parent` (an empty branch; same as ``createReadWrite(id:parent:options:)``).
    public func create(id: String, parent: String?, options: [String: String]) throws {
        try createReadWrite(id: id, parent: parent, options: options)
    }

    /// Create layer `id` on `parent`: an empty branch and its list of ancestors. Takes no options.
    public func createReadWrite(id: String, parent: String?, options: [String: String]) throws {
        try validate(id: id)
        if let k = options.keys.first {
            throw DriverError.invalidOption(driver: name, key: k, reason: "aufs takes no storage options")
        }
        if exists(id: id) { throw DriverError.layerExists(id) }
        var chain: [String] = []
        var rootAttributes = (mode: UInt32(0o755), uid: idMap.rootPair.uid, gid: idMap.rootPair.gid)
        if let parent {
            guard (try? validate(id: parent)) != nil, let p = try? parents(parent) else {
                throw DriverError.parentNotFound(id: id, parent: parent)
            }
            chain = [parent] + p
            // The union's root is the top branch's root: it starts as the parent's looks.
            let st = try Sys.fstatat(AT_FDCWD, diffDir(parent))
            let owner = idMap.insideOwner(uid: st.st_uid, gid: st.st_gid)  // inside the map, as implicit parents
            rootAttributes = (UInt32(st.st_mode) & 0o7777, owner.uid, owner.gid)
        }
        let root = idMap.rootPair
        do {
            try makeDirectory(mountPoint(id), mode: 0o755, uid: root.uid, gid: root.gid)
            try makeDirectory(diffDir(id), mode: rootAttributes.mode, uid: rootAttributes.uid, gid: rootAttributes.gid)
            try writeFileAtomically(layersFile(id), Bytes.of(chain.map { $0 + "\n" }.joined()), mode: 0o644)
        } catch {
            try? removeTree(AT_FDCWD, mountPoint(id))
            try? removeTree(AT_FDCWD, diffDir(id))
            throw error
        }
    }

    /// Unmount, drop the layers file, then rename each directory to `<id>-removing` and delete it
    /// (a killed remove leaves only `-removing` entries, cleaned at the next start).
    public func remove(id: String) throws {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        try mounts.forget(id, mounter)
        try? Sys.unlink(layersFile(id))
        for path in [diffDir(id), mountPoint(id)] {
            let removing = path + Bytes.of("-removing")
            let r = Sys.tryRename(path, removing)
            if r == ENOENT { continue }
            if r != 0 { throw SystemError("rename", path, errno: r) }
            try removeTree(AT_FDCWD, removing)
        }
    }

    /// Whether layer `id` has a branch in this store.
    public func exists(id: String) -> Bool {
        (try? validate(id: id)) != nil && (try? Sys.fstatat(AT_FDCWD, layersFile(id))) != nil
    }

    // MARK: get / put

    /// The layer's view: its branch when it has no parents, else the union mounted at `mnt/ID`
    /// (throws `DriverError.notSupported` without the aufs module).
    public func get(id: String) throws -> FilePath { FilePath(bytes: try layerRoot(id)) }

    /// The layer's root as bytes (``get(id:)``).
    package func layerRoot(_ id: String) throws -> [UInt8] {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        let chain = try parents(id)
        if chain.isEmpty { return diffDir(id) }
        guard moduleLoaded else {
            throw DriverError.notSupported(driver: name, reason:
                "this kernel has no aufs module, and layer \(id) has parents, so its view needs an aufs mount (export, changes, sizes, import and migrate work without one)")
        }
        return try mounts.acquire(id, mounter)
    }

    /// Whether the layer's view needs no new mount (no parents) or is mounted now.
    public func isMounted(id: String) -> Bool {
        (try? parents(id).isEmpty) ?? false || Sys.isMountPoint(mountPoint(id))
    }

    /// Release one reference taken by ``get(id:)``; the last one unmounts the union.
    public func put(id: String) throws {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        if try parents(id).isEmpty { return }
        try mounts.release(id, mounter)
    }

    private func mount(_ id: String, _ chain: [String]) throws {
        let target = mountPoint(id)
        try makeDirectory(target, mode: 0o755, uid: idMap.rootPair.uid, gid: idMap.rootPair.gid)
        let plan = AufsBranches.plan(rw: Bytes.string(diffDir(id)), ro: chain.map { Bytes.string(diffDir($0)) },
                                     pageSize: Sys.pageSize, dirperm1: dirperm1, extraOptions: mountOptions)
        try Sys.mount(source: "none", target: target, type: "aufs", flags: 0, data: plan.data)
        for a in plan.appends { try Sys.mount(source: "none", target: target, type: "aufs", flags: UInt(MS_REMOUNT), data: a) }
    }

    /// Unmount if mounted, retrying while busy (5 × 100 ms, as the seeds do).
    private func unmount(_ id: String) throws {
        let target = mountPoint(id)
        var tries = 0
        while Sys.isMountPoint(target) {
            do {
                try Sys.unmount(target, detach: false)
            } catch let e as SystemError where e.errno == .resourceBusy && tries < 5 {
                tries += 1
                usleep(100_000)
            }
        }
    }

    // MARK: status

    /// Name/value pairs for `difftool status`: home, backing filesystem, layer count, `dirperm1`, module.
    public func status() -> [(String, String)] {
        let layers = homeDir + Bytes.of("/layers")
        let count = (try? Sys.open(layers, O_RDONLY | O_DIRECTORY)).map { fd -> Int in
            defer { Sys.close(fd) }
            return ((try? Sys.readDirectory(fd, shown: layers)) ?? []).filter { $0.type != 4 && !Bytes.string($0.name).hasSuffix(".tmp") }.count
        } ?? 0
        return [
            ("Root Dir", Bytes.string(homeDir)), ("Backing Filesystem", backingFS), ("Dirs", String(count)),
            ("Dirperm1 Supported", String(dirperm1)),
            ("Module", moduleLoaded ? "loaded" : "absent (layers with parents cannot be mounted)"),
        ]
    }

    /// The layer's directories: `DiffDir`, `MountPoint` and, with parents, `Parents`.
    public func metadata(id: String) throws -> [String: String] {
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        var m = ["DiffDir": Bytes.string(diffDir(id)), "MountPoint": Bytes.string(mountPoint(id))]
        let chain = try parents(id)
        if !chain.isEmpty { m["Parents"] = chain.joined(separator: ":") }
        return m
    }

    /// Unmount every layer this process mounted.
    public func cleanup() throws { try mounts.releaseAll(mounter) }

    // MARK: diffs

    /// The layer's branch, its `.wh.` whiteout form, and its parents' branches, nearest first.
    public func branch(id: String) throws -> LayerDiffDirectory? {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        return LayerDiffDirectory(directory: diffDir(id), whiteouts: .aufs, lowers: try parents(id).map(diffDir))
    }

    /// The branch is the change set when `parent` is the nearest ancestor (or both are absent).
    public func diffDirectory(id: String, parent: String?) throws -> LayerDiffDirectory? {
        guard let b = try branch(id: id), b.lowerBytes.first == parent.map(diffDir) else { return nil }
        return b
    }

    /// An import writes the branch directly, whiteouts kept as `.wh.` files (aufs's own form),
    /// unless the branch has content or is mounted.
    public func applyDirectory(id: String) throws -> LayerDiffDirectory? {
        guard let b = try branch(id: id), try isFreshBranch(b.directoryBytes, mountPoint: mountPoint(id)) else { return nil }
        return b
    }

    /// Whether the module takes `dirperm1`: a test mount of a scratch branch.
    static func probeDirperm1(_ home: [UInt8]) -> Bool {
        let base = Bytes.string(home) + "/dirperm1-check-\(getpid())"
        for d in ["", "/branch", "/mnt"] { try? Sys.mkdir(Bytes.of(base + d), mode: 0o700) }

        defer { try? removeTree(AT_FDCWD, Bytes.of(base)) }
        guard (try? Sys.mount(source: "none", target: Bytes.of(base + "/mnt"), type: "aufs", flags: 0,
                              data: "br:\(base)/branch=rw,dirperm1")) != nil else { return false }
        try? Sys.unmount(Bytes.of(base + "/mnt"))
        return true
    }
}
