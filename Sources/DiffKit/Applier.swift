// Applier: writes a layer tar into a directory (moby's pkg/archive UnpackLayer),
// with the whiteout form of the target (plain deletions, overlay devices/xattrs, aufs files).
//
// Safety without chroot: every parent directory and hardlink target is resolved with
// openat2(RESOLVE_IN_ROOT), so `..`, absolute names and symlinks (from this layer or below)
// cannot leave the root; the final component is always handled with *at calls that do not
// follow it, and names are validated before anything is touched.
import DiffKitArchive
import DiffKitSystem
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes a layer tar into a directory, safely against hostile archives: every path is resolved
/// inside the root, whiteouts are applied, owners mapped. One applier per target directory.
public final class Applier {
    private let root: [UInt8]
    private let rootfd: Int32
    private let options: ApplyOptions
    private var archiveName = ""
    private var entryName = ""

    /// Last resolved parent directory (O_PATH fd), dropped whenever anything is removed.
    private var cachedPath: [UInt8]? = nil
    private var cachedFd: Int32 = -1
    private var cachedSetgid = false
    /// Hashes of the paths this stream created (an opaque marker keeps them).
    private var unpacked = Set<Int>()
    /// Directories whose times are set after the stream, in stream order.
    private var directoryTimes: [(path: [UInt8], atime: timespec, mtime: timespec)] = []
    /// aufs pseudo-link stash: `.wh..wh.plnk/NAME` entries kept for hardlinks that point at them.
    private var plnkDir: [UInt8]? = nil
    private var plnkHeaders: [[UInt8]: TarHeader] = [:]
    private var warnedXattrs = Set<[UInt8]>()
    /// File data written so far (against `maxBytes`).
    private var dataWritten: Int64 = 0

    private static let umaskBits: UInt32 = {
        let u = umask(0o022)
        umask(u)
        return UInt32(u)
    }()
    private static let euid = geteuid()
    private static let egid = getegid()

    private static let wh = Bytes.of(".wh.")
    private static let whMeta = Bytes.of(".wh..wh.")
    private static let whOpaque = Bytes.of(".wh..wh..opq")
    private static let whPlnk = Bytes.of(".wh..wh.plnk")

    /// An applier for the existing directory `root`. Throws `DiffKitError.unusableIDMap` for a map
    /// the ownership rule cannot hold under, or a `SystemError` when `root` cannot be opened.
    package init(root: [UInt8], options: ApplyOptions = ApplyOptions()) throws {
        try options.idMap.validate()
        self.root = root
        self.options = options
        rootfd = try Sys.open(root, O_RDONLY | O_DIRECTORY)
    }

    deinit {
        dropCache()
        Sys.close(rootfd)
        if let plnkDir { try? removeTree(AT_FDCWD, plnkDir) }
    }

    /// Apply every entry of `reader`; returns the sum of the entries' header sizes (what moby's ApplyLayer reports).
    public func apply(_ reader: TarReader, archive: String) throws -> Int64 {
        archiveName = archive
        let logger = options.logger
        reader.onWarning = { entry, message in logger.warning("\(archive): entry \(entry): \(message)") }
        var size: Int64 = 0
        while true {
            if options.isCancelled?() == true { throw CancellationError() }
            guard let h = try reader.next() else { break }
            size += h.size
            entryName = h.displayName
            do {
                try applyEntry(h, reader)
            } catch let e as DiffKitError {
                throw e
            } catch let e as ArchiveError {
                throw e
            } catch {
                throw DiffKitError.applyFailed(archive: archive, entry: entryName, underlying: error)
            }
            options.onProgress?(reader.stream.bytesRead, reader.entries)
        }
        entryName = ""
        try finishDirectoryTimes()
        return size
    }

    // MARK: entries

    private func applyEntry(_ h: TarHeader, _ reader: TarReader) throws {
        let comps = LayerPath.components(h.name)
        if comps.first == [UInt8(ascii: "."), UInt8(ascii: ".")] {
            throw DiffKitError.breakout(entry: entryName, reason: "the name climbs above the root with ..")
        }
        guard let base = comps.last else {
            // `./`: moby's UnpackLayer applies the header to the root itself.
            guard h.kind == .directory else {
                throw DiffKitError.unsupportedEntry(entry: entryName, reason: "a non-directory entry names the root")
            }
            try applyRootMetadata(h)
            return
        }
        let parent = Array(comps.dropLast().joined(separator: [LayerPath.slash]))
        let path = LayerPath.join(parent, base)

        if options.whiteouts != .aufs {
            // Root-level aufs metadata (.wh..wh.plnk, .wh..wh.aufs, …): kept aside or skipped.
            if comps[0].starts(with: Self.whMeta) && comps[0] != Self.whOpaque {
                if comps[0] == Self.whPlnk && comps.count == 2 && h.kind == .regular { try stashPlnk(h, base, reader) }
                return
            }
            if base.starts(with: Self.wh) {
                if base == Self.whOpaque { try opaque(parent) } else { try whiteout(parent, Array(base.dropFirst(4)), h) }
                return
            }
        }

        let pfd = try resolveParent(parent, comps: comps.dropLast())
        var h = h
        var plnkSource: [UInt8]? = nil
        if h.kind == .hardlink, LayerPath.components(h.linkName).first == Self.whPlnk {
            (h, plnkSource) = try materializePlnk(h)
        }
        let ids = try hostOwner(h)
        try create(pfd, base, path, h, uid: ids.uid, gid: ids.gid, reader: reader, plnkSource: plnkSource)
        unpacked.insert(path.hashValue)
    }

    private func create(_ pfd: Int32, _ base: [UInt8], _ path: [UInt8], _ h: TarHeader,
                        uid: UInt32, gid: UInt32, reader: TarReader, plnkSource: [UInt8]? = nil) throws {
        let shown = root + [LayerPath.slash] + path
        let perm = h.mode & 0o7777
        switch h.kind {
        case .directory:
            var r = Sys.tryMkdirat(pfd, base, mode: perm & 0o777)
            if r == EEXIST {
                let st = try Sys.fstatat(pfd, base, shown: shown)
                if st.st_mode & S_IFMT != S_IFDIR {
                    try replace(pfd, base, shown)
                    r = Sys.tryMkdirat(pfd, base, mode: perm & 0o777)
                    // A directory made over an overlay whiteout hides what the whiteout hid, as the
                    // kernel's own does: it is opaque.
                    if r == 0, case let .overlay(prefix) = options.whiteouts, st.st_mode & S_IFMT == S_IFCHR, st.st_rdev == 0 {
                        try setOpaque(pfd, base, prefix, shown)
                    }
                } else {
                    r = 0
                }
            }
            if r != 0 { throw SystemError("mkdir", shown, errno: r) }
            let fd = try Sys.openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: shown)
            defer { Sys.close(fd) }
            try metadata(fd: fd, pfd: pfd, base: base, shown: shown, h, uid: uid, gid: gid, fresh: false)
            directoryTimes.append((path, Self.time(max(h.atime ?? 0, h.mtime), 0), Self.time(h.mtime, h.mtimeNanoseconds)))

        case .regular:
            var (fd, err) = Sys.tryOpenat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode_t(perm & 0o777))
            if fd < 0 && err == EEXIST {
                try replace(pfd, base, shown)
                (fd, err) = Sys.tryOpenat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode_t(perm & 0o777))
            }
            if fd < 0 { throw SystemError("create", shown, errno: err) }
            defer { Sys.close(fd) }
            // Under a map the file is the entry's owner before any data: a stream that fails
            // midway leaves no file of the applier's own (host root) behind.
            let ownedEarly = !options.idMap.isIdentity
            if ownedEarly { try Sys.fchown(fd, uid: uid, gid: gid, operation: "chown \(uid):\(gid)", shown: shown) }
            var end: Int64 = 0
            var sequential = true
            let source: (((UnsafeRawBufferPointer, Int64) throws -> Void) throws -> Void)
            if let plnk = plnkSource {
                source = { body in try Self.readFile(plnk, body) }
            } else {
                source = { body in try reader.readData(body) }
            }
            let limit = options.maxBytes ?? .max
            try source { chunk, offset in
                dataWritten += Int64(chunk.count)
                if dataWritten > limit {
                    throw DiffKitError.limitExceeded(entry: entryName, reason: "the layer's file data exceeds the limit of \(limit) bytes")
                }
                if sequential && offset == end {
                    try Sys.writeAll(fd, chunk, shown: Bytes.string(shown))
                } else {
                    sequential = false
                    try Sys.pwriteAll(fd, chunk, at: offset, shown: shown)
                }
                end = max(end, offset + Int64(chunk.count))
            }
            if end < h.size { try Sys.ftruncate(fd, size: h.size, shown: shown) }
            try metadata(fd: fd, pfd: pfd, base: base, shown: shown, h, uid: uid, gid: gid, fresh: true, owned: ownedEarly)
            let times = [Self.time(max(h.atime ?? 0, h.mtime), 0), Self.time(h.mtime, h.mtimeNanoseconds)]
            try Sys.futimens(fd, times: times, shown: shown)

        case .symlink:
            var r = Sys.trySymlinkat(h.linkName, pfd, base)
            if r == EEXIST {
                try replace(pfd, base, shown)
                r = Sys.trySymlinkat(h.linkName, pfd, base)
            }
            if r != 0 { throw SystemError("symlink", shown, errno: r) }
            try metadata(fd: -1, pfd: pfd, base: base, shown: shown, h, uid: uid, gid: gid, fresh: true, isSymlink: true)
            try setTimes(pfd, base, shown, h)

        case .hardlink:
            let target = LayerPath.components(h.linkName)
            guard let tbase = target.last, target.first != [UInt8(ascii: "."), UInt8(ascii: ".")] else {
                throw DiffKitError.breakout(entry: entryName, reason: "hardlink target '\(Bytes.string(h.linkName))' is outside the root")
            }
            let tparent = Array(target.dropLast().joined(separator: [LayerPath.slash]))
            if LayerPath.join(tparent, tbase) == path {
                throw DiffKitError.unsupportedEntry(entry: entryName, reason: "hardlink to itself")
            }
            let (tfd, terr) = Sys.openInRoot(rootfd, tparent, Sys.oPath | O_DIRECTORY)
            if tfd < 0 { throw SystemError("resolve hardlink target", root + [LayerPath.slash] + h.linkName, errno: terr) }
            defer { Sys.close(tfd) }
            var r = Sys.tryLinkat(tfd, tbase, pfd, base)
            if r == EEXIST {
                try replace(pfd, base, shown)
                r = Sys.tryLinkat(tfd, tbase, pfd, base)
            }
            if r != 0 { throw SystemError("link to \(Bytes.string(h.linkName))", shown, errno: r) }
            // Never chmod/chown through a hardlinked symlink (CVE-2021-32760).
            let st = try Sys.fstatat(pfd, base, shown: shown)
            if st.st_mode & S_IFMT != S_IFLNK {
                try metadata(fd: -1, pfd: pfd, base: base, shown: shown, h, uid: uid, gid: gid, fresh: false)
                try setTimes(pfd, base, shown, h)
            }

        case .characterDevice, .blockDevice, .fifo:
            if h.kind != .fifo && options.inUserNamespace {
                options.logger.warning("\(archiveName): entry \(entryName): device node skipped in a user namespace")
                return
            }
            let type: UInt32 = h.kind == .fifo ? UInt32(S_IFIFO) : h.kind == .characterDevice ? UInt32(S_IFCHR) : UInt32(S_IFBLK)
            let dev = h.kind == .fifo ? 0 : Sys.makedev(h.devMajor, h.devMinor)
            var r = Sys.mknodat(pfd, base, mode: type | (perm & 0o777), dev: dev)
            if r == EEXIST {
                try replace(pfd, base, shown)
                r = Sys.mknodat(pfd, base, mode: type | (perm & 0o777), dev: dev)
            }
            if r != 0 { throw SystemError("mknod", shown, errno: r) }
            try metadata(fd: -1, pfd: pfd, base: base, shown: shown, h, uid: uid, gid: gid, fresh: true)
            try setTimes(pfd, base, shown, h)
        }
    }


    /// An existing entry in the way (as in UnpackLayer): removed, never written through.
    private func replace(_ pfd: Int32, _ base: [UInt8], _ shown: [UInt8]) throws {
        try removeTree(pfd, base)
        if let cachedPath { invalidate(removed: LayerPath.join(cachedPath, base)) }
    }

    /// Owner, then mode, then xattrs (chown clears suid/sgid and capabilities, so it comes first).
    /// `fd` is the open entry when there is one; otherwise the *at calls do not follow symlinks.
    private func metadata(fd: Int32, pfd: Int32, base: [UInt8], shown: [UInt8], _ h: TarHeader,
                          uid: UInt32, gid: UInt32, fresh: Bool, isSymlink: Bool = false, owned: Bool = false) throws {
        let perm = h.mode & 0o7777
        // A freshly made entry already has our owner (and, in a setgid directory, its group);
        // `owned`: the caller has given it its owner already (the mode still follows).
        let createdGid = cachedSetgid ? UInt32.max : Self.egid
        let chown = owned || !fresh || uid != Self.euid || gid != createdGid
        if chown && !owned {
            if fd >= 0 {
                try Sys.fchown(fd, uid: uid, gid: gid, operation: "chown \(uid):\(gid)", shown: shown)
            } else {
                try Sys.fchownat(pfd, base, uid: uid, gid: gid, operation: "chown \(uid):\(gid)", shown: shown)
            }
        }
        if !isSymlink && (chown || !fresh || perm & 0o7000 != 0 || perm & Self.umaskBits != 0 || cachedSetgid) {
            if fd >= 0 {
                try Sys.fchmod(fd, mode: perm, operation: "chmod \(String(perm, radix: 8))", shown: shown)
            } else {
                try Sys.fchmodat(pfd, base, mode: perm, operation: "chmod \(String(perm, radix: 8))", shown: shown)
            }
        }
        for x in h.xattrs {
            // Overlay and trusted attributes from an archive could forge opaque dirs or redirects.
            if x.name.starts(with: Bytes.of("trusted.")) || Self.isOverlayXattr(x.name) {
                if warnedXattrs.insert(x.name).inserted {
                    options.logger.warning("\(archiveName): entry \(entryName): xattr \(Bytes.string(x.name)) refused")
                }
                continue
            }
            let r = fd >= 0 ? Sys.setXattr(path: [], fd: fd, name: x.name, value: x.value)
                : Sys.setXattr(path: procPath(pfd, base), name: x.name, value: x.value)
            if r == ENOTSUP || r == EPERM {
                if warnedXattrs.insert(x.name).inserted {
                    options.logger.warning("\(archiveName): entry \(entryName): xattr \(Bytes.string(x.name)) ignored (\(r == EPERM ? "not permitted" : "not supported"))")
                }
            } else if r != 0 {
                throw SystemError("setxattr \(Bytes.string(x.name))", shown, errno: r)
            }
        }
    }

    static func isOverlayXattr(_ name: [UInt8]) -> Bool {
        let s = Bytes.string(name)
        return s.contains(".overlay.")
    }

    private func procPath(_ fd: Int32, _ base: [UInt8]) -> [UInt8] {
        Bytes.of("/proc/self/fd/\(fd)/") + base
    }

    private func setTimes(_ pfd: Int32, _ base: [UInt8], _ shown: [UInt8], _ h: TarHeader) throws {
        let times = [Self.time(max(h.atime ?? 0, h.mtime), 0), Self.time(h.mtime, h.mtimeNanoseconds)]
        try Sys.utimensat(pfd, base, times: times, shown: shown)
    }

    static func time(_ sec: Int64, _ nsec: Int32) -> timespec {
        // Times before the epoch are clamped to it (moby).
        sec < 0 ? timespec(tv_sec: 0, tv_nsec: 0) : timespec(tv_sec: Int(sec), tv_nsec: Int(nsec))
    }

    /// The host owner of an entry; one the map cannot take (or no ID at all: negative, or
    /// 4294967295 and above) is refused, never left as the applier's own.
    private func hostOwner(_ h: TarHeader) throws -> (uid: UInt32, gid: UInt32) {
        guard h.uid >= 0, h.gid >= 0,
              let ids = options.idMap.toHost(uid: UInt32(clamping: h.uid), gid: UInt32(clamping: h.gid)) else {
            throw DiffKitError.unmappedID(entry: entryName, uid: h.uid, gid: h.gid)
        }
        return ids
    }

    private func applyRootMetadata(_ h: TarHeader) throws {
        let ids = try hostOwner(h)
        try Sys.fchown(rootfd, uid: ids.uid, gid: ids.gid, shown: root)
        try Sys.fchmod(rootfd, mode: UInt32(h.mode & 0o7777), shown: root)
        directoryTimes.append(([], Self.time(max(h.atime ?? 0, h.mtime), 0), Self.time(h.mtime, h.mtimeNanoseconds)))
    }

    // MARK: whiteouts

    private func validWhiteoutTarget(_ name: [UInt8]) -> Bool {
        !(name.isEmpty || name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")])
    }

    /// `.wh.NAME`: delete NAME (plain) or make the overlay whiteout device.
    private func whiteout(_ parent: [UInt8], _ target: [UInt8], _ h: TarHeader) throws {
        guard validWhiteoutTarget(target) else {
            throw DiffKitError.invalidWhiteout(entry: entryName, reason: "it names no entry inside its directory")
        }
        switch options.whiteouts {
        case .plain:
            // Resolve the parent without creating it: a whiteout in a missing directory deletes nothing.
            let (pfd, err) = Sys.openInRoot(rootfd, parent, Sys.oPath | O_DIRECTORY)
            if pfd < 0 {
                if err == ENOENT || err == ENOTDIR { return }
                throw SystemError("resolve", root + [LayerPath.slash] + parent, errno: err)
            }
            defer { Sys.close(pfd) }
            try removeTree(pfd, target)
            invalidate(removed: LayerPath.join(parent, target))
        case .overlay:
            // The device takes the whiteout entry's owner, mapped like any entry's (moby); the
            // kernel reads only its type and rdev.
            let ids = try hostOwner(h)
            let pfd = try resolveParent(parent, comps: LayerPath.components(parent)[...])
            let shown = root + [LayerPath.slash] + LayerPath.join(parent, target)
            // Whatever the upper has under that name goes: the whiteout hides it, as in the kernel.
            var r = Sys.mknodat(pfd, target, mode: UInt32(S_IFCHR), dev: 0)
            if r == EEXIST {
                try replace(pfd, target, shown)
                r = Sys.mknodat(pfd, target, mode: UInt32(S_IFCHR), dev: 0)
            }
            if r != 0 { throw SystemError("mknod whiteout", shown, errno: r) }
            try Sys.fchownat(pfd, target, uid: ids.uid, gid: ids.gid, shown: shown)
        case .aufs:
            break
        }
    }

    /// `DIR/.wh..wh..opq`: everything in DIR not created by this stream goes (plain), or DIR is
    /// marked opaque (overlay).
    private func opaque(_ parent: [UInt8]) throws {
        let pfd = try resolveParent(parent, comps: LayerPath.components(parent)[...])
        let shown = root + [LayerPath.slash] + parent
        let dfd = try Sys.openat(pfd, [UInt8(ascii: ".")], O_RDONLY | O_DIRECTORY, shown: shown)
        defer { Sys.close(dfd) }
        switch options.whiteouts {
        case .plain:
            try removeNotUnpacked(dfd, parent, shown)
            if let cachedPath, cachedPath != parent { invalidate(removed: parent) }
        case let .overlay(prefix):
            try setOpaque(dfd, [UInt8(ascii: ".")], prefix, shown)
        case .aufs:
            break
        }
    }

    private func setOpaque(_ pfd: Int32, _ name: [UInt8], _ prefix: String, _ shown: [UInt8]) throws {
        let fd = try Sys.openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: shown)
        defer { Sys.close(fd) }
        let r = Sys.setXattr(path: [], fd: fd, name: Bytes.of(prefix + "overlay.opaque"), value: [UInt8(ascii: "y")])
        if r != 0 { throw SystemError("setxattr \(prefix)overlay.opaque", shown, errno: r) }
    }

    private func removeNotUnpacked(_ dfd: Int32, _ path: [UInt8], _ shown: [UInt8]) throws {
        for e in try Sys.readDirectory(dfd, shown: shown) {
            let child = LayerPath.join(path, e.name)
            if !unpacked.contains(child.hashValue) {
                try removeTree(dfd, e.name)
            } else if e.type == 4 /* DT_DIR */ {
                let sub = try Sys.openat(dfd, e.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: shown + [LayerPath.slash] + e.name)
                defer { Sys.close(sub) }
                try removeNotUnpacked(sub, child, shown + [LayerPath.slash] + e.name)
            }
        }
    }

    // MARK: path resolution

    private func dropCache() {
        if cachedFd >= 0 { Sys.close(cachedFd) }
        cachedFd = -1
        cachedPath = nil
    }

    /// Forget the cached parent if it was `removed` or lay below it.
    private func invalidate(removed: [UInt8]) {
        guard let cachedPath else { return }
        if removed.isEmpty || cachedPath == removed || cachedPath.starts(with: removed + [LayerPath.slash]) { dropCache() }
    }

    /// The directory an implicit parent copies (see `parentTemplates`); a non-directory in a
    /// template hides the ones after it.
    private func template(for path: [UInt8]) -> stat? {
        for t in Bytes.of(options.parentTemplates) {
            guard let st = try? Sys.lstatIfExists(AT_FDCWD, t + [LayerPath.slash] + path) else { continue }
            return st.st_mode & S_IFMT == S_IFDIR ? st : nil
        }
        return nil
    }

    /// The parent directory of an entry, resolved inside the root; missing directories are
    /// created (0755, or a template's mode), each step resolved inside the root again. Their
    /// owner: a template's, else the applier's without a map; under a map, always inside it
    /// (the template's IDs where they are inside, else the root pair's), and a failed chown
    /// fails the apply.
    private func resolveParent(_ parent: [UInt8], comps: ArraySlice<[UInt8]>) throws -> Int32 {
        if let cachedPath, cachedPath == parent { return cachedFd }
        dropCache()
        var (fd, err) = Sys.openInRoot(rootfd, parent, Sys.oPath | O_DIRECTORY)
        if fd < 0 && err == ENOENT {
            var prefix: [UInt8] = []
            for c in comps {
                let next = LayerPath.join(prefix, c)
                let (nfd, nerr) = Sys.openInRoot(rootfd, next, Sys.oPath | O_DIRECTORY)
                if nfd >= 0 { Sys.close(nfd); prefix = next; continue }
                if nerr != ENOENT { throw SystemError("resolve", root + [LayerPath.slash] + next, errno: nerr) }
                let (pfd, perr) = Sys.openInRoot(rootfd, prefix, Sys.oPath | O_DIRECTORY)
                if pfd < 0 { throw SystemError("resolve", root + [LayerPath.slash] + prefix, errno: perr) }
                let r = Sys.tryMkdirat(pfd, c, mode: 0o755)
                defer { Sys.close(pfd) }
                let t = r == 0 ? template(for: next) : nil
                let map = options.idMap
                if r == 0 && (t != nil || !map.isIdentity) {
                    let owner = t.map { map.insideOwner(uid: $0.st_uid, gid: $0.st_gid) } ?? map.rootPair
                    do {
                        try Sys.fchownat(pfd, c, uid: owner.uid, gid: owner.gid, operation: "chown \(owner.uid):\(owner.gid)",
                                         shown: root + [LayerPath.slash] + next)
                    } catch where map.isIdentity {
                        // Without a map, a parent made for a template keeps the applier's owner.
                    }
                }
                if r == 0, let t {
                    try? Sys.fchmodat(pfd, c, mode: t.st_mode & 0o7777)
                } else if r == 0 && Self.umaskBits & 0o755 != 0 {
                    try? Sys.fchmodat(pfd, c, mode: 0o755)
                }
                if r == EEXIST {
                    // A dangling symlink (or other non-directory) stands where a parent should be.
                    throw SystemError("create parent directory (a non-directory or dangling symlink is in the way)",
                                      root + [LayerPath.slash] + next, errno: ENOTDIR)
                }
                if r != 0 { throw SystemError("mkdir", root + [LayerPath.slash] + next, errno: r) }
                prefix = next
            }
            (fd, err) = Sys.openInRoot(rootfd, parent, Sys.oPath | O_DIRECTORY)
        }
        if fd < 0 { throw SystemError("resolve parent directory", root + [LayerPath.slash] + parent, errno: err) }
        let st = try Sys.fstat(fd, shown: root + [LayerPath.slash] + parent)
        cachedSetgid = st.st_mode & S_ISGID != 0
        cachedPath = parent
        cachedFd = fd
        return fd
    }

    /// Directory times, after the stream (creating children changed them), resolved again
    /// inside the root and never through a symlink that replaced the directory.
    private func finishDirectoryTimes() throws {
        dropCache()
        for d in directoryTimes {
            let times = [d.atime, d.mtime]
            if d.path.isEmpty {
                try Sys.futimens(rootfd, times: times, shown: root)
                continue
            }
            let (parent, base) = LayerPath.split(d.path)
            let (pfd, err) = Sys.openInRoot(rootfd, parent, Sys.oPath | O_DIRECTORY)
            if pfd < 0 {
                if err == ENOENT || err == ENOTDIR { continue }
                throw SystemError("resolve", root + [LayerPath.slash] + parent, errno: err)
            }
            defer { Sys.close(pfd) }
            guard let st = try Sys.lstatIfExists(pfd, base), st.st_mode & S_IFMT == S_IFDIR else { continue }
            try Sys.utimensat(pfd, base, times: times, shown: root + [LayerPath.slash] + d.path)
        }
        directoryTimes.removeAll()
    }

    // MARK: aufs pseudo-links (hardlinks to .wh..wh.plnk/…)

    private func stashPlnk(_ h: TarHeader, _ base: [UInt8], _ reader: TarReader) throws {
        if plnkDir == nil {
            plnkDir = try Sys.makeTemporaryDirectory(Bytes.of("/tmp/diffkit-plnk-XXXXXX"))
        }
        let path = plnkDir! + [LayerPath.slash] + base
        let fd = try Sys.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { Sys.close(fd) }
        try reader.readData { chunk, offset in try Sys.pwriteAll(fd, chunk, at: offset, shown: path) }
        plnkHeaders[base] = h
    }

    /// A hardlink to `.wh..wh.plnk/X` becomes a regular file with the pseudo-link's header and
    /// content: returns that header and the stashed file holding the content.
    private func materializePlnk(_ h: TarHeader) throws -> (TarHeader, [UInt8]) {
        let target = LayerPath.components(h.linkName)
        guard target.count == 2, let stash = plnkHeaders[target[1]], let dir = plnkDir else {
            throw DiffKitError.unsupportedEntry(entry: entryName, reason: "invalid aufs hardlink to \(Bytes.string(h.linkName))")
        }
        var out = stash
        out.name = h.name
        out.kind = .regular
        return (out, dir + [LayerPath.slash] + target[1])
    }

    private static func readFile(_ path: [UInt8], _ body: (UnsafeRawBufferPointer, Int64) throws -> Void) throws {
        let fd = try Sys.open(path, O_RDONLY)
        defer { Sys.close(fd) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buf.deallocate() }
        var off: Int64 = 0
        while true {
            let n = try Sys.read(fd, buf, 1 << 16, shown: path)
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(start: buf, count: n), off)
            off += Int64(n)
        }
    }
}

/// Remove `name` in `dirfd` and everything below it, never following symlinks.
/// A missing name is not an error.
package func removeTree(_ dirfd: Int32, _ name: [UInt8]) throws {
    let e = Sys.tryUnlinkat(dirfd, name)
    if e == 0 || e == ENOENT { return }
    if e != EISDIR && e != EPERM {
        throw SystemError("unlink", name, errno: e)
    }
    let fd = try Sys.openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
    do {
        for entry in try Sys.readDirectory(fd, shown: name) { try removeTree(fd, entry.name) }
    } catch {
        Sys.close(fd)
        throw error
    }
    Sys.close(fd)
    let r = Sys.tryUnlinkat(dirfd, name, flags: AT_REMOVEDIR)
    if r != 0 && r != ENOENT { throw SystemError("rmdir", name, errno: r) }

}
