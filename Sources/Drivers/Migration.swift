// Moving a store from one driver to another (aufs → overlay2 is the case that matters: docker
// dropped aufs, and old /var/lib/docker/aufs stores remain). Each layer, parents first, is
// exported from the source as its own change set and imported into the target on its parent,
// streamed through a pipe; the target writes it in its own form (for overlay2: whiteout devices
// and opaque xattrs). The source is only read. A layer the target already has is skipped, and
// the target's store removes a half-imported one when opened, so a stopped run resumes.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Moves the layers of one driver's store into another store, parents first, each exported
/// from the source as its change set and imported into the target.
public enum Migration {
    /// A layer of the source: its id and parent.
    public typealias Layer = (id: String, parent: String?)

    /// What one run did.
    public struct Report: Sendable {
        /// The ids of the layers imported into the target.
        public var copied: [String] = []
        /// The ids of the layers the target already had.
        public var skipped: [String] = []
    }

    /// Copy every layer of `source` (listed with their parents) into `target`.
    public static func run(source: Driver, layers: [Layer], into target: LayerStore,
                           logger: Logger = Logger(label: "diffkit")) throws -> Report {
        var report = Report()
        for layer in try parentsFirst(layers) {
            if (try? target.record(layer.id)) != nil {
                report.skipped.append(layer.id)
                continue
            }
            try copy(layer, from: source, into: target)
            logger.info("migrated layer \(layer.id)")
            report.copied.append(layer.id)
        }
        return report
    }

    /// Throw `DriverError.notAStore` unless `home` is a DiffKit store of `driver` (its `layers/`
    /// records and the driver's directory), or for aufs also a bare aufs directory (`diff/`,
    /// `layers/`, `mnt/`, as docker's): opening anything else as a source would list no layer
    /// (and create a store's directories in it).
    public static func checkSource(driver: String, home: FilePath) throws {
        let h = Bytes.of(home)
        func isDirectory(_ sub: String) -> Bool {
            guard let st = try? Sys.fstatat(AT_FDCWD, h + Bytes.of(sub)) else { return false }
            return st.st_mode & S_IFMT == S_IFDIR
        }
        let dir = driver == "overlay" ? "overlay2" : driver
        if isDirectory("/layers/.locks") && isDirectory("/" + dir) { return }
        if driver == "aufs" && isDirectory("/diff") && isDirectory("/layers") && isDirectory("/mnt") { return }
        // A store whose aufs/ is such a directory (a docker data root of the aufs days).
        if driver == "aufs" && isDirectory("/aufs/diff") && isDirectory("/aufs/layers") { return }
        var expected = "a DiffKit store of \(dir) (expected layers/ and \(dir)/ below it)"
        if driver == "aufs" { expected += " or a bare aufs directory (diff/, layers/ and mnt/)" }
        if isDirectory("/layers/.locks") {
            let others = LayerStore.drivers.filter { $0 != dir && isDirectory("/" + $0) }
            if !others.isEmpty { expected += "; it is a DiffKit store of \(others.joined(separator: ", "))" }
        }
        throw DriverError.notAStore(path: home.string, expected: expected)
    }

    /// Layers ordered so every parent comes before its children; a parent missing from the list
    /// or a cycle is an error.
    static func parentsFirst(_ layers: [Layer]) throws -> [Layer] {
        let byID = Dictionary(layers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var done = Set<String>(), out: [Layer] = []
        func visit(_ l: Layer, _ path: Set<String>) throws {
            if done.contains(l.id) { return }
            if let p = l.parent {
                guard let parent = byID[p] else { throw DriverError.parentNotFound(id: l.id, parent: p) }
                guard !path.contains(p) else { throw DriverError.parentLoop(l.id) }
                try visit(parent, path.union([l.id]))
            }
            done.insert(l.id)
            out.append(l)
        }
        for l in layers.sorted(by: { $0.id < $1.id }) { try visit(l, [l.id]) }
        return out
    }

    /// Whether `error` is, or was caused by, a write to a pipe nobody reads (EPIPE).
    static func isBrokenPipe(_ error: any Error) -> Bool {
        if let e = error as? SystemError { return e.errno == .brokenPipe }
        if let e = error as? ArchiveError { return e.errno == EPIPE || e.underlying.map(isBrokenPipe) == true }
        if let e = error as? DiffKitError { return e.underlying.map(isBrokenPipe) == true }
        return false
    }

    /// Export from the source on one thread, import into the target from the pipe on this one.
    static func copy(_ layer: Layer, from source: Driver, into target: LayerStore) throws {
        let name = "\(source.name) layer \(layer.id)"
        try stream(name: name, export: { fd in
            try source.diff(id: layer.id, parent: layer.parent, to: fd, name: name, options: ExportOptions(whiteoutTime: 0))
        }, import: { fd in
            _ = try target.importLayer(id: layer.id, parent: layer.parent, from: fd, name: name)
        })
    }

    /// Run `export` on a thread of its own, writing into a pipe, and `import` on this one, reading
    /// the other end; `export`'s result is returned. The import may stop reading (a bad layer, a
    /// full disk): the export's next write then fails with EPIPE on its thread, not SIGPIPE for
    /// the process. A failed export shows up on the import side as a broken stream, so its error
    /// is the one reported — unless it failed only because the import had stopped reading.
    package static func stream<Exported: Sendable>(name: String, export: @escaping (Int32) throws -> Exported,
                                         import body: (Int32) throws -> Void) throws -> Exported {
        let (readEnd, writeEnd) = try Sys.pipe(shown: Bytes.of(name))
        Sys.growPipe(writeEnd)
        let exported = Locked<Result<Exported, any Error>?>(nil)
        let exporter: SystemThread
        do {
            exporter = try SystemThread(shown: Bytes.of(name)) {
                SystemThread.blockSIGPIPE()
                let r = Result { try export(writeEnd) }
                exported.withLock { $0 = r }
                Sys.close(writeEnd)
            }
        } catch {
            Sys.close(readEnd)
            Sys.close(writeEnd)
            throw error
        }
        var importError: (any Error)? = nil
        do { try body(readEnd) } catch { importError = error }
        Sys.close(readEnd)
        exporter.join()
        let result = exported.withLock { $0 }!
        if case let .failure(e) = result, !(importError != nil && isBrokenPipe(e)) { throw e }
        if let importError { throw importError }
        return try result.get()
    }
}

extension AufsDriver {
    /// Every layer of the store with its parent, from the `layers/` files.
    public func layers() throws -> [Migration.Layer] {
        let dir = homeDir + Bytes.of("/layers")
        let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        return try Sys.readDirectory(fd, shown: dir).compactMap { e in
            let id = Bytes.string(e.name)
            guard e.type != 4, (try? validate(id: id)) != nil, !id.hasSuffix(".tmp") else { return nil }
            return (id, try parents(id).first)
        }
    }
}
