// FileInfo: what one fstatat gives about an entry, read once per inode and carried along
// (walk → change → tar header) so nothing is stat'ed twice.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// What one `fstatat` tells about an entry: type, mode, owner, size, times, inode and device.
public struct FileInfo: Sendable, Equatable {
    /// The type of a file.
    public enum Kind: Sendable, Equatable {
        /// Regular file, directory, symbolic link, character or block device, fifo or socket.
        case regular, directory, symlink, characterDevice, blockDevice, fifo, socket
    }

    /// The type of the entry.
    public var kind: Kind
    /// Permission and suid/sgid/sticky bits (07777).
    public var permissions: UInt32
    /// Owner user ID (host ID, as stored on disk).
    public var uid: UInt32
    /// Owner group ID (host ID, as stored on disk).
    public var gid: UInt32
    /// Size in bytes (for a symlink, the length of its target).
    public var size: Int64
    /// Modification time, seconds since the epoch.
    public var mtime: Int64
    /// Nanoseconds of the modification time.
    public var mtimeNanoseconds: Int32
    /// Access time, seconds since the epoch.
    public var atime: Int64
    /// Nanoseconds of the access time.
    public var atimeNanoseconds: Int32
    /// Status change time: moves with every change to the inode (data, owner, mode, xattrs, links).
    public var ctime: Int64
    /// Nanoseconds of the status change time.
    public var ctimeNanoseconds: Int32
    /// Inode number.
    public var inode: UInt64
    /// Device of the filesystem holding the entry.
    public var device: UInt64
    /// Number of hard links.
    public var links: UInt64
    /// Device number a character or block device stands for (0 otherwise).
    public var rdev: UInt64

    /// The information of a `stat` result.
    public init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        case S_IFCHR: kind = .characterDevice
        case S_IFBLK: kind = .blockDevice
        case S_IFIFO: kind = .fifo
        case S_IFSOCK: kind = .socket
        default: kind = .regular
        }
        permissions = UInt32(st.st_mode) & 0o7777
        uid = st.st_uid
        gid = st.st_gid
        size = Int64(st.st_size)
        mtime = Int64(st.st_mtim.tv_sec)
        mtimeNanoseconds = Int32(st.st_mtim.tv_nsec)
        atime = Int64(st.st_atim.tv_sec)
        atimeNanoseconds = Int32(st.st_atim.tv_nsec)
        ctime = Int64(st.st_ctim.tv_sec)
        ctimeNanoseconds = Int32(st.st_ctim.tv_nsec)
        inode = UInt64(st.st_ino)
        device = UInt64(st.st_dev)
        links = UInt64(st.st_nlink)
        rdev = UInt64(st.st_rdev)
    }

    /// Whether the entry is a directory.
    public var isDirectory: Bool { kind == .directory }

    /// `S_IFMT` type bits of the kind, for comparing full modes.
    var typeBits: UInt32 {
        switch kind {
        case .regular: return UInt32(S_IFREG)
        case .directory: return UInt32(S_IFDIR)
        case .symlink: return UInt32(S_IFLNK)
        case .characterDevice: return UInt32(S_IFCHR)
        case .blockDevice: return UInt32(S_IFBLK)
        case .fifo: return UInt32(S_IFIFO)
        case .socket: return UInt32(S_IFSOCK)
        }
    }

    /// The same inode, untouched since a snapshot copied it: on a btrfs snapshot an unchanged file
    /// keeps its inode number and every timestamp, and any change moves its ctime.
    public func isUnchangedSnapshot(of other: FileInfo) -> Bool {
        inode == other.inode && kind == other.kind && size == other.size && mtime == other.mtime
            && mtimeNanoseconds == other.mtimeNanoseconds && ctime == other.ctime && ctimeNanoseconds == other.ctimeNanoseconds
    }

    /// Overlay's whiteout: a character device 0/0.
    public var isOverlayWhiteout: Bool { kind == .characterDevice && rdev == 0 }
}
