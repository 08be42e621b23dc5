// Sizes (moby's pkg/archive ChangesSize and pkg/directory Size): ChangesSize for naive DiffSize, directory.Size for native drivers.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Sizes of layers: the DiffSize of a change list and the disk use of a directory, in bytes.
public enum Sizes {
    /// Bytes of added and modified non-directories (symlinks by target length), each inode once.
    public static func changesSize(_ changes: [Change]) -> Int64 {
        var seen = Set<UInt64>()
        var total: Int64 = 0
        for c in changes where c.kind != .delete && !c.isLinkPeer {
            guard let i = c.info, !i.isDirectory else { continue }
            if i.links > 1 && !seen.insert(i.inode).inserted { continue }
            total += i.size
        }
        return total
    }

    /// Sum of the sizes of every non-directory below `root`, once per inode (moby's directory.Size).
    package static func directorySize(_ root: [UInt8]) throws -> Int64 { try directoryUsage(root).size }

    /// containers/storage's directory.Usage: the bytes of `directorySize` and the number of
    /// distinct inodes of the tree, `root` and directories included.
    package static func directoryUsage(_ root: [UInt8]) throws -> (size: Int64, inodes: Int64) {
        var seen: Set<UInt64> = [UInt64(try Sys.fstatat(AT_FDCWD, root).st_ino)]
        var total: Int64 = 0
        try Walker.walk(root: root, visit: { _, _, info in
            if seen.insert(info.inode).inserted && !info.isDirectory { total += info.size }
            return .descend
        })
        return (total, Int64(seen.count))
    }
}

/// A fingerprint of a tree's state: every entry's path, inode, type and mode, owner, size, mtime
/// and ctime (ctime moves with any change of content or metadata, and cannot be set back), so
/// an equal stamp means nothing was changed, added or removed since it was taken.
package enum TreeStamp {
    /// The stamp of the tree below `root`, as a hex string; throws a `SystemError` if it cannot be walked.
    package static func of(_ root: [UInt8]) throws -> String {
        var h: UInt64 = 0xcbf29ce484222325
        func mix(_ v: UInt64) {
            var v = v
            for _ in 0..<8 { h = (h ^ (v & 0xFF)) &* 0x100000001b3; v >>= 8 }
        }
        try Walker.walk(root: root, visit: { dir, name, info in
            for b in dir.path { h = (h ^ UInt64(b)) &* 0x100000001b3 }
            mix(0x2F)
            for b in name { h = (h ^ UInt64(b)) &* 0x100000001b3 }
            mix(info.inode); mix(UInt64(info.permissions) | UInt64(info.isDirectory ? 1 << 20 : 0))
            mix(UInt64(info.uid) << 32 | UInt64(info.gid)); mix(UInt64(bitPattern: info.size)); mix(info.links)
            mix(UInt64(bitPattern: info.mtime)); mix(UInt64(UInt32(bitPattern: info.mtimeNanoseconds)))
            mix(UInt64(bitPattern: info.ctime)); mix(UInt64(UInt32(bitPattern: info.ctimeNanoseconds)))
            return .descend
        })
        return String(h, radix: 16)
    }
}
