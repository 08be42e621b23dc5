// TarHeader: one tar entry as a value, the only shape in which entries leave DiffKitArchive.
import DiffKitSystem

/// An extended attribute: its name (`user.x`, `security.capability`) and value, as bytes.
public struct Xattr: Sendable, Equatable, Hashable {
    /// The attribute's full name, with its namespace.
    public var name: [UInt8]
    /// The attribute's value.
    public var value: [UInt8]
    /// An attribute of this name and value.
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// One tar entry's header as a value: name, type, mode, owner, times, device, xattrs.
public struct TarHeader: Sendable, Equatable {
    /// The type of a tar entry.
    public enum Kind: Sendable, Equatable {
        /// Regular file, directory, symbolic link, hard link, character or block device, fifo.
        case regular, directory, symlink, hardlink, characterDevice, blockDevice, fifo
    }

    /// The name as stored (bytes, directories usually with a trailing `/`).
    public var name: [UInt8]
    /// The type of the entry.
    public var kind: Kind
    /// Symlink target or hardlink source.
    public var linkName: [UInt8] = []
    /// Permission and suid/sgid/sticky bits (07777); the writer adds type bits if asked.
    public var mode: UInt32 = 0
    /// Owner user ID as the archive gives it (container IDs in a layer).
    public var uid: Int = 0
    /// Owner group ID as the archive gives it (container IDs in a layer).
    public var gid: Int = 0
    /// Owner user name (empty when the archive has none).
    public var userName: [UInt8] = []
    /// Owner group name (empty when the archive has none).
    public var groupName: [UInt8] = []
    /// Bytes of data that follow the header (0 for every kind but regular).
    public var size: Int64 = 0
    /// Modification time, seconds since the epoch.
    public var mtime: Int64 = 0
    /// Nanoseconds of the modification time, where the archive carries them (PAX records).
    public var mtimeNanoseconds: Int32 = 0
    /// Access time when the archive carries one.
    public var atime: Int64? = nil
    /// Major device number of a character or block device.
    public var devMajor: UInt32 = 0
    /// Minor device number of a character or block device.
    public var devMinor: UInt32 = 0
    /// Extended attributes (`SCHILY.xattr.*` PAX records).
    public var xattrs: [Xattr] = []

    /// A header of this name and type; everything else zero or empty.
    public init(name: [UInt8], kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// The name as a printable string, for messages.
    public var displayName: String { Bytes.string(name) }
}
