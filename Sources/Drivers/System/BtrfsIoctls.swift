// btrfs ioctls, as thin wrappers that throw `SystemError`s naming the path.
import CDriverSystem
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

enum Btrfs {
    /// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
    static let subvolumeRootInode: UInt64 = 256

    /// A new, empty subvolume `name` in directory `dirfd`.
    static func createSubvolume(_ dirfd: Int32, _ name: String, shown: [UInt8]) throws {
        if dk_btrfs_subvol_create(dirfd, name) != 0 { throw SystemError("create btrfs subvolume", shown, errno: errno) }
    }

    /// A writable snapshot of the subvolume open as `source`, as `name` in directory `dirfd`.
    static func snapshot(_ source: Int32, into dirfd: Int32, _ name: String, shown: [UInt8]) throws {
        if dk_btrfs_snapshot(source, dirfd, name) != 0 { throw SystemError("create btrfs snapshot", shown, errno: errno) }
    }

    /// Delete subvolume `name` of directory `dirfd` (it must hold no other subvolume).
    static func destroySubvolume(_ dirfd: Int32, _ name: String, shown: [UInt8]) throws {
        if dk_btrfs_subvol_destroy(dirfd, name) != 0 { throw SystemError("destroy btrfs subvolume", shown, errno: errno) }
    }

    static func setQuota(_ fd: Int32, enabled: Bool, shown: [UInt8]) throws {
        if dk_btrfs_quota_ctl(fd, enabled ? 1 : 0) != 0 {
            throw SystemError(enabled ? "enable btrfs quota" : "disable btrfs quota", shown, errno: errno)
        }
    }

    /// Whether quotas are on for the filesystem of `fd` (the qgroup status item, read with TREE_SEARCH).
    static func quotaEnabled(_ fd: Int32, shown: [UInt8]) throws -> Bool {
        let r = dk_btrfs_quota_status(fd)
        if r < 0 { throw SystemError("read btrfs quota status", shown, errno: errno) }
        return r == 1
    }

    static func rescanQuota(_ fd: Int32, shown: [UInt8]) throws {
        if dk_btrfs_quota_rescan_wait(fd) != 0 { throw SystemError("rescan btrfs quota", shown, errno: errno) }
    }

    /// Limit the referenced bytes of the subvolume `fd` is in (its level-0 qgroup).
    static func limitReferenced(_ fd: Int32, bytes: UInt64, shown: [UInt8]) throws {
        if dk_btrfs_qgroup_limit(fd, bytes) != 0 { throw SystemError("set btrfs qgroup limit", shown, errno: errno) }
    }

    static func destroyQgroup(_ fd: Int32, _ id: UInt64, shown: [UInt8]) throws {
        if dk_btrfs_qgroup_destroy(fd, id) != 0 { throw SystemError("destroy btrfs qgroup 0/\(id)", shown, errno: errno) }
    }

    /// The id of the subvolume `fd` is in.
    static func subvolumeID(_ fd: Int32, shown: [UInt8]) throws -> UInt64 {
        var id: UInt64 = 0
        if dk_btrfs_subvol_id(fd, &id) != 0 { throw SystemError("look up btrfs subvolume id", shown, errno: errno) }
        return id
    }

    /// The btrfs-progs version libbtrfs-dev was built from, and its library version.
    static var buildVersion: String { String(cString: dk_btrfs_build_version()) }
    static var libraryVersion: Int { Int(dk_btrfs_lib_version()) }
}
