// The long directory jobs for structured concurrency: each runs the synchronous form on a thread
// of its own (never on the cooperative pool) and stops between entries with `CancellationError`
// once the awaiting task is cancelled.
import DiffKitArchive
import DiffKitSystem

extension Layers {
    /// `apply(root:from:name:options:)` for an async caller; cancelling the task stops the apply
    /// before its next entry (what was applied stays) with `CancellationError`.
    package static func apply(root: [UInt8], from source: LayerSource, name: String,
                             options: ApplyOptions = ApplyOptions()) async throws -> Int64 {
        try await DedicatedThread.run { isCancelled in
            try apply(root: root, from: source, name: name, options: options.cancelled(by: isCancelled))
        }
    }

    /// `diff(base:layer:to:name:compression:…)` for an async caller; cancelling the task stops the
    /// export before its next entry with `CancellationError` (what reached `fd` is unfinished).
    @discardableResult
    package static func diff(base: [UInt8]?, layer: [UInt8], to fd: Int32, name: String, compression: Compression,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false,
                            progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerDigests {
        try await DedicatedThread.run { isCancelled in
            try diff(base: base, layer: layer, to: fd, name: name, compression: compression,
                     options: options.cancelled(by: isCancelled), snapshots: snapshots, progress: progress)
        }
    }

    /// `export(directory:to:name:compression:…)` for an async caller; cancellable as `diff` is.
    @discardableResult
    package static func export(directory: [UInt8], to fd: Int32, name: String, compression: Compression,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain,
                              progress: (@Sendable (Int64, Int) -> Void)? = nil) async throws -> LayerDigests {
        try await DedicatedThread.run { isCancelled in
            try export(directory: directory, to: fd, name: name, compression: compression,
                       options: options.cancelled(by: isCancelled), whiteouts: whiteouts, progress: progress)
        }
    }
}

extension ApplyOptions {
    /// These options, also stopping once `check` says so (a check already set is kept).
    public func cancelled(by check: @escaping @Sendable () -> Bool) -> ApplyOptions {
        var copy = self
        let own = isCancelled
        copy.isCancelled = { check() || own?() == true }
        return copy
    }
}

extension ExportOptions {
    /// These options, also stopping once `check` says so (a check already set is kept).
    public func cancelled(by check: @escaping @Sendable () -> Bool) -> ExportOptions {
        var copy = self
        let own = isCancelled
        copy.isCancelled = { check() || own?() == true }
        return copy
    }
}
