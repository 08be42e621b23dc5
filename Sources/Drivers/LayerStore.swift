// LayerStore: what a driver does not keep itself — which layer is whose parent, which layers
// are incomplete — plus a store lock, so imports are atomic (a failed or killed import leaves
// no layer behind) and two processes can share one home.
import ArchiveBridge
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

public struct LayerRecord: Sendable, Equatable {
    public var id: String
    public var parent: String?
    /// Bytes applied at import (Σ header sizes), when the layer was imported.
    public var appliedSize: Int64?
    /// The layer it was made from (create --template), which it may depend on in the driver.
    public var template: String?
}

public final class LayerStore {
    /// The drivers a store can be opened with.
    public static let drivers = ["vfs", "overlay2", "btrfs", "aufs"]
    public let driver: Driver
    let meta: [UInt8]

    /// Open (or create) a store of `driverName` at `home`. `driverOptions` are the driver's own
    /// (`vfs.*`, …). Layers left incomplete by an interrupted import are removed here.
    public init(driverName: String, home: [UInt8], driverOptions: [String: String] = [:], idMap: IDMap = .identity) throws {
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
        try withLock { try removeIncomplete() }
    }

    // MARK: lock

    /// Run `body` holding the store's exclusive lock (flock on `layers/.lock`).
    func withLock<R>(_ body: () throws -> R) throws -> R {
        let path = meta + Bytes.of("/.lock")
        let fd = try Sys.open(path, O_RDWR | O_CREAT, mode: 0o600)
        defer { Sys.close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw SystemError("flock", path, errno: errno) }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    // MARK: records

    func recordPath(_ id: String) -> [UInt8] { meta + Bytes.of("/" + id) }
    func incompletePath(_ id: String) -> [UInt8] { meta + Bytes.of("/" + id + ".incomplete") }

    public func record(_ id: String) throws -> LayerRecord {
        try validate(id: id)
        guard let text = try? Sys.readFile(recordPath(id)) else { throw DriverError.layerNotFound(id) }
        var r = LayerRecord(id: id)
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("parent=") { r.parent = String(line.dropFirst(7)) }
            if line.hasPrefix("size=") { r.appliedSize = Int64(line.dropFirst(5)) }
            if line.hasPrefix("template=") { r.template = String(line.dropFirst(9)) }
        }
        return r
    }

    func write(_ r: LayerRecord) throws {
        var text = "id=\(r.id)\n"
        if let p = r.parent { text += "parent=\(p)\n" }
        if let s = r.appliedSize { text += "size=\(s)\n" }
        if let t = r.template { text += "template=\(t)\n" }
        try writeFileAtomically(recordPath(r.id), Bytes.of(text))
    }

    public func list() throws -> [LayerRecord] {
        let fd = try Sys.open(meta, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        return try Sys.readDirectory(fd, shown: meta).compactMap { e in
            let n = Bytes.string(e.name)
            if n.hasPrefix(".") || n.hasSuffix(".incomplete") || n.hasSuffix(".tmp") { return nil }
            return try? record(n)
        }
    }

    private func removeIncomplete() throws {
        let fd = try Sys.open(meta, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        for e in try Sys.readDirectory(fd, shown: meta) {
            let n = Bytes.string(e.name)
            guard n.hasSuffix(".incomplete") else { continue }
            let id = String(n.dropLast(".incomplete".count))
            if driver.exists(id: id) { try driver.remove(id: id) }
            _ = Sys.withCString(recordPath(id)) { unlink($0) }
            _ = Sys.withCString(incompletePath(id)) { unlink($0) }
        }
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
        if driver.exists(id: id) || (try? record(id)) != nil { throw DriverError.layerExists(id) }
        if let parent {
            try validate(id: parent)
            guard (try? record(parent)) != nil, driver.exists(id: parent) else {
                throw DriverError.parentNotFound(id: id, parent: parent)
            }
        }
    }

    /// Create layer `id` on `parent` and apply the tar from `fd` to it. All or nothing: on any
    /// failure the layer is removed, and an interrupted import is removed at the next open.
    public func importLayer(id: String, parent: String?, from fd: Int32, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> Int64 {
        try withLock {
            try checkNew(id, parent)
            try writeFileAtomically(incompletePath(id), [])
        }
        do {
            try driver.create(id: id, parent: parent, options: createOptions)
            let reader = try TarReader(fd: fd, name: name)
            let size = try driver.applyDiff(id: id, from: reader, name: name, options: options)
            try withLock {
                try write(LayerRecord(id: id, parent: parent, appliedSize: size))
                _ = Sys.withCString(incompletePath(id)) { unlink($0) }
            }
            return size
        } catch {
            try? withLock {
                if driver.exists(id: id) { try? driver.remove(id: id) }
                _ = Sys.withCString(recordPath(id)) { unlink($0) }
                _ = Sys.withCString(incompletePath(id)) { unlink($0) }
            }
            throw error
        }
    }

    /// The layer's changes against its parent as a tar; `naive`: by comparing the mounted trees
    /// even where the driver has a native diff.
    public func export(id: String, to fd: Int32, name: String, options: ExportOptions = ExportOptions(), naive: Bool = false) throws {
        let r = try record(id)
        if naive {
            try driver.naiveDiff(id: id, parent: r.parent, to: fd, name: name, options: options)
        } else {
            try driver.diff(id: id, parent: r.parent, to: fd, name: name, options: options)
        }
    }

    public func changes(id: String) throws -> [Change] {
        let r = try record(id)
        return try driver.changes(id: id, parent: r.parent)
    }

    public func size(id: String) throws -> Int64 {
        let r = try record(id)
        return try driver.diffSize(id: id, parent: r.parent)
    }

    public func mount(id: String) throws -> [UInt8] {
        _ = try record(id)
        return try driver.get(id: id)
    }

    public func unmount(id: String) throws {
        _ = try record(id)
        try driver.put(id: id)
    }

    /// Remove a layer; refused while another layer names it as parent.
    public func remove(id: String) throws {
        try withLock {
            _ = try record(id)
            if let child = try list().first(where: { $0.parent == id || $0.template == id }) {
                throw DriverError.invalidOption(driver: driver.name, key: id,
                    reason: "layer \(child.id) is its \(child.parent == id ? "child" : "copy (made from it as a template)"); remove that first")
            }
            try writeFileAtomically(incompletePath(id), [])
            try driver.remove(id: id)
            _ = Sys.withCString(recordPath(id)) { unlink($0) }
            _ = Sys.withCString(incompletePath(id)) { unlink($0) }
        }
    }
}

/// Write to `path.tmp`, fsync, rename over `path`.
func writeFileAtomically(_ path: [UInt8], _ data: [UInt8], mode: mode_t = 0o600) throws {
    let tmp = path + Bytes.of(".tmp")
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
        throw SystemError("rename", path, errno: errno)
    }
}
