// Copying an adopted store's layers into a DiffKit store: parents first, each exported as the
// engine would push it (its own tar-split bytes where the files are unchanged) and imported on
// its parent, streamed through a pipe. The imported layer keeps the engine's diffID. A layer the
// target already has is skipped, so a stopped run resumes.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import Logging

#if canImport(Glibc)
import Glibc
#endif

extension AdoptedStore {
    /// What a migration did: the ids (as the DiffKit store names them) copied and skipped.
    public struct MigrationReport: Sendable, Equatable {
        /// Layers imported into the target.
        public var copied: [String] = []
        /// Layers the target had already.
        public var skipped: [String] = []
    }

    /// The layers ordered so every parent comes before its children.
    func parentsFirst() -> [AdoptedLayer] {
        var done = Set<String>(), out: [AdoptedLayer] = []
        let byID = Dictionary(layers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        func visit(_ l: AdoptedLayer, depth: Int) {
            if done.contains(l.id) || depth > layers.count { return }
            if let p = l.parent, let parent = byID[p] { visit(parent, depth: depth + 1) }
            if done.insert(l.id).inserted { out.append(l) }
        }
        for l in layers.sorted(by: { $0.id < $1.id }) { visit(l, depth: 0) }
        return out
    }

    /// Copy every layer into `target` (ids without docker's `sha256:` prefix), parents first.
    public func migrate(into target: LayerStore, logger: Logger = Logger(label: "diffkit")) throws -> MigrationReport {
        var report = MigrationReport()
        for layer in parentsFirst() {
            let id = layer.storeID
            if (try? target.record(id)) != nil {
                report.skipped.append(id)
                continue
            }
            let source = try copy(layer, into: target)
            if case let .regenerated(reason?) = source {
                logger.warning("layer \(layer.id): \(reason); the tar was regenerated (its diffID differs from the engine's)")
            }
            logger.info("migrated layer \(layer.id)")
            report.copied.append(id)
        }
        return report
    }

    /// Export on a thread of its own into a pipe, import from it on this one.
    private func copy(_ layer: AdoptedLayer, into target: LayerStore) throws -> ExportSource {
        let name = "\(engine.rawValue) layer \(layer.id)"
        return try Migration.stream(name: name, export: { fd in
            try self.export(id: layer.id, to: fd, name: name, options: ExportOptions(whiteoutTime: 0), naive: false, regenerate: false)
        }, import: { fd in
            _ = try target.importLayer(id: layer.storeID, parent: layer.parent.map { $0.hasPrefix("sha256:") ? String($0.dropFirst(7)) : $0 },
                                       from: fd, name: name)
        })
    }
}
