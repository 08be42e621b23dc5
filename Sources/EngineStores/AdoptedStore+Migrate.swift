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
        let (readEnd, writeEnd) = try Sys.pipe(shown: Bytes.of(name))
        Sys.growPipe(writeEnd)
        let outcome = Locked<Result<ExportSource, any Error>>(.success(.regenerated(reason: nil)))
        let thread: SystemThread
        do {
            thread = try SystemThread(shown: Bytes.of(name)) {
                do {
                    let s = try self.export(id: layer.id, to: writeEnd, name: name, options: ExportOptions(whiteoutTime: 0),
                                            naive: false, regenerate: false)
                    outcome.withLock { $0 = .success(s) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                }
                Sys.close(writeEnd)
            }
        } catch {
            Sys.close(readEnd)
            Sys.close(writeEnd)
            throw error
        }
        var importError: (any Error)? = nil
        do {
            _ = try target.importLayer(id: layer.storeID, parent: layer.parent.map { $0.hasPrefix("sha256:") ? String($0.dropFirst(7)) : $0 },
                                       from: readEnd, name: name)
        } catch {
            importError = error
            // Let the exporter finish into the pipe rather than die writing to a closed one.
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
            defer { buf.deallocate() }
            while ((try? Sys.read(readEnd, buf, 1 << 16, shown: Bytes.of(name))) ?? 0) > 0 {}
        }
        thread.join()
        Sys.close(readEnd)
        // A failed export shows up on the import side as a broken stream: report the cause.
        let exported = try outcome.withLock { try $0.get() }
        if let importError { throw importError }
        return exported
    }
}
