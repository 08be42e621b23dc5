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

/// How an export was made.
public enum ExportSource: Sendable, Equatable {
    /// The imported tar's own bytes, reassembled from its tar-split record.
    case original
    /// A tar generated from the layer's files; `reason` says why the original was not used
    /// (nil when the layer was never imported, or regenerating was asked for).
    case regenerated(reason: String?)
}

/// What an import made: the layer, the bytes its files take (the applied size) and the diffID
/// (SHA-256 of the uncompressed tar).
public struct LayerImport: Sendable, Equatable {
    /// The new layer's id.
    public var id: String
    /// The applied size in bytes (see ``Driver/applyDiff(id:from:name:options:)``).
    public var size: Int64
    /// `sha256:<hex>` of the uncompressed tar that was imported.
    public var diffID: String
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

    private func lockFile(_ path: [UInt8], _ operation: Int32) throws -> Int32? {
        let fd = try Sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        while flock(fd, operation) != 0 {
            let e = errno
            if e == EINTR { continue }
            Sys.close(fd)
            if e == EWOULDBLOCK { return nil }
            throw SystemError("flock", path, errno: e)
        }
        return fd
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
                _ = Sys.withCString(meta + [LayerPath.slash] + e.name) { unlink($0) }
                continue
            }
            guard n.hasSuffix(".incomplete") else { continue }
            let id = String(n.dropLast(".incomplete".count))
            try removeIfAbandoned(id)
        }
    }

    /// Remove the incomplete layer `id` unless a live process holds its lock; true if it is gone.
    @discardableResult
    private func removeIfAbandoned(_ id: String) throws -> Bool {
        guard let lock = try lockLayer(id, exclusive: true, wait: false) else { return false }
        defer { Sys.close(lock) }
        if driver.exists(id: id) { try driver.remove(id: id) }
        forgetFiles(id)
        return true
    }

    /// Unlink the store's files of layer `id`: its record, tar-split (and its temp file), and
    /// last the incomplete marker.
    private func forgetFiles(_ id: String) {
        for p in [recordPath(id), tarSplitPath(id), tarSplitPath(id) + Bytes.of(".tmp"), incompletePath(id)] {
            _ = Sys.withCString(p) { unlink($0) }
        }
    }

    /// The parent named by an incomplete layer's marker.
    private func incompleteParent(_ id: String) -> String? {
        guard let text = try? Sys.readFile(incompletePath(id)) else { return nil }
        return String(decoding: text, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("parent=") }.map { String($0.dropFirst(7)) }
    }

    // MARK: operations

    /// Create an empty layer on `parent`; with `template`, a layer with the template's content
    /// (containers/storage's CreateFromTemplate).
    public func create(id: String, parent: String?, options: [String: String] = [:], readWrite: Bool = false,
                       template: String? = nil) throws {
        try withLock {
            try checkNew(id, parent)
            if let template {
                try validate(id: template)
                guard (try? record(template)) != nil else { throw DriverError.layerNotFound(template) }
            }
            try writeFileAtomically(incompletePath(id), [])
            if let template {
                try driver.createFromTemplate(id: id, template: template, parent: parent, readWrite: readWrite, options: options)
            } else if readWrite {
                try driver.createReadWrite(id: id, parent: parent, options: options)
            } else {
                try driver.create(id: id, parent: parent, options: options)
            }
            try write(LayerRecord(id: id, parent: parent, template: template))
            _ = Sys.withCString(incompletePath(id)) { unlink($0) }
        }
    }

    /// Bytes and inodes of the layer's writable part.
    public func usage(id: String) throws -> DiskUsage {
        _ = try record(id)
        return try driver.readWriteDiskUsage(id: id)
    }

    private func checkNew(_ id: String, _ parent: String?) throws {
        try validate(id: id)
        if try Sys.exists(incompletePath(id)) && !removeIfAbandoned(id) {
            throw DriverError.busy(id: id, reason: "another process is creating it")
        }
        if driver.exists(id: id) || (try? record(id)) != nil { throw DriverError.layerExists(id) }
        if let parent {
            try validate(id: parent)
            guard (try? record(parent)) != nil, driver.exists(id: parent) else {
                throw DriverError.parentNotFound(id: id, parent: parent)
            }
        }
    }

    /// Create layer `id` on `parent` and apply the tar from `fd` to it (see the `LayerSource` form).
    package func importLayer(id: String, parent: String?, from fd: Int32, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> LayerImport {
        try importLayer(id: id, parent: parent, from: .descriptor(FileDescriptor(rawValue: fd)), name: name, options: options, createOptions: createOptions)
    }

    /// Create layer `id` on `parent` and apply the tar from `source` to it. All or nothing: on any
    /// failure the layer is removed, and an import killed midway is removed at the next open
    /// (its lock, held for the whole import, dies with it). The parent stays locked shared
    /// meanwhile, so no other process can remove it.
    public func importLayer(id: String, parent: String?, from source: LayerSource, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> LayerImport {
        var locks: [Int32] = []
        defer { locks.forEach(Sys.close) }
        try withLock {
            try checkNew(id, parent)
            guard let own = try lockLayer(id, exclusive: true, wait: false) else {
                throw DriverError.busy(id: id, reason: "another process is creating it")
            }
            locks.append(own)
            if let parent {
                guard let p = try lockLayer(parent, exclusive: false, wait: false) else {
                    throw DriverError.busy(id: parent, reason: "another process is removing it")
                }
                locks.append(p)
            }
            try writeFileAtomically(incompletePath(id), Bytes.of(parent.map { "parent=\($0)\n" } ?? ""))
        }
        let splitTmp = tarSplitPath(id) + Bytes.of(".tmp")
        do {
            try driver.create(id: id, parent: parent, options: createOptions)
            let stream = try TarStream(source: source, name: name)
            let digest = SHA256()
            stream.digest = digest
            let splitFd = try Sys.open(splitTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
            defer { Sys.close(splitFd) }
            let split = try TarSplitWriter(fd: splitFd, name: Bytes.string(splitTmp))
            stream.recorder = split
            let reader = try TarReader(stream: stream, name: name)
            let size = try driver.applyDiff(id: id, from: reader, name: name, options: options)
            try split.finish()
            var record = LayerRecord(id: id, parent: parent, appliedSize: size, diffID: digest.finish())
            if let reason = split.invalidReason {
                options.logger.warning("\(name): the layer cannot be exported byte for byte later: \(reason)")
                _ = Sys.withCString(splitTmp) { unlink($0) }
            } else {
                _ = fsync(splitFd)
                record.stamp = try stamp(id)
                if Sys.withCString(splitTmp, { t in Sys.withCString(tarSplitPath(id)) { rename(t, $0) } }) != 0 {
                    throw SystemError("rename", tarSplitPath(id), errno: errno)
                }
            }
            try withLock {
                try write(record)
                _ = Sys.withCString(incompletePath(id)) { unlink($0) }
            }
            return LayerImport(id: id, size: size, diffID: record.diffID!)
        } catch {
            try? withLock {
                if driver.exists(id: id) { try? driver.remove(id: id) }
                forgetFiles(id)
            }
            throw error
        }
    }

    /// The TreeStamp of the layer's own files: its branch (union drivers) or its directory.
    func stamp(_ id: String) throws -> String {
        if let b = try driver.branch(id: id) { return try TreeStamp.of(b.directory) }
        let dir = try driver.get(id: id)
        defer { try? driver.put(id: id) }
        return try TreeStamp.of(dir)
    }

    /// The layer's changes against its parent as a tar on `fd`.
    /// - An imported layer whose files are as the import left them gives back the imported tar
    ///   byte for byte (same diffID), unless `regenerate`; if anything changed, a fresh tar is
    ///   made (and the result says why), never a mix.
    /// - `naive`: compare the mounted trees even where the driver has a native diff.
    /// - `options.reproducibleTime`: the canonical form — the trees compared (the one definition
    ///   every driver shares), mtimes clamped, no names — so equal content gives equal bytes on
    ///   every driver.
    @discardableResult
    package func export(id: String, to fd: Int32, name: String, options: ExportOptions = ExportOptions(), naive: Bool = false,
                       regenerate: Bool = false) throws -> ExportSource {
        try reading(id) {
            let r = try record(id)
            var source = ExportSource.regenerated(reason: nil)
            if !regenerate && !naive && options.reproducibleTime == nil && options.profile == .moby, let stamp = r.stamp,
               let splitFd = try? Sys.open(tarSplitPath(id), O_RDONLY | O_CLOEXEC) {
                defer { Sys.close(splitFd) }
                if try self.stamp(id) == stamp {
                    try reassemble(id: id, record: splitFd, to: fd, name: name, isCancelled: options.isCancelled)
                    return .original
                }
                source = .regenerated(reason: "the layer's files changed since it was imported")
            }
            if options.reproducibleTime != nil {
                try canonicalDiff(id: id, parent: r.parent, to: fd, name: name, options: options)
            } else if naive {
                try driver.naiveDiff(id: id, parent: r.parent, to: fd, name: name, options: options)
            } else {
                try driver.diff(id: id, parent: r.parent, to: fd, name: name, options: options)
            }
            return source
        }
    }

    /// The reproducible form: the driver's change list (what `changes` prints) written entry by
    /// entry from the layer's own files, so it depends on the layer's content, not on how the
    /// driver stores it (no opaque markers, no copied-up parents that did not change).
    /// A directory whose mode, owner and xattrs are its parent's counts as changed only by its
    /// mtime, which an apply itself moves (and a union driver's copy-up does not report): it is
    /// left out, so the form does not depend on the driver.
    private func canonicalDiff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        var changes = try driver.changes(id: id, parent: parent)
        let write = { (root: [UInt8], parentRoots: [[UInt8]]) throws in
            changes.removeAll { c in
                guard c.kind == .modify, let info = c.info, info.isDirectory else { return false }
                for p in parentRoots {
                    let path = p + [LayerPath.slash] + c.path
                    guard let st = try? Sys.lstatIfExists(AT_FDCWD, path) else { continue }
                    let old = FileInfo(st)
                    return old.isDirectory && old.permissions == info.permissions && old.uid == info.uid && old.gid == info.gid
                        && (try? LayerXattrs.read(path: path)) == (try? LayerXattrs.read(path: root + [LayerPath.slash] + c.path))
                }
                return false
            }
            try LayerWriter(tar: TarWriter(fd: fd, name: name), root: root, options: options).write(changes: changes)
        }
        if let b = try driver.branch(id: id) { return try write(b.directory, b.lowers) }
        let root = try driver.get(id: id)
        defer { try? driver.put(id: id) }
        guard let parent else { return try write(root, []) }
        let parentRoot = try driver.get(id: parent)
        defer { try? driver.put(id: parent) }
        try write(root, [parentRoot])
    }

    /// The imported tar again: its recorded bytes, and each file's content read from the layer
    /// and checked against the recorded size and CRC-32C.
    private func reassemble(id: String, record: Int32, to fd: Int32, name: String,
                            isCancelled: (@Sendable () -> Bool)? = nil) throws {
        let reader = try TarSplitReader(fd: record, name: Bytes.string(tarSplitPath(id)))
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        Sys.growPipe(fd)
        try driver.withFiles(id: id) { open in
            while let segment = try reader.next() {
                if isCancelled?() == true { throw CancellationError() }
                switch segment {
                case let .raw(bytes):
                    try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: name) }
                case let .file(stored, size, crc):
                    let path = Array(LayerPath.components(stored).joined(separator: [LayerPath.slash]))
                    let file = try open(path)
                    defer { Sys.close(file) }
                    var left = size
                    var sum: UInt32 = 0
                    while left > 0 {
                        let n = try Sys.read(file, buf, Int(min(left, 1 << 20)), shown: path)
                        if n == 0 { break }
                        let chunk = UnsafeRawBufferPointer(start: buf, count: n)
                        sum = CRC32C.update(sum, chunk)
                        try Sys.writeAll(fd, chunk, shown: name)
                        left -= Int64(n)
                    }
                    if left != 0 || sum != crc { throw DriverError.changedSinceImport(id: id, path: Bytes.string(path)) }
                }
            }
        }
    }

    /// The changes of layer `id` against its parent, in path order.
    public func changes(id: String) throws -> [Change] {
        try reading(id) {
            let r = try record(id)
            return try driver.changes(id: id, parent: r.parent)
        }
    }

    /// The size in bytes of layer `id`'s changes against its parent (DiffSize).
    public func size(id: String) throws -> Int64 {
        try reading(id) {
            let r = try record(id)
            return try driver.diffSize(id: id, parent: r.parent)
        }
    }

    // MARK: mounts

    /// Mounts of a layer through the store are counted on disk (`layers/.mounts/ID`), so `mount`
    /// twice (from two processes) needs `umount` twice; the driver is asked to mount at the first
    /// and to unmount at the last. A count whose mount the kernel no longer has starts again at 0.
    private func mountCount(_ id: String) -> Int {
        guard let text = try? Sys.readFile(meta + Bytes.of("/.mounts/" + id)),
              let n = Int(String(decoding: text, as: UTF8.self).trimmingCharacters(in: [" ", "\n"])) else { return 0 }
        return n
    }

    private func setMountCount(_ id: String, _ n: Int) throws {
        let path = meta + Bytes.of("/.mounts/" + id)
        if n > 0 { try writeFileAtomically(path, Bytes.of("\(n)\n")) } else { _ = Sys.withCString(path) { unlink($0) } }
    }

    /// The directory of layer `id`'s view, mounted if the driver mounts; counted across processes,
    /// so each call needs an ``unmount(id:)``.
    public func mount(id: String) throws -> FilePath {
        try reading(id) {
            _ = try record(id)
            return try withLock {
                var n = mountCount(id)
                let path = try driver.get(id: id)
                if n > 0 && !driver.isMounted(id: id) { n = 0 }
                // The driver counts references per process; the store's count is across them.
                if n > 0 { try driver.put(id: id) }
                try setMountCount(id, n + 1)
                return FilePath(bytes: path)
            }
        }
    }

    /// Drop one ``mount(id:)`` of layer `id`; the last one unmounts.
    public func unmount(id: String) throws {
        try reading(id) {
            _ = try record(id)
            try withLock {
                let n = mountCount(id)
                if n > 1 && driver.isMounted(id: id) { return try setMountCount(id, n - 1) }
                try driver.put(id: id)
                try setMountCount(id, 0)
            }
        }
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
            guard let lock = try lockLayer(id, exclusive: true, wait: false) else {
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
    _ = fchmod(fd, mode)
    do {
        try data.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(tmp)) }
        _ = fsync(fd)
    } catch {
        Sys.close(fd)
        throw error
    }
    Sys.close(fd)
    if Sys.withCString(tmp, { t in Sys.withCString(path) { rename(t, $0) } }) != 0 {
        let e = errno
        _ = Sys.withCString(tmp) { unlink($0) }
        throw SystemError("rename", path, errno: e)
    }
}

/// Numbers the temporary files of this process's `writeFileAtomically` calls.
private let temporaryNames = Atomic<Int>(0)
