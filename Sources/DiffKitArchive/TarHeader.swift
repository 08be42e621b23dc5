// TarHeader: one tar entry as a value, the only shape in which entries leave DiffKitArchive.
import DiffKitSystem

public struct Xattr: Sendable, Equatable, Hashable {
    public var name: [UInt8]
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

public struct TarHeader: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symlink, hardlink, characterDevice, blockDevice, fifo
    }

    /// The name as stored (bytes, directories usually with a trailing `/`).
    public var name: [UInt8]
    public var kind: Kind
    /// Symlink target or hardlink source.
    public var linkName: [UInt8] = []
    /// Permission and suid/sgid/sticky bits (07777); the writer adds type bits if asked.
    public var mode: UInt32 = 0
    public var uid: Int = 0
    public var gid: Int = 0
    public var userName: [UInt8] = []
    public var groupName: [UInt8] = []
    /// Bytes of data that follow the header (0 for every kind but regular).
    public var size: Int64 = 0
    public var mtime: Int64 = 0
    public var mtimeNanoseconds: Int32 = 0
    /// Access time when the archive carries one.
    public var atime: Int64? = nil
    public var devMajor: UInt32 = 0
    public var devMinor: UInt32 = 0
    public var xattrs: [Xattr] = []

    public init(name: [UInt8], kind: Kind) {
        self.name = name
        self.kind = kind
    }

    public var displayName: String { Bytes.string(name) }
}
