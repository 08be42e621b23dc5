// The btrfs send stream (format v1, and the commands v2/v3 add), read incrementally: a 17-byte
// stream header (the magic "btrfs-stream", a NUL, a little-endian u32 version), then commands,
// each a 10-byte header (u32 length of its attributes, u16 command, u32 CRC-32C of the header
// with a zero CRC field and the attributes, seed 0 without the final inversion) followed by
// attributes as type/length/value (u16 type, u16 length, the value).
//
// Only what a diff needs is kept: the command and its path attributes. Data (WRITE, with
// NO_FILE_DATA never sent) and xattr values are skipped.
import DiffKitArchive
import DiffKit
import DiffKitSystem

/// One command of a btrfs send stream, with its path attributes.
struct BtrfsSendCommand: Equatable, CustomStringConvertible {
    /// The command numbers of the stream format (v1, then the additions of v2 and v3).
    enum Kind: UInt16 {
        case subvolume = 1, snapshot, mkfile, mkdir, mknod, mkfifo, mksock, symlink
        case rename, link, unlink, rmdir, setXattr, removeXattr, write, clone
        case truncate, chmod, chown, utimes, end, updateExtent
        case fallocate, fileattr, encodedWrite, enableVerity
    }

    var kind: Kind
    /// `PATH`: the entry the command acts on (for LINK, the new name).
    var path: [UInt8]
    /// `PATH_TO` of RENAME (the new name) or `PATH_LINK` of LINK (the existing entry linked to).
    var target: [UInt8]?
    /// `INO` of the commands that make an entry (the inode in the sent subvolume).
    var inode: UInt64?

    init(_ kind: Kind, _ path: [UInt8], target: [UInt8]? = nil, inode: UInt64? = nil) {
        self.kind = kind
        self.path = path
        self.target = target
        self.inode = inode
    }

    var description: String {
        "\(kind) \(Bytes.string(path))" + (target.map { " -> " + Bytes.string($0) } ?? "")
    }
}

/// A send stream that cannot be read: where and why.
struct BtrfsSendStreamError: Error, CustomStringConvertible {
    var offset: Int
    var reason: String
    var description: String { "btrfs send stream, byte \(offset): \(reason)" }
}

/// Reads a send stream fed in pieces of any size; commands come out as soon as they are whole.
struct BtrfsSendStreamParser {
    static let magic = Bytes.of("btrfs-stream") + [0]
    static let headerSize = 17
    static let commandHeaderSize = 10

    // Attribute types.
    static let attrIno: UInt16 = 3
    static let attrPath: UInt16 = 15
    static let attrPathTo: UInt16 = 16
    static let attrPathLink: UInt16 = 17
    static let attrData: UInt16 = 19

    private var buffer: [UInt8] = []
    /// Stream offset of `buffer[0]`.
    private var consumed = 0
    /// The version from the stream header, once read.
    private(set) var version: UInt32?
    /// Whether the END command was read.
    private(set) var ended = false

    init() {}

    /// Append bytes; returns the commands they complete (END included).
    mutating func feed(_ bytes: UnsafeRawBufferPointer) throws -> [BtrfsSendCommand] {
        buffer.append(contentsOf: bytes)
        var out: [BtrfsSendCommand] = []
        var at = 0
        defer {
            buffer.removeFirst(at)
            consumed += at
        }
        if version == nil {
            guard buffer.count >= Self.headerSize else { return out }
            guard Array(buffer[0..<Self.magic.count]) == Self.magic else {
                throw BtrfsSendStreamError(offset: 0, reason: "not a send stream (no btrfs-stream magic)")
            }
            let v = Self.u32(buffer, 13)
            guard v >= 1 && v <= 3 else { throw BtrfsSendStreamError(offset: 13, reason: "unknown stream version \(v)") }
            version = v
            at = Self.headerSize
        }
        while buffer.count - at >= Self.commandHeaderSize {
            let length = Int(Self.u32(buffer, at))
            guard buffer.count - at - Self.commandHeaderSize >= length else { break }
            if ended { throw BtrfsSendStreamError(offset: consumed + at, reason: "data after the END command") }
            out.append(try command(at: at, length: length))
            at += Self.commandHeaderSize + length
        }
        return out
    }

    /// The stream is over: it must have ended with END, on a command boundary.
    func finish() throws {
        guard version != nil else { throw BtrfsSendStreamError(offset: consumed + buffer.count, reason: "stream ends inside its header") }
        guard buffer.isEmpty else { throw BtrfsSendStreamError(offset: consumed, reason: "stream ends inside a command") }
        guard ended else { throw BtrfsSendStreamError(offset: consumed, reason: "stream ends without the END command") }
    }

    private mutating func command(at start: Int, length: Int) throws -> BtrfsSendCommand {
        let offset = consumed + start
        let number = Self.u16(buffer, start + 4)
        let stored = Self.u32(buffer, start + 6)
        // The CRC covers the header with its CRC field zeroed, then the attributes.
        let crc = buffer.withUnsafeBytes { p -> UInt32 in
            let zero: [UInt8] = [0, 0, 0, 0]
            var c = CRC32C.update(0xFFFF_FFFF, UnsafeRawBufferPointer(start: p.baseAddress! + start, count: 6))
            c = zero.withUnsafeBytes { CRC32C.update(c, $0) }
            return CRC32C.update(c, UnsafeRawBufferPointer(start: p.baseAddress! + start + Self.commandHeaderSize, count: length))
        }
        guard ~crc == stored else { throw BtrfsSendStreamError(offset: offset, reason: "command \(number): CRC mismatch") }
        guard let kind = BtrfsSendCommand.Kind(rawValue: number) else {
            throw BtrfsSendStreamError(offset: offset, reason: "unknown command \(number)")
        }
        var path: [UInt8]? = nil, target: [UInt8]? = nil, inode: UInt64? = nil
        var at = start + Self.commandHeaderSize
        let end = at + length
        while at < end {
            guard end - at >= 2 else { throw BtrfsSendStreamError(offset: consumed + at, reason: "\(kind): truncated attribute") }
            let type = Self.u16(buffer, at)
            // From v2 on, DATA has no length: it runs to the end of its command.
            if type == Self.attrData && (version ?? 1) >= 2 { break }
            guard end - at >= 4 else { throw BtrfsSendStreamError(offset: consumed + at, reason: "\(kind): truncated attribute") }
            let size = Int(Self.u16(buffer, at + 2))
            let value = at + 4
            guard end - value >= size else { throw BtrfsSendStreamError(offset: consumed + at, reason: "\(kind): attribute \(type) overruns its command") }
            switch type {
            case Self.attrPath: path = Array(buffer[value..<value + size])
            case Self.attrPathTo where kind == .rename, Self.attrPathLink where kind == .link:
                target = Array(buffer[value..<value + size])
            case Self.attrIno where size == 8: inode = Self.u64(buffer, value)
            default: break
            }
            at = value + size
        }
        if kind == .end { ended = true }
        // Every command but the subvolume headers and END names its entry (the root is "").
        switch kind {
        case .subvolume, .snapshot, .end: break
        default:
            guard path != nil else { throw BtrfsSendStreamError(offset: offset, reason: "\(kind) without a path") }
        }
        if (kind == .rename || kind == .link) && target == nil {
            throw BtrfsSendStreamError(offset: offset, reason: "\(kind) without its second path")
        }
        return BtrfsSendCommand(kind, path ?? [], target: target, inode: inode)
    }

    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16(b, i)) | UInt32(u16(b, i + 2)) << 16 }
    static func u64(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(u32(b, i)) | UInt64(u32(b, i + 4)) << 32 }
}

/// The paths a send stream says may have changed.
///
/// A command names an entry by its path at that point of the stream, between the parent's tree
/// and the layer's. Every path is kept as given, which is enough: a path is the parent's until
/// something above it is renamed, and the layer's unless something above it is renamed later —
/// and both ends of a rename are kept with everything below them, so an entry named under a
/// name that a rename then changes is found below the rename's target, compared whole. New and
/// removed entries are kept with everything below them too (a directory replaced by another is
/// compared whole); the other commands (data, size, mode, owner, times, xattrs) name the entry
/// alone, so a parent directory's new times do not make its whole tree compared.
struct BtrfsSendPaths {
    private(set) var paths = PathSet()
    /// Commands read.
    private(set) var count = 0

    init() {}

    mutating func add(_ c: BtrfsSendCommand) {
        count += 1
        switch c.kind {
        case .subvolume, .snapshot, .end:
            break
        case .mkfile, .mkdir, .mknod, .mkfifo, .mksock, .symlink, .unlink, .rmdir:
            paths.insert(c.path, subtree: true)
        case .rename:
            paths.insert(c.path, subtree: true)
            paths.insert(c.target!, subtree: true)
        case .link:
            paths.insert(c.path, subtree: true)
            paths.insert(c.target!)
        case .setXattr, .removeXattr, .write, .clone, .truncate, .chmod, .chown, .utimes, .updateExtent,
             .fallocate, .fileattr, .encodedWrite, .enableVerity:
            paths.insert(c.path)
        }
    }

    /// The paths kept.
    func result() -> PathSet { paths }
}
