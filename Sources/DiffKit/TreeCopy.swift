// TreeCopy: a full copy of a tree (moby's daemon/graphdriver/copy DirCopy) for drivers that keep each
// layer as a plain copy. Same walker as everything else; data by reflink, then copy_file_range,
// then read/write; hardlinks kept by (device, inode); owners, modes, xattrs, times (ns) kept;
// directory times set after their content. Under an ID map the copy makes nothing owned outside
// it: a source entry with a uid or gid outside the map is refused, naming it.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// A full copy of a tree that keeps owners, modes, xattrs, hardlinks and times (ns).
public enum TreeCopy {
    /// Copy everything below `source` into the existing directory `destination`. With an ID map
    /// (the store's), every owner met must be a host ID inside it.
    package static func copy(from source: [UInt8], to destination: [UInt8], inUserNamespace: Bool = false,
                            idMap: IDMap = .identity) throws {
        let dstRoot = try Walker.openRoot(destination)
        defer { Sys.close(dstRoot) }
        var dstFds: [Int32] = [dstRoot]
        var dstPaths: [[UInt8]] = [destination]
        var links: [Pair: [UInt8]] = [:]
        var dirTimes: [(Int32, [UInt8], [UInt8], FileInfo)] = []
        var canClone = true
        var canCopyRange = true
        defer { for fd in dstFds.dropFirst() { Sys.close(fd) } }

        try Walker.walk(root: source, visit: { dir, name, info in
            let dfd = dstFds.last!
            let shown = dstPaths.last! + [LayerPath.slash] + name
            let srcShown = dir.absoluteChild(name)
            if !idMap.containsHost(uid: info.uid) || !idMap.containsHost(gid: info.gid) {
                throw DiffKitError.ownerOutsideMap(path: Bytes.string(srcShown), uid: info.uid, gid: info.gid)
            }
            if info.links > 1 && !info.isDirectory {
                let key = Pair(device: info.device, inode: info.inode)
                if let first = links[key] {
                    try Sys.linkat(dstRoot, first, dfd, name, shown: shown)
                    return .descend
                }
                links[key] = dir.child(name)
            }
            switch info.kind {
            case .directory:
                let r = Sys.tryMkdirat(dfd, name, mode: 0o700)
                if r != 0 && r != EEXIST { throw SystemError("mkdir", shown, errno: r) }
            case .regular:
                let src = try Sys.openat(dir.fd, name, O_RDONLY | O_NOFOLLOW, shown: srcShown)
                defer { Sys.close(src) }
                let dst = try Sys.openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600, shown: shown)
                defer { Sys.close(dst) }
                try copyData(src: src, dst: dst, size: info.size, shown: shown, canClone: &canClone, canCopyRange: &canCopyRange)
            case .symlink:
                let target = try Sys.readlinkat(dir.fd, name, shown: srcShown)
                try Sys.symlinkat(target, dfd, name, shown: shown)
            case .fifo, .socket:
                // Sockets cannot be copied; like moby, they become FIFOs.
                let r = Sys.mknodat(dfd, name, mode: UInt32(S_IFIFO) | 0o600, dev: 0)
                if r != 0 { throw SystemError("mkfifo", shown, errno: r) }
            case .characterDevice, .blockDevice:
                if inUserNamespace { return .skip }
                let type = info.kind == .characterDevice ? UInt32(S_IFCHR) : UInt32(S_IFBLK)
                let r = Sys.mknodat(dfd, name, mode: type | 0o600, dev: info.rdev)
                if r != 0 { throw SystemError("mknod", shown, errno: r) }
            }
            try copyMetadata(dir: dir, name: name, info: info, dfd: dfd, shown: shown)
            if info.isDirectory {
                let sub = try Sys.openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: shown)
                dstFds.append(sub)
                dstPaths.append(shown)
                dirTimes.append((dfd, name, shown, info))
            } else {
                let times = [timespec(tv_sec: Int(info.atime), tv_nsec: Int(info.atimeNanoseconds)),
                             timespec(tv_sec: Int(info.mtime), tv_nsec: Int(info.mtimeNanoseconds))]
                try Sys.utimensat(dfd, name, times: times, shown: shown)
            }
            return .descend
        }, leave: { dir in
            // Leaving a directory: its times can be set now that its content is complete.
            guard !dir.path.isEmpty else { return }
            let fd = dstFds.removeLast()
            dstPaths.removeLast()
            let (_, _, shown, info) = dirTimes.removeLast()
            let times = [timespec(tv_sec: Int(info.atime), tv_nsec: Int(info.atimeNanoseconds)),
                         timespec(tv_sec: Int(info.mtime), tv_nsec: Int(info.mtimeNanoseconds))]
            defer { Sys.close(fd) }
            try Sys.futimens(fd, times: times, shown: shown)
        })
    }

    struct Pair: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    static func copyMetadata(dir: WalkDir, name: [UInt8], info: FileInfo, dfd: Int32, shown: [UInt8]) throws {
        try Sys.fchownat(dfd, name, uid: info.uid, gid: info.gid, shown: shown)
        if info.kind != .symlink {
            try Sys.fchmodat(dfd, name, mode: UInt32(info.permissions), shown: shown)
        }

        let src = dir.absoluteChild(name)
        for x in try Sys.listXattrs(path: src, dirfd: dir.fd, name: name) {
            guard let v = try Sys.getXattr(path: src, name: x) else { continue }
            let r = Sys.setXattr(path: Bytes.of("/proc/self/fd/\(dfd)/") + name, name: x, value: v)
            if r != 0 && r != ENOTSUP && r != EPERM { throw SystemError("setxattr \(Bytes.string(x))", shown, errno: r) }
        }
    }

    static func copyData(src: Int32, dst: Int32, size: Int64, shown: [UInt8], canClone: inout Bool, canCopyRange: inout Bool) throws {
        if size == 0 { return }
        if canClone {
            if Sys.ficlone(dst: dst, src: src) { return }
            canClone = false
        }
        var left = size
        if canCopyRange {
            while left > 0 {
                let n = Sys.copyFileRange(from: src, to: dst, count: Int(min(left, 1 << 30)))
                if n > 0 { left -= Int64(n); continue }
                if n == 0 { return }
                if errno == EINTR { continue }
                if errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP { canCopyRange = false; break }
                throw SystemError("copy_file_range", shown, errno: errno)
            }
            if left == 0 { return }
        }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        while true {
            let n = try Sys.read(src, buf, 1 << 20, shown: shown)
            if n == 0 { return }
            try Sys.writeAll(dst, UnsafeRawBufferPointer(start: buf, count: n), shown: Bytes.string(shown))
        }
    }
}
