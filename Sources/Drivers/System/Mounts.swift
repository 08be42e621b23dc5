// Mounts: the kernel calls the overlay2 and aufs drivers need, as thin wrappers that
// throw `SystemError`s naming the path.
import CDriverSystem
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

extension Sys {
    package static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The kernel release (`uname -r`) as numbers: "6.8.0-xyz" → [6, 8, 0].
    package static func kernelVersion() -> [Int] {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return release.split(whereSeparator: { !$0.isNumber }).prefix(3).compactMap { Int($0) }
    }

    /// mount(2) of an overlay on `target` with `data` as its options.
    package static func mountOverlay(target: [UInt8], data: String) throws {
        let r = withCString(target) { Glibc.mount("overlay", $0, "overlay", 0, data) }
        if r != 0 { throw SystemError("mount overlay", target, errno: errno) }
    }

    /// mount(2) of an overlay whose `data` holds paths relative to `directory` (the mount runs
    /// in a child process that changes into it; this process's working directory is untouched).
    package static func mountOverlay(from directory: [UInt8], target: [UInt8], data: String) throws {
        let r = withCString(directory) { d in withCString(target) { dk_mount_overlay_from(d, $0, data) } }
        if r != 0 { throw SystemError("mount overlay (from \(Bytes.string(directory)))", target, errno: r) }
    }

    /// An overlay mounted with the new mount API: every (key, value) pair is one fsconfig call
    /// (value nil: a flag), so a list of `lowerdir+` entries has no length limit as a whole.
    package static func mountOverlay(target: [UInt8], parameters: [(String, String?)]) throws {
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
    package static func unmount(_ target: [UInt8], detach: Bool = true) throws {
        if withCString(target, { umount2($0, detach ? Int32(MNT_DETACH) : 0) }) != 0 {
            throw SystemError("umount", target, errno: errno)
        }
    }

    /// Whether `path` is the root of a mount (its device differs from its parent's, or it is
    /// its own parent).
    package static func isMountPoint(_ path: [UInt8]) -> Bool {
        guard let st = try? fstatat(AT_FDCWD, path), let up = try? fstatat(AT_FDCWD, path + Bytes.of("/..")) else { return false }
        return st.st_dev != up.st_dev || st.st_ino == up.st_ino
    }
}

extension Sys {
    /// mount(2) of any filesystem (`flags`: MS_* such as MS_REMOUNT).
    package static func mount(source: String, target: [UInt8], type: String, flags: UInt, data: String) throws {
        let r = withCString(target) { Glibc.mount(source, $0, type, flags, data) }
        if r != 0 { throw SystemError("mount \(type)", target, errno: errno) }
    }
}
