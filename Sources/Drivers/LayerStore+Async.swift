// Store imports and exports for structured concurrency: the synchronous forms run on a thread of
// their own and stop between entries with `CancellationError` once the awaiting task is
// cancelled. A cancelled import is a failed import: the new layer is removed.
import DiffKit
import DiffKitArchive
import DiffKitSystem

extension LayerStore {
    /// `importLayer(id:parent:from:name:…)` for an async caller. Cancelling the task stops the
    /// apply before its next entry and removes the new layer (all or nothing, as for any failed
    /// import), then throws `CancellationError`.
    public func importLayer(id: String, parent: String?, from source: LayerSource, name: String,
                            options: ApplyOptions = ApplyOptions(),
                            createOptions: [String: String] = [:]) async throws -> LayerImport {
        try await DedicatedThread.run { isCancelled in
            try self.importLayer(id: id, parent: parent, from: source, name: name,
                                 options: options.cancelled(by: isCancelled), createOptions: createOptions)
        }
    }

    /// `export(id:to:name:compression:…)` for an async caller; cancelling the task stops the
    /// export before its next entry (or segment of a byte-exact export) with `CancellationError`
    /// (what reached `fd` is unfinished).
    @discardableResult
    package func export(id: String, to fd: Int32, name: String, compression: Compression,
                       options: ExportOptions = ExportOptions(), naive: Bool = false, regenerate: Bool = false,
                       progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerExport {
        try await DedicatedThread.run { isCancelled in
            try self.export(id: id, to: fd, name: name, compression: compression, options: options.cancelled(by: isCancelled),
                            naive: naive, regenerate: regenerate, progress: progress)
        }
    }
}
