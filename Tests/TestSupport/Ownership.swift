// ID maps for ownership tests, and the walk that checks them: which inodes of a tree are owned
// by a host ID outside a map.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

public enum Ownership {
    /// One range for both kinds of ID (the common user-namespace map).
    public static let single = IDMap(uids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)],
                                     gids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)])
    public static let singleFlags = "--uid-map 0:100000:65536 --gid-map 0:100000:65536"
    /// Several ranges, uids and gids apart, none starting at the same host ID.
    public static let multi = IDMap(
        uids: [IDRange(containerID: 0, hostID: 200_000, size: 1), IDRange(containerID: 1, hostID: 300_000, size: 2),
               IDRange(containerID: 3, hostID: 400_000, size: 65533)],
        gids: [IDRange(containerID: 0, hostID: 500_000, size: 7), IDRange(containerID: 7, hostID: 600_000, size: 1),
               IDRange(containerID: 8, hostID: 700_000, size: 65528)])
    public static let multiFlags = "--uid-map 0:200000:1 --uid-map 1:300000:2 --uid-map 3:400000:65533 "
        + "--gid-map 0:500000:7 --gid-map 7:600000:1 --gid-map 8:700000:65528"

    /// "path uid:gid" of every inode at or below each of `roots` (the roots included) whose uid
    /// or gid is a host ID outside `map`; symlinks are not followed.
    public static func outside(_ roots: [String], _ map: IDMap) throws -> [String] {
        var found: [String] = []
        func check(_ path: String, _ uid: UInt32, _ gid: UInt32) {
            if !map.containsHost(uid: uid) || !map.containsHost(gid: gid) { found.append("\(path) \(uid):\(gid)") }
        }
        for root in roots {
            let st = try Sys.fstatat(AT_FDCWD, Bytes.of(root))
            check(root, st.st_uid, st.st_gid)
            try Walker.walk(root: Bytes.of(root), visit: { dir, name, info in
                check(Bytes.string(dir.absoluteChild(name)), info.uid, info.gid)
                return .descend
            })
        }
        return found
    }

    public static func outside(_ root: String, _ map: IDMap) throws -> [String] { try outside([root], map) }

    /// "uid:gid" of a path (not following a symlink).
    public static func owner(_ path: String) throws -> String {
        let st = try Sys.fstatat(AT_FDCWD, Bytes.of(path))
        return "\(st.st_uid):\(st.st_gid)"
    }
}
