// The naive change source: a merge walk of two trees (moby's pkg/archive ChangesDirs), with
// continuity's content compare for same-size files whose timestamps were truncated. The walk goes
// in path order and hands its findings to a ChangeSequencer, so changes stream out as they are
// found and nothing the size of the tree is kept.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// The naive change source: the changes between two directory trees, found by comparing them.
public enum TreeDiff {
    /// Changes that turn `base` into `layer`, sorted in path order. `base == nil` means an
    /// empty parent: everything in `layer` is added. `snapshots`: `layer` is a btrfs snapshot of
    /// `base` (or the reverse), so a file with the same inode number and ctime is unchanged and
    /// is not read.
    package static func changes(base: [UInt8]?, layer: [UInt8], snapshots: Bool = false) throws -> [Change] {
        var out: [Change] = []
        try forEachChange(base: base, layer: layer, snapshots: snapshots) { out.append($0) }
        out.sort(by: Change.pathOrder)
        return out
    }

    /// The changes that turn `base` into `layer`, each passed to `body` as soon as it is known,
    /// in path order; a link peer whose group changed at a later path follows that change.
    ///
    /// With more than one core a second thread reads the base ahead of the walk of the layer
    /// (then compares contents), and a third compares contents; the order of the changes does not
    /// depend on timing.
    package static func forEachChange(base: [UInt8]?, layer: [UInt8], snapshots: Bool = false,
                                      _ body: (Change) throws -> Void) throws {
        let parallel = sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1
        let comparer = ContentComparer()
        let newFd = try Walker.openRoot(layer)
        defer { Sys.close(newFd) }
        let newDir = WalkDir(fd: newFd, path: [], absolute: layer)
        var comparing: (@Sendable () -> Void)? = nil
        if parallel { comparing = { @Sendable in comparer.work() } }
        try withoutActuallyEscaping(body) { (body: @escaping (Change) throws -> Void) in
            let sequencer = ChangeSequencer(comparer: comparer, body: body)
            try beside(comparing, stop: { comparer.close() }) {
                guard let base else {
                    try DiffWalk(comparer: comparer, base: BaseOnDemand(root: [])).addAll(newDir, into: sequencer)
                    return try sequencer.finish()
                }
                // With a second core the base is read ahead on it (then it compares contents too).
                let ahead = parallel ? BaseReadAhead(root: base, comparer: comparer) : nil
                var reading: (@Sendable () -> Void)? = nil
                if let ahead { reading = { @Sendable in ahead.run(); comparer.work() } }
                let walk = try DiffWalk(comparer: comparer, base: base, from: ahead ?? BaseOnDemand(root: base),
                                        layer: layer, newFd: newFd, snapshots: snapshots)
                try beside(reading, stop: { ahead?.stop(); comparer.close() }) {
                    try walk.compare(new: newDir, only: nil, into: sequencer)
                    try sequencer.finish()
                }
            }
        }
    }

    /// Run `body` with `work` on a thread of its own (none when nil), then `stop` it and wait for it.
    static func beside<R>(_ work: (@Sendable () -> Void)?, stop: () -> Void, _ body: () throws -> R) throws -> R {
        guard let work else { return try body() }
        let thread = try SystemThread(work)
        let result = Result { try body() }
        stop()
        thread.join()
        return try result.get()
    }
}

/// One walk of two trees in path order, reporting ``DiffEvent``s: the layer's directories read
/// here, the base's from `base` (read ahead on another thread, or when asked).
struct DiffWalk {
    let comparer: ContentComparer
    var base: BaseDirectories
    var snapshots = false
    var oldDev: UInt64 = 0
    var newDev: UInt64 = 0

    init(comparer: ContentComparer, base: BaseDirectories) {
        self.comparer = comparer
        self.base = base
    }

    /// A walk of the layer open at `newFd` against the tree at `base`, whose directories come
    /// from `directories`.
    init(comparer: ContentComparer, base: [UInt8], from directories: BaseDirectories, layer: [UInt8], newFd: Int32,
         snapshots: Bool) throws {
        self.init(comparer: comparer, base: directories)
        self.snapshots = snapshots
        oldDev = FileInfo(try Sys.fstatat(AT_FDCWD, base)).device
        newDev = FileInfo(try Sys.fstat(newFd, shown: layer)).device
    }

    /// A subtree still to walk: its events come when the walk of its directory reaches `key`
    /// (`name/` in byte order), after every sibling that sorts before that.
    struct Descent {
        let name: [UInt8]
        let key: [UInt8]
        /// Present on both sides (compared), or only in the layer (all added).
        let pair: Bool
        /// An unchanged directory whose `.enter` was reported: `.leave` follows its subtree.
        let quiet: Bool
        let only: PathSet.Cursor?

        init(_ name: [UInt8], pair: Bool, quiet: Bool = false, only: PathSet.Cursor? = nil) {
            self.name = name
            self.key = name + [LayerPath.slash]
            self.pair = pair
            self.quiet = quiet
            self.only = only
        }
    }

    /// Compare the layer's directory `new` with the base's at the same path, reporting what
    /// differs below them in path order.
    func compare(new: WalkDir, only: PathSet.Cursor?, into sink: DiffEventSink) throws {
        let old = try base.directory(BaseDirectory.key(new.path), only: only, help: sink.helpWhileWaiting)
        let olds = old.entries
        var news = try Sys.readDirectory(new.fd, shown: new.absolute)
        if let only { news.removeAll { !only.has($0.name) } }
        var found: [(name: [UInt8], event: DiffEvent)] = []
        var descents: [Descent] = []
        var i = 0, j = 0
        while i < olds.count || j < news.count {
            let o = i < olds.count ? olds[i] : nil
            let n = j < news.count ? news[j] : nil
            if let o, n == nil || o.name.lexicographicallyPrecedes(n!.name) {
                found.append((o.name, .change(Change(.delete, new.child(o.name)))))
                i += 1
                continue
            }
            let ne = n!
            j += 1
            let path = new.child(ne.name)
            let ni = FileInfo(try Sys.fstatat(new.fd, ne.name, shown: new.absoluteChild(ne.name)))
            guard let oe = o, oe.name == ne.name else {
                found.append((ne.name, .change(Change(.add, path, info: ni))))
                if ni.isDirectory { descents.append(Descent(ne.name, pair: false)) }
                continue
            }
            i += 1
            // Same inode on the same device (hardlink farms, snapshots): identical, unseen below.
            if oe.ino == ne.ino && oldDev == newDev { continue }
            let oi = oe.info
            if snapshots && !ni.isDirectory && ni.isUnchangedSnapshot(of: oi) {
                if ni.links > 1 { found.append((ne.name, .unchanged(path: path, info: ni))) }
                continue
            }
            let verdict = try Self.differ(oe, ni, new: new, name: ne.name)
            if verdict == .sameIfContentEqual {
                let ticket = comparer.add(.init(old: old.absolute + [LayerPath.slash] + oe.name, new: new.absoluteChild(ne.name), size: ni.size))
                found.append((ne.name, .compare(ticket: ticket, path: path, info: ni)))
                continue
            }
            let differs = verdict == .different
            if ni.isDirectory {
                if !oi.isDirectory {
                    // file → directory: the directory and everything in it.
                    found.append((ne.name, .change(Change(.modify, path, info: ni))))
                    descents.append(Descent(ne.name, pair: false))
                } else if differs {
                    found.append((ne.name, .change(Change(.modify, path, info: ni))))
                    descents.append(Descent(ne.name, pair: true, only: only?.child(ne.name)))
                } else {
                    // Every ancestor of a change is reported as modified (moby): known after its subtree.
                    found.append((ne.name, .enter(path: path, info: ni)))
                    descents.append(Descent(ne.name, pair: true, quiet: true, only: only?.child(ne.name)))
                }
            } else if differs {
                found.append((ne.name, .change(Change(.modify, path, info: ni))))
            } else if ni.links > 1 {
                found.append((ne.name, .unchanged(path: path, info: ni)))
            }
        }
        news = []
        // The base's directories this walk will not go into: not to be read ahead.
        let paired = Set(descents.lazy.filter(\.pair).map(\.name))
        for o in olds where o.info.isDirectory && !paired.contains(o.name) {
            base.skip(old.key + o.name + [LayerPath.slash])
        }
        descents.sort { $0.key.lexicographicallyPrecedes($1.key) }
        var d = 0
        for (name, event) in found {
            while d < descents.count && descents[d].key.lexicographicallyPrecedes(name) {
                try descend(descents[d], new: new, into: sink)
                d += 1
            }
            try sink.put(event)
        }
        while d < descents.count {
            try descend(descents[d], new: new, into: sink)
            d += 1
        }
    }

    /// Report everything below `dir` as added, in path order.
    func addAll(_ dir: WalkDir, into sink: DiffEventSink) throws {
        var descents: [Descent] = []
        var d = 0
        for e in try Sys.readDirectory(dir.fd, shown: dir.absolute) {
            while d < descents.count && descents[d].key.lexicographicallyPrecedes(e.name) {
                try descend(descents[d], new: dir, into: sink)
                d += 1
            }
            let info = FileInfo(try Sys.fstatat(dir.fd, e.name, shown: dir.absoluteChild(e.name)))
            try sink.put(.change(Change(.add, dir.child(e.name), info: info)))
            if info.isDirectory {
                let sub = Descent(e.name, pair: false)
                let at = descents[d...].firstIndex { sub.key.lexicographicallyPrecedes($0.key) } ?? descents.endIndex
                descents.insert(sub, at: at)
            }
        }
        while d < descents.count {
            try descend(descents[d], new: dir, into: sink)
            d += 1
        }
    }

    /// Walk the subtree `s` of the layer's directory `new`.
    private func descend(_ s: Descent, new: WalkDir, into sink: DiffEventSink) throws {
        let nd = try openChild(new, s.name)
        defer { Sys.close(nd.fd) }
        if s.pair {
            try compare(new: nd, only: s.only, into: sink)
        } else {
            try addAll(nd, into: sink)
        }
        if s.quiet { try sink.put(.leave) }
    }

    func openChild(_ dir: WalkDir, _ name: [UInt8]) throws -> WalkDir {
        let fd = try Walker.openChild(dir, name)
        return WalkDir(fd: fd, path: dir.child(name), absolute: dir.absoluteChild(name))
    }

    /// Different if mode, owner or rdev differ; for non-directories also size or mtime
    /// (moby's tolerance: equal seconds and one side's nanoseconds 0 is "truncated by tar");
    /// when both nanoseconds are 0 the content decides (continuity); then the layer xattrs.
    enum Verdict { case same, different, sameIfContentEqual }

    static func differ(_ old: BaseDirectory.Entry, _ n: FileInfo, new: WalkDir, name: [UInt8]) throws -> Verdict {
        let o = old.info
        if o.kind != n.kind || o.permissions != n.permissions || o.uid != n.uid || o.gid != n.gid || o.rdev != n.rdev {
            return .different
        }
        if !n.isDirectory {
            if o.size != n.size || o.mtime != n.mtime { return .different }
            if o.mtimeNanoseconds != n.mtimeNanoseconds && o.mtimeNanoseconds != 0 && n.mtimeNanoseconds != 0 { return .different }
        }
        if try old.xattrs != new.xattrs(name) {
            return .different
        }
        if !n.isDirectory && o.mtimeNanoseconds == 0 && n.mtimeNanoseconds == 0 {
            switch n.kind {
            case .regular where n.size > 0:
                return .sameIfContentEqual
            case .symlink:
                return try old.linkTarget != Sys.readlinkat(new.fd, name) ? .different : .same
            default: break
            }
        }
        return .same
    }
}
