// TreeStamp: a fingerprint of a tree's state, to tell whether anything changed since it was taken.
import DiffKitArchive
import DiffKitSystem
#if canImport(Glibc)
import Glibc
#endif

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
