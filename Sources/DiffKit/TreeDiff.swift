// The naive change source: a merge walk of two trees (BEHAVIOUR.md §3.2, moby's ChangesDirs),
// with continuity's content compare for same-size files whose timestamps were truncated.
import ArchiveBridge

#if canImport(Glibc)
import Glibc
#endif

public enum TreeDiff {
    /// Changes that turn `base` into `layer`, sorted in path order. `base == nil` means an
    /// empty parent: everything in `layer` is added.
    public static func changes(base: [UInt8]?, layer: [UInt8]) throws -> [Change] {
        var state = State()
        let newFd = try Walker.openRoot(layer)
        defer { Sys.close(newFd) }
        let newDir = WalkDir(fd: newFd, path: [], absolute: layer)
        if let base {
            let oldFd = try Walker.openRoot(base)
            defer { Sys.close(oldFd) }
            let oldDev = FileInfo(try Sys.fstat(oldFd, shown: base)).device
            let newDev = FileInfo(try Sys.fstat(newFd, shown: layer)).device
            _ = try state.compare(old: WalkDir(fd: oldFd, path: [], absolute: base), oldDev: oldDev,
                                  new: newDir, newDev: newDev)
        } else {
            try state.addAll(newDir)
        }
        return state.finish()
    }

    struct State {
        var changes: [Change] = []
        /// Buffers for content compares, allocated once per diff.
        let compareBuffers = CompareBuffers()
        /// Unchanged files with more than one link: candidates to keep a hardlink group intact.
        var linkCandidates: [Change] = []

        mutating func finish() -> [Change] {
            var changedInodes = Set<UInt64>()
            for c in changes where c.kind != .delete {
                if let i = c.info, !i.isDirectory, i.links > 1 { changedInodes.insert(i.inode) }
            }
            for var p in linkCandidates where changedInodes.contains(p.info!.inode) {
                p.isLinkPeer = true
                changes.append(p)
            }
            changes.sort(by: Change.pathOrder)
            return changes
        }

        mutating func addAll(_ dir: WalkDir) throws {
            try Walker.walk(dir, visit: { d, name, info in
                changes.append(Change(.add, d.child(name), info: info))
                return .descend
            })
        }

        /// Compare two directories; returns whether anything below changed.
        mutating func compare(old: WalkDir, oldDev: UInt64, new: WalkDir, newDev: UInt64) throws -> Bool {
            let olds = try Sys.readDirectory(old.fd, shown: old.absolute)
            let news = try Sys.readDirectory(new.fd, shown: new.absolute)
            var i = 0, j = 0
            var changed = false
            while i < olds.count || j < news.count {
                let o = i < olds.count ? olds[i] : nil
                let n = j < news.count ? news[j] : nil
                if let o, n == nil || o.name.lexicographicallyPrecedes(n!.name) {
                    changes.append(Change(.delete, old.child(o.name)))
                    changed = true
                    i += 1
                    continue
                }
                let ne = n!
                j += 1
                let path = new.child(ne.name)
                let ni = FileInfo(try Sys.fstatat(new.fd, ne.name, shown: new.absoluteChild(ne.name)))
                guard let oe = o, oe.name == ne.name else {
                    changes.append(Change(.add, path, info: ni))
                    if ni.isDirectory { try addAll(try open(new, ne.name)) }
                    changed = true
                    continue
                }
                i += 1
                // Same inode on the same device (hardlink farms, snapshots): identical, unseen below.
                if oe.ino == ne.ino && oldDev == newDev { continue }
                let oi = FileInfo(try Sys.fstatat(old.fd, oe.name, shown: old.absoluteChild(oe.name)))
                let differs = try Self.differ(oi, ni, old: old, new: new, name: ne.name, buffers: compareBuffers)
                if ni.isDirectory {
                    if !oi.isDirectory {
                        // file → directory: the directory and everything in it.
                        changes.append(Change(.modify, path, info: ni))
                        try addAll(try open(new, ne.name))
                        changed = true
                        continue
                    }
                    if differs { changes.append(Change(.modify, path, info: ni)) }
                    let od = try open(old, oe.name)
                    defer { Sys.close(od.fd) }
                    let nd = try open(new, ne.name)
                    defer { Sys.close(nd.fd) }
                    let below = try compare(old: od, oldDev: oldDev, new: nd, newDev: newDev)
                    // Every ancestor of a change is reported as modified (moby); path order puts it first.
                    if below && !differs { changes.append(Change(.modify, path, info: ni)) }
                    changed = changed || below || differs
                } else if differs {
                    changes.append(Change(.modify, path, info: ni))
                    changed = true
                } else if ni.links > 1 {
                    linkCandidates.append(Change(.modify, path, info: ni))
                }
            }
            return changed
        }

        func open(_ dir: WalkDir, _ name: [UInt8]) throws -> WalkDir {
            let fd = try Walker.openChild(dir, name)
            return WalkDir(fd: fd, path: dir.child(name), absolute: dir.absoluteChild(name))
        }

        /// Different if mode, owner or rdev differ; for non-directories also size or mtime
        /// (moby's tolerance: equal seconds and one side's nanoseconds 0 is "truncated by tar");
        /// when both nanoseconds are 0 the content decides (continuity); then the layer xattrs.
        static func differ(_ o: FileInfo, _ n: FileInfo, old: WalkDir, new: WalkDir, name: [UInt8], buffers: CompareBuffers) throws -> Bool {
            if o.kind != n.kind || o.permissions != n.permissions || o.uid != n.uid || o.gid != n.gid || o.rdev != n.rdev {
                return true
            }
            if !n.isDirectory {
                if o.size != n.size || o.mtime != n.mtime { return true }
                if o.mtimeNanoseconds != n.mtimeNanoseconds && o.mtimeNanoseconds != 0 && n.mtimeNanoseconds != 0 { return true }
            }
            if try old.xattrs(name) != new.xattrs(name) {
                return true
            }
            if !n.isDirectory && o.mtimeNanoseconds == 0 && n.mtimeNanoseconds == 0 {
                switch n.kind {
                case .regular:
                    return try !sameContent(old: old, new: new, name: name, size: n.size, buffers: buffers)
                case .symlink:
                    return try Sys.readlinkat(old.fd, name) != Sys.readlinkat(new.fd, name)
                default: break
                }
            }
            return false
        }

        static func sameContent(old: WalkDir, new: WalkDir, name: [UInt8], size: Int64, buffers: CompareBuffers) throws -> Bool {
            if size == 0 { return true }
            let a = try Sys.openat(old.fd, name, O_RDONLY | O_NOFOLLOW, shown: old.absoluteChild(name))
            defer { Sys.close(a) }
            let b = try Sys.openat(new.fd, name, O_RDONLY | O_NOFOLLOW, shown: new.absoluteChild(name))
            defer { Sys.close(b) }
            let chunk = CompareBuffers.size
            let bufA = buffers.a, bufB = buffers.b
            while true {
                let na = try readFull(a, bufA, chunk, old.absoluteChild(name))
                let nb = try readFull(b, bufB, chunk, new.absoluteChild(name))
                if na != nb || memcmp(bufA, bufB, na) != 0 { return false }
                if na < chunk { return true }
            }
        }

        final class CompareBuffers {
            static let size = 1 << 18
            let a = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            let b = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            deinit { a.deallocate(); b.deallocate() }
        }

        static func readFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ shown: [UInt8]) throws -> Int {
            var got = 0
            while got < count {
                let n = try Sys.read(fd, buf + got, count - got, shown: shown)
                if n == 0 { break }
                got += n
            }
            return got
        }
    }
}
