// Moving a store from one driver to another (aufs → overlay2 is the case that matters: docker
// dropped aufs, and old /var/lib/docker/aufs stores remain). Each layer, parents first, is
// exported from the source as its own change set and imported into the target on its parent,
// streamed through a pipe; the target writes it in its own form (for overlay2: whiteout devices
// and opaque xattrs). The source is only read. A layer the target already has is skipped, and
// the target's store removes a half-imported one when opened, so a stopped run resumes.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Dispatch
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

    /// Export from the source on one thread, import into the target from the pipe on this one.
    static func copy(_ layer: Layer, from source: Driver, into target: LayerStore) throws {
        let (readEnd, writeEnd) = try Sys.pipe(shown: Bytes.of(layer.id))

        Sys.growPipe(writeEnd)
        let name = "\(source.name) layer \(layer.id)"
        let exportError = Locked<Error?>(nil)
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            do {
                try source.diff(id: layer.id, parent: layer.parent, to: writeEnd, name: name, options: ExportOptions(whiteoutTime: 0))
            } catch {
                exportError.withLock { $0 = error }
            }
            Sys.close(writeEnd)
        }
        var importError: Error? = nil
        do {
            _ = try target.importLayer(id: layer.id, parent: layer.parent, from: readEnd, name: name)
        } catch {
            importError = error
        }
        Sys.close(readEnd)
        group.wait()
        // A failed export shows up on the import side as a broken stream: report the cause.
        if let e = exportError.withLock({ $0 }) { throw e }
        if let importError { throw importError }
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
