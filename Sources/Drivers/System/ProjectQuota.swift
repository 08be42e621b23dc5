// xfs project quotas: the project of a directory tree and its block limit.
import CDriverSystem
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// xfs project quotas (moby's quota.Control): a directory tree gets a project ID (inherited by
/// everything made below it) and the project a block limit.
enum ProjectQuota {
    static func project(of fd: Int32, shown: [UInt8]) throws -> UInt32 {
        var id: UInt32 = 0
        if dk_get_project(fd, &id) != 0 { throw SystemError("get project id", shown, errno: errno) }
        return id
    }

    static func setProject(_ fd: Int32, _ id: UInt32, shown: [UInt8]) throws {
        if dk_set_project(fd, id) != 0 { throw SystemError("set project id \(id)", shown, errno: errno) }
    }

    /// Limit project `id` to `bytes` on the filesystem of `fsfd` (`device`: the block device
    /// node, used only where quotactl_fd is missing).
    static func setLimit(fsfd: Int32, device: [UInt8]?, id: UInt32, bytes: UInt64, shown: [UInt8]) throws {
        let r = device.map { d in Sys.withCString(d) { dk_project_set_limit(fsfd, $0, id, bytes) } }
            ?? dk_project_set_limit(fsfd, nil, id, bytes)
        if r != 0 { throw SystemError("set project quota \(id)", shown, errno: errno) }
    }

    /// (limit, used) bytes of project `id`.
    static func usage(fsfd: Int32, device: [UInt8]?, id: UInt32, shown: [UInt8]) throws -> (limit: UInt64, used: UInt64) {
        var limit: UInt64 = 0, used: UInt64 = 0
        let r = device.map { d in Sys.withCString(d) { dk_project_get(fsfd, $0, id, &limit, &used) } }
            ?? dk_project_get(fsfd, nil, id, &limit, &used)
        if r != 0 { throw SystemError("get project quota \(id)", shown, errno: errno) }
        return (limit, used)
    }
}
