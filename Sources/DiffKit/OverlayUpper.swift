// An overlay upper dir made with `redirect_dir` or `metacopy` is not a change set on its own:
//
// - a directory renamed in the merged view keeps its lower content where it was, and the upper
//   copy carries `overlay.redirect` naming the origin (absolute from the layer root, or a bare
//   name in the same parent); the kernel also leaves a whiteout at the origin;
// - a metadata-only copy-up (a chmod, a chown, an xattr) is an upper file with `overlay.metacopy`
//   and no data: its bytes stay in the lower file it came from (found through its own redirect
//   when it was renamed, else at the same path, and possibly further down the lower stack).
//
// The native diff reads the upper as usual and takes what it cannot find there from the layer's
// mounted view, where the kernel has already followed every redirect and metacopy chain: a
// redirected directory is exported as an opaque directory holding its whole merged subtree (the
// origin's whiteout is in the upper already), a metacopy file with its upper header and the
// view's data. Changes of such a layer compare the redirected subtrees of the two mounted views
// and look the rest up in the parent's mounted view (its own lowers may hold redirects too).
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// What an overlay upper dir holds that only the layer's mounted view can complete: directories
/// renamed with `redirect_dir` and metadata-only copy-ups (`metacopy`).
package struct OverlayUpperScan: Sendable, Equatable {
    /// Redirected directories, as paths relative to the upper (their subtrees are not scanned).
    package var redirectedDirectories: [[UInt8]] = []
    /// Regular files whose data are in a lower layer, as paths relative to the upper.
    package var metacopyFiles: [[UInt8]] = []
    /// Why the upper cannot be read this way (a redirect that is not a path inside the layer), or nil.
    package var problem: String?

    /// The upper has redirected directories or metacopy files: its export needs the mounted view.
    package var needsView: Bool { !redirectedDirectories.isEmpty || !metacopyFiles.isEmpty }

    /// Scan the upper dir `upper` whose overlay xattrs start with `xattrPrefix` (`trusted.` or `user.`).
    ///
    /// It runs before every export of an upper, so it is kept cheap: types come from the directory
    /// listing (a stat only where the filesystem does not give one), and an entry's attribute
    /// names from one lookup relative to its directory; a value is read only where the name is there.
    package static func of(upper: [UInt8], xattrPrefix: String) throws -> OverlayUpperScan {
        var scan = OverlayUpperScan()
        let redirect = Bytes.of(xattrPrefix + "overlay.redirect"), metacopy = Bytes.of(xattrPrefix + "overlay.metacopy")
        func visit(_ dir: WalkDir) throws {
            for e in try Sys.readDirectory(dir.fd, shown: dir.absolute) {
                var type = e.type
                if type == DT_UNKNOWN {
                    type = FileInfo(try Sys.fstatat(dir.fd, e.name, shown: dir.absoluteChild(e.name))).isDirectory ? UInt8(DT_DIR) : UInt8(DT_REG)
                }
                guard type == DT_DIR || type == DT_REG else { continue }
                let names = try Sys.listXattrs(path: dir.absoluteChild(e.name), dirfd: dir.fd, name: e.name)
                if type == DT_DIR {
                    if names.contains(redirect), let target = try Sys.getXattr(path: dir.absoluteChild(e.name), name: redirect) {
                        if let why = OverlayUpperScan.invalidRedirect(target) {
                            scan.problem = scan.problem ?? "\(Bytes.string(dir.child(e.name))): \(why)"
                        }
                        scan.redirectedDirectories.append(dir.child(e.name))
                        continue
                    }
                    let fd = try Walker.openChild(dir, e.name)
                    defer { Sys.close(fd) }
                    try visit(WalkDir(fd: fd, path: dir.child(e.name), absolute: dir.absoluteChild(e.name)))
                } else if names.contains(metacopy) {
                    scan.metacopyFiles.append(dir.child(e.name))
                }
            }
        }
        let fd = try Walker.openRoot(upper)
        defer { Sys.close(fd) }
        try visit(WalkDir(fd: fd, path: [], absolute: upper))
        return scan
    }

    /// Why a redirect value cannot name an origin inside the layer, or nil when it can.
    static func invalidRedirect(_ target: [UInt8]) -> String? {
        let body = target.first == LayerPath.slash ? Array(target.dropFirst()) : target
        if body.isEmpty || body.contains(0) { return "empty or malformed overlay redirect" }
        if target.first != LayerPath.slash && body.contains(LayerPath.slash) { return "relative overlay redirect with a slash" }
        for c in body.split(separator: LayerPath.slash, omittingEmptySubsequences: false) where c.isEmpty || c == [0x2E] || c == [0x2E, 0x2E] {
            return "overlay redirect \(Bytes.string(target)) is not a plain path"
        }
        return nil
    }
}

extension LayerWriter {
    /// The native diff of the overlay upper dir `upper` (deletions as 0/0 devices, `prefix` +
    /// `overlay.opaque` / `overlay.redirect` / `overlay.metacopy` xattrs), then the end of the
    /// archive. Whiteouts and opaque directories are written as ``writeTree(whiteouts:)`` does;
    /// a redirected directory (listed in `scan`) is written with an opaque marker and the whole
    /// subtree `view()` shows at its path; a metacopy file with its upper header and the data
    /// `view()` shows. `view` is the layer's mounted root, asked for only when needed.
    package func writeOverlayUpper(_ upper: [UInt8], prefix: String, scan: OverlayUpperScan, view: () throws -> [UInt8]) throws {
        let redirected = Set(scan.redirectedDirectories), metacopy = Set(scan.metacopyFiles)
        var viewfd: Int32 = -1
        defer { if viewfd >= 0 { Sys.close(viewfd) } }
        func viewRoot() throws -> Int32 {
            if viewfd < 0 { viewfd = try Walker.openRoot(try view()) }
            return viewfd
        }
        let opaqueName = Bytes.of(prefix + "overlay.opaque")
        try Walker.walk(root: upper, visit: { dir, name, info in
            let path = dir.child(name)
            if info.isOverlayWhiteout {
                try self.writeOverlayWhiteout(path: path, info: info)
                return .descend
            }
            if info.isDirectory {
                try self.writeEntry(path: path, info: info, dirfd: dir.fd, name: name, absolute: dir.absoluteChild(name))
                if redirected.contains(path) {
                    if let h = self.lastHeader { try self.writeOpaqueMarker(directory: path, header: h) }
                    try self.writeViewSubtree(path, viewRoot: try viewRoot(), view: try view())
                    return .skip
                }
                let opaque = try Sys.getXattr(path: dir.absoluteChild(name), name: opaqueName)
                if opaque == [UInt8(ascii: "y")], let h = self.lastHeader { try self.writeOpaqueMarker(directory: path, header: h) }
                return .descend
            }
            if info.kind == .regular && metacopy.contains(path) {
                try self.writeMetacopy(path: path, info: info, dir: dir, name: name, viewRoot: try viewRoot())
                return .descend
            }
            try self.writeEntry(path: path, info: info, dirfd: dir.fd, name: name, absolute: dir.absoluteChild(name))
            return .descend
        })
        try tar.finish()
    }

    /// Every entry below `path` in the mounted view, at its path in the layer.
    private func writeViewSubtree(_ path: [UInt8], viewRoot: Int32, view: [UInt8]) throws {
        let (fd, err) = Sys.openInRoot(viewRoot, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        if fd < 0 { throw SystemError("open", view + [LayerPath.slash] + path, errno: err) }
        Sys.close(fd)
        try Walker.walk(root: view + [LayerPath.slash] + path, visit: { dir, name, info in
            try self.writeEntry(path: LayerPath.join(path, dir.child(name)), info: info, dirfd: dir.fd, name: name,
                                absolute: dir.absoluteChild(name))
            return .descend
        })
    }

    /// A metadata-only copy-up: the header from the upper file (its size from the data), the
    /// data from the same path in the mounted view.
    private func writeMetacopy(path: [UInt8], info: FileInfo, dir: WalkDir, name: [UInt8], viewRoot: Int32) throws {
        let absolute = dir.absoluteChild(name)
        let x = try LayerXattrs.read(path: absolute, dirfd: dir.fd, name: name)
        guard var h = header(path: path, info: info, linkTarget: nil, xattrs: x) else { return }
        guard h.kind == .regular else {
            try tar.writeHeader(h)
            entries += 1
            return
        }
        let (fd, err) = Sys.openInRoot(viewRoot, path, O_RDONLY | O_NOFOLLOW)
        if fd < 0 { throw SystemError("open (metacopy data)", absolute, errno: err) }
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, shown: absolute)

        h.size = Int64(st.st_size)
        try tar.writeHeader(h)
        let short = try tar.copyData(from: fd, path: absolute)
        if short > 0 { throw SystemError("read (metacopy data)", absolute, errno: EIO) }
        entries += 1
    }
}

extension BranchChanges {
    /// Changes of the overlay upper `upper` (xattrs under `xattrPrefix`) against its parent,
    /// for uppers made with `redirect_dir` or `metacopy`: entries are looked up in the parent's
    /// mounted view `parentView` (nil: no parent), which follows the lowers' own redirects; a
    /// redirected directory's subtree is the comparison of `parentView` and the layer's mounted
    /// view `layerView` at its path (the directory added where the parent has no directory,
    /// else modified when its attributes or its content changed).
    package static func changes(upper: [UInt8], xattrPrefix: String, parentView: [UInt8]?, layerView: [UInt8]) throws -> [Change] {
        let redirect = Bytes.of(xattrPrefix + "overlay.redirect")
        return try changes(upper: upper, lowers: parentView.map { [$0] } ?? [], form: .overlay(xattrPrefix: xattrPrefix),
                           redirected: { dir, name, info, below in
            guard try Sys.getXattr(path: dir.absoluteChild(name), name: redirect) != nil else { return nil }
            let path = dir.child(name)
            let base: [UInt8]? = below?.isDirectory == true ? parentView.map { $0 + [LayerPath.slash] + path } : nil
            let sub = try TreeDiff.changes(base: base, layer: layerView + [LayerPath.slash] + path)
            var out: [Change] = []
            if let below {
                let same = below.isDirectory && below.permissions == info.permissions && below.uid == info.uid && below.gid == info.gid
                if !same || !sub.isEmpty { out.append(Change(.modify, path, info: info)) }
            } else {
                out.append(Change(.add, path, info: info))
            }
            return out + sub.map { Change($0.kind, LayerPath.join(path, $0.path), info: $0.info, isLinkPeer: $0.isLinkPeer) }
        })
    }
}
