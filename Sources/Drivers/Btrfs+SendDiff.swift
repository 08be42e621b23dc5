// btrfs diffs from the filesystem: a child layer is a snapshot of its parent, so the kernel's
// send stream between the two (BTRFS_IOC_SEND with NO_FILE_DATA) names every path that may
// have changed. Send needs read-only subvolumes: a diff reads read-only snapshots of the layer
// and its parent, kept in `home/.send` from one diff to the next while the layer has not changed
// (`Btrfs+SendSnapshots.swift`), and reads the stream on another thread from a pipe. The paths
// the stream names are then judged by the naive diff's own rules
// (`TreeDiff.changes(base:layer:at:…)`), so what the stream reports that is no change (extents
// rewritten with the same data, the times of parent directories) is judged as the full walk
// judges it, and ownership, xattrs, hardlinks and type changes too; only those paths are read
// and written to the tar.
//
// Where send cannot be used — the layer is not a snapshot of the parent (a layer made from a
// template), no parent, a kernel or privilege that refuses send — the naive diff is used, and
// the reason is shown by `status`.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

/// What a btrfs driver learned about send diffs in this process.
final class BtrfsSendState: Sendable {
    struct State {
        /// The probe's answer: nil not run, "" usable, else why not.
        var probe: String?
        /// Why the last diff that could not use send fell back to the naive one.
        var lastFallback: String?
        /// Snapshots left by killed processes were removed.
        var swept = false
        var counter = 0
    }
    let state = Locked(State())
    init() {}
}

extension BtrfsDriver {
    /// The changes of `id` against `parent` from a send stream, given to `body` with the root to
    /// read the layer's files from (a read-only snapshot of it, valid during `body`); nil when
    /// send cannot be used (the reason is kept for `status`).
    public func withFilesystemChanges<R>(id: String, parent: String?, _ body: (_ changes: [Change], _ root: FilePath) throws -> R) throws -> R? {
        guard let parent else { return nil }
        var fallback: String? = nil
        let result: R? = try withSendSnapshots(id: id, parent: parent, reason: { fallback = $0 }) { layer, parentRoot, layerFd, paths in
            let changes = try TreeDiff.changes(base: parentRoot, layer: layer, at: paths, snapshots: true) { inode in
                try Btrfs.inodePaths(layerFd, inode, shown: layer)
            }
            return try body(changes, FilePath(bytes: layer))
        }
        if let fallback { sendState.state.withLock { $0.lastFallback = "layer \(id): \(fallback)" } }
        return result
    }

    /// Run `body` with read-only snapshots of `id` and `parent` as they are now — (the layer's,
    /// the parent's, an open descriptor of the layer's, the paths the send stream between them
    /// names) — held until it returns. nil (with `reason` called) when send cannot be used;
    /// errors of `body` are thrown.
    func withSendSnapshots<R>(id: String, parent: String, reason: (String) -> Void,
                              _ body: ([UInt8], [UInt8], Int32, PathSet) throws -> R) throws -> R? {
        // Checked first: an unprivileged user may make the snapshots but neither send nor, as a
        // rule, delete them.
        if geteuid() != 0 {
            reason("btrfs send needs root")
            return nil
        }
        var fds: [Int32] = []
        defer { fds.forEach(Sys.close) }
        var dfd: Int32 = -1
        defer { if dfd >= 0 { Sys.close(dfd) } }
        var held: [HeldSnapshot?] = [nil, nil]
        defer { for h in held { if let h { release(dfd, h) } } }
        let paths: PathSet
        do {
            let ids = [id, parent]
            for source in ids { fds.append(try Sys.open(subvolume(source), O_RDONLY | O_DIRECTORY)) }
            var infos = try zip(fds, ids).map { try Btrfs.subvolumeInfo($0, shown: subvolume($1)) }
            if infos[0].parentUUID != infos[1].uuid {
                reason("not a snapshot of its parent \(parent)")
                return nil
            }
            dfd = try openSendDirectory()
            for i in 0..<2 { held[i] = try holdSnapshot(dfd, ids[i]) }
            // A kept snapshot is trusted only with the layer's data flushed (its ctransid moves then).
            if zip(held, infos).contains(where: { h, info in h.map { Self.isCurrent($0.info, for: info) } ?? false }) {
                try Btrfs.syncFilesystem(fds[0], shown: subvolume(id))
                infos = try zip(fds, ids).map { try Btrfs.subvolumeInfo($0, shown: subvolume($1)) }
            }
            for i in 0..<2 {
                if let h = held[i], Self.isCurrent(h.info, for: infos[i]) { continue }
                if let h = held[i] { Sys.close(h.fd) }
                held[i] = nil
                held[i] = try freshSnapshot(dfd, of: ids[i], source: fds[i])
            }
            paths = try Self.sendPaths(held[0]!.fd, parent: held[1]!.info.id, shown: sendDirectory + Bytes.of("/" + held[0]!.name))
        } catch {
            reason("\(error)")
            return nil
        }
        let dir = sendDirectory + [LayerPath.slash]
        return try body(dir + Bytes.of(held[0]!.name), dir + Bytes.of(held[1]!.name), held[0]!.fd, paths)
    }

    /// The send stream of the read-only subvolume `fd` against subvolume `parent` (0: a full
    /// stream), read from a pipe on a thread of its own (not a pool's: a pool full of blocked
    /// jobs would leave the sender waiting on a full pipe): the paths it names.
    static func sendPaths(_ fd: Int32, parent: UInt64, shown: [UInt8]) throws -> PathSet {
        let (readEnd, writeEnd) = try Sys.pipe(shown: shown)
        Sys.growPipe(writeEnd)
        let reader = StreamReader(fd: readEnd, shown: shown)
        let thread: SystemThread
        do {
            thread = try SystemThread(shown: shown) { reader.run() }
        } catch {
            Sys.close(readEnd)
            Sys.close(writeEnd)
            throw error
        }
        var sendError: Error? = nil
        do {
            try Btrfs.send(fd, to: writeEnd, parent: parent, flags: Btrfs.sendNoFileData, shown: shown)
        } catch {
            sendError = error
        }
        Sys.close(writeEnd)
        thread.join()
        Sys.close(readEnd)
        if let sendError { throw sendError }
        return try reader.outcome.withLock { $0! }.get()
    }

    /// The reading end of a send: parses what comes through the pipe until it is closed.
    final class StreamReader: Sendable {
        let fd: Int32
        let shown: [UInt8]
        let outcome = Locked<Result<PathSet, Error>?>(nil)
        init(fd: Int32, shown: [UInt8]) {
            self.fd = fd
            self.shown = shown
        }
        func run() {
            let r = Result { try BtrfsDriver.readStream(fd, shown: shown) }
            outcome.withLock { $0 = r }
        }
    }

    /// Parse a send stream from `fd` to its end; on a bad stream, read on to the end (the sender
    /// must not block on a full pipe) and throw.
    static func readStream(_ fd: Int32, shown: [UInt8]) throws -> PathSet {
        var parser = BtrfsSendStreamParser()
        var paths = BtrfsSendPaths()
        var failure: Error? = nil
        let size = 1 << 16
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buf.deallocate() }
        while true {
            let n = try Sys.read(fd, buf, size, shown: shown)
            if n == 0 { break }
            guard failure == nil else { continue }
            do {
                for c in try parser.feed(UnsafeRawBufferPointer(start: buf, count: n)) { paths.add(c) }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try parser.finish()
        return paths.result()
    }

    /// Whether this kernel sends here: a full NO_FILE_DATA stream of a fresh, empty read-only
    /// subvolume in `home/.send`, read to its END. "" when it does, else why not (kept).
    func sendProbe() -> String {
        if let known = sendState.state.withLock({ $0.probe }) { return known }
        let answer: String
        do {
            if geteuid() != 0 { throw DriverError.notSupported(driver: name, reason: "btrfs send needs root") }
            let dir = sendDirectory
            let dfd = try openSendDirectory()
            defer { Sys.close(dfd) }
            let empty = temporarySnapshotName(), frozen = temporarySnapshotName()
            try Btrfs.createSubvolume(dfd, empty, shown: dir + Bytes.of("/" + empty))
            defer { removeSendSnapshot(dfd, empty) }
            let src = try Sys.openat(dfd, Bytes.of(empty), O_RDONLY | O_DIRECTORY, shown: dir + Bytes.of("/" + empty))
            defer { Sys.close(src) }
            try Btrfs.readOnlySnapshot(src, into: dfd, frozen, shown: dir + Bytes.of("/" + frozen))
            defer { removeSendSnapshot(dfd, frozen) }
            let fd = try Sys.openat(dfd, Bytes.of(frozen), O_RDONLY | O_DIRECTORY, shown: dir + Bytes.of("/" + frozen))
            defer { Sys.close(fd) }
            _ = try Self.sendPaths(fd, parent: 0, shown: dir + Bytes.of("/" + frozen))
            answer = ""
        } catch {
            answer = "\(error)"
        }
        sendState.state.withLock { $0.probe = answer }
        return answer
    }

    /// `status` lines of send diffs: whether the kernel sends, and the last fallback's reason.
    func sendStatus() -> [(String, String)] {
        let probe = sendProbe()
        var lines = [("Send Diffs", probe.isEmpty ? "true" : "false (\(probe))")]
        if let last = sendState.state.withLock({ $0.lastFallback }) { lines.append(("Send Diff Fallback", last)) }
        return lines
    }
}
