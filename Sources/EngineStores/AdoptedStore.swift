// An engine's own store opened in place, read-only: docker's data root or containers/storage's
// root. Layers are listed from the engine's metadata under the engine's names; changes, sizes
// and exports read the driver's directories where they are (an overlay layer's own diff dir is
// its change set), and a whole-tree view, where one is needed, is a read-only mount on a
// directory of DiffKit's own. Nothing below the engine's root is written, renamed or mounted
// over, and no lock is taken that a running daemon would wait on for long (see ContainersRoot).
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An engine's store opened in place, read-only: its layers listed under the engine's names,
/// their changes, sizes, exports (byte for byte from the engine's tar-split record when the
/// files are unchanged) and read-only mounts.
public final class AdoptedStore: Sendable {
    /// The engine whose store this is.
    public let engine: Engine
    /// The store's root (a docker data root, a containers/storage root).
    public let root: FilePath
    /// The engine's name for the driver the layers are kept on.
    public var driverName: String { driver.name }
    /// The layers, as the engine's metadata listed them when the store was opened.
    public let layers: [AdoptedLayer]

    let driver: EngineDriver
    let views: EngineViews
    private let records: [String: EngineLayerRecord]

    /// The drivers whose layers can be read, per engine.
    public static func supportedDrivers(_ engine: Engine) -> [String] {
        engine == .docker ? DockerRoot.drivers : ContainersRoot.drivers
    }

    /// Open the store of `engine` at `root`. `driver` chooses among several drivers' layers
    /// (by default the only one there). `stateDirectory` is DiffKit's own directory for the
    /// read-only mounts (it must not be inside `root`). Throws an ``EngineStoreError`` naming
    /// what was expected when `root` is not such a store or its driver cannot be read.
    public init(engine: Engine, root: FilePath, driver: String? = nil, stateDirectory: FilePath) throws {
        let rootBytes = Bytes.of(root)
        guard EngineFiles.isDirectory(rootBytes) else {
            throw EngineStoreError.notAStore(path: root.string, expected: engine == .docker ? "a docker data root" : "a containers/storage root",
                                             hint: EngineFiles.guess(rootBytes))
        }
        let (name, records) = engine == .docker
            ? try DockerRoot.read(root: rootBytes, driver: driver)
            : try ContainersRoot.read(root: rootBytes, driver: driver)
        self.engine = engine
        self.root = root
        self.driver = EngineDriver(name: name, home: rootBytes + Bytes.of("/" + name))
        try self.driver.checkLayout()
        let realRoot = Self.resolved(rootBytes)
        let state = Self.resolved(Bytes.of(stateDirectory))
        if state == realRoot || state.starts(with: realRoot + [LayerPath.slash]) {
            throw EngineStoreError.stateInsideStore(state: stateDirectory.string, store: root.string)
        }
        let key = String(SHA256.hex(Bytes.of("\(engine.rawValue)\n\(name)\n") + realRoot).dropFirst(7).prefix(16))
        views = EngineViews(directory: state + Bytes.of("/\(engine.rawValue)-\(key)"))
        self.records = Dictionary(records.map { ($0.layer.id, $0) }, uniquingKeysWith: { a, _ in a })
        layers = records.map(\.layer)
    }

    /// `docker:PATH` or `containers:PATH` (also `containers-storage:PATH`).
    public static func parse(_ specification: String) throws -> (engine: Engine, root: FilePath) {
        guard let colon = specification.firstIndex(of: ":") else { throw EngineStoreError.badSpecification(specification) }
        let kind = specification[..<colon], path = String(specification[specification.index(after: colon)...])
        guard !path.isEmpty else { throw EngineStoreError.badSpecification(specification) }
        switch kind {
        case "docker": return (.docker, FilePath(path))
        case "containers", "containers-storage": return (.containers, FilePath(path))
        default: throw EngineStoreError.badSpecification(specification)
        }
    }

    /// What the directory at `path` looks like (a docker data root, a containers/storage root, a
    /// driver's own directory, a DiffKit store, …), for an error about a directory that is not
    /// what was expected; nil when it looks like none of these.
    public static func describe(_ path: FilePath) -> String? { EngineFiles.guess(Bytes.of(path)) }

    /// The layer named `id` (for docker, the chain ID with or without its `sha256:` prefix).
    public func layer(_ id: String) throws -> AdoptedLayer { try record(id).layer }

    func record(_ id: String) throws -> EngineLayerRecord {
        if let r = records[id] { return r }
        if engine == .docker, let r = records["sha256:" + id] { return r }
        throw EngineStoreError.layerNotFound(id)
    }

    // MARK: diffs

    /// How a layer's changes are found: its files, those of what it is diffed against, and
    /// for an overlay branch whose nearest lower is that, the scan of its diff dir (then the
    /// diff dir is the change set).
    struct Plan {
        var files: LayerFiles
        var base: LayerFiles?
        var native: OverlayUpperScan?
    }

    static let xattrPrefix = "trusted."

    func plan(_ r: EngineLayerRecord) throws -> Plan {
        let files = try driver.files(r.layer.driverID)
        let base = try r.diffBase.map { try driver.files($0) }
        var native: OverlayUpperScan? = nil
        if case let .overlay(_, _, diff, _, lowers) = files {
            var nearest = base == nil && lowers.isEmpty
            if let base, case let .overlay(_, _, baseDiff, _, _) = base { nearest = lowers.first == baseDiff }
            if nearest {
                let scan = try OverlayUpperScan.of(upper: diff, xattrPrefix: Self.xattrPrefix)
                if scan.problem == nil { native = scan }
            }
        }
        return Plan(files: files, base: base, native: native)
    }

    /// Run `body` with the layer's view and its base's (nil: none).
    func withViews<R>(_ p: Plan, _ body: (_ layer: [UInt8], _ base: [UInt8]?) throws -> R) throws -> R {
        try views.withView(p.files) { layer in
            guard let base = p.base else { return try body(layer, nil) }
            return try views.withView(base) { try body(layer, $0) }
        }
    }

    /// The changes of layer `id` against its parent (a docker container's against its init
    /// layer, as `docker diff` shows them), in path order.
    public func changes(id: String) throws -> [Change] {
        let p = try plan(try record(id))
        if let scan = p.native, case let .overlay(_, _, diff, _, lowers) = p.files {
            if !scan.needsView { return try BranchChanges.changes(upper: diff, lowers: lowers, form: .overlay(xattrPrefix: Self.xattrPrefix)) }
            return try withViews(p) { layer, base in
                try BranchChanges.changes(upper: diff, xattrPrefix: Self.xattrPrefix, parentView: base, layerView: layer)
            }
        }
        return try withViews(p) { layer, base in try TreeDiff.changes(base: base, layer: layer, snapshots: driver.isBtrfs) }
    }

    /// The size in bytes of layer `id`'s changes (DiffSize): an overlay branch's own directory,
    /// else the sizes of the changed files.
    public func size(id: String) throws -> Int64 {
        let p = try plan(try record(id))
        if let scan = p.native, !scan.needsView, case let .overlay(_, _, diff, _, _) = p.files {
            return try Sizes.directorySize(diff)
        }
        return Sizes.changesSize(try changes(id: id))
    }

    // MARK: mounts

    /// The directory DiffKit mounts layer views on for this store.
    private var mountDirectory: [UInt8] { views.directory + Bytes.of("/mounts") }

    /// Run `body` holding the lock of this store's mount counts (a file of DiffKit's own).
    private func withMountLock<R>(_ body: () throws -> R) throws -> R {
        try makeDirectories(mountDirectory)
        let path = views.directory + Bytes.of("/.lock")
        let fd = try Sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        defer { Sys.close(fd) }
        let e = Sys.tryFlock(fd, LOCK_EX)
        if e != 0 { throw SystemError("flock", path, errno: e) }
        return try body()
    }

    private func mountCount(_ path: [UInt8]) -> Int {
        guard let t = try? EngineFiles.optionalText(path) else { return 0 }
        return Int(t) ?? 0
    }

    private func setMountCount(_ path: [UInt8], _ n: Int) throws {
        guard n > 0 else {
            try? Sys.unlink(path)
            return
        }
        let fd = try Sys.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { Sys.close(fd) }
        try Array("\(n)\n".utf8).withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(path)) }
    }

    /// Layer `id`'s whole tree mounted read-only on a directory of DiffKit's own (below the
    /// state directory), counted across processes: each call needs an ``unmount(id:)``.
    public func mount(id: String) throws -> FilePath {
        let r = try record(id)
        let files = try driver.files(r.layer.driverID)
        let target = mountDirectory + Bytes.of("/" + r.layer.storeID)
        return try withMountLock {
            var n = mountCount(target + Bytes.of(".count"))
            if n > 0 && !Sys.isMountRoot(target) { n = 0 }
            if n == 0 {
                let e = Sys.tryMkdir(target, mode: 0o700)
                if e != 0 && e != EEXIST { throw SystemError("mkdir", target, errno: e) }
                try views.mountView(files, on: target)
            }
            try setMountCount(target + Bytes.of(".count"), n + 1)
            return FilePath(Bytes.string(target))
        }
    }

    /// Drop one ``mount(id:)`` of layer `id`; the last one unmounts.
    public func unmount(id: String) throws {
        let r = try record(id)
        let target = mountDirectory + Bytes.of("/" + r.layer.storeID)
        try withMountLock {
            let n = mountCount(target + Bytes.of(".count"))
            let mounted = Sys.isMountRoot(target)
            if n > 1 && mounted { return try setMountCount(target + Bytes.of(".count"), n - 1) }
            if mounted { try Sys.unmount(target) }
            try? Sys.rmdir(target)
            try setMountCount(target + Bytes.of(".count"), 0)
        }
    }

    // MARK: helpers

    /// `path` with symbolic links resolved as far as it exists (the rest appended as given).
    static func resolved(_ path: [UInt8]) -> [UInt8] {
        let absolute: [UInt8]
        if path.first == LayerPath.slash {
            absolute = path
        } else {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let cwd = getcwd(&buf, buf.count).map { Array(String(cString: $0).utf8) } ?? []
            absolute = cwd + [LayerPath.slash] + path
        }
        var parts = absolute.split(separator: LayerPath.slash).map(Array.init)
        var rest: [[UInt8]] = []
        while true {
            let p = [LayerPath.slash] + Array(parts.joined(separator: [LayerPath.slash]))
            if let real = Sys.withCString(p, { realpath($0, nil) }) {
                defer { free(real) }
                var out = Array(String(cString: real).utf8)
                for r in rest.reversed() { out += (out.last == LayerPath.slash ? [] : [LayerPath.slash]) + r }
                return out
            }
            guard let last = parts.popLast() else { return absolute }
            rest.append(last)
        }
    }
}
