// Mounts and project quotas: the kernel calls the overlay2 driver needs, as thin wrappers that
// throw `SystemError`s naming the path.
import CDiffKitShim

#if canImport(Glibc)
import Glibc
#endif

extension Sys {
    public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The kernel release (`uname -r`) as numbers: "6.8.0-xyz" → [6, 8, 0].
    public static func kernelVersion() -> [Int] {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return release.split(whereSeparator: { !$0.isNumber }).prefix(3).compactMap { Int($0) }
    }

    /// mount(2) of an overlay on `target` with `data` as its options.
    public static func mountOverlay(target: [UInt8], data: String) throws {
        let r = withCString(target) { Glibc.mount("overlay", $0, "overlay", 0, data) }
        if r != 0 { throw SystemError("mount overlay", target, errno: errno) }
    }

    /// mount(2) of an overlay whose `data` holds paths relative to `directory` (the mount runs
    /// in a child process that changes into it; this process's working directory is untouched).
    public static func mountOverlay(from directory: [UInt8], target: [UInt8], data: String) throws {
        let r = withCString(directory) { d in withCString(target) { dk_mount_overlay_from(d, $0, data) } }
        if r != 0 { throw SystemError("mount overlay (from \(Bytes.string(directory)))", target, errno: r) }
    }

    /// An overlay mounted with the new mount API: every (key, value) pair is one fsconfig call
    /// (value nil: a flag), so a list of `lowerdir+` entries has no length limit as a whole.
    public static func mountOverlay(target: [UInt8], parameters: [(String, String?)]) throws {
        let fs = dk_fsopen("overlay")
        if fs < 0 { throw SystemError("fsopen overlay", target, errno: errno) }
        defer { close(fs) }
        for (key, value) in parameters {
            let r = value.map { dk_fsconfig_string(fs, key, $0) } ?? dk_fsconfig_flag(fs, key)
            if r != 0 { throw SystemError("fsconfig \(key)\(value.map { "=" + $0 } ?? "")", target, errno: errno) }
        }
        if dk_fsconfig_create(fs) != 0 { throw SystemError("fsconfig create overlay", target, errno: errno) }
        let m = dk_fsmount(fs)
        if m < 0 { throw SystemError("fsmount overlay", target, errno: errno) }
        defer { close(m) }
        if withCString(target, { dk_move_mount(m, $0) }) != 0 { throw SystemError("move_mount", target, errno: errno) }
    }

    /// umount2(2); `detach` lazily (MNT_DETACH), so other mount namespaces drop it too.
    public static func unmount(_ target: [UInt8], detach: Bool = true) throws {
        if withCString(target, { umount2($0, detach ? Int32(MNT_DETACH) : 0) }) != 0 {
            throw SystemError("umount", target, errno: errno)
        }
    }

    /// Whether `path` is the root of a mount (its device differs from its parent's, or it is
    /// its own parent).
    public static func isMountPoint(_ path: [UInt8]) -> Bool {
        guard let st = try? fstatat(AT_FDCWD, path), let up = try? fstatat(AT_FDCWD, path + Bytes.of("/..")) else { return false }
        return st.st_dev != up.st_dev || st.st_ino == up.st_ino
    }
}

/// xfs project quotas (moby's quota.Control): a directory tree gets a project ID (inherited by
/// everything made below it) and the project a block limit.
public enum ProjectQuota {
    public static func project(of fd: Int32, shown: [UInt8]) throws -> UInt32 {
        var id: UInt32 = 0
        if dk_get_project(fd, &id) != 0 { throw SystemError("get project id", shown, errno: errno) }
        return id
    }

    public static func setProject(_ fd: Int32, _ id: UInt32, shown: [UInt8]) throws {
        if dk_set_project(fd, id) != 0 { throw SystemError("set project id \(id)", shown, errno: errno) }
    }

    /// Limit project `id` to `bytes` on the filesystem of `fsfd` (`device`: the block device
    /// node, used only where quotactl_fd is missing).
    public static func setLimit(fsfd: Int32, device: [UInt8]?, id: UInt32, bytes: UInt64, shown: [UInt8]) throws {
        let r = device.map { d in Sys.withCString(d) { dk_project_set_limit(fsfd, $0, id, bytes) } }
            ?? dk_project_set_limit(fsfd, nil, id, bytes)
        if r != 0 { throw SystemError("set project quota \(id)", shown, errno: errno) }
    }

    /// (limit, used) bytes of project `id`.
    public static func usage(fsfd: Int32, device: [UInt8]?, id: UInt32, shown: [UInt8]) throws -> (limit: UInt64, used: UInt64) {
        var limit: UInt64 = 0, used: UInt64 = 0
        let r = device.map { d in Sys.withCString(d) { dk_project_get(fsfd, $0, id, &limit, &used) } }
            ?? dk_project_get(fsfd, nil, id, &limit, &used)
        if r != 0 { throw SystemError("get project quota \(id)", shown, errno: errno) }
        return (limit, used)
    }
}

extension Sys {
    /// mount(2) of any filesystem (`flags`: MS_* such as MS_REMOUNT).
    public static func mount(source: String, target: [UInt8], type: String, flags: UInt, data: String) throws {
        let r = withCString(target) { Glibc.mount(source, $0, type, flags, data) }
        if r != 0 { throw SystemError("mount \(type)", target, errno: errno) }
    }
}
