// ID-mapped layer views: a layer shown with every file's owner mapped through an ID map (for a
// container in a user namespace), made with ID-mapped mounts of the layer's directory (vfs,
// btrfs, a base layer of overlay2 or aufs) or of its branches under an overlay (overlay2), so
// no file is rewritten and the time does not depend on the layer's size. The store keeps its
// layers unmapped; a file created through a view by a mapped ID is stored with the container ID.
//
// Where the kernel or the filesystem cannot make ID-mapped mounts, the view is a copy of the
// layer with its owners rewritten (what `import --uid-map` does to every file), with a warning
// that says why, or an error when the caller allowed no such fallback.
//
// Layout: `HOME/views/<id>@<tag>/` per view (the tag names the map), holding `merged` (the view
// itself, a mount), while it is being built the ID-mapped branches `0`, `1`, … and `u` (detached
// once the overlay holds them), and for a fallback `copy` (bind-mounted on `merged`) and the
// file `fallback` (the reason). Views are counted on disk like plain mounts
// (`layers/.mounts/<id>@<tag>`), so two `mount`s with one map need two `umount`s, and maps differ
// by directory, so views with different maps of one layer coexist.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A mapped view of a layer, as `LayerStore.mount(id:idMap:options:)` made it.
public struct MappedView: Sendable, Equatable {
    /// The view's root directory.
    public var path: FilePath
    /// nil when the view is an ID-mapped mount of the layer; otherwise it is a copy with its
    /// owners rewritten, and this says why an ID-mapped mount could not be made.
    public var fallbackReason: String?

    /// Whether the view is the layer itself, ID-mapped (writes reach the layer).
    public var isIDMapped: Bool { fallbackReason == nil }
}

/// How `LayerStore.mount(id:idMap:options:)` makes a mapped view.
public struct MappedViewOptions: Sendable {
    /// Where the kernel or the filesystem cannot make ID-mapped mounts: make the view a copy of
    /// the layer with its owners rewritten (the chown import's work; writes to it do not reach
    /// the layer) and log a warning saying why. false: refuse with `DriverError.notSupported`.
    public var allowChownFallback: Bool
    /// Where the fallback's warning goes.
    public var logger: Logger

    /// Options with the chown fallback allowed (the default) or not, warnings to `logger`.
    public init(allowChownFallback: Bool = true, logger: Logger = Logger(label: "diffkit")) {
        self.allowChownFallback = allowChownFallback
        self.logger = logger
    }
}

extension IDMap {
    /// The map as text, one range after another: `u0:100000:65536;g0:100000:65536`.
    var canonicalText: String {
        (uids.map { "u\($0.containerID):\($0.hostID):\($0.size)" } + gids.map { "g\($0.containerID):\($0.hostID):\($0.size)" })
            .joined(separator: ";")
    }

    /// A short name of the map for directory names (FNV-1a of `canonicalText`, 12 hex digits).
    var viewTag: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in canonicalText.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String((String(repeating: "0", count: max(0, 16 - hex.count)) + hex).prefix(12))
    }

    /// The ranges as a user namespace takes them: the container (on-disk) ID inside, the host ID
    /// outside.
    var namespaceRanges: (uids: [NamespaceRange], gids: [NamespaceRange]) {
        (uids.map { NamespaceRange(inside: $0.containerID, outside: $0.hostID, count: $0.size) },
         gids.map { NamespaceRange(inside: $0.containerID, outside: $0.hostID, count: $0.size) })
    }

    /// Host IDs that have a mapping: container root's where it is mapped, else the first range's.
    var mappedCreator: (uid: UInt32, gid: UInt32) {
        func pick(_ ranges: [IDRange]) -> UInt32 {
            if ranges.isEmpty { return 0 }
            return (ranges.first { $0.containerID == 0 } ?? ranges[0]).hostID
        }
        return (pick(uids), pick(gids))
    }
}

/// What a layer's mapped view is made of.
enum MappedSource {
    /// One directory holds the whole view: an ID-mapped bind mount of it.
    case directory([UInt8])
    /// An overlay of ID-mapped branches: `lowers` nearest first; `layerDir` (holding the upper
    /// `diff` and the views' work dirs) for a writable layer, nil for a read-only one.
    case overlay(lowers: [[UInt8]], layerDir: [UInt8]?, options: [String])
    /// No ID-mapped form: only the fallback; the reason.
    case none(String)
}

extension LayerStore {
    var viewsDir: [UInt8] { Array(meta.dropLast("/layers".count)) + Bytes.of("/views") }
    func viewKey(_ id: String, _ map: IDMap) -> String { id + "@" + map.viewTag }
    func viewDir(_ key: String) -> [UInt8] { viewsDir + Bytes.of("/" + key) }

    /// The directory where layer `id`'s view through `idMap` is (or would be) mounted.
    package func viewPath(id: String, idMap: IDMap) -> [UInt8] { viewDir(viewKey(id, idMap)) + Bytes.of("/merged") }

    /// Whether layer `id`'s view through `idMap` is mounted now.
    public func isMounted(id: String, idMap: IDMap) -> Bool { Sys.isMountRoot(viewPath(id: id, idMap: idMap)) }

    /// A view of layer `id` in which every file appears owned through `idMap` (container IDs on
    /// disk shown as host IDs), made with ID-mapped mounts: nothing is rewritten, and files
    /// created through it by a mapped ID are stored with the container ID. Counted like `mount`:
    /// each call needs an `unmount(id:idMap:)`, across processes. Views with different maps of
    /// one layer coexist. The identity map is the plain `mount(id:)`. Where ID-mapped mounts are
    /// impossible, see `MappedViewOptions.allowChownFallback`.
    public func mount(id: String, idMap: IDMap, options: MappedViewOptions = MappedViewOptions()) throws -> MappedView {
        if try isPlainView(id, idMap) { return MappedView(path: try mount(id: id), fallbackReason: nil) }
        return try reading(id) {
            _ = try record(id)
            return try withLock {
                let key = viewKey(id, idMap)
                let dir = viewDir(key)
                let merged = dir + Bytes.of("/merged")
                let n = viewCount(key)
                if n > 0 && Sys.isMountRoot(merged) {
                    try setViewCount(key, n + 1)
                    let reason = (try? Sys.readFile(dir + Bytes.of("/fallback"))).map { String(decoding: $0, as: UTF8.self) }
                    return MappedView(path: FilePath(bytes: merged), fallbackReason: reason)
                }
                try tearDownView(id, key)
                let reason: String?
                do {
                    reason = try makeView(id, idMap, key, options)
                } catch {
                    try? tearDownView(id, key)
                    throw error
                }
                try setViewCount(key, 1)
                return MappedView(path: FilePath(bytes: merged), fallbackReason: reason)
            }
        }
    }

    /// Drop one reference to layer `id`'s view through `idMap`; the last unmounts it and removes
    /// its directory. The identity map is the plain `unmount(id:)`.
    public func unmount(id: String, idMap: IDMap) throws {
        if try isPlainView(id, idMap) { return try unmount(id: id) }
        try reading(id) {
            _ = try record(id)
            try withLock {
                let key = viewKey(id, idMap)
                let n = viewCount(key)
                if n > 1 && Sys.isMountRoot(viewDir(key) + Bytes.of("/merged")) { return try setViewCount(key, n - 1) }
                try tearDownView(id, key)
                try setViewCount(key, 0)
            }
        }
    }

    /// Whether the view through `map` is the layer's plain mount: no map, or the map the store's
    /// layers were made under (their files already carry its host IDs). Under another map such a
    /// store's files would be mapped twice: refused.
    private func isPlainView(_ id: String, _ map: IDMap) throws -> Bool {
        try map.validate()
        if map.isIdentity || map == driver.idMap { return true }
        if !driver.idMap.isIdentity {
            throw DriverError.notSupported(driver: "an ID-mapped view of layer \(id)", reason:
                "the store's layers were made under another ID map (their files carry its host IDs); mount it without a map")
        }
        return false
    }

    /// Unmount and remove every mapped view of layer `id` (before the layer is removed; the
    /// store lock is held).
    func dropViews(of id: String) throws {
        guard let fd = try? Sys.open(viewsDir, O_RDONLY | O_DIRECTORY) else { return }
        let names = (try? Sys.readDirectory(fd, shown: viewsDir)) ?? []
        Sys.close(fd)
        for e in names where Bytes.string(e.name).hasPrefix(id + "@") {
            let key = Bytes.string(e.name)
            try tearDownView(id, key)
            try setViewCount(key, 0)
        }
    }

    // MARK: counts

    private func viewCountPath(_ key: String) -> [UInt8] { meta + Bytes.of("/.mounts/" + key) }

    private func viewCount(_ key: String) -> Int {
        guard let text = try? Sys.readFile(viewCountPath(key)) else { return 0 }
        return Int(String(decoding: text.filter { $0 != UInt8(ascii: "\n") }, as: UTF8.self)) ?? 0
    }

    private func setViewCount(_ key: String, _ n: Int) throws {
        if n > 0 { try writeFileAtomically(viewCountPath(key), Bytes.of("\(n)\n")) }
        else { try? Sys.unlink(viewCountPath(key)) }
    }

    // MARK: making and removing views

    /// What layer `id`'s view is made of, by driver.
    private func mappedSource(_ id: String) throws -> MappedSource {
        switch driver {
        case let d as Overlay2Driver:
            let lowers = try d.lowerDirs(id)
            if lowers.isEmpty { return .directory(d.diffDir(id)) }
            if Sys.exists(d.dir(id) + Bytes.of("/committed")) {
                return .overlay(lowers: [d.diffDir(id)] + lowers, layerDir: nil, options: d.mountOptions)
            }
            return .overlay(lowers: lowers, layerDir: d.dir(id), options: d.mountOptions)
        case let d as AufsDriver:
            if try d.parents(id).isEmpty { return .directory(d.diffDir(id)) }
            return .none("the aufs driver does not mount a union of ID-mapped branches")
        default:
            let dir = try driver.getBytes(id: id)
            try driver.put(id: id)
            return .directory(dir)
        }
    }

    /// Build the view; nil when it is ID-mapped, else the reason it is a chowned copy.
    private func makeView(_ id: String, _ map: IDMap, _ key: String, _ options: MappedViewOptions) throws -> String? {
        let dir = viewDir(key)
        let merged = dir + Bytes.of("/merged")
        try makeDirectory(viewsDir, mode: 0o711, uid: 0, gid: 0)
        try makeDirectory(dir, mode: 0o711, uid: 0, gid: 0)
        try makeDirectory(merged, mode: 0o755, uid: 0, gid: 0)
        let reason: String
        do {
            try mountIDMapped(id, map, key, try mappedSource(id))
            return nil
        } catch let e as IDMapUnsupported {
            reason = e.reason
        }
        guard options.allowChownFallback else {
            throw DriverError.notSupported(driver: "an ID-mapped view of layer \(id)", reason: reason + "; no chown fallback was allowed")
        }
        options.logger.warning("layer \(id): no ID-mapped view: \(reason); the view is a copy with its owners rewritten (as import --uid-map does), and writes to it do not reach the layer")
        try makeChownedCopy(id, map, dir)
        try writeFileAtomically(dir + Bytes.of("/fallback"), Bytes.of(reason))
        return reason
    }

    /// Why ID-mapped mounts cannot be made (the fallback's case), as opposed to other failures.
    private struct IDMapUnsupported: Error { var reason: String }

    private func mountIDMapped(_ id: String, _ map: IDMap, _ key: String, _ source: MappedSource) throws {
        let dir = viewDir(key)
        let merged = dir + Bytes.of("/merged")
        if case let .none(reason) = source { throw IDMapUnsupported(reason: reason) }
        let ranges = map.namespaceRanges
        let ns: UserNamespace
        do {
            ns = try UserNamespace(uids: ranges.uids, gids: ranges.gids)
        } catch let e as SystemError {
            switch e.errno {
            case .notPermitted, .invalidArgument, .noSpace, .noFunction:
                throw IDMapUnsupported(reason: "a user namespace with the map cannot be made here (\(e.errno))")
            default: throw e
            }
        }
        /// An ID-mapped copy of `path`'s mount, or the reason there can be none.
        func tree(_ path: [UInt8]) throws -> Int32 {
            do {
                return try Sys.idmappedTree(path, userns: ns)
            } catch let e as SystemError {
                switch e.errno {
                case .noFunction:
                    throw IDMapUnsupported(reason: "the kernel has no ID-mapped mounts (open_tree and mount_setattr, Linux 5.12)")
                case .invalidArgument, .notSupported:
                    throw IDMapUnsupported(reason: "\(filesystemName(path)) at \(Bytes.string(path)) does not support ID-mapped mounts")
                case .notPermitted:
                    throw IDMapUnsupported(reason: "ID-mapped mounts need CAP_SYS_ADMIN in the initial user namespace")
                default: throw e
                }
            }
        }
        switch source {
        case .none: return
        case let .directory(path):
            let m = try tree(path)
            defer { Sys.close(m) }
            try Sys.attachMount(m, on: merged)
        case let .overlay(lowers, layerDir, options):
            // The branches are attached only until the overlay holds them (it keeps its own
            // references), so the view is a single mount.
            var attached: [[UInt8]] = []
            defer {
                for p in attached.reversed() {
                    if Sys.isMountRoot(p) { try? Sys.unmount(p) }
                    try? Sys.rmdir(p)
                }
            }
            func attach(_ source: [UInt8], as name: String) throws {
                let m = try tree(source)
                defer { Sys.close(m) }
                let p = dir + Bytes.of("/" + name)
                try makeDirectory(p, mode: 0o700, uid: 0, gid: 0)
                attached.append(p)
                try Sys.attachMount(m, on: p)
            }
            for (i, l) in lowers.enumerated() { try attach(l, as: String(i)) }
            var data = options + ["lowerdir=" + lowers.indices.map(String.init).joined(separator: ":")]
            if let layerDir {
                // A work dir of the view's own: two views of one layer never share one.
                let work = "work@" + map.viewTag
                try makeDirectory(layerDir + Bytes.of("/" + work), mode: 0o700, uid: 0, gid: 0)
                try attach(layerDir, as: "u")
                data += ["upperdir=u/diff", "workdir=u/" + work]
            }
            let creator = map.mappedCreator
            do {
                try Sys.mountOverlay(from: dir, target: Bytes.of("merged"), data: data.joined(separator: ","),
                                     fsuid: creator.uid, fsgid: creator.gid)
            } catch let e as SystemError where e.errno == .invalidArgument && !kernelAtLeast(5, 19) {
                throw IDMapUnsupported(reason: "overlayfs takes ID-mapped layers from Linux 5.19 (\(e.description))")
            }
        }
    }

    /// The fallback: the layer's whole view written as a tar and applied with the map into
    /// `dir/copy` (the chown import's work), bind-mounted on `dir/merged`.
    private func makeChownedCopy(_ id: String, _ map: IDMap, _ dir: [UInt8]) throws {
        let copy = dir + Bytes.of("/copy")
        try makeDirectory(copy, mode: 0o755, uid: 0, gid: 0)
        let source = try driver.getBytes(id: id)
        defer { try? driver.put(id: id) }
        let st = try Sys.fstatat(AT_FDCWD, source)
        let root = map.toHost(uid: st.st_uid, gid: st.st_gid) ?? map.rootPair
        try? Sys.lchown(copy, uid: root.uid, gid: root.gid)
        try? Sys.chmod(copy, mode: st.st_mode & 0o7777)
        let (readEnd, writeEnd) = try Sys.pipe(shown: copy)
        let failure = ThreadFailure()
        let name = "layer \(id)"
        let thread: SystemThread
        do {
            thread = try SystemThread(shown: copy) {
                do { _ = try Layers.export(directory: source, to: writeEnd, name: name) } catch { failure.error.withLock { $0 = error } }
                Sys.close(writeEnd)
            }
        } catch {
            Sys.close(readEnd)
            Sys.close(writeEnd)
            throw error
        }
        var options = ApplyOptions(idMap: map)
        options.logger = Logger(label: "diffkit")
        let applied = Result { try Layers.apply(root: copy, from: readEnd, name: name, options: options) }
        // Read what the reader left, so the writer never blocks on a full pipe.
        var buf = [UInt8](repeating: 0, count: 65536)
        while (buf.withUnsafeMutableBytes { try? Sys.read(readEnd, $0.baseAddress!, $0.count, shown: copy) } ?? 0) > 0 {}
        Sys.close(readEnd)

        thread.join()
        if let e = failure.error.withLock({ $0 }) { throw e }
        _ = try applied.get()
        try Sys.bindMount(copy, on: dir + Bytes.of("/merged"))
    }

    /// Unmount a view and remove its directory (and an overlay2 layer's work dir of it); any
    /// branch a killed process left attached is unmounted first, and nothing is removed while a
    /// mount remains below the directory.
    func tearDownView(_ id: String, _ key: String) throws {
        let dir = viewDir(key)
        guard let fd = try? Sys.open(dir, O_RDONLY | O_DIRECTORY) else { return }
        let names = (try? Sys.readDirectory(fd, shown: dir)) ?? []
        Sys.close(fd)
        for e in names {
            let p = dir + [LayerPath.slash] + e.name
            while Sys.isMountRoot(p) { try Sys.unmount(p) }
        }
        if let d = driver as? Overlay2Driver, let at = key.firstIndex(of: "@") {
            let work = d.dir(id) + Bytes.of("/work" + key[at...])
            if Sys.exists(work) { try removeTree(AT_FDCWD, work) }
        }
        try removeTree(AT_FDCWD, dir)
    }
}

/// The writer thread's error, read after it is joined.
private final class ThreadFailure: Sendable {
    let error = Locked<(any Error)?>(nil)
}

private func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
    let v = Sys.kernelVersion()
    return v.count >= 2 && (v[0], v[1]) >= (major, minor)
}

/// The filesystem's name for messages (ramfs, which has no ID-mapped mounts, by name too).
private func filesystemName(_ path: [UInt8]) -> String {
    if let fd = try? Sys.open(path, O_RDONLY | O_DIRECTORY) {
        defer { Sys.close(fd) }
        let names: [Int64: String] = [0x8584_58f6: "ramfs", 0x6573_5546: "fuse", 0x6969: "nfs", 0x0102_1997: "9p"]
        if let t = Sys.filesystemType(fd), let n = names[t] { return n }
    }
    return backingFilesystem(path)
}
