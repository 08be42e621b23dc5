// Sizes (BEHAVIOUR.md §6): ChangesSize for naive DiffSize, directory.Size for native drivers.

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
    public static func directorySize(_ root: [UInt8]) throws -> Int64 {
        var seen = Set<UInt64>()
        var total: Int64 = 0
        try Walker.walk(root: root, visit: { _, _, info in
            if !info.isDirectory && info.size > 0 && seen.insert(info.inode).inserted { total += info.size }
            return .descend
        })
        return total
    }
}
