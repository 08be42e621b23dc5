// A store export as a value: the layer's tar compressed as asked and digested while it streams
// (LayerOutput), so a library caller gets the diffID, blob digest, size and media type the CLI
// prints, without orchestrating the pipe and hashing thread itself.
import DiffKit
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

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
        if compression == .none,
           let exact = try exportOriginal(id: id, to: fd, name: name, options: options, naive: naive, regenerate: regenerate, progress: progress) {
            return exact
        }
        var source = ExportSource.regenerated(reason: nil)
        let digests = try LayerOutput.write(to: fd, name: name, compression: compression, progress: progress) { pipe in
            source = try export(id: id, to: pipe, name: name, options: options, naive: naive, regenerate: regenerate)
        }
        return LayerExport(digests: digests, source: source)
    }
}

extension LayerStore {
    /// Whether the imported tar may be given back (the caller's choices allow it and a record of
    /// it is kept); the record's descriptor, to close.
    private func originalRecord(_ id: String, _ r: LayerRecord, options: ExportOptions, naive: Bool, regenerate: Bool) -> Int32? {
        guard !regenerate && !naive && options.reproducibleTime == nil && options.profile == .moby, r.stamp != nil else { return nil }
        return try? Sys.open(tarSplitPath(id), O_RDONLY | O_CLOEXEC)
    }

    /// The imported tar byte for byte, uncompressed, with its digests and no hashing: nil (nothing
    /// written) when it cannot be given back. Its diffID is the one recorded at import: the tar
    /// is the recorded one exactly when every file's content matches its recorded size and
    /// CRC-32C, which the reassembly checks as it streams (and fails on, naming the file). The
    /// check guards against changes, not against an attacker: one who can rewrite a layer's
    /// files to collide a CRC could as well rewrite its record, the diffID included.
    private func exportOriginal(id: String, to fd: Int32, name: String, options: ExportOptions, naive: Bool,
                                regenerate: Bool, progress: (@Sendable (Int64, Int) -> Void)?) throws -> LayerExport? {
        try reading(id) {
            let r = try record(id)
            guard let diffID = r.diffID, let splitFd = originalRecord(id, r, options: options, naive: naive, regenerate: regenerate)
            else { return nil }
            defer { Sys.close(splitFd) }
            guard try self.stamp(id) == r.stamp else { return nil }
            let size = try reassemble(id: id, record: splitFd, to: fd, name: name, isCancelled: options.isCancelled, progress: progress)
            let digests = LayerDigests(diffID: diffID, digest: diffID, size: size, uncompressedSize: size,
                                       mediaType: Compression.none.mediaType)
            return LayerExport(digests: digests, source: .original)
        }
    }

    /// The layer's changes against its parent as a tar on `fd`.
    /// - An imported layer whose files are as the import left them gives back the imported tar
    ///   byte for byte (same diffID), unless `regenerate`; if anything changed, a fresh tar is
    ///   made (and the result says why), never a mix.
    /// - `naive`: compare the mounted trees even where the driver has a native diff.
    /// - `options.reproducibleTime`: the canonical form — the trees compared (the one definition
    ///   every driver shares), mtimes clamped, no names — so equal content gives equal bytes on
    ///   every driver.
    @discardableResult
    package func export(id: String, to fd: Int32, name: String, options: ExportOptions = ExportOptions(), naive: Bool = false,
                       regenerate: Bool = false) throws -> ExportSource {
        try reading(id) {
            let r = try record(id)
            var source = ExportSource.regenerated(reason: nil)
            if let splitFd = originalRecord(id, r, options: options, naive: naive, regenerate: regenerate) {
                defer { Sys.close(splitFd) }
                if try self.stamp(id) == r.stamp {
                    try reassemble(id: id, record: splitFd, to: fd, name: name, isCancelled: options.isCancelled)
                    return .original
                }
                source = .regenerated(reason: "the layer's files changed since it was imported")
            }
            if options.reproducibleTime != nil {
                try canonicalDiff(id: id, parent: r.parent, to: fd, name: name, options: options)
            } else if naive {
                try driver.naiveDiff(id: id, parent: r.parent, to: fd, name: name, options: options)
            } else {
                try driver.diff(id: id, parent: r.parent, to: fd, name: name, options: options)
            }
            return source
        }
    }

    /// The reproducible form: the driver's change list (what `changes` prints) written entry by
    /// entry from the layer's own files, so it depends on the layer's content, not on how the
    /// driver stores it (no opaque markers, no copied-up parents that did not change).
    /// A directory whose mode, owner and xattrs are its parent's counts as changed only by its
    /// mtime, which an apply itself moves (and a union driver's copy-up does not report): it is
    /// left out, so the form does not depend on the driver — unless it holds a change. Every
    /// directory above a change is written, as moby's diff writes it: an apply that meets an
    /// entry whose directory is not in the tar makes that directory 0755 and root-owned (docker's
    /// overlay2 does so in the new layer's upper dir, which then hides the lower one's owner and
    /// mode).
    private func canonicalDiff(id: String, parent: String?, to fd: Int32, name: String, options: ExportOptions) throws {
        var changes = try driver.changes(id: id, parent: parent)
        var above: Set<[UInt8]> = []
        for c in changes {
            var path = c.path
            while let slash = path.lastIndex(of: LayerPath.slash) {
                path = Array(path[..<slash])
                if !above.insert(path).inserted { break }
            }
        }
        let write = { (root: [UInt8], parentRoots: [[UInt8]]) throws in
            var listed: Set<[UInt8]> = []
            for c in changes { listed.insert(c.path) }
            var missing: [Change] = []
            for path in above where !listed.contains(path) {
                guard let st = try Sys.lstatIfExists(AT_FDCWD, root + [LayerPath.slash] + path) else { continue }
                missing.append(Change(.modify, path, info: FileInfo(st)))
            }
            if !missing.isEmpty {
                // Merged in path order; the driver's own order (a deletion before an addition of
                // the same path) is kept.
                missing.sort(by: Change.pathOrder)
                var merged: [Change] = []
                merged.reserveCapacity(changes.count + missing.count)
                var next = 0
                for c in changes {
                    while next < missing.count && Change.pathOrder(missing[next], c) {
                        merged.append(missing[next])
                        next += 1
                    }
                    merged.append(c)
                }
                changes = merged + missing[next...]
            }
            changes.removeAll { c in
                guard c.kind == .modify, let info = c.info, info.isDirectory, !above.contains(c.path) else { return false }
                for p in parentRoots {
                    let path = p + [LayerPath.slash] + c.path
                    guard let st = try? Sys.lstatIfExists(AT_FDCWD, path) else { continue }
                    let old = FileInfo(st)
                    return old.isDirectory && old.permissions == info.permissions && old.uid == info.uid && old.gid == info.gid
                        && (try? LayerXattrs.read(path: path)) == (try? LayerXattrs.read(path: root + [LayerPath.slash] + c.path))
                }
                return false
            }
            try LayerWriter(tar: TarWriter(fd: fd, name: name), root: root, options: options).write(changes: changes)
        }
        if let b = try driver.branch(id: id) { return try write(b.directoryBytes, b.lowerBytes) }
        let root = try driver.getBytes(id: id)
        defer { try? driver.put(id: id) }
        guard let parent else { return try write(root, []) }
        let parentRoot = try driver.getBytes(id: parent)
        defer { try? driver.put(id: parent) }
        try write(root, [parentRoot])
    }

    /// The imported tar again: its recorded bytes, and each file's content read from the layer
    /// and checked against the recorded size and CRC-32C.
    @discardableResult
    private func reassemble(id: String, record: Int32, to fd: Int32, name: String,
                            isCancelled: (@Sendable () -> Bool)? = nil,
                            progress: (@Sendable (Int64, Int) -> Void)? = nil) throws -> Int64 {
        let reader = try TarSplitReader(fd: record, name: Bytes.string(tarSplitPath(id)))
        // One buffer for the output: the recorded bytes are copied in and the files read straight
        // into it, so the tar leaves in 1 MiB writes (not two per entry).
        let size = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        var used = 0
        func flush() throws {
            guard used > 0 else { return }
            try Sys.writeAll(fd, UnsafeRawBufferPointer(start: buf, count: used), shown: name)
            used = 0
        }
        Sys.growPipe(fd)
        var total: Int64 = 0
        try driver.withFiles(id: id) { openFile in
            while let segment = try reader.next() {
                if isCancelled?() == true { throw CancellationError() }
                progress?(total, 0)
                switch segment {
                case let .raw(bytes):
                    try bytes.withUnsafeBytes { p in
                        var at = 0
                        while at < p.count {
                            if used == size { try flush() }
                            let n = min(p.count - at, size - used)
                            (buf + used).copyMemory(from: p.baseAddress! + at, byteCount: n)
                            used += n
                            at += n
                        }
                    }
                    total += Int64(bytes.count)
                case let .file(stored, fileSize, crc):
                    let path = Array(LayerPath.components(stored).joined(separator: [LayerPath.slash]))
                    let file = try openFile(EntryPath(path)).rawValue
                    defer { Sys.close(file) }
                    var left = fileSize
                    var sum: UInt32 = 0
                    while left > 0 {
                        if used == size { try flush() }
                        let n = try Sys.read(file, buf + used, Int(min(left, Int64(size - used))), shown: path)
                        if n == 0 { break }
                        sum = CRC32C.update(sum, UnsafeRawBufferPointer(start: buf + used, count: n))
                        used += n
                        left -= Int64(n)
                    }
                    if left != 0 || sum != crc { throw DriverError.changedSinceImport(id: id, path: Bytes.string(path)) }
                    total += fileSize
                }
            }
            try flush()
        }
        return total
    }

    /// The changes of layer `id` against its parent, in path order.
    public func changes(id: String) throws -> [Change] {
        try reading(id) {
            let r = try record(id)
            return try driver.changes(id: id, parent: r.parent)
        }
    }

    /// The size in bytes of layer `id`'s changes against its parent (DiffSize).
    public func size(id: String) throws -> Int64 {
        try reading(id) {
            let r = try record(id)
            return try driver.diffSize(id: id, parent: r.parent)
        }
    }
}

/// How an export was made.
public enum ExportSource: Sendable, Equatable {
    /// The imported tar's own bytes, reassembled from its tar-split record.
    case original
    /// A tar generated from the layer's files; `reason` says why the original was not used
    /// (nil when the layer was never imported, or regenerating was asked for).
    case regenerated(reason: String?)
}
