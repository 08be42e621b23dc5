// The directory-level exports with their digests: the tar compressed as asked and hashed while it
// streams (LayerOutput: a pipe, and a second thread that hashes, compresses and writes).
import DiffKitArchive

extension Layers {
    /// The naive diff of `layer` against `base` (nil: a full export), written to `fd` in
    /// `compression`; returns its digests (diffID, blob digest, sizes, media type).
    @discardableResult
    package static func diff(base: [UInt8]?, layer: [UInt8], to fd: Int32, name: String, compression: Compression,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false,
                            progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerDigests {
        try LayerOutput.write(to: fd, name: name, compression: compression, progress: progress) { pipe in
            _ = try diff(base: base, layer: layer, to: pipe, name: name, options: options, snapshots: snapshots)
        }
    }

    /// Every entry of `directory` as a tar (see `export(directory:to:name:options:whiteouts:)`),
    /// written to `fd` in `compression`; returns its digests.
    @discardableResult
    package static func export(directory: [UInt8], to fd: Int32, name: String, compression: Compression,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain,
                              progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerDigests {
        try LayerOutput.write(to: fd, name: name, compression: compression, progress: progress) { pipe in
            _ = try export(directory: directory, to: pipe, name: name, options: options, whiteouts: whiteouts)
        }
    }
}
