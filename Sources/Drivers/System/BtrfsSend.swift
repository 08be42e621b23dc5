// The btrfs ioctls of send diffs, as thin wrappers that throw `SystemError`s naming the path.
import CDriverSystem
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

extension Btrfs {
    /// BTRFS_SEND_FLAG_NO_FILE_DATA: UPDATE_EXTENT (path, offset, length) instead of WRITE with the data.
    static let sendNoFileData: UInt64 = 0x1

    /// A read-only snapshot of the subvolume open as `source`, as `name` in directory `dirfd`.
    static func readOnlySnapshot(_ source: Int32, into dirfd: Int32, _ name: String, shown: [UInt8]) throws {
        if dk_btrfs_snapshot_readonly(source, dirfd, name) != 0 { throw SystemError("create read-only btrfs snapshot", shown, errno: errno) }
    }

    /// Write the send stream of the read-only subvolume `fd` against the read-only subvolume
    /// `parent` (its id) to `out` (returns when the stream is complete).
    static func send(_ fd: Int32, to out: Int32, parent: UInt64, flags: UInt64, shown: [UInt8]) throws {
        if dk_btrfs_send(fd, out, parent, flags) != 0 { throw SystemError("btrfs send", shown, errno: errno) }
    }

    /// What GET_SUBVOL_INFO says of a subvolume.
    struct SubvolumeInfo: Equatable {
        /// Its id (tree id).
        var id: UInt64
        /// Its UUID, and the UUID of the subvolume it is a snapshot of (zeros for none).
        var uuid: [UInt8], parentUUID: [UInt8]
        /// The transaction of its last change (every update of one of its inodes moves it; data
        /// written and not yet flushed moves it when flushed) and the one that made it.
        var ctransid: UInt64, otransid: UInt64
        /// BTRFS_SUBVOL_RDONLY is set.
        var readOnly: Bool
    }

    /// What GET_SUBVOL_INFO says of the subvolume `fd` is in.
    static func subvolumeInfo(_ fd: Int32, shown: [UInt8]) throws -> SubvolumeInfo {
        var s = dk_btrfs_subvol()
        if dk_btrfs_subvol_info(fd, &s) != 0 { throw SystemError("read btrfs subvolume info", shown, errno: errno) }
        let uuid = withUnsafeBytes(of: s.uuid) { Array($0) }, parent = withUnsafeBytes(of: s.parent_uuid) { Array($0) }
        return SubvolumeInfo(id: s.id, uuid: uuid, parentUUID: parent, ctransid: s.ctransid, otransid: s.otransid,
                             readOnly: s.flags & 1 /* BTRFS_SUBVOL_RDONLY */ != 0)
    }

    /// Flush the filesystem of `fd` (syncfs: dirty data written, the running transaction
    /// committed; next to nothing when nothing is dirty).
    static func syncFilesystem(_ fd: Int32, shown: [UInt8]) throws {
        if dk_syncfs(fd) != 0 { throw SystemError("syncfs", shown, errno: errno) }
    }

    /// How `rename` treats an existing target.
    enum RenameMode: UInt32 {
        /// RENAME_NOREPLACE: fail with EEXIST.
        case noReplace = 1
        /// RENAME_EXCHANGE: swap the two names (both must exist).
        case exchange = 2
    }

    /// renameat2 of `from` to `to`, both in directory `dirfd`: 0 or the errno.
    static func rename(_ dirfd: Int32, _ from: String, _ to: String, _ mode: RenameMode) -> Int32 {
        Sys.withCString(Bytes.of(from)) { f in
            Sys.withCString(Bytes.of(to)) { t in dk_renameat2(dirfd, f, dirfd, t, mode.rawValue) == 0 ? 0 : errno }
        }
    }

    /// Every path of inode `inode` in the subvolume of `fd`, relative to its root.
    static func inodePaths(_ fd: Int32, _ inode: UInt64, shown: [UInt8]) throws -> [[UInt8]] {
        let size = 1 << 16
        var out = [UInt8](repeating: 0, count: size)
        let n = out.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: size) { dk_btrfs_ino_paths(fd, inode, $0, size) }
        }
        if n < 0 { throw SystemError("look up the paths of inode \(inode)", shown, errno: errno) }
        return out[0..<Int(n)].split(separator: 0, omittingEmptySubsequences: true).map(Array.init)
    }
}
