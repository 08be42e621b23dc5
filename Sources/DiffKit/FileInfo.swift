// FileInfo: what one fstatat gives about an entry, read once per inode and carried along
// (walk → change → tar header) so nothing is stat'ed twice.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

public struct FileInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symlink, characterDevice, blockDevice, fifo, socket
    }

    public var kind: Kind
    /// Permission and suid/sgid/sticky bits (07777).
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var mtime: Int64
    public var mtimeNanoseconds: Int32
    public var atime: Int64
    public var atimeNanoseconds: Int32
    /// Status change time: moves with every change to the inode (data, owner, mode, xattrs, links).
    public var ctime: Int64
    public var ctimeNanoseconds: Int32
    public var inode: UInt64
    public var device: UInt64
    public var links: UInt64
    public var rdev: UInt64

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

/// Byte-path helpers. Layer paths are relative (`a/b`), bytes, never with a leading `/`.
public enum LayerPath {
    public static let slash = UInt8(ascii: "/")

    public static func join(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] {
        dir.isEmpty ? name : dir + [slash] + name
    }

    /// (parent, base) of a relative path.
    public static func split(_ path: [UInt8]) -> ([UInt8], [UInt8]) {
        guard let i = path.lastIndex(of: slash) else { return ([], path) }
        return (Array(path[..<i]), Array(path[(i + 1)...]))
    }

    /// Lexical clean as Go's filepath.Clean, returning the components; `..` that would climb
    /// above the start is kept as a leading `..` so the caller can refuse it.
    public static func components(_ name: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for part in name.split(separator: slash, omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.first == UInt8(ascii: ".") && part.last == UInt8(ascii: ".") {
                if let last = out.last, last != [UInt8(ascii: "."), UInt8(ascii: ".")] { out.removeLast() } else if name.first != slash {
                    out.append(Array(part))
                }
                continue
            }
            out.append(Array(part))
        }
        return out
    }
}
