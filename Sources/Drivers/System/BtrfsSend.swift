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

    /// The id, UUID and parent UUID (the UUID of the subvolume it is a snapshot of; zeros for none).
    static func subvolumeInfo(_ fd: Int32, shown: [UInt8]) throws -> (id: UInt64, uuid: [UInt8], parentUUID: [UInt8]) {
        var id: UInt64 = 0
        var uuid = [UInt8](repeating: 0, count: 16), parent = [UInt8](repeating: 0, count: 16)
        if dk_btrfs_subvol_info(fd, &id, &uuid, &parent) != 0 { throw SystemError("read btrfs subvolume info", shown, errno: errno) }
        return (id, uuid, parent)
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
