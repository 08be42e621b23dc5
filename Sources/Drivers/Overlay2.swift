// overlay2 (moby's daemon/graphdriver/overlay2): moby's on-disk layout, so an existing store is readable.
//
//   home/l/<LINK>        -> ../<id>/diff   (26-character link ids keep mount data short)
//   home/<id>/diff       the layer's own content: the upper dir when mounted
//   home/<id>/link       <LINK>
//   home/<id>/lower      l/<P1>:l/<P2>:…, nearest parent first (children only)
//   home/<id>/work       overlay's work dir (children only)
//   home/<id>/merged     the mount point, made by get and removed by the last put
//   home/<id>/committed  written when a child is made: the layer then mounts read-only
//
// Diffs are native (the diff dir is the layer's change set) when the parent is the layer's
// direct lower and the kernel passed the native-diff probe; otherwise the naive diff of the
// mounted views, shared with every driver.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The overlay2 driver in moby's layout: each layer a `diff` dir, its lowers linked by short
/// names in `l/`, mounted as an overlay at `merged` when it has parents.
public final class Overlay2Driver: Driver {
    /// `overlay2`.
    public let name = "overlay2"
    /// The driver's directory (`l/` and a directory per layer below it).
    public var home: FilePath { FilePath(bytes: homeDir) }
    /// `home` as bytes.
    package let homeDir: [UInt8]
    /// The store's ID map; new layer roots are owned by its root pair.
    public let idMap: IDMap

    /// Whether exports, changes and sizes may read the diff dir directly, and if not why.
    public let nativeDiff: (usable: Bool, reason: String)
    /// What the probe saw the mounts leave in an upper (`redirect_dir`, `metacopy`): the native
    /// diff then reads renamed directories and metadata-only copy-ups through the mounted views.
    public let upperFeatures: [String]
    /// In a user namespace overlay keeps its state in `user.overlay.*` and mounts with `userxattr`.
    public let userxattr: Bool
    var xattrPrefix: String { userxattr ? "user." : "trusted." }
    /// Options every mount gets: `index=off` where the kernel knows it, `userxattr`, then those of
    /// `overlay2.mountopt`.
    let mountOptions: [String]
    /// The kernel takes `lowerdir+` through fsconfig (Linux 6.8), so lower lists have no page limit.
    let lowerdirPlus: Bool
    /// Most lowers a layer may have: 128 (moby's page-size bound), or overlay's own 500 with `lowerdir+`.
    public let maxLowers: Int
    let backingFS: String
    let supportsDType: Bool
    private let quota: QuotaControl?
    /// `overlay2.size`: the limit of every read-write layer without its own `size`.
    private let defaultSize: UInt64?
    private let mounts = MountTable()
    private var mounter: MountTable.Mounter {
        MountTable.Mounter(mountPoint: mergedDir, mount: { id in try self.mount(id, try self.lowers(id)) }, unmount: unmount)
    }

    /// Driver options: `overlay2.override_kernel_check=BOOL` (accepted, no effect: the kernel's
    /// features are probed), `overlay2.size=SIZE` (needs xfs project quotas),
    /// `overlay2.mountopt=OPTIONS` (extra options of every layer mount, such as
    /// `redirect_dir=on,metacopy=on`). `overlay.` works as the prefix too (containers/storage).
    /// Anything else is refused.
    package init(home: [UInt8], options: [String: String] = [:], idMap: IDMap = .identity) throws {
        var size: UInt64? = nil
        var extraMountOptions: [String] = []
        for (key, value) in options {
            let k = key.lowercased()
            let bare = k.hasPrefix("overlay2.") ? k.dropFirst(9) : k.hasPrefix("overlay.") ? k.dropFirst(8) : Substring(k)
            switch bare {
            case "override_kernel_check":
                guard parseBool(value) != nil else {
                    throw DriverError.invalidOption(driver: "overlay2", key: key, reason: "expected true or false")
                }
            case "size" where k != "size":
                guard let s = parseSize(value), s > 0 else {
                    throw DriverError.invalidOption(driver: "overlay2", key: key, reason: "expected a size such as 10G")
                }
                size = s
            case "mountopt" where k != "mountopt":
                extraMountOptions = try Overlay2Driver.parseMountOptions(value, key: key)
            default:
                throw DriverError.invalidOption(driver: "overlay2", key: key, reason: "unknown option")
            }
        }
        guard let fs = try? Sys.readFile(Bytes.of("/proc/filesystems")),
              String(decoding: fs, as: UTF8.self).contains("\toverlay\n") else {
            throw DriverError.notSupported(driver: "overlay2", reason: "the kernel has no overlay filesystem (modprobe overlay)")
        }
        self.homeDir = home
        self.idMap = idMap
        let root = idMap.rootPair
        try makeDirectory(home, mode: 0o710, uid: geteuid(), gid: root.gid)
        try makeDirectory(home + Bytes.of("/l"), mode: 0o700, uid: geteuid(), gid: root.gid)
        backingFS = backingFilesystem(home)
        supportsDType = Overlay2Driver.supportsDType(home)
        if !supportsDType {
            throw DriverError.notSupported(driver: "overlay2", reason:
                "\(Bytes.string(home)) is on \(backingFS) without d_type support (xfs: mkfs.xfs -n ftype=1)")
        }
        userxattr = ApplyOptions.detectUserNamespace()
        var mo: [String] = []
        if (try? Sys.fstatat(AT_FDCWD, Bytes.of("/sys/module/overlay/parameters/index"))) != nil { mo.append("index=off") }
        if userxattr { mo.append("userxattr") }
        mo += extraMountOptions
        mountOptions = mo
        let v = Sys.kernelVersion()
        lowerdirPlus = v.count >= 2 && (v[0], v[1]) >= (6, 8)
        maxLowers = lowerdirPlus ? 500 : 128
        let probe = userxattr
            ? (usable: false, reason: "running in a user namespace", features: [])
            : try Overlay2Driver.cachedProbe(home: home, mountOptions: mo)
        nativeDiff = (probe.usable, probe.reason)
        upperFeatures = probe.usable ? probe.features : []
        quota = backingFS == "xfs" ? QuotaControl(home: home) : nil
        defaultSize = size
        if size != nil && quota == nil {
            throw DriverError.invalidOption(driver: "overlay2", key: "overlay2.size", reason: quotaMissing)
        }
    }

    private var quotaMissing: String {
        "a size needs xfs project quotas; \(Bytes.string(homeDir)) is on \(backingFS)" + (backingFS == "xfs" ? " mounted without pquota" : "")
    }

    // MARK: layout

    func dir(_ id: String) -> [UInt8] { homeDir + Bytes.of("/" + id) }
    func diffDir(_ id: String) -> [UInt8] { dir(id) + Bytes.of("/diff") }
    func workDir(_ id: String) -> [UInt8] { dir(id) + Bytes.of("/work") }
    func mergedDir(_ id: String) -> [UInt8] { dir(id) + Bytes.of("/merged") }

    /// The layer's link id (its name under `home/l`).
    func link(_ id: String) throws -> String {
        let text = String(decoding: try Sys.readFile(dir(id) + Bytes.of("/link")), as: UTF8.self)
        guard text.count == 26, text.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x32 && $0 <= 0x37) }) else {
            throw DriverError.invalidOption(driver: name, key: id, reason: "the layer's link file is damaged")
        }
        return text
    }

    /// The `lower` file's entries (`l/<LINK>`, nearest first); empty for a base layer.
    func lowers(_ id: String) throws -> [String] {
        guard let text = try? Sys.readFile(dir(id) + Bytes.of("/lower")) else { return [] }
        return String(decoding: text, as: UTF8.self).split(separator: ":").map(String.init)
    }

    /// The lowers as absolute diff dirs (through the `l/` links, as moby's GetMetadata does).
    func lowerDirs(_ id: String) throws -> [[UInt8]] {
        try lowers(id).map { l in
            let target = try Sys.readlinkat(AT_FDCWD, homeDir + Bytes.of("/" + l))
            // "../<id>/diff" relative to home/l
            return homeDir + [LayerPath.slash] + target.dropFirst(3)
        }
    }

    /// A new random link id: 26 characters of base32 from 17 random bytes.
    static func newLinkID() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<17).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var bits = 0, acc = 0
        var out: [UInt8] = []
        for b in bytes {
            acc = (acc << 8) | Int(b)
            bits += 8
            while bits >= 5 && out.count < 26 {
                out.append(alphabet[(acc >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: create / remove

    /// Create read-only layer `id` on `parent`; option `size` is refused (read-write layers only).
    public func create(id: String, parent: String?, options: [String: String]) throws {
        if options["size"] != nil {
            throw DriverError.invalidOption(driver: name, key: "size", reason: "a size is only supported for read-write layers")
        }
        try make(id: id, parent: parent, options: options, readWrite: false)
    }

    /// Create writable layer `id` on `parent`; option `size` limits it with a project quota.
    public func createReadWrite(id: String, parent: String?, options: [String: String]) throws {
        try make(id: id, parent: parent, options: options, readWrite: true)
    }

    private func make(id: String, parent: String?, options: [String: String], readWrite: Bool) throws {
        try validate(id: id)
        var size = readWrite ? defaultSize : nil
        for (k, v) in options {
            guard k == "size" else { throw DriverError.invalidOption(driver: name, key: k, reason: "unknown storage option") }
            guard let s = parseSize(v), s > 0 else { throw DriverError.invalidOption(driver: name, key: k, reason: "expected a size such as 10G") }
            size = s
        }
        if size != nil && quota == nil { throw DriverError.invalidOption(driver: name, key: "size", reason: quotaMissing) }
        if exists(id: id) { throw DriverError.layerExists(id) }
        var lower: [String] = []
        var rootAttributes = (mode: UInt32(0o755), uid: idMap.rootPair.uid, gid: idMap.rootPair.gid)
        if let parent {
            guard exists(id: parent) else { throw DriverError.parentNotFound(id: id, parent: parent) }
            lower = ["l/" + (try link(parent))] + (try lowers(parent))
            guard lower.count <= maxLowers else { throw DriverError.maxDepthExceeded(id: id, limit: maxLowers) }
            // The merged root is the diff dir's root: it starts as the parent's looks.
            let st = try Sys.fstatat(AT_FDCWD, diffDir(parent))
            let owner = idMap.insideOwner(uid: st.st_uid, gid: st.st_gid)  // inside the map, as implicit parents
            rootAttributes = (UInt32(st.st_mode) & 0o7777, owner.uid, owner.gid)
        }
        let root = idMap.rootPair
        let path = dir(id)
        try Sys.mkdir(path, mode: 0o710)
        var linkID: String? = nil
        do {
            try? Sys.lchown(path, uid: geteuid(), gid: root.gid)
            if let size { try quota!.setQuota(path, bytes: size) }
            let diff = diffDir(id)
            try Sys.mkdir(diff, mode: 0o700)
            try Sys.lchown(diff, uid: rootAttributes.uid, gid: rootAttributes.gid)
            try Sys.chmod(diff, mode: rootAttributes.mode)
            linkID = try makeLink(id)
            try writeFileAtomically(path + Bytes.of("/link"), Bytes.of(linkID!), mode: 0o644)
            if let parent {
                try makeDirectory(workDir(id), mode: 0o700, uid: root.uid, gid: root.gid)
                // An empty marker made in place: children of one parent may be made at once, by several
                // processes, and an empty file needs no rename.
                Sys.close(try Sys.open(dir(parent) + Bytes.of("/committed"), O_WRONLY | O_CREAT, mode: 0o600))
                try writeFileAtomically(path + Bytes.of("/lower"), Bytes.of(lower.joined(separator: ":")), mode: 0o666)
            }
        } catch {
            if let linkID { try? Sys.unlink(homeDir + Bytes.of("/l/" + linkID)) }
            try? removeTree(AT_FDCWD, path)
            throw error
        }
    }

    /// `home/l/<new link id>` → `../<id>/diff`.
    private func makeLink(_ id: String) throws -> String {
        while true {
            let l = Overlay2Driver.newLinkID()
            let at = homeDir + Bytes.of("/l/" + l)
            let r = Sys.trySymlinkat(Bytes.of("../\(id)/diff"), AT_FDCWD, at)
            if r == 0 { return l }
            if r != EEXIST { throw SystemError("symlink", at, errno: r) }
        }
    }

    /// Remove the layer: its mounts, its short link and its directory.
    public func remove(id: String) throws {
        if id.isEmpty { throw DriverError.emptyID }
        try validate(id: id)
        guard exists(id: id) else { return }
        try mounts.forget(id, mounter)
        if let l = try? link(id) { try? Sys.unlink(homeDir + Bytes.of("/l/" + l)) }
        try removeTree(AT_FDCWD, dir(id))
    }

    /// Whether layer `id` has a directory in this store.
    public func exists(id: String) -> Bool {
        (try? validate(id: id)) != nil && (try? Sys.fstatat(AT_FDCWD, dir(id))) != nil
    }

    // MARK: get / put

    /// The layer's view: its `diff` dir for a base layer, else the overlay mounted at `merged`
    /// (reference counted).
    public func get(id: String) throws -> FilePath { FilePath(bytes: try layerRoot(id)) }

    /// The layer's root as bytes (``get(id:)``).
    package func layerRoot(_ id: String) throws -> [UInt8] {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        let lower = try lowers(id)
        if lower.isEmpty { return diffDir(id) }
        return try mounts.acquire(id, mounter)
    }

    /// Release one reference taken by ``get(id:)``; the last one unmounts the overlay.
    public func put(id: String) throws {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        if try lowers(id).isEmpty { return }
        try mounts.release(id, mounter)
    }

    /// Whether the layer's view needs no new mount (a base layer) or is mounted now.
    public func isMounted(id: String) -> Bool {
        (try? lowers(id).isEmpty) ?? false || Sys.isMountPoint(mergedDir(id))
    }

    private func unmount(_ id: String) throws {
        let merged = mergedDir(id)
        if Sys.isMountPoint(merged) { try Sys.unmount(merged) }
        try? Sys.rmdir(merged)
    }

    /// Mount the layer on `merged`: with absolute paths when the data fits a page; else with
    /// paths relative to home (moby's fallback); else one `lowerdir+` at a time (Linux 6.8).
    private func mount(_ id: String, _ lower: [String]) throws {
        let merged = mergedDir(id)
        let root = idMap.rootPair
        try makeDirectory(merged, mode: 0o700, uid: root.uid, gid: root.gid)
        let committed = (try? Sys.fstatat(AT_FDCWD, dir(id) + Bytes.of("/committed"))) != nil
        func data(_ prefix: String, _ diff: String, _ work: String) -> String {
            let lowerList = lower.map { prefix + $0 }.joined(separator: ":")
            // A committed layer is read-only: its diff is the top lower, with no upper.
            return (mountOptions + (committed
                ? ["lowerdir=" + diff + ":" + lowerList]
                : ["lowerdir=" + lowerList, "upperdir=" + diff, "workdir=" + work])).joined(separator: ",")
        }
        let h = Bytes.string(homeDir)
        let absolute = data(h + "/", Bytes.string(diffDir(id)), Bytes.string(workDir(id)))
        let relative = data("", id + "/diff", id + "/work")
        // The same layer's previous mount, detached lazily, can hold its upper and work dirs for
        // a moment after the unmount returns (EBUSY: "in use by another mount"): retry briefly.
        for attempt in 1... {
            do {
                try mountOnce(id, merged, committed, absolute, relative, lower, h)
                break
            } catch let e as SystemError where e.errno == .resourceBusy && attempt < 50 {
                usleep(10_000)
            }
        }
        if !committed { try? Sys.lchown(workDir(id) + Bytes.of("/work"), uid: root.uid, gid: root.gid) }

    }

    private func mountOnce(_ id: String, _ merged: [UInt8], _ committed: Bool, _ absolute: String, _ relative: String,
                           _ lower: [String], _ h: String) throws {
        if absolute.utf8.count < Sys.pageSize {
            try Sys.mountOverlay(target: merged, data: absolute)
        } else if relative.utf8.count < Sys.pageSize {
            try Sys.mountOverlay(from: homeDir, target: Bytes.of(id + "/merged"), data: relative)
        } else if lowerdirPlus {
            var parameters: [(String, String?)] = mountOptions.map { o in
                guard let eq = o.firstIndex(of: "=") else { return (o, nil) }
                return (String(o[..<eq]), String(o[o.index(after: eq)...]))
            }
            if committed { parameters.append(("lowerdir+", Bytes.string(diffDir(id)))) }
            parameters += lower.map { ("lowerdir+", h + "/" + $0) }
            if !committed { parameters += [("upperdir", Bytes.string(diffDir(id))), ("workdir", Bytes.string(workDir(id)))] }
            try Sys.mountOverlay(target: merged, parameters: parameters)
        } else {
            throw DriverError.mountDataTooLarge(id: id, length: relative.utf8.count)
        }
    }

    // MARK: status

    /// Name/value pairs for `difftool status`: backing filesystem, d_type, native diff, mount options, lowers, quota.
    public func status() -> [(String, String)] {
        [
            ("Backing Filesystem", backingFS),
            ("Supports d_type", String(supportsDType)),
            ("Native Overlay Diff", !nativeDiff.usable ? "false (\(nativeDiff.reason))" : upperFeatures.isEmpty ? "true"
                : "true (\(upperFeatures.joined(separator: ", ")): renamed directories and metadata-only copy-ups read through the mounts)"),
            ("userxattr", String(userxattr)),
            ("Mount Options", mountOptions.joined(separator: ",")),
            ("Max Lower Layers", "\(maxLowers)" + (lowerdirPlus ? " (lowerdir+)" : "")),
            ("Project Quota", String(quota != nil)),
        ]
    }

    /// The layer's directories (`WorkDir`, `MergedDir`, `UpperDir`, `LowerDir` with parents) and its quota.
    public func metadata(id: String) throws -> [String: String] {
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        var m = [
            "WorkDir": Bytes.string(workDir(id)), "MergedDir": Bytes.string(mergedDir(id)), "UpperDir": Bytes.string(diffDir(id)),
        ]
        let lowers = try lowerDirs(id)
        if !lowers.isEmpty { m["LowerDir"] = lowers.map(Bytes.string).joined(separator: ":") }
        if let q = try quota?.usage(dir(id)) {
            m["QuotaLimit"] = String(q.limit)
            m["QuotaUsed"] = String(q.used)
        }
        return m
    }

    /// Unmount every layer this driver mounted.
    public func cleanup() throws { try mounts.releaseAll(mounter) }

    // MARK: diffs

    /// The parent is the layer's nearest lower (or both are absent) and the probe passed.
    func usesNativeDiff(_ id: String, _ parent: String?) throws -> Bool {
        guard nativeDiff.usable else {
            warnNaive("native diff not in use on this store: \(nativeDiff.reason); comparing the mounted trees")
            return false
        }
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        let lower = try lowers(id)
        guard let parent else { return lower.isEmpty }
        guard let first = lower.first, exists(id: parent) else { return false }
        return first == "l/" + (try link(parent))
    }

    /// The layer's `diff` dir, in overlay whiteout form, over its lowers' `diff` dirs, nearest first.
    public func branch(id: String) throws -> LayerDiffDirectory? {
        try validate(id: id)
        guard exists(id: id) else { throw DriverError.layerNotFound(id) }
        return LayerDiffDirectory(directory: diffDir(id), whiteouts: .overlay(xattrPrefix: xattrPrefix), lowers: try lowerDirs(id))
    }

    /// The `diff` dir when a native diff applies (the parent is the nearest lower and the kernel
    /// passed the probe); else nil, and the mounted trees are compared.
    public func diffDirectory(id: String, parent: String?) throws -> LayerDiffDirectory? {
        try usesNativeDiff(id, parent) ? try branch(id: id) : nil
    }

    /// A fresh diff dir of an unmounted layer takes the tar natively: whiteouts become 0/0
    /// devices, opaque markers the opaque xattr, implicit parents take the lowers' attributes.
    /// Into a diff dir with content, or under a live mount (whose cached view must see the
    /// change), the tar goes through the mount.
    public func applyDirectory(id: String) throws -> LayerDiffDirectory? {
        guard let b = try branch(id: id), try isFreshBranch(b.directoryBytes, mountPoint: mergedDir(id)) else { return nil }
        return b
    }
}
