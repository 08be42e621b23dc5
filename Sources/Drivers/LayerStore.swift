// LayerStore: what a driver does not keep itself — which layer is whose parent, which layers
// are incomplete — plus a store lock, so imports are atomic (a failed or killed import leaves
// no layer behind) and two processes can share one home.
import DiffKitArchive
import DiffKitSystem
import SystemPackage
import DiffKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the store keeps about a layer besides the driver's files: its parent, template,
/// applied size, diffID and tree stamp.
public struct LayerRecord: Sendable, Equatable {
    /// The layer's id.
    public var id: String
    /// The parent's id; nil for a base layer.
    public var parent: String?
    /// Bytes applied at import (Σ header sizes), when the layer was imported.
    public var appliedSize: Int64?
    /// The layer it was made from (create --template), which it may depend on in the driver.
    public var template: String?
    /// SHA-256 of the tar it was imported from (uncompressed).
    public var diffID: String?
    /// TreeStamp of its own tree right after the import (see `tarSplitPath`).
    public var stamp: String?
}

/// A store of layers on one driver: parents, records and locks beside the driver's files, so
/// imports are atomic and several processes can share one home.
public final class LayerStore: Sendable {
    /// The drivers a store can be opened with.
    public static let drivers = ["vfs", "overlay2", "btrfs", "aufs"]
    /// The driver the layers are kept on.
    public let driver: Driver
    let meta: [UInt8]

    /// Open (or create) a store of `driverName` at `home`. `driverOptions` are the driver's own
    /// (`vfs.*`, …). Layers left incomplete by an interrupted import are removed here.
    package init(driverName: String, home: [UInt8], driverOptions: [String: String] = [:], idMap: IDMap = .identity) throws {
        let idMap = try StoreIDMap.settle(home: home, requested: idMap)  // validated; recorded or adopted
        switch driverName {
        case "vfs": driver = try VFSDriver(home: home + Bytes.of("/vfs"), options: driverOptions, idMap: idMap)
        case "overlay2", "overlay":
            driver = try Overlay2Driver(home: home + Bytes.of("/overlay2"), options: driverOptions, idMap: idMap)
        case "btrfs": driver = try BtrfsDriver(home: home + Bytes.of("/btrfs"), options: driverOptions, idMap: idMap)
        case "aufs": driver = try AufsDriver(home: home + Bytes.of("/aufs"), options: driverOptions, idMap: idMap)
        default: throw DriverError.unknownDriver(driverName)
        }
        meta = home + Bytes.of("/layers")
        try makeDirectory(meta, mode: 0o700, uid: geteuid(), gid: getegid())
        for sub in ["/.locks", "/.mounts"] { try makeDirectory(meta + Bytes.of(sub), mode: 0o700, uid: geteuid(), gid: getegid()) }
        try withLock { try removeIncomplete() }
    }

    // MARK: locks

    /// Run `body` holding the store's exclusive lock (flock on `layers/.lock`): short sections
    /// that read or change records, never a whole import or export.
    func withLock<R>(_ body: () throws -> R) throws -> R {
        let fd = try lockFile(meta + Bytes.of("/.lock"), LOCK_EX)!
        defer { Sys.close(fd) }
        return try body()
    }

    /// A layer's own lock (flock on `layers/.locks/ID`): shared while it is read (export, diff,
    /// mount) or is the parent of an import in flight, exclusive while it is imported or removed.
    /// The kernel drops it when the holder dies, which is how an interrupted import is told from
    /// one still running. Returns the descriptor to close, or nil when `wait` is false and another
    /// process holds it.
    func lockLayer(_ id: String, exclusive: Bool, wait: Bool = true) throws -> Int32? {
        try lockFile(meta + Bytes.of("/.locks/" + id), (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB))
    }

    /// `lockLayer(id, exclusive:, wait: false)` tried again for up to a second before giving up
    /// (nil), so a holder that lets go at once does not fail the caller: an import holds its
    /// layer's lock a moment after writing its record, and a child forked by any thread of this
    /// process (a `system()`, a library user's spawn) shares every lock of the process until it
    /// execs. Under the store lock (imports, remove) nothing else can be removing or importing the
    /// layer, so such a holder is all an import can meet; a remove may also meet an export, which
    /// it still refuses, a second later.
    func lockLayerSoon(_ id: String, exclusive: Bool) throws -> Int32? {
        for _ in 0..<200 {
            if let fd = try lockLayer(id, exclusive: exclusive, wait: false) { return fd }
            usleep(5_000)
        }
        return nil
    }

    private func lockFile(_ path: [UInt8], _ operation: Int32) throws -> Int32? {
        let fd = try Sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        let e = Sys.tryFlock(fd, operation)
        if e == 0 { return fd }
        Sys.close(fd)
        if e == EWOULDBLOCK { return nil }
        throw SystemError("flock", path, errno: e)
    }

    /// Run `body` with layer `id` locked shared (it cannot be removed meanwhile).
    func reading<R>(_ id: String, _ body: () throws -> R) throws -> R {
        try validate(id: id)
        let fd = try lockLayer(id, exclusive: false)!
        defer { Sys.close(fd) }
        return try body()
    }

    // MARK: records

    func recordPath(_ id: String) -> [UInt8] { meta + Bytes.of("/" + id) }
    /// The imported tar's bytes that are not file content (TarSplit), for a byte-exact export.
    func tarSplitPath(_ id: String) -> [UInt8] { meta + Bytes.of("/" + id + ".tar-split") }
    func incompletePath(_ id: String) -> [UInt8] { meta + Bytes.of("/" + id + ".incomplete") }

    /// The record of layer `id`; throws `DriverError.layerNotFound` if there is none.
    public func record(_ id: String) throws -> LayerRecord {
        try validate(id: id)
        guard let text = try? Sys.readFile(recordPath(id)) else { throw DriverError.layerNotFound(id) }
        var r = LayerRecord(id: id)
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("parent=") { r.parent = String(line.dropFirst(7)) }
            if line.hasPrefix("size=") { r.appliedSize = Int64(line.dropFirst(5)) }
            if line.hasPrefix("template=") { r.template = String(line.dropFirst(9)) }
            if line.hasPrefix("diffid=") { r.diffID = String(line.dropFirst(7)) }
            if line.hasPrefix("stamp=") { r.stamp = String(line.dropFirst(6)) }
        }
        return r
    }

    func write(_ r: LayerRecord) throws {
        var text = "id=\(r.id)\n"
        if let p = r.parent { text += "parent=\(p)\n" }
        if let s = r.appliedSize { text += "size=\(s)\n" }
        if let t = r.template { text += "template=\(t)\n" }
        if let d = r.diffID { text += "diffid=\(d)\n" }
        if let t = r.stamp { text += "stamp=\(t)\n" }
        try writeFileAtomically(recordPath(r.id), Bytes.of(text))
    }

    /// The records of every complete layer in the store.
    public func list() throws -> [LayerRecord] {
        let fd = try Sys.open(meta, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        return try Sys.readDirectory(fd, shown: meta).compactMap { e in
            let n = Bytes.string(e.name)
            if n.hasPrefix(".") || n.hasSuffix(".incomplete") || n.hasSuffix(".tmp") || n.hasSuffix(".tar-split") { return nil }
            return try? record(n)
        }
    }

    /// Layers whose import (or removal) was interrupted: marked incomplete and no longer locked
    /// by a live process. Removed here, the next time the store is opened.
    private func removeIncomplete() throws {
        let fd = try Sys.open(meta, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        for e in try Sys.readDirectory(fd, shown: meta) {
            let n = Bytes.string(e.name)
            // Records and markers are written (temp file, rename) under the store lock, which we
            // hold: a temp file is what a killed writer left. (A tar-split's goes with its layer.)
            if n.hasSuffix(".tmp") && !n.hasSuffix(".tar-split.tmp") {
                try? Sys.unlink(meta + [LayerPath.slash] + e.name)
                continue
            }
            guard n.hasSuffix(".incomplete") else { continue }
            let id = String(n.dropLast(".incomplete".count))
            try removeIfAbandoned(id)
        }
    }

    /// Remove the incomplete layer `id` unless a live process holds its lock; true if it is gone.
    @discardableResult
    func removeIfAbandoned(_ id: String) throws -> Bool {
        guard let lock = try lockLayer(id, exclusive: true, wait: false) else { return false }
        defer { Sys.close(lock) }
        if driver.exists(id: id) { try driver.remove(id: id) }
        forgetFiles(id)
        return true
    }

    /// Unlink the store's files of layer `id`: its record, tar-split (and its temp file), and
    /// last the incomplete marker.
    func forgetFiles(_ id: String) {
        for p in [recordPath(id), tarSplitPath(id), tarSplitPath(id) + Bytes.of(".tmp"), incompletePath(id)] {
            try? Sys.unlink(p)
        }
    }

    /// The parent named by an incomplete layer's marker.
    private func incompleteParent(_ id: String) -> String? {
        guard let text = try? Sys.readFile(incompletePath(id)) else { return nil }
        return String(decoding: text, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("parent=") }.map { String($0.dropFirst(7)) }
    }

    // MARK: operations

    /// Bytes and inodes of the layer's writable part.
    public func usage(id: String) throws -> DiskUsage {
        _ = try record(id)
        return try driver.readWriteDiskUsage(id: id)
    }

    /// Remove a layer; refused while another layer names it as parent, or while another process
    /// uses it (an import on top of it, an export). Mounts through the store are dropped (the
    /// driver unmounts), as containers/storage does.
    public func remove(id: String) throws {
        try withLock {
            _ = try record(id)
            if let child = try list().first(where: { $0.parent == id || $0.template == id }) {
                throw DriverError.invalidOption(driver: driver.name, key: id,
                    reason: "layer \(child.id) is its \(child.parent == id ? "child" : "copy (made from it as a template)"); remove that first")
            }
            guard let lock = try lockLayerSoon(id, exclusive: true) else {
                throw DriverError.busy(id: id, reason: "another process is using it (importing a layer on it, exporting or reading it)")
            }
            defer { Sys.close(lock) }
            try writeFileAtomically(incompletePath(id), [])
            try dropViews(of: id)
            try driver.remove(id: id)
            try setMountCount(id, 0)
            forgetFiles(id)
        }
    }
}

/// Write to `path.tmp`, fsync, rename over `path`.
func writeFileAtomically(_ path: [UInt8], _ data: [UInt8], mode: mode_t = 0o600) throws {
    // A name of this writer's own: another process or thread may write the same file at once
    // (two children of one overlay2 layer both mark it committed); the last rename wins whole.
    let tmp = path + Bytes.of(".\(getpid())-\(temporaryNames.add(1, ordering: .relaxed).oldValue).tmp")
    let fd = try Sys.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
    try? Sys.fchmod(fd, mode: mode, shown: tmp)
    do {
        try data.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(tmp)) }
        try? Sys.fsync(fd, shown: tmp)
    } catch {
        Sys.close(fd)
        throw error
    }
    Sys.close(fd)
    do {
        try Sys.rename(tmp, path)
    } catch {
        try? Sys.unlink(tmp)
        throw error
    }

}

/// Numbers the temporary files of this process's `writeFileAtomically` calls.
private let temporaryNames = Atomic<Int>(0)
