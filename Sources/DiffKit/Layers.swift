// The four jobs on plain directories, each one call: naive diff, full export, apply, sizes.
import DiffKitArchive
import DiffKitSystem
import SystemPackage

/// The four jobs on plain directories, one call each: naive diff, full export, apply, DiffSize.
public enum Layers {
    /// The naive diff of `layer` against `base` (nil: empty base → full export) as a tar on `fd`.
    @discardableResult
    package static func diff(base: [UInt8]?, layer: [UInt8], to fd: Int32, name: String,
                            options: ExportOptions = ExportOptions(), snapshots: Bool = false) throws -> LayerWriter {
        let writer = LayerWriter(tar: TarWriter(fd: fd, name: name), root: layer, options: options)
        if let base {
            try TreeDiff.forEachChange(base: base, layer: layer, snapshots: snapshots) { try writer.write($0) }
            try writer.finish()
        } else {
            try writer.writeTree()
        }
        return writer
    }

    /// Every entry of `directory` as a tar on `fd`; with the overlay form, `directory` is an overlay
    /// upper dir and this is the native diff (kernel whiteouts and opaque dirs in tar form).
    @discardableResult
    package static func export(directory: [UInt8], to fd: Int32, name: String,
                              options: ExportOptions = ExportOptions(), whiteouts: WhiteoutForm = .plain) throws -> LayerWriter {
        let writer = LayerWriter(tar: TarWriter(fd: fd, name: name), root: directory, options: options)
        try writer.writeTree(whiteouts: whiteouts)
        return writer
    }

    /// Apply the tar read from `fd` (any compression) onto `root`; returns Σ header sizes.
    package static func apply(root: [UInt8], from fd: Int32, name: String, options: ApplyOptions = ApplyOptions()) throws -> Int64 {
        try apply(root: root, from: .descriptor(FileDescriptor(rawValue: fd)), name: name, options: options)
    }

    /// Apply the tar read from `source` (a descriptor, bytes, or a caller's reader; any
    /// compression) onto `root`; returns Σ header sizes.
    package static func apply(root: [UInt8], from source: LayerSource, name: String, options: ApplyOptions = ApplyOptions()) throws -> Int64 {
        let reader = try TarReader(source: source, name: name)
        return try Applier(root: root, options: options).apply(reader, archive: name)
    }

    /// Naive DiffSize: ChangesSize of the changes from `base` to `layer`.
    package static func diffSize(base: [UInt8]?, layer: [UInt8]) throws -> Int64 {
        var size = Sizes.ChangesSize()
        try TreeDiff.forEachChange(base: base, layer: layer) { size.add($0) }
        return size.total
    }
}
