// btrfs diffs from the filesystem: a child layer is a snapshot of its parent, so the kernel's
// send stream between the two (BTRFS_IOC_SEND with NO_FILE_DATA) names every path that may
// have changed. Send needs read-only subvolumes: each diff makes read-only snapshots of the
// layer and its parent in `home/.send` (free, and the layers stay writable), reads the stream
// on another thread from a pipe, and deletes the snapshots after. The paths the stream names
// are then judged by the naive diff's own rules (`TreeDiff.changes(base:layer:at:…)`), so what
// the stream reports that is no change (extents rewritten with the same data, the times of
// parent directories) is judged as the full walk judges it, and ownership, xattrs, hardlinks and
// type changes too; only those paths are read and written to the tar.
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
    var sendDirectory: [UInt8] { homeDir + Bytes.of("/.send") }

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

    /// Why send diffs cannot be used for `id` on `parent`, or nil when they can be tried.
    func sendBlocker(id: String, parent: String) -> String? {
        // Checked first: an unprivileged user may make the snapshots but neither send nor, as a
        // rule, delete them.
        if geteuid() != 0 { return "btrfs send needs root" }
        do {
            let layer = try Sys.open(subvolume(id), O_RDONLY | O_DIRECTORY)
            defer { Sys.close(layer) }
            let up = try Sys.open(subvolume(parent), O_RDONLY | O_DIRECTORY)
            defer { Sys.close(up) }
            let info = try Btrfs.subvolumeInfo(layer, shown: subvolume(id))
            let parentInfo = try Btrfs.subvolumeInfo(up, shown: subvolume(parent))
            if info.parentUUID != parentInfo.uuid { return "not a snapshot of its parent \(parent)" }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Make read-only snapshots of `id` and `parent`, read the send stream between them, and run
    /// `body` with (the layer's snapshot, the parent's, an open descriptor of the layer's, the
    /// paths the stream names); the snapshots are deleted after. nil (with `reason` called) when
    /// send cannot be used; errors of `body` are thrown.
    func withSendSnapshots<R>(id: String, parent: String, reason: (String) -> Void,
                              _ body: ([UInt8], [UInt8], Int32, PathSet) throws -> R) throws -> R? {
        if let why = sendBlocker(id: id, parent: parent) {
            reason(why)
            return nil
        }
        let dir = sendDirectory
        let n = sendState.state.withLock { s -> Int in
            s.counter += 1
            return s.counter
        }
        let names = ["send-\(getpid())-\(n)-layer", "send-\(getpid())-\(n)-parent"]
        var made: [String] = []
        let dfd: Int32
        do {
            try prepareSendDirectory()
            dfd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
        } catch {
            reason("\(error)")
            return nil
        }
        defer {
            for name in made { removeSendSnapshot(dfd, name) }
            Sys.close(dfd)
        }
        var fds: [Int32] = []
        defer { fds.forEach(Sys.close) }
        let paths: PathSet
        do {
            for (name, source) in zip(names, [id, parent]) {
                let src = try Sys.open(subvolume(source), O_RDONLY | O_DIRECTORY)
                defer { Sys.close(src) }
                try Btrfs.readOnlySnapshot(src, into: dfd, name, shown: dir + Bytes.of("/" + name))
                made.append(name)
                fds.append(try Sys.openat(dfd, Bytes.of(name), O_RDONLY | O_DIRECTORY, shown: dir + Bytes.of("/" + name)))
            }
            let parentID = try Btrfs.subvolumeID(fds[1], shown: dir + Bytes.of("/" + names[1]))
            paths = try Self.sendPaths(fds[0], parent: parentID, shown: dir + Bytes.of("/" + names[0]))
        } catch {
            reason("\(error)")
            return nil
        }
        return try body(dir + Bytes.of("/" + names[0]), dir + Bytes.of("/" + names[1]), fds[0], paths)
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

    /// `home/.send`, made if missing; snapshots left there by processes that are gone are removed
    /// (once per driver).
    func prepareSendDirectory() throws {
        let dir = sendDirectory
        if (try Sys.lstatIfExists(AT_FDCWD, dir)) == nil {
            let e = Sys.tryMkdir(dir, mode: 0o700)
            if e != 0 && e != EEXIST { throw SystemError("mkdir", dir, errno: e) }
        }
        let sweep = sendState.state.withLock { s -> Bool in
            defer { s.swept = true }
            return !s.swept
        }
        guard sweep else { return }
        let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        for e in try Sys.readDirectory(fd, shown: dir) {
            let parts = Bytes.string(e.name).split(separator: "-")
            guard parts.count >= 2, parts[0] == "send" || parts[0] == "probe", let pid = Int32(parts[1]) else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH { removeSendSnapshot(fd, Bytes.string(e.name)) }
        }
    }

    /// Delete a snapshot of `home/.send` (and its qgroup, with quotas on); errors are ignored.
    func removeSendSnapshot(_ dirfd: Int32, _ name: String) {
        if (try? quotaEnabled()) == true, let fd = try? Sys.openat(dirfd, Bytes.of(name), O_RDONLY | O_DIRECTORY, shown: Bytes.of(name)) {
            if let q = try? Btrfs.subvolumeID(fd, shown: Bytes.of(name)) { try? Btrfs.destroyQgroup(dirfd, q, shown: Bytes.of(name)) }
            Sys.close(fd)
        }
        try? Btrfs.destroySubvolume(dirfd, name, shown: sendDirectory + Bytes.of("/" + name))
    }

    /// Whether this kernel sends here: a full NO_FILE_DATA stream of a fresh, empty read-only
    /// subvolume in `home/.send`, read to its END. "" when it does, else why not (kept).
    func sendProbe() -> String {
        if let known = sendState.state.withLock({ $0.probe }) { return known }
        let answer: String
        do {
            if geteuid() != 0 { throw DriverError.notSupported(driver: name, reason: "btrfs send needs root") }
            try prepareSendDirectory()
            let dir = sendDirectory
            let dfd = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
            defer { Sys.close(dfd) }
            let n = sendState.state.withLock { s -> Int in
                s.counter += 1
                return s.counter
            }
            let empty = "probe-\(getpid())-\(n)", frozen = "probe-\(getpid())-\(n)-ro"
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
