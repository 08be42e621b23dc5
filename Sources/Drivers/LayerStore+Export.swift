// A store export as a value: the layer's tar compressed as asked and digested while it streams
// (LayerOutput), so a library caller gets the diffID, blob digest, size and media type the CLI
// prints, without orchestrating the pipe and hashing thread itself.
import DiffKit
import DiffKitArchive

/// What a store export wrote: its digests and how the tar was made.
public struct LayerExport: Sendable, Equatable {
    /// diffID (SHA-256 of the uncompressed tar), blob digest, sizes and media type.
    public var digests: LayerDigests
    /// The imported tar given back byte for byte, or a regenerated one (and why).
    public var source: ExportSource

    /// An export's result.
    public init(digests: LayerDigests, source: ExportSource) {
        self.digests = digests
        self.source = source
    }
}

extension LayerStore {
    /// The layer's changes against its parent (as `export(id:to:name:options:naive:regenerate:)`
    /// makes them) written to `fd` in `compression`, digested while they stream.
    /// `progress` is called with (uncompressed bytes so far, 0) from the hashing thread.
    /// On failure (cancellation included) nothing is returned; what reached `fd` is the caller's
    /// to discard.
    @discardableResult
    package func export(id: String, to fd: Int32, name: String, compression: Compression,
                       options: ExportOptions = ExportOptions(), naive: Bool = false, regenerate: Bool = false,
                       progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerExport {
        var source = ExportSource.regenerated(reason: nil)
        let digests = try LayerOutput.write(to: fd, name: name, compression: compression, progress: progress) { pipe in
            source = try export(id: id, to: pipe, name: name, options: options, naive: naive, regenerate: regenerate)
        }
        return LayerExport(digests: digests, source: source)
    }
}
