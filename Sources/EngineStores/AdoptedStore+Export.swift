// Exports of an adopted store's layers. An image layer whose files are as the engine applied
// them is given back from the engine's own tar-split record — its bytes verbatim, each file's
// content read from the layer and checked against the recorded CRC-64 — so the tar is the one
// the engine would push (its sha256 is the recorded diffID). The whole record is checked
// against the files first, so a layer that changed since is regenerated (with the reason),
// never a mix; a container's layer has no record and is always generated.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers

#if canImport(Glibc)
import Glibc
#endif

extension AdoptedStore {
    /// Layer `id`'s changes as a tar on `fd`: the engine's own bytes where its tar-split record
    /// still matches the files, else a tar generated from the files (the result says why).
    /// `naive` compares the trees even where the overlay branch is the change set;
    /// `regenerate` (or `options.reproducibleTime`, or the containerd profile) always generates.
    @discardableResult
    public func export(id: String, to fd: FileDescriptor, name: String, options: ExportOptions = ExportOptions(),
                       naive: Bool = false, regenerate: Bool = false) throws -> ExportSource {
        try export(id: id, to: fd.rawValue, name: name, options: options, naive: naive, regenerate: regenerate)
    }

    /// `export(id:to:name:options:naive:regenerate:)` compressed as asked and digested while
    /// it streams; `progress` gets (uncompressed bytes so far, 0) from the hashing thread.
    @discardableResult
    public func export(id: String, to fd: FileDescriptor, name: String, compression: Compression,
                       options: ExportOptions = ExportOptions(), naive: Bool = false, regenerate: Bool = false,
                       progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> LayerExport {
        var source = ExportSource.regenerated(reason: nil)
        let digests = try LayerOutput.write(to: fd.rawValue, name: name, compression: compression, progress: progress) { pipe in
            source = try export(id: id, to: pipe, name: name, options: options, naive: naive, regenerate: regenerate)
        }
        return LayerExport(digests: digests, source: source)
    }

    func export(id: String, to fd: Int32, name: String, options: ExportOptions, naive: Bool, regenerate: Bool) throws -> ExportSource {
        let r = try record(id)
        let p = try plan(r)
        var source = ExportSource.regenerated(reason: nil)
        if !regenerate && !naive && options.reproducibleTime == nil && options.profile == .moby && r.layer.diffID != nil {
            if let split = r.tarSplit {
                if let why = try changedFile(split, p.files) {
                    source = .regenerated(reason: "its files changed since the engine applied it (\(why))")
                } else {
                    try reassemble(r, split, p.files, to: fd, name: name, isCancelled: options.isCancelled)
                    return .original
                }
            } else {
                source = .regenerated(reason: "the engine kept no tar-split record of it")
            }
        }
        try generate(p, to: fd, name: name, options: options, naive: naive)
        return source
    }

    /// A tar made from the layer's files: the overlay branch itself where it is the change set
    /// (read through the mounted view where it holds redirects or metacopy files), else the
    /// trees compared.
    private func generate(_ p: Plan, to fd: Int32, name: String, options: ExportOptions, naive: Bool) throws {
        var options = options
        options.idMap = .identity
        if !naive, let scan = p.native, case let .overlay(_, _, diff, _, _) = p.files {
            let writer = LayerWriter(tar: TarWriter(fd: fd, name: name), root: diff, options: options)
            if !scan.needsView {
                return try writer.writeOverlayUpper(diff, prefix: Self.xattrPrefix, scan: scan) { diff }
            }
            return try views.withView(p.files) { view in
                try writer.writeOverlayUpper(diff, prefix: Self.xattrPrefix, scan: scan) { view }
            }
        }
        try withViews(p) { layer, base in
            _ = try Layers.diff(base: base, layer: layer, to: fd, name: name, options: options, snapshots: driver.isBtrfs)
        }
    }

    /// The roots a file of the layer is looked up in, first hit wins (containers/storage's
    /// DiffGetter): the overlay branch, then its lowers; or the tree.
    private func roots(_ files: LayerFiles) -> [[UInt8]] {
        switch files {
        case let .overlay(_, _, diff, _, lowers): return [diff] + lowers
        case let .tree(dir): return [dir]
        }
    }

    /// Run `body` with an opener of the layer's regular files by their name in the tar.
    private func withFiles<R>(_ files: LayerFiles, _ body: (_ openFile: ([UInt8]) throws -> (fd: Int32, path: [UInt8])) throws -> R) throws -> R {
        try Drivers.withFiles(inRoots: roots(files)) { opener in
            try withoutActuallyEscaping(opener) { openFile in
                try body { stored in
                    let path = Array(LayerPath.components(stored).joined(separator: [LayerPath.slash]))
                    return (try openFile(EntryPath(path)).rawValue, path)
                }
            }
        }
    }

    /// Copy (when `out` is given) and checksum `size` bytes of `file`; the CRC-64 and the bytes read.
    private func checksum(_ file: Int32, size: Int64, path: [UInt8], buffer: UnsafeMutableRawPointer, out: (Int32, String)?) throws -> (crc: [UInt8], read: Int64) {
        var left = size
        var crc = CRC64()
        while left > 0 {
            let n = try Sys.read(file, buffer, Int(min(left, 1 << 20)), shown: path)
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(start: buffer, count: n)
            crc.update(chunk)
            if let (fd, name) = out { try Sys.writeAll(fd, chunk, shown: name) }
            left -= Int64(n)
        }
        return (crc.bytes, size - left)
    }

    /// The first file whose content no longer matches the record (why, naming it), or nil.
    private func changedFile(_ split: [UInt8], _ files: LayerFiles) throws -> String? {
        let reader = try EngineTarSplitReader(path: split)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        return try withFiles(files) { openFile in
            while let entry = try reader.next() {
                guard case let .file(stored, size, crc) = entry, size > 0 else { continue }
                let opened: (fd: Int32, path: [UInt8])
                do { opened = try openFile(stored) } catch { return "\(Bytes.string(stored)) cannot be opened: \(error)" }
                defer { Sys.close(opened.fd) }
                let st = try Sys.fstat(opened.fd, shown: opened.path)
                if st.st_mode & S_IFMT != S_IFREG { return "\(Bytes.string(stored)) is no longer a regular file" }
                if Int64(st.st_size) != size { return "\(Bytes.string(stored)) has \(st.st_size) bytes, not \(size)" }
                let sum = try checksum(opened.fd, size: size, path: opened.path, buffer: buffer, out: nil)
                if sum.read != size || sum.crc != crc { return "\(Bytes.string(stored)) has other content" }
            }
            return nil
        }
    }

    /// The engine's tar again: the record's bytes, and each file's content from the layer.
    private func reassemble(_ r: EngineLayerRecord, _ split: [UInt8], _ files: LayerFiles, to fd: Int32, name: String,
                            isCancelled: (@Sendable () -> Bool)?) throws {
        let reader = try EngineTarSplitReader(path: split)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        Sys.growPipe(fd)
        try withFiles(files) { openFile in
            while let entry = try reader.next() {
                if isCancelled?() == true { throw CancellationError() }
                switch entry {
                case let .segment(bytes):
                    try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: name) }
                case let .file(stored, size, crc):
                    guard size > 0 else { continue }
                    let opened = try openFile(stored)
                    defer { Sys.close(opened.fd) }
                    let sum = try checksum(opened.fd, size: size, path: opened.path, buffer: buffer, out: (fd, name))
                    if sum.read != size || sum.crc != crc {
                        throw EngineStoreError.changedDuringExport(id: r.layer.id, path: Bytes.string(stored))
                    }
                }
            }
        }
    }
}
