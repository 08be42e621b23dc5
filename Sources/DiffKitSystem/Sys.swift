// Thin, EINTR-safe wrappers over the syscalls DiffKit uses, working on byte paths and
// directory descriptors. Callers get `SystemError`s that name the path.
import CDiffKitSystem
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The system calls DiffKit makes, on byte paths and descriptors; failures throw a ``SystemError``
/// that names the path (the `shown` argument where one is given).
package enum Sys {
    /// `AT_SYMLINK_NOFOLLOW`, for the `*at` calls that take flags.
    package static let atSymlinkNoFollow = AT_SYMLINK_NOFOLLOW
    /// O_PATH: a descriptor that only names a place, for *at calls.
    package static let oPath = dk_o_path()

    /// Run `body` with `bytes` as a NUL-terminated C string.
    @inline(__always)
    package static func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var b = bytes
        b.append(0)
        return try b.withUnsafeBufferPointer { p in
            try p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { try body($0) }
        }
    }

    @inline(__always)
    static func retry<T: BinaryInteger>(_ f: () -> T) -> T {
        while true {
            let r = f()
            if r == -1 && errno == EINTR { continue }
            return r
        }
    }

    /// Open `path` with `open(2)` flags (and `mode` when creating); returns the descriptor.
    /// Throws a ``SystemError`` naming the path.
    package static func open(_ path: [UInt8], _ flags: Int32, mode: mode_t = 0) throws -> Int32 {
        try openat(AT_FDCWD, path, flags, mode: mode, shown: path)
    }

    /// `openat`, reporting `shown` (the full path) on failure.
    /// `shown` (the path errors name) is only built when the call fails.
    package static func openat(_ dirfd: Int32, _ name: [UInt8], _ flags: Int32, mode: mode_t = 0,
                              shown: @autoclosure () -> [UInt8]? = nil) throws -> Int32 {
        let fd = withCString(name) { n in retry { Glibc.openat(dirfd, n, flags | O_CLOEXEC, mode) } }
        if fd < 0 { let e = errno; throw SystemError("open", shown() ?? name, errno: e) }
        return fd
    }

    /// `openat` that returns the errno instead of throwing (for expected failures).
    package static func tryOpenat(_ dirfd: Int32, _ name: [UInt8], _ flags: Int32, mode: mode_t = 0) -> (fd: Int32, errno: Int32) {
        let fd = withCString(name) { n in retry { Glibc.openat(dirfd, n, flags | O_CLOEXEC, mode) } }
        return (fd, fd < 0 ? errno : 0)
    }

    /// openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: `path` is resolved as if `rootfd`
    /// were `/`, so neither `..` nor a symlink (absolute or relative) can leave the root.
    package static func openInRoot(_ rootfd: Int32, _ path: [UInt8], _ flags: Int32) -> (fd: Int32, errno: Int32) {
        if !useOpenat2.load(ordering: .relaxed) { return walkInRoot(rootfd, path, flags) }
        let resolve = dk_resolve_in_root() | dk_resolve_no_magiclinks()
        // EAGAIN: a `..` was met while a rename or a mount happened anywhere on the machine, and
        // the kernel could not prove the walk stayed inside; openat2(2) says to try again. After
        // a few tries the walk is done in user space, which needs no such proof.
        for _ in 0..<8 {
            let fd = withCString(path.isEmpty ? [UInt8(ascii: ".")] : path) { p in
                retry { dk_openat2(rootfd, p, UInt64(flags | O_CLOEXEC), 0, resolve) }
            }
            if fd >= 0 { return (fd, 0) }
            let e = errno
            if e == ENOSYS {
                useOpenat2.store(false, ordering: .relaxed)
                break
            }
            if e != EAGAIN { return (fd, e) }
        }
        return walkInRoot(rootfd, path, flags)
    }

    /// openat2 is used unless the kernel lacks it (before 5.6) or DIFFKIT_NO_OPENAT2=1 asks
    /// for the fallback (the tests run the hostile corpus both ways).
    static let useOpenat2 = Atomic<Bool>(getenv("DIFFKIT_NO_OPENAT2").map { String(cString: $0) != "1" } ?? true)

    /// RESOLVE_IN_ROOT in user space, one component at a time (containerd's RootPath, with
    /// descriptors): `..` stops at the root, a symlink's target is resolved from the root when
    /// absolute or from its directory otherwise, at most 255 of them; every step is an
    /// O_PATH|O_NOFOLLOW open relative to the previous directory, so nothing outside is reached.
    static func walkInRoot(_ rootfd: Int32, _ path: [UInt8], _ flags: Int32) -> (fd: Int32, errno: Int32) {
        let slash = UInt8(ascii: "/")
        var parts = ArraySlice(path.split(separator: slash).map(Array.init))
        var stack: [Int32] = []
        defer { stack.forEach { _ = Glibc.close($0) } }
        func current() -> Int32 { stack.last ?? rootfd }
        var hops = 0
        while let c = parts.first {
            parts = parts.dropFirst()
            if c == [UInt8(ascii: ".")] { continue }
            if c == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                if let top = stack.popLast() { _ = Glibc.close(top) }
                continue
            }
            let last = parts.isEmpty
            let base = current()
            let fd = withCString(c) { p in retry { Glibc.openat(base, p, dk_o_path() | O_NOFOLLOW | O_CLOEXEC) } }
            if fd < 0 { return (-1, errno) }
            var st = stat()
            if Glibc.fstat(fd, &st) != 0 { let e = errno; _ = Glibc.close(fd); return (-1, e) }
            if st.st_mode & S_IFMT == S_IFLNK && !(last && flags & O_NOFOLLOW != 0) {
                hops += 1
                let target = (try? readlinkat(fd, [])) ?? []
                _ = Glibc.close(fd)
                if hops > 255 || target.isEmpty { return (-1, hops > 255 ? ELOOP : ENOENT) }
                if target.first == slash {
                    stack.forEach { _ = Glibc.close($0) }
                    stack.removeAll()
                }
                parts = ArraySlice(target.split(separator: slash).map { Array($0) } + Array(parts))
                continue
            }
            if last {
                _ = Glibc.close(fd)
                let r = withCString(c) { p in retry { Glibc.openat(base, p, flags | O_NOFOLLOW | O_CLOEXEC) } }
                return (r, r < 0 ? errno : 0)
            }
            if st.st_mode & S_IFMT != S_IFDIR { _ = Glibc.close(fd); return (-1, ENOTDIR) }
            stack.append(fd)
        }
        let dir = current()
        let r = retry { Glibc.openat(dir, ".", flags | O_CLOEXEC) }
        return (r, r < 0 ? errno : 0)
    }

    /// Close a descriptor, ignoring the result.
    package static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// A descriptor of an in-memory file holding `data`, positioned at its start (to feed a
    /// reader bytes held in memory, e.g. by a fuzzer).
    package static func memoryFile(_ data: UnsafeRawBufferPointer) throws -> Int32 {
        let fd = dk_memfd("diffkit")
        if fd < 0 { throw SystemError("memfd_create", "memfd", Errno(rawValue: errno)) }
        if data.count > 0 { try writeAll(fd, data, shown: "memfd") }
        lseek(fd, 0, SEEK_SET)
        return fd
    }

    /// Whether `path` names anything (a dangling symlink included).
    package static func exists(_ path: [UInt8]) -> Bool {
        (try? lstatIfExists(AT_FDCWD, path)) != nil
    }

    /// The `stat` of `name` in `dirfd`, not following a final symlink; throws a ``SystemError``
    /// naming `shown` (or `name`).
    package static func fstatat(_ dirfd: Int32, _ name: [UInt8], shown: @autoclosure () -> [UInt8]? = nil) throws -> stat {
        var st = stat()
        let r = withCString(name) { n in retry { Glibc.fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) } }
        if r != 0 { let e = errno; throw SystemError("lstat", shown() ?? name, errno: e) }
        return st
    }

    /// lstat relative to `dirfd`; nil when the name does not exist.
    package static func lstatIfExists(_ dirfd: Int32, _ name: [UInt8], shown: @autoclosure () -> [UInt8]? = nil) throws -> stat? {
        var st = stat()
        let r = withCString(name) { n in retry { Glibc.fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) } }
        if r == 0 { return st }
        let e = errno
        if e == ENOENT || e == ENOTDIR { return nil }
        throw SystemError("lstat", shown() ?? name, errno: e)
    }

    /// The `stat` of an open descriptor; throws a ``SystemError`` naming `shown`.
    package static func fstat(_ fd: Int32, shown: [UInt8]) throws -> stat {
        var st = stat()
        if retry({ Glibc.fstat(fd, &st) }) != 0 { throw SystemError("fstat", shown, errno: errno) }
        return st
    }

    /// The target of symlink `name` in `dirfd`, of any length; throws a ``SystemError``.
    package static func readlinkat(_ dirfd: Int32, _ name: [UInt8], shown: @autoclosure () -> [UInt8]? = nil) throws -> [UInt8] {
        var size = 256
        while true {
            var buf = [UInt8](repeating: 0, count: size)
            let n = withCString(name) { p in
                buf.withUnsafeMutableBufferPointer { b in
                    Glibc.readlinkat(dirfd, p, UnsafeMutableRawPointer(b.baseAddress!).assumingMemoryBound(to: CChar.self), size)
                }
            }
            if n < 0 { let e = errno; throw SystemError("readlink", shown() ?? name, errno: e) }
            if n < size { return Array(buf[0..<n]) }
            size *= 4
        }
    }

    /// Write all of `buf`, retrying short writes.
    package static func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer, shown: String) throws {
        var off = 0
        while off < buf.count {
            let n = retry { Glibc.write(fd, buf.baseAddress! + off, buf.count - off) }
            if n < 0 { throw SystemError("write", shown, Errno(rawValue: errno)) }
            off += n
        }
    }

    /// Write all of `buf` at byte `offset` of `fd`, retrying short writes; throws a ``SystemError``.
    package static func pwriteAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer, at offset: Int64, shown: [UInt8]) throws {
        var off = 0
        while off < buf.count {
            let n = retry { Glibc.pwrite(fd, buf.baseAddress! + off, buf.count - off, off_t(offset) + off_t(off)) }
            if n < 0 { throw SystemError("write", shown, errno: errno) }
            off += n
        }
    }

    /// Read up to `count` bytes; 0 at end of file.
    package static func read(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, shown: [UInt8]) throws -> Int {
        let n = retry { Glibc.read(fd, buf, count) }
        if n < 0 { throw SystemError("read", shown, errno: errno) }
        return n
    }

    /// The whole content of a small file (records, /proc entries).
    package static func readFile(_ path: [UInt8]) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try buf.withUnsafeMutableBytes { try read(fd, $0.baseAddress!, 4096, shown: path) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    // MARK: directories

    /// A directory entry as getdents64 gives it: no stat.
    package struct DirEntry: Sendable {
        /// The entry's name (bytes, no `/`).
        package var name: [UInt8]
        /// The entry's inode number.
        package var ino: UInt64
        /// The entry's `DT_*` type (`DT_UNKNOWN` where the filesystem does not tell).
        package var type: UInt8
    }

    /// All entries of an open directory except `.` and `..`, sorted by name bytes.
    package static func readDirectory(_ fd: Int32, shown: [UInt8]) throws -> [DirEntry] {
        var entries: [DirEntry] = []
        let cap = 65536
        let buf = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 8)
        defer { buf.deallocate() }
        while true {
            let n = dk_getdents64(fd, buf, cap)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("getdents64", shown, errno: errno)
            }
            if n == 0 { break }
            var off = 0
            while off < n {
                let rec = buf + off
                let ino = rec.loadUnaligned(as: UInt64.self)
                let reclen = Int(rec.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
                let type = rec.load(fromByteOffset: 18, as: UInt8.self)
                let namePtr = (rec + 19).assumingMemoryBound(to: UInt8.self)
                let len = strlen(UnsafeRawPointer(namePtr).assumingMemoryBound(to: CChar.self))
                off += reclen
                if len == 1 && namePtr[0] == 0x2E { continue }
                if len == 2 && namePtr[0] == 0x2E && namePtr[1] == 0x2E { continue }
                entries.append(DirEntry(name: Array(UnsafeBufferPointer(start: namePtr, count: len)), ino: ino, type: type))
            }
        }
        entries.sort { $0.name.lexicographicallyPrecedes($1.name) }
        return entries
    }

    // MARK: xattrs

    /// The kernel has listxattrat (6.13); cleared at the first ENOSYS.
    static let haveListxattrat = Atomic<Bool>(true)

    /// Names of the extended attributes of `path` (not following a final symlink), or of `fd` when
    /// given, or of `name` in directory `dirfd` when given (listxattrat, a short lookup; the path is
    /// then only for messages and for kernels before 6.13).
    package static func listXattrs(path: [UInt8], fd: Int32 = -1, dirfd: Int32 = -1, name: [UInt8] = []) throws -> [[UInt8]] {
        var size = 1024
        while true {
            // A stack buffer: this runs once per entry of every walk, and most answers are empty.
            let names: [[UInt8]]? = try withUnsafeTemporaryAllocation(of: CChar.self, capacity: size) { buf in
                var n: Int
                if fd >= 0 {
                    n = dk_flistxattr(fd, buf.baseAddress, size)
                } else if dirfd >= 0 && haveListxattrat.load(ordering: .relaxed) {
                    n = withCString(name) { p in dk_listxattrat(dirfd, p, buf.baseAddress, size) }
                    if n < 0 && errno == ENOSYS {
                        haveListxattrat.store(false, ordering: .relaxed)
                        return nil
                    }
                } else {
                    n = withCString(path) { p in dk_llistxattr(p, buf.baseAddress, size) }
                }
                if n < 0 {
                    if errno == ERANGE { size *= 4; return nil }
                    if errno == ENOTSUP || errno == ENOENT { return [] }
                    throw SystemError("listxattr", path, errno: errno)
                }
                var names: [[UInt8]] = []
                var start = 0
                for i in 0..<n where buf[i] == 0 {
                    if i > start { names.append(buf[start..<i].map { UInt8(bitPattern: $0) }) }
                    start = i + 1
                }
                return names
            }
            if let names { return names }
        }
    }

    /// The value of one attribute, or nil when it is absent.
    package static func getXattr(path: [UInt8], fd: Int32 = -1, name: [UInt8]) throws -> [UInt8]? {
        var size = 256
        while true {
            var buf = [UInt8](repeating: 0, count: size)
            let n: Int = withCString(name) { nm in
                fd >= 0 ? dk_fgetxattr(fd, nm, &buf, size)
                    : withCString(path) { p in dk_lgetxattr(p, nm, &buf, size) }
            }
            if n < 0 {
                if errno == ERANGE { size *= 16; continue }
                if errno == ENODATA || errno == ENOTSUP || errno == ENOENT { return nil }
                throw SystemError("getxattr \(Bytes.string(name))", path, errno: errno)
            }
            return Array(buf[0..<n])
        }
    }

    /// Set an attribute on an open fd, or on a path without following a final symlink. Returns errno (0 on success).
    package static func setXattr(path: [UInt8], fd: Int32 = -1, name: [UInt8], value: [UInt8]) -> Int32 {
        let r: Int32 = withCString(name) { nm in
            value.withUnsafeBytes { v in
                fd >= 0 ? dk_fsetxattr(fd, nm, v.baseAddress, v.count)
                    : withCString(path) { p in dk_lsetxattr(p, nm, v.baseAddress, v.count) }
            }
        }
        return r == 0 ? 0 : errno
    }

    // MARK: the one error policy
    //
    // Every wrapper retries on EINTR and throws `SystemError(operation, path, errno)` naming the
    // path (`shown` where given, else the name). The `try…` variants return the errno instead
    // (0 on success) and are only for callers that branch on specific errnos (EEXIST, ENOENT, …).

    /// Throw the `SystemError` of a failed call (`r != 0`), errno read before anything else.
    @inline(__always)
    static func check(_ r: Int32, _ operation: @autoclosure () -> String, _ shown: @autoclosure () -> [UInt8]) throws {
        if r != 0 { let e = errno; throw SystemError(operation(), shown(), errno: e) }
    }

    /// The errno of a call's result: 0 on success.
    @inline(__always)
    static func errnoOf(_ r: Int32) -> Int32 { r == 0 ? 0 : errno }

    /// `mkdirat`; throws a ``SystemError``.
    package static func mkdirat(_ dirfd: Int32, _ name: [UInt8], mode: UInt32,
                               shown: @autoclosure () -> [UInt8]? = nil) throws {
        try check(tryMkdirat(dirfd, name, mode: mode) == 0 ? 0 : -1, "mkdir", shown() ?? name)
    }

    /// `mkdirat` returning the errno (0 on success), for callers that branch on EEXIST.
    package static func tryMkdirat(_ dirfd: Int32, _ name: [UInt8], mode: UInt32) -> Int32 {
        let r = withCString(name) { n in retry { Glibc.mkdirat(dirfd, n, mode_t(mode)) } }
        return r == 0 ? 0 : errno
    }

    /// `mkdir` of a path; throws a ``SystemError``.
    package static func mkdir(_ path: [UInt8], mode: UInt32) throws {
        try mkdirat(AT_FDCWD, path, mode: mode)
    }

    /// `mkdir` returning the errno (0 on success), for callers that branch on EEXIST.
    package static func tryMkdir(_ path: [UInt8], mode: UInt32) -> Int32 { tryMkdirat(AT_FDCWD, path, mode: mode) }

    /// `fchownat` without following a final symlink; throws a ``SystemError`` (`operation` names it).
    package static func fchownat(_ dirfd: Int32, _ name: [UInt8], uid: UInt32, gid: UInt32, operation: @autoclosure () -> String = "chown",
                                shown: @autoclosure () -> [UInt8]? = nil) throws {
        let r = withCString(name) { n in retry { Glibc.fchownat(dirfd, n, uid, gid, AT_SYMLINK_NOFOLLOW) } }
        try check(r, operation(), shown() ?? name)
    }

    /// `lchown` of a path; throws a ``SystemError``.
    package static func lchown(_ path: [UInt8], uid: UInt32, gid: UInt32) throws {
        try fchownat(AT_FDCWD, path, uid: uid, gid: gid)
    }

    /// `fchown` of an open descriptor; throws a ``SystemError`` naming `shown`.
    package static func fchown(_ fd: Int32, uid: UInt32, gid: UInt32, operation: @autoclosure () -> String = "chown", shown: [UInt8]) throws {
        try check(retry { Glibc.fchown(fd, uid, gid) }, operation(), shown)
    }

    /// `fchmodat` (following a final symlink, as chmod does); throws a ``SystemError``.
    package static func fchmodat(_ dirfd: Int32, _ name: [UInt8], mode: UInt32, operation: @autoclosure () -> String = "chmod",
                                shown: @autoclosure () -> [UInt8]? = nil) throws {
        let r = withCString(name) { n in retry { Glibc.fchmodat(dirfd, n, mode_t(mode), 0) } }
        try check(r, operation(), shown() ?? name)
    }

    /// `chmod` of a path; throws a ``SystemError``.
    package static func chmod(_ path: [UInt8], mode: UInt32) throws { try fchmodat(AT_FDCWD, path, mode: mode) }

    /// `fchmod` of an open descriptor; throws a ``SystemError`` naming `shown`.
    package static func fchmod(_ fd: Int32, mode: UInt32, operation: @autoclosure () -> String = "chmod", shown: [UInt8]) throws {
        try check(retry { Glibc.fchmod(fd, mode_t(mode)) }, operation(), shown)
    }

    /// `utimensat` without following a final symlink (atime, mtime); throws a ``SystemError``.
    package static func utimensat(_ dirfd: Int32, _ name: [UInt8], times: [timespec],
                                 shown: @autoclosure () -> [UInt8]? = nil) throws {
        var t = times
        let r = withCString(name) { n in retry { Glibc.utimensat(dirfd, n, &t, AT_SYMLINK_NOFOLLOW) } }
        try check(r, "utimes", shown() ?? name)
    }

    /// `futimens` (atime, mtime) of an open descriptor; throws a ``SystemError`` naming `shown`.
    package static func futimens(_ fd: Int32, times: [timespec], shown: [UInt8]) throws {
        var t = times
        try check(retry { Glibc.futimens(fd, &t) }, "utimes", shown)
    }

    /// `unlinkat` (`flags` 0 or `AT_REMOVEDIR`); throws a ``SystemError``.
    package static func unlinkat(_ dirfd: Int32, _ name: [UInt8], flags: Int32 = 0,
                                shown: @autoclosure () -> [UInt8]? = nil) throws {
        let e = tryUnlinkat(dirfd, name, flags: flags)
        if e != 0 { throw SystemError(flags & AT_REMOVEDIR != 0 ? "rmdir" : "unlink", shown() ?? name, errno: e) }
    }

    /// `unlinkat` returning the errno (0 on success), for callers that branch on ENOENT, EISDIR….
    package static func tryUnlinkat(_ dirfd: Int32, _ name: [UInt8], flags: Int32 = 0) -> Int32 {
        errnoOf(withCString(name) { n in retry { Glibc.unlinkat(dirfd, n, flags) } })
    }

    /// `unlink` of a path; throws a ``SystemError``.
    package static func unlink(_ path: [UInt8]) throws { try unlinkat(AT_FDCWD, path) }

    /// `rmdir` of a path; throws a ``SystemError``.
    package static func rmdir(_ path: [UInt8]) throws { try unlinkat(AT_FDCWD, path, flags: AT_REMOVEDIR) }

    /// `rename` of `from` over `to`; throws a ``SystemError`` naming `to`.
    package static func rename(_ from: [UInt8], _ to: [UInt8]) throws {
        let e = tryRename(from, to)
        if e != 0 { throw SystemError("rename", to, errno: e) }
    }

    /// `rename` returning the errno (0 on success), for callers that branch on ENOENT, EXDEV….
    package static func tryRename(_ from: [UInt8], _ to: [UInt8]) -> Int32 {
        errnoOf(withCString(from) { f in withCString(to) { t in retry { Glibc.rename(f, t) } } })
    }

    /// `symlinkat` making `name` in `dirfd` point at `target`; throws a ``SystemError``.
    package static func symlinkat(_ target: [UInt8], _ dirfd: Int32, _ name: [UInt8],
                                 shown: @autoclosure () -> [UInt8]? = nil) throws {
        let e = trySymlinkat(target, dirfd, name)
        if e != 0 { throw SystemError("symlink", shown() ?? name, errno: e) }
    }

    /// `symlinkat` returning the errno (0 on success), for callers that branch on EEXIST.
    package static func trySymlinkat(_ target: [UInt8], _ dirfd: Int32, _ name: [UInt8]) -> Int32 {
        errnoOf(withCString(target) { t in withCString(name) { n in retry { Glibc.symlinkat(t, dirfd, n) } } })
    }

    /// `linkat` (no flags: a final symlink is linked, not followed); throws a ``SystemError``.
    package static func linkat(_ fromDir: Int32, _ fromName: [UInt8], _ toDir: Int32, _ toName: [UInt8],
                              operation: @autoclosure () -> String = "link", shown: @autoclosure () -> [UInt8]? = nil) throws {
        let e = tryLinkat(fromDir, fromName, toDir, toName)
        if e != 0 { throw SystemError(operation(), shown() ?? toName, errno: e) }
    }

    /// `linkat` returning the errno (0 on success), for callers that branch on EEXIST.
    package static func tryLinkat(_ fromDir: Int32, _ fromName: [UInt8], _ toDir: Int32, _ toName: [UInt8]) -> Int32 {
        errnoOf(withCString(fromName) { f in withCString(toName) { t in retry { Glibc.linkat(fromDir, f, toDir, t, 0) } } })
    }

    /// `mknod` of a path (`mode` with the file type); throws a ``SystemError``.
    package static func mknod(_ path: [UInt8], mode: UInt32, dev: UInt64) throws {
        let e = mknodat(AT_FDCWD, path, mode: mode, dev: dev)
        if e != 0 { throw SystemError("mknod", path, errno: e) }
    }

    /// `ftruncate`; throws a ``SystemError`` naming `shown`.
    package static func ftruncate(_ fd: Int32, size: Int64, shown: [UInt8]) throws {
        try check(retry { Glibc.ftruncate(fd, off_t(size)) }, "truncate", shown)
    }

    /// `fsync`; throws a ``SystemError`` naming `shown`.
    package static func fsync(_ fd: Int32, shown: [UInt8]) throws {
        try check(retry { Glibc.fsync(fd) }, "fsync", shown)
    }

    /// `lseek` to `offset` from the start; throws a ``SystemError`` naming `shown`.
    package static func seek(_ fd: Int32, to offset: Int64, shown: [UInt8]) throws {
        if Glibc.lseek(fd, off_t(offset), SEEK_SET) < 0 { let e = errno; throw SystemError("lseek", shown, errno: e) }
    }

    /// `flock` (`LOCK_SH`/`LOCK_EX`, with `LOCK_NB`) returning the errno (0 on success), for
    /// callers that branch on EWOULDBLOCK; EINTR is retried.
    package static func tryFlock(_ fd: Int32, _ operation: Int32) -> Int32 {
        errnoOf(retry { flock(fd, operation) })
    }

    /// A POSIX record lock over the whole file (`fcntl` F_SETLK, `F_RDLCK`/`F_WRLCK`/`F_UNLCK`),
    /// without waiting, returning the errno (0 on success; EAGAIN or EACCES: another process
    /// holds a conflicting lock). The lock other programs take with fcntl (containers/storage's
    /// lock files), which flock does not see. EINTR is retried.
    public static func tryRecordLock(_ fd: Int32, type: Int32) -> Int32 {
        var l = Glibc.flock()
        l.l_type = Int16(type)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = 0
        l.l_len = 0
        return errnoOf(retry { fcntl(fd, F_SETLK, &l) })
    }

    /// A pipe: its read and write ends; throws a ``SystemError`` naming `shown`.
    package static func pipe(shown: [UInt8]) throws -> (read: Int32, write: Int32) {
        // Close-on-exec: a process the caller starts meanwhile (a library user's, or a mount
        // helper's child) must not hold a write end, or the reader never sees the end.
        var fds: [Int32] = [-1, -1]
        try check(dk_pipe_cloexec(&fds), "pipe", shown)
        return (fds[0], fds[1])
    }

    /// `mkdtemp`: a new directory named after `template` (ending in `XXXXXX`); its path.
    package static func makeTemporaryDirectory(_ template: [UInt8]) throws -> [UInt8] {
        var t = template.map { CChar(bitPattern: $0) } + [0]
        guard let p = t.withUnsafeMutableBufferPointer({ Glibc.mkdtemp($0.baseAddress!) }) else {
            let e = errno
            throw SystemError("mkdtemp", template, errno: e)
        }
        return Array(String(cString: p).utf8)
    }

    /// A device number from its major and minor parts.
    package static func makedev(_ major: UInt32, _ minor: UInt32) -> UInt64 { dk_makedev(major, minor) }
    /// The major part of a device number.
    package static func major(_ dev: UInt64) -> UInt32 { dk_major(dev) }
    /// The minor part of a device number.
    package static func minor(_ dev: UInt64) -> UInt32 { dk_minor(dev) }

    /// Make device, fifo or socket node `name` in `dirfd`; returns 0, or the errno on failure.
    package static func mknodat(_ dirfd: Int32, _ name: [UInt8], mode: UInt32, dev: UInt64) -> Int32 {
        let r = withCString(name) { n in dk_mknodat(dirfd, n, mode, dev) }
        return r == 0 ? 0 : errno
    }

    /// `copy_file_range(2)` of up to `count` bytes at both descriptors' offsets; returns the bytes
    /// copied, 0 at end of file, -1 on failure (see `errno`).
    package static func copyFileRange(from: Int32, to: Int32, count: Int) -> Int {
        dk_copy_file_range(from, to, count)
    }

    /// Share `src`'s data with `dst` (the `FICLONE` reflink ioctl); false where the filesystem cannot.
    package static func ficlone(dst: Int32, src: Int32) -> Bool { dk_ficlone(dst, src) == 0 }

    /// When `fd` is a pipe, let it hold `size` bytes, so a writer of large chunks does not stall
    /// on every 64 KiB the reader has not taken yet (best effort; limited by pipe-max-size).
    package static func growPipe(_ fd: Int32, to size: Int32 = 1 << 20) {
        var st = stat()
        guard Glibc.fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else { return }
        _ = dk_set_pipe_size(fd, size)
    }

    /// The `f_type` magic number of the filesystem holding `fd` (`fstatfs(2)`), nil on failure.
    package static func filesystemType(_ fd: Int32) -> Int64? {
        var t: Int64 = 0
        return dk_statfs_type(fd, &t) == 0 ? t : nil
    }
}
