// ID-mapped mounts: the kernel calls behind mapped layer views, as thin wrappers that throw
// `SystemError`s naming the path. Which mapping and what to mount is decided by the caller.
import CDriverSystem
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// One range of an ID mapping as a user namespace writes it: `count` IDs from `inside` (the ID a
/// file has on disk, seen from the mount) shown as `outside` onwards.
struct NamespaceRange: Sendable, Equatable {
    var inside: UInt32
    var outside: UInt32
    var count: UInt32

    init(inside: UInt32, outside: UInt32, count: UInt32) {
        self.inside = inside
        self.outside = outside
        self.count = count
    }
}

/// A user namespace holding an ID mapping, open as a descriptor; closed by `close()`.
struct UserNamespace: ~Copyable {
    let fd: Int32

    /// A new user namespace with these uid and gid ranges (an empty list maps every ID to
    /// itself). Needs CAP_SETUID and CAP_SETGID.
    init(uids: [NamespaceRange], gids: [NamespaceRange]) throws {
        func text(_ ranges: [NamespaceRange]) -> String {
            ranges.isEmpty ? "0 0 4294967295\n" : ranges.map { "\($0.inside) \($0.outside) \($0.count)\n" }.joined()
        }
        let fd = dk_userns_open(text(uids), text(gids))
        if fd < 0 { throw SystemError("make a user namespace with the ID map", Bytes.of("/proc/self/ns/user"), errno: errno) }
        self.fd = fd
    }

    deinit { Glibc.close(fd) }
}

extension Sys {
    /// A detached copy of the mount of directory `path`, ID-mapped through `userns`: its files
    /// show the owners the namespace maps their on-disk IDs to; files created through it are
    /// stored with the IDs mapped back. Returns the mount's descriptor (attach it with
    /// `attachMount`, close it after). Fails with ENOSYS where the kernel has no mount_setattr
    /// and EINVAL where the filesystem cannot be ID-mapped.
    static func idmappedTree(_ path: [UInt8], userns: borrowing UserNamespace) throws -> Int32 {
        let fd = withCString(path) { dk_idmapped_tree($0, userns.fd) }
        if fd < 0 { throw SystemError("ID-mapped mount (open_tree, mount_setattr)", path, errno: errno) }
        return fd
    }

    /// Attach the detached mount `mountFd` on directory `target` (move_mount).
    static func attachMount(_ mountFd: Int32, on target: [UInt8]) throws {
        if withCString(target, { dk_move_mount(mountFd, $0) }) != 0 { throw SystemError("move_mount", target, errno: errno) }
    }

    /// mount(2) of an overlay whose `data` holds paths relative to `directory`, by a child
    /// process whose filesystem IDs are `fsuid`/`fsgid`: overlay writes its work dir and copy-ups
    /// with its creator's IDs, which must have a mapping on an ID-mapped upper layer.
    static func mountOverlay(from directory: [UInt8], target: [UInt8], data: String, fsuid: UInt32, fsgid: UInt32) throws {
        let r = withCString(directory) { d in withCString(target) { dk_mount_overlay_mapped(d, $0, data, fsuid, fsgid) } }
        if r != 0 { throw SystemError("mount overlay on ID-mapped layers (from \(Bytes.string(directory)))", target, errno: r) }
    }

    /// A bind mount of `source` on `target` (MS_BIND).
    package static func bindMount(_ source: [UInt8], on target: [UInt8]) throws {
        let r = withCString(source) { s in withCString(target) { Glibc.mount(s, $0, nil, UInt(MS_BIND), nil) } }
        if r != 0 { throw SystemError("bind mount of \(Bytes.string(source))", target, errno: errno) }
    }
}

extension Sys {
    /// Whether `path` is the root of a mount, bind mounts of a directory of the same filesystem
    /// included (its mount ID differs from its parent's); false where it does not exist.
    package static func isMountRoot(_ path: [UInt8]) -> Bool {
        var own: UInt64 = 0, up: UInt64 = 0
        guard withCString(path, { dk_mount_id($0, &own) }) == 0 else { return false }
        guard withCString(path + Bytes.of("/.."), { dk_mount_id($0, &up) }) == 0 else { return isMountPoint(path) }
        return own != up || isMountPoint(path)
    }
}
