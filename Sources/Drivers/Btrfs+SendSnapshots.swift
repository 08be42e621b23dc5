// The read-only snapshots a send diff reads (send needs read-only subvolumes; the layers stay
// writable), kept in `home/.send` from one diff to the next:
//
//   .send/ID       the kept snapshot of layer ID
//   .send/@PID-N   one that process PID made and did not keep (or is removing): removed by
//                  whoever finds it unused
//
// A kept snapshot serves a diff while its layer has not changed since it was made: the
// snapshot's parent UUID is the layer's UUID (a layer removed and made again under the same id
// is another subvolume), and the layer's ctransid — the transaction of its last change, which
// every update of one of its inodes moves — is no later than the snapshot's otransid, the
// transaction that made it (what changed before that transaction's commit is in the snapshot,
// what changes after it has a later ctransid). Data written and not yet flushed moves ctransid
// only when it is flushed, so the filesystem is synced before a kept snapshot is trusted (next to
// nothing when nothing is dirty). Otherwise a fresh snapshot is made and kept in its place.
//
// Processes (and threads) share them through flock on each snapshot's root directory: a diff
// holds what it reads shared, from before it checks that the name still leads to the subvolume
// it opened until it has read all it needs; a snapshot is renamed or deleted only under the
// exclusive lock, tried without waiting — one in use is left, and removed by whoever next finds
// it unused. So the path a diff reads from never changes under it.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

extension BtrfsDriver {
    var sendDirectory: [UInt8] { homeDir + Bytes.of("/.send") }

    /// A snapshot of `home/.send` this process holds shared.
    struct HeldSnapshot {
        /// Its root, open, with the shared lock.
        let fd: Int32
        /// Its name in `.send`, which stays while it is held.
        let name: String
        let info: Btrfs.SubvolumeInfo
        /// Kept for later diffs (named by its layer's id); else removed when released.
        let kept: Bool
    }

    /// Whether a kept snapshot (`snapshot`) still has what its layer (`layer`) has.
    static func isCurrent(_ snapshot: Btrfs.SubvolumeInfo, for layer: Btrfs.SubvolumeInfo) -> Bool {
        snapshot.readOnly && snapshot.parentUUID == layer.uuid && layer.ctransid <= snapshot.otransid
    }

    /// A name for a snapshot of this process's own (never a layer id: ids have no `@`).
    func temporarySnapshotName() -> String {
        let n = sendState.state.withLock { s -> Int in
            s.counter += 1
            return s.counter
        }
        return "@\(getpid())-\(n)"
    }

    /// `name` of `.send`, open and locked shared, if it exists and is still there once locked
    /// (it may be replaced or removed meanwhile: tried again).
    func holdSnapshot(_ dfd: Int32, _ name: String) throws -> HeldSnapshot? {
        let shown = sendDirectory + Bytes.of("/" + name)
        for _ in 0..<4 {
            let (fd, e) = Sys.tryOpenat(dfd, Bytes.of(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            if fd < 0 {
                if e == ENOENT { return nil }
                throw SystemError("open", shown, errno: e)
            }
            let locked = Sys.tryFlock(fd, LOCK_SH)
            if locked != 0 {
                Sys.close(fd)
                throw SystemError("flock", shown, errno: locked)
            }
            if Self.stillNamed(dfd, name, fd) {
                do {
                    return HeldSnapshot(fd: fd, name: name, info: try Btrfs.subvolumeInfo(fd, shown: shown), kept: !name.hasPrefix("@"))
                } catch {
                    Sys.close(fd)
                    throw error
                }
            }
            Sys.close(fd)
        }
        return nil
    }

    /// Whether `name` in `dfd` is still the directory open as `fd`.
    static func stillNamed(_ dfd: Int32, _ name: String, _ fd: Int32) -> Bool {
        guard let now = try? Sys.lstatIfExists(dfd, Bytes.of(name)), let held = try? Sys.fstat(fd, shown: Bytes.of(name)) else { return false }
        return now.st_dev == held.st_dev && now.st_ino == held.st_ino
    }

    /// A new read-only snapshot of layer `id` (open as `source`), held, and kept as `.send/ID`
    /// unless the one kept there is in use (then it serves this diff only).
    func freshSnapshot(_ dfd: Int32, of id: String, source: Int32) throws -> HeldSnapshot {
        sweepSendDirectory(dfd)
        for _ in 0..<4 {
            let name = temporarySnapshotName()
            try Btrfs.readOnlySnapshot(source, into: dfd, name, shown: sendDirectory + Bytes.of("/" + name))
            // Held first: another process's sweep may remove it before (then made again).
            guard let fresh = try holdSnapshot(dfd, name) else { continue }
            return keep(dfd, fresh, as: id)
        }
        throw DriverError.busy(id: id, reason: "its read-only snapshots in \(Bytes.string(sendDirectory)) were removed as soon as they were made")
    }

    /// Rename `fresh` to `id`, replacing the snapshot kept there if no process is using it.
    func keep(_ dfd: Int32, _ fresh: HeldSnapshot, as id: String) -> HeldSnapshot {
        var e = Btrfs.rename(dfd, fresh.name, id, .noReplace)
        if e == EEXIST {
            guard let old = exclusive(dfd, id) else { return fresh }
            defer { Sys.close(old) }
            e = Btrfs.rename(dfd, fresh.name, id, .exchange)
            // The old one, now under the fresh one's name.
            if e == 0 { removeSendSnapshot(dfd, fresh.name) }
        }
        guard e == 0 else { return fresh }
        return HeldSnapshot(fd: fresh.fd, name: id, info: fresh.info, kept: true)
    }

    /// `name` of `.send` open with the exclusive lock, if no process holds it and it is still
    /// there once locked.
    func exclusive(_ dfd: Int32, _ name: String) -> Int32? {
        let (fd, _) = Sys.tryOpenat(dfd, Bytes.of(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        guard Sys.tryFlock(fd, LOCK_EX | LOCK_NB) == 0, Self.stillNamed(dfd, name, fd) else {
            Sys.close(fd)
            return nil
        }
        return fd
    }

    /// Let go of a held snapshot: one that was not kept is removed.
    func release(_ dfd: Int32, _ held: HeldSnapshot) {
        if !held.kept { removeSendSnapshot(dfd, held.name) }
        Sys.close(held.fd)
    }

    /// Remove `name` of `.send` unless a process holds it.
    func removeIfUnused(_ dfd: Int32, _ name: String) {
        guard let fd = exclusive(dfd, name) else { return }
        removeSendSnapshot(dfd, name)
        Sys.close(fd)
    }

    /// Delete a snapshot of `home/.send` (and its qgroup, with quotas on); errors are ignored.
    func removeSendSnapshot(_ dirfd: Int32, _ name: String) {
        if (try? quotaEnabled()) == true, let fd = try? Sys.openat(dirfd, Bytes.of(name), O_RDONLY | O_DIRECTORY, shown: Bytes.of(name)) {
            if let q = try? Btrfs.subvolumeID(fd, shown: Bytes.of(name)) { try? Btrfs.destroyQgroup(dirfd, q, shown: Bytes.of(name)) }
            Sys.close(fd)
        }
        try? Btrfs.destroySubvolume(dirfd, name, shown: sendDirectory + Bytes.of("/" + name))
    }

    /// `home/.send`, made if missing, open.
    func openSendDirectory() throws -> Int32 {
        let dir = sendDirectory
        let (fd, e) = Sys.tryOpenat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { return fd }
        guard e == ENOENT else { throw SystemError("open", dir, errno: e) }
        let made = Sys.tryMkdir(dir, mode: 0o700)
        if made != 0 && made != EEXIST { throw SystemError("mkdir", dir, errno: made) }
        return try Sys.open(dir, O_RDONLY | O_DIRECTORY)
    }

    /// Once per driver, before the first snapshot it makes: remove what other processes left in
    /// `.send` and no process uses — `@` names (a killed process's, or one in use when it was to
    /// be removed), and the names earlier versions gave (`send-PID-…`, `probe-PID-…`) of processes
    /// that are gone. Kept snapshots of removed layers go at the next `remove`.
    func sweepSendDirectory(_ dfd: Int32) {
        let sweep = sendState.state.withLock { s -> Bool in
            defer { s.swept = true }
            return !s.swept
        }
        guard sweep, let entries = try? Sys.readDirectory(dfd, shown: sendDirectory) else { return }
        for e in entries where Self.isLeftover(Bytes.string(e.name)) { removeIfUnused(dfd, Bytes.string(e.name)) }
    }

    /// Whether a `.send` entry is no kept snapshot and not this process's own.
    static func isLeftover(_ name: String) -> Bool {
        let me = getpid()
        if name.hasPrefix("@") {
            return name.dropFirst().split(separator: "-").first.flatMap { Int32($0) } != me
        }
        let parts = name.split(separator: "-")
        guard parts.count >= 3, parts[0] == "send" || parts[0] == "probe", let pid = Int32(parts[1]), pid != me else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// With layer `id` removed: its kept snapshot, unless in use, and every other kept snapshot
    /// whose layer is gone (one in use when its layer was removed) or leftover.
    func removeKeptSnapshots(of id: String) {
        let (dfd, _) = Sys.tryOpenat(AT_FDCWD, sendDirectory, O_RDONLY | O_DIRECTORY)
        guard dfd >= 0 else { return }
        defer { Sys.close(dfd) }
        removeIfUnused(dfd, id)
        guard let entries = try? Sys.readDirectory(dfd, shown: sendDirectory) else { return }
        for e in entries {
            let name = Bytes.string(e.name)
            guard name != id else { continue }
            let temporary = name.hasPrefix("@") || name.hasPrefix("send-") || name.hasPrefix("probe-")
            if temporary ? Self.isLeftover(name) : !exists(id: name) { removeIfUnused(dfd, name) }
        }
    }
}
