// Size limits for layer directories with xfs project quotas (moby's quota.Control): every
// limited layer directory gets its own project ID, inherited by all it holds, and the project
// a block limit. Used by overlay2 (and vfs would use it the same way).
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

final class QuotaControl: Sendable {
    private let home: [UInt8]
    private let homefd: Int32
    /// The block device node, made only where quotactl_fd(2) is missing (moby's backingFsBlockDev).
    private let device: [UInt8]?
    private let baseID: UInt32
    /// The project ID the next limited directory gets.
    private let nextID: Locked<UInt32>

    /// nil when the filesystem of `home` does not enforce project quotas (not xfs with pquota,
    /// or in a user namespace).
    init?(home: [UInt8]) {
        guard !ApplyOptions.detectUserNamespace(), let fd = try? Sys.open(home, O_RDONLY | O_DIRECTORY) else { return nil }
        guard let base = try? ProjectQuota.project(of: fd, shown: home) else {
            Sys.close(fd)
            return nil
        }
        // Setting a limit on the first ID of ours tests that the kernel takes project quotas here.
        // That ID is the probe's alone (as in moby): no layer directory is given it. The probe sets
        // the limit the ID already has, so opening a store never changes a limit — not even that
        // of a layer given the ID before it was reserved.
        var device: [UInt8]? = nil
        do {
            try QuotaControl.probe(fd, device: nil, id: base + 1, home: home)
        } catch let e as SystemError where e.errno == .noFunction {
            device = QuotaControl.makeDeviceNode(home)
            if device == nil || (try? QuotaControl.probe(fd, device: device, id: base + 1, home: home)) == nil {
                Sys.close(fd)
                return nil
            }
        } catch {
            Sys.close(fd)
            return nil
        }
        self.home = home
        self.homefd = fd
        self.device = device
        self.baseID = base
        self.nextID = Locked(base + 2)
        nextID.withLock { skipUsedIDs(&$0) }
    }

    /// Set project `id`'s limit to what it is (0 when it has none).
    private static func probe(_ fd: Int32, device: [UInt8]?, id: UInt32, home: [UInt8]) throws {
        let limit = (try? ProjectQuota.usage(fsfd: fd, device: device, id: id, shown: home))?.limit ?? 0
        try ProjectQuota.setLimit(fsfd: fd, device: device, id: id, bytes: limit, shown: home)
    }

    /// Move `nextID` past every ID a layer directory has: those made by other processes too (the
    /// store creates layers under its lock, so reading the directories then is enough).
    private func skipUsedIDs(_ nextID: inout UInt32) {
        for e in (try? Sys.readDirectory(homefd, shown: home)) ?? [] where e.type == 4 /* DT_DIR */ {
            let (sub, _) = Sys.tryOpenat(homefd, e.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            guard sub >= 0 else { continue }
            if let id = try? ProjectQuota.project(of: sub, shown: e.name), id != baseID, id >= nextID { nextID = id + 1 }
            Sys.close(sub)
        }
    }

    deinit { Sys.close(homefd) }

    /// `home/backingFsBlockDev`, a block device node of the filesystem's device, for quotactl(2).
    private static func makeDeviceNode(_ home: [UInt8]) -> [UInt8]? {
        guard let st = try? Sys.fstatat(AT_FDCWD, home) else { return nil }
        let node = home + Bytes.of("/backingFsBlockDev")
        try? Sys.unlink(node)
        return (try? Sys.mknod(node, mode: S_IFBLK | 0o600, dev: UInt64(st.st_dev))) != nil ? node : nil

    }

    /// Limit the directory `path` (and all below it) to `bytes`.
    func setQuota(_ path: [UInt8], bytes: UInt64) throws {
        let fd = try Sys.open(path, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        try nextID.withLock { nextID in
            var id = try ProjectQuota.project(of: fd, shown: path)
            if id == baseID || id == 0 {
                skipUsedIDs(&nextID)
                // Project IDs belong to the filesystem, not to this store: one another store (or
                // anything else) on it charges or limits is not free. xfs knows no such ID (ENOENT).
                var tried = 0
                while try inUse(nextID, shown: path) {
                    tried += 1
                    if tried == 65536 { throw SystemError("find a free project id", path, errno: ENOSPC) }
                    nextID += 1
                }
                id = nextID
                nextID += 1
                try ProjectQuota.setProject(fd, id, shown: path)
            }
            try ProjectQuota.setLimit(fsfd: homefd, device: device, id: id, bytes: bytes, shown: path)
        }
    }

    /// True when the filesystem has a quota record for project `id`: blocks or inodes charged to
    /// it, or limits set.
    private func inUse(_ id: UInt32, shown: [UInt8]) throws -> Bool {
        do {
            _ = try ProjectQuota.usage(fsfd: homefd, device: device, id: id, shown: shown)
            return true
        } catch let e as SystemError where e.errno.rawValue == ENOENT {
            return false
        }
    }

    /// (limit, used) bytes of the directory's project, nil when it has none of its own.
    func usage(_ path: [UInt8]) throws -> (limit: UInt64, used: UInt64)? {
        let fd = try Sys.open(path, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        let id = try ProjectQuota.project(of: fd, shown: path)
        if id == baseID || id == 0 { return nil }
        return try ProjectQuota.usage(fsfd: homefd, device: device, id: id, shown: path)
    }
}

/// moby's RAMInBytes: "50M", "1.5g", "512KiB", "1024" (binary multiples, case-insensitive).
public func parseSize(_ text: String) -> UInt64? {
    var s = Substring(text.trimmingSpaces().lowercased())
    if s.hasSuffix("b") { s = s.dropLast() }
    if s.hasSuffix("i") { s = s.dropLast() }
    let units: [Character: UInt64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50]
    var multiplier: UInt64 = 1
    if let u = s.last, let m = units[u] {
        multiplier = m
        s = s.dropLast()
    }
    s = Substring(String(s).trimmingSpaces())
    guard !s.isEmpty, s.allSatisfy({ $0.isNumber || $0 == "." }), let v = Double(s), v >= 0 else { return nil }
    let bytes = v * Double(multiplier)
    guard bytes < 1.8e19 else { return nil }
    return UInt64(bytes)
}

extension String {
    func trimmingSpaces() -> String { trimmingCharacters(in: [" "]) }

    func trimmingCharacters(in set: Set<Character>) -> String {
        String(drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed())
    }
}
