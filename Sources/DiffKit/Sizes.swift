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
        var size = ChangesSize()
        for c in changes { size.add(c) }
        return size.total
    }

    /// ``changesSize(_:)`` counted as the changes come (from a stream of them).
    public struct ChangesSize: Sendable {
        /// The bytes counted so far.
        public private(set) var total: Int64 = 0
        private var seen = Set<UInt64>()

        /// Nothing counted yet.
        public init() {}

        /// Count `c`: an added or modified non-directory, once per inode.
        public mutating func add(_ c: Change) {
            guard c.kind != .delete, !c.isLinkPeer, let i = c.info, !i.isDirectory else { return }
            if i.links > 1 && !seen.insert(i.inode).inserted { return }
            total += i.size
        }
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
