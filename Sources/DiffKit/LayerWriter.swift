// LayerWriter: turns a tree, or a change list over a tree, into a layer tar. One header builder
// for every source (full export, naive diff, native diffs), one TarWriter underneath.
import DiffKitArchive
import DiffKitSystem
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes a tree, or the changes of a tree, as a layer tar in the byte format of Go's
/// `archive/tar`, with deletions as `.wh.` whiteouts and hardlinks kept as links.
public final class LayerWriter {
    /// The tar writer the entries go to (its `bytesWritten` is the size of the tar so far).
    public let tar: TarWriter
    private let root: [UInt8]
    private let options: ExportOptions
    private var names = NameLookup()
    /// Hardlink tracking: inode → name of the first exported path (moby keys by inode only).
    private var seen: [UInt64: [UInt8]] = [:]
    /// Entries written.
    public internal(set) var entries = 0

    /// A writer of the files below `root` (the layer's directory) into `tar`.
    package init(tar: TarWriter, root: [UInt8], options: ExportOptions) {
        self.tar = tar
        self.root = root
        self.options = options
        tar.typeBitsInMode = options.profile == .moby
    }

    /// Every entry below the root, depth-first in name order (moby's TarWithOptions), then the end
    /// of the archive. With the overlay form (a native diff of an upper dir), 0/0 character devices
    /// become `.wh.NAME` and an opaque directory is followed at once by its `.wh..wh..opq` marker.
    /// With the aufs form (a diff dir), whiteout files are already the tar form; aufs's own meta
    /// entries at the root (`.wh..wh.plnk`, `.wh..wh.aufs`, …) are left out, the opaque marker kept.
    public func writeTree(whiteouts: WhiteoutForm = .plain) throws {
        let meta = Bytes.of(".wh..wh."), opaque = Bytes.of(".wh..wh..opq")
        try Walker.walk(root: root, visit: { dir, name, info in
            try self.checkCancellation()
            let path = dir.child(name)
            if whiteouts == .aufs && dir.path.isEmpty && name.starts(with: meta) && name != opaque { return .skip }
            if case let .overlay(prefix) = whiteouts {
                if info.isOverlayWhiteout {
                    try self.writeOverlayWhiteout(path: path, info: info)
                    return .descend
                }
                if info.isDirectory {
                    // The names first, relative to the directory: most have none, and a lookup
                    // by absolute path for each directory cost more than the rest of its entry.
                    let opaqueName = Bytes.of(prefix + "overlay.opaque")
                    let opaque = try Sys.listXattrs(path: dir.absoluteChild(name), dirfd: dir.fd, name: name).contains(opaqueName)
                        ? try Sys.getXattr(path: dir.absoluteChild(name), name: opaqueName) : nil
                    try self.writeEntry(path: path, info: info, dirfd: dir.fd, name: name, absolute: dir.absoluteChild(name))
                    if opaque == [UInt8(ascii: "y")], let h = self.lastHeader { try self.writeOpaqueMarker(directory: path, header: h) }
                    return .descend
                }
            }
            try self.writeEntry(path: path, info: info, dirfd: dir.fd, name: name, absolute: dir.absoluteChild(name))
            return .descend
        })
        try tar.finish()
    }

    /// A kernel whiteout (0/0 device) as moby writes it: `.wh.NAME`, regular, mode 0600, the
    /// device's owner and mtime. Never hardlink-tracked: overlayfs makes all whiteouts links of one
    /// inode, and a tracked one would carry a stale link name.
    func writeOverlayWhiteout(path: [UInt8], info: FileInfo) throws {
        var h = Self.whiteoutHeader(for: path)
        h.mode = 0o600
        // moby does not map whiteout owners: the kernel wrote them, already host-relative.
        setOwner(&h, host: (info.uid, info.gid), tar: (info.uid, info.gid))
        h.mtime = info.mtime
        try writeMetaEntry(h)
    }

    /// Throw `CancellationError` once `options.isCancelled` says so.
    func checkCancellation() throws {
        if options.isCancelled?() == true { throw CancellationError() }
    }

    /// The header of the last entry written (for the opaque marker that follows a directory).
    var lastHeader: TarHeader?

    /// A change list (already in path order) as a layer: deletions become `.wh.` entries. A link
    /// peer that comes before the first changed member of its hardlink group is written right
    /// after that member, as ``TreeDiff/forEachChange(base:layer:snapshots:_:)`` delivers it, so a
    /// list and the stream of the same changes make the same tar.
    public func write(changes: [Change]) throws {
        var firstChanged: [UInt64: Int] = [:]
        for (i, c) in changes.enumerated() where !c.isLinkPeer && c.kind != .delete {
            if let info = c.info, !info.isDirectory, info.links > 1, firstChanged[info.inode] == nil { firstChanged[info.inode] = i }
        }
        var waiting: [UInt64: [Change]] = [:]
        for (i, c) in changes.enumerated() {
            if c.isLinkPeer, let info = c.info, let first = firstChanged[info.inode], first > i {
                waiting[info.inode, default: []].append(c)
                continue
            }
            try self.write(c)
            if !c.isLinkPeer, let info = c.info, firstChanged[info.inode] == i, let peers = waiting.removeValue(forKey: info.inode) {
                for p in peers { try self.write(p) }
            }
        }
        try finish()
    }

    /// One change of a list in path order (or a link peer after the change of its group), as
    /// the next entry: a deletion becomes a `.wh.` entry. ``finish()`` ends the archive.
    public func write(_ c: Change) throws {
        try checkCancellation()
        if rootfd < 0 { rootfd = try Walker.openRoot(root) }
        switch c.kind {
        case .delete:
            try writeWhiteout(for: c.path)
        case .add, .modify:
            try writeEntry(path: c.path, info: c.info!, dirfd: rootfd, name: c.path,
                           absolute: root + [LayerPath.slash] + c.path)
        }
    }

    /// End the archive after the changes written with ``write(_:)``.
    public func finish() throws {
        try tar.finish()
    }

    /// The root directory the changes are read from, opened by the first ``write(_:)``.
    private var rootfd: Int32 = -1

    deinit {
        if rootfd >= 0 { Sys.close(rootfd) }
    }

    /// The whiteout of a deleted path: an empty regular file `.wh.NAME`, mode 0, owner 0:0.
    package func writeWhiteout(for path: [UInt8], time: Int64? = nil) throws {
        var h = Self.whiteoutHeader(for: path)
        h.mtime = time ?? options.whiteoutTime
        try writeMetaEntry(h)
    }

    /// Write an opaque marker `DIR/.wh..wh..opq` right after its directory (moby's fields).
    package func writeOpaqueMarker(directory path: [UInt8], header dirHeader: TarHeader) throws {
        var h = TarHeader(name: LayerPath.join(path, Bytes.of(".wh..wh..opq")), kind: .regular)
        h.mode = dirHeader.mode & 0o777
        h.uid = dirHeader.uid
        h.gid = dirHeader.gid
        h.userName = dirHeader.userName
        h.groupName = dirHeader.groupName
        try writeMetaEntry(h)
    }

    /// `DIR/.wh.BASE` for a deleted `DIR/BASE`: an empty regular entry, mode 0, owner 0:0.
    static func whiteoutHeader(for path: [UInt8]) -> TarHeader {
        let (dir, base) = LayerPath.split(path)
        return TarHeader(name: LayerPath.join(dir, Bytes.of(".wh.") + base), kind: .regular)
    }

    /// Owner IDs as the tar carries them, names (moby profile) looked up from the host IDs.
    private func setOwner(_ h: inout TarHeader, host: (uid: UInt32, gid: UInt32), tar: (uid: UInt32, gid: UInt32)) {
        h.uid = Int(tar.uid)
        h.gid = Int(tar.gid)
        if options.profile == .moby && options.reproducibleTime == nil {
            h.userName = names.user(host.uid)
            h.groupName = names.group(host.gid)
        }
    }

    /// Whiteouts and opaque markers: their mode field never carries type bits (moby writes them so).
    private func writeMetaEntry(_ h: TarHeader) throws {
        let saved = tar.typeBitsInMode
        tar.typeBitsInMode = false
        defer { tar.typeBitsInMode = saved }
        try tar.writeHeader(h)
        entries += 1
    }

    /// Build the header of one entry from its stat; nil when the entry is skipped.
    package func header(path: [UInt8], info: FileInfo, linkTarget: [UInt8]?, xattrs: [Xattr]) -> TarHeader? {
        let kind: TarHeader.Kind
        switch info.kind {
        case .regular: kind = .regular
        case .directory: kind = .directory
        case .symlink: kind = .symlink
        case .characterDevice: kind = .characterDevice
        case .blockDevice: kind = .blockDevice
        case .fifo: kind = .fifo
        case .socket:
            options.logger.warning("\(Bytes.string(root + [LayerPath.slash] + path)): socket skipped (tar cannot carry sockets)")
            return nil
        }
        guard let ids = options.idMap.toContainer(uid: info.uid, gid: info.gid) else {
            options.logger.warning("\(Bytes.string(root + [LayerPath.slash] + path)): owner \(info.uid):\(info.gid) has no container ID; skipped")
            return nil
        }
        var h = TarHeader(name: info.isDirectory ? path + [LayerPath.slash] : path, kind: kind)
        h.mode = info.permissions
        setOwner(&h, host: (info.uid, info.gid), tar: ids)
        h.mtime = options.reproducibleTime.map { min($0, info.mtime) } ?? info.mtime
        h.xattrs = xattrs
        if kind == .symlink { h.linkName = linkTarget ?? [] }
        if kind == .characterDevice || kind == .blockDevice {
            h.devMajor = Sys.major(info.rdev)
            h.devMinor = Sys.minor(info.rdev)
        }
        if kind == .regular {
            h.size = info.size
            if info.links > 1 {
                if let first = seen[info.inode] {
                    h.kind = .hardlink
                    h.linkName = first
                    h.size = 0
                } else {
                    seen[info.inode] = path
                }
            }
        } else if info.links > 1 && !info.isDirectory {
            if let first = seen[info.inode] {
                h.kind = .hardlink
                h.linkName = first
            } else {
                seen[info.inode] = path
            }
        }
        return h
    }

    /// Write one entry found at `name` relative to `dirfd`.
    func writeEntry(path: [UInt8], info: FileInfo, dirfd: Int32, name: [UInt8], absolute: [UInt8]) throws {
        if info.kind == .regular && (info.links <= 1 || seen[info.inode] == nil) {
            let (fd, err) = Sys.tryOpenat(dirfd, name, O_RDONLY | O_NOFOLLOW)
            if fd < 0 {
                if err == ENOENT {
                    options.logger.warning("\(Bytes.string(absolute)): vanished during export; skipped")
                    return
                }
                throw SystemError("open", absolute, errno: err)
            }
            defer { Sys.close(fd) }
            let x = try LayerXattrs.read(path: absolute, fd: fd)
            guard let h = header(path: path, info: info, linkTarget: nil, xattrs: x) else { return }
            try tar.writeHeader(h)
            if h.kind == .regular {
                let short = try tar.copyData(from: fd, path: absolute)
                if short > 0 { options.logger.warning("\(Bytes.string(absolute)): shrank by \(short) bytes during export; padded with zeros") }
            }
            entries += 1
            return
        }
        let target = info.kind == .symlink ? try Sys.readlinkat(dirfd, name, shown: absolute) : nil
        let x = try LayerXattrs.read(path: absolute, dirfd: dirfd, name: name)
        guard let h = header(path: path, info: info, linkTarget: target, xattrs: x) else {
            lastHeader = nil
            return
        }
        try tar.writeHeader(h)
        lastHeader = h
        entries += 1
    }
}

/// uid/gid → name from the host's passwd and group databases (what Go's FileInfoHeader does),
/// looked up once per ID.
struct NameLookup {
    private var users: [UInt32: [UInt8]] = [:]
    private var groups: [UInt32: [UInt8]] = [:]

    mutating func user(_ uid: UInt32) -> [UInt8] {
        if let n = users[uid] { return n }
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buf = [CChar](repeating: 0, count: 4096)
        var name: [UInt8] = []
        if getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil, let p = pw.pw_name {
            name = Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
        }
        users[uid] = name
        return name
    }

    mutating func group(_ gid: UInt32) -> [UInt8] {
        if let n = groups[gid] { return n }
        var gr = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>? = nil
        var buf = [CChar](repeating: 0, count: 4096)
        var name: [UInt8] = []
        if getgrgid_r(gid, &gr, &buf, buf.count, &result) == 0, result != nil, let p = gr.gr_name {
            name = Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
        }
        groups[gid] = name
        return name
    }
}
