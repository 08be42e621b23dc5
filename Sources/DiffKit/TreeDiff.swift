// The naive change source: a merge walk of two trees (moby's pkg/archive ChangesDirs),
// with continuity's content compare for same-size files whose timestamps were truncated.
import DiffKitArchive
import DiffKitSystem
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// The naive change source: the changes between two directory trees, found by comparing them.
public enum TreeDiff {
    /// Changes that turn `base` into `layer`, sorted in path order. `base == nil` means an
    /// empty parent: everything in `layer` is added. `snapshots`: `layer` is a btrfs snapshot of
    /// `base` (or the reverse), so a file with the same inode number and ctime is unchanged and
    /// is not read.
    ///
    /// With more than one core, a second thread compares directory pairs the first hands over
    /// and a third compares contents; each keeps its own findings, merged and sorted at the end,
    /// so the result does not depend on timing.
    package static func changes(base: [UInt8]?, layer: [UInt8], snapshots: Bool = false) throws -> [Change] {
        let comparer = ContentComparer()
        let parallel = sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1
        let group = DispatchGroup()
        if parallel {
            DispatchQueue.global().async(group: group) { comparer.work() }
        }
        defer {
            comparer.close()
            group.wait()
        }
        let newFd = try Walker.openRoot(layer)
        defer { Sys.close(newFd) }
        let newDir = WalkDir(fd: newFd, path: [], absolute: layer)
        guard let base else {
            var state = State(comparer: comparer)
            try state.addAll(newDir)
            return state.finish()
        }
        let oldFd = try Walker.openRoot(base)
        defer { Sys.close(oldFd) }
        let pairs = PairWalk(State(comparer: comparer, snapshots: snapshots,
                                   oldDev: FileInfo(try Sys.fstat(oldFd, shown: base)).device,
                                   newDev: FileInfo(try Sys.fstat(newFd, shown: layer)).device))
        var state = try pairs.run(WalkDir(fd: oldFd, path: [], absolute: base), newDir, helpers: parallel ? 1 : 0)
        comparer.close()
        comparer.work()
        group.wait()
        try state.resolveContentCompares()
        state.reportAncestors()
        return state.finish()
    }

    struct State: Sendable {
        var changes: [Change] = []
        /// Content compares run beside the walk; their results are merged at the end.
        let comparer: ContentComparer
        var snapshots = false
        var oldDev: UInt64 = 0
        var newDev: UInt64 = 0
        /// Directories present on both sides and not (yet) reported: an ancestor of a change
        /// found later (on another thread, or by a content compare) is reported at the end.
        var quietDirectories: [[UInt8]: FileInfo] = [:]
        /// Unchanged files with more than one link: candidates to keep a hardlink group intact.
        var linkCandidates: [Change] = []
        /// Where subdirectory pairs can be handed to another thread.
        var pairs: PairWalk? = nil
        /// Only these entries are compared (`TreeDiff+Paths.swift`); nil: everything.
        var only: PathSet.Cursor? = nil

        /// A fresh state for another thread: same settings, nothing found yet.
        func sibling() -> State {
            State(comparer: comparer, snapshots: snapshots, oldDev: oldDev, newDev: newDev, pairs: pairs)
        }

        mutating func absorb(_ other: State) {
            changes += other.changes
            quietDirectories.merge(other.quietDirectories) { a, _ in a }
            linkCandidates += other.linkCandidates
        }

        mutating func finish() -> [Change] {
            var changedInodes = Set<UInt64>()
            for c in changes where c.kind != .delete {
                if let i = c.info, !i.isDirectory, i.links > 1 { changedInodes.insert(i.inode) }
            }
            for var p in linkCandidates where changedInodes.contains(p.info!.inode) {
                p.isLinkPeer = true
                changes.append(p)
            }
            changes.sort(by: Change.pathOrder)
            return changes
        }

        mutating func addAll(_ dir: WalkDir) throws {
            try Walker.walk(dir, visit: { d, name, info in
                changes.append(Change(.add, d.child(name), info: info))
                return .descend
            })
        }

        /// Compare two directories; returns whether anything below changed (as far as this
        /// thread saw: a subtree handed over reports through `reportAncestors`).
        mutating func compare(old: WalkDir, new: WalkDir) throws -> Bool {
            var olds = try Sys.readDirectory(old.fd, shown: old.absolute)
            var news = try Sys.readDirectory(new.fd, shown: new.absolute)
            if let only {
                olds.removeAll { !only.has($0.name) }
                news.removeAll { !only.has($0.name) }
            }
            var i = 0, j = 0
            var changed = false
            while i < olds.count || j < news.count {
                let o = i < olds.count ? olds[i] : nil
                let n = j < news.count ? news[j] : nil
                if let o, n == nil || o.name.lexicographicallyPrecedes(n!.name) {
                    changes.append(Change(.delete, old.child(o.name)))
                    changed = true
                    i += 1
                    continue
                }
                let ne = n!
                j += 1
                let path = new.child(ne.name)
                let ni = FileInfo(try Sys.fstatat(new.fd, ne.name, shown: new.absoluteChild(ne.name)))
                guard let oe = o, oe.name == ne.name else {
                    changes.append(Change(.add, path, info: ni))
                    if ni.isDirectory { try addAll(try open(new, ne.name)) }
                    changed = true
                    continue
                }
                i += 1
                // Same inode on the same device (hardlink farms, snapshots): identical, unseen below.
                if oe.ino == ne.ino && oldDev == newDev { continue }
                let oi = FileInfo(try Sys.fstatat(old.fd, oe.name, shown: old.absoluteChild(oe.name)))
                if snapshots && !ni.isDirectory && ni.isUnchangedSnapshot(of: oi) {
                    if ni.links > 1 { linkCandidates.append(Change(.modify, path, info: ni)) }
                    continue
                }
                let verdict = try Self.differ(oi, ni, old: old, new: new, name: ne.name)
                if verdict == .sameIfContentEqual {
                    comparer.add(.init(path: path, info: ni, old: old.absoluteChild(oe.name), new: new.absoluteChild(ne.name)))
                    continue
                }
                let differs = verdict == .different
                if ni.isDirectory {
                    if !oi.isDirectory {
                        // file → directory: the directory and everything in it.
                        changes.append(Change(.modify, path, info: ni))
                        try addAll(try open(new, ne.name))
                        changed = true
                        continue
                    }
                    if differs { changes.append(Change(.modify, path, info: ni)) }
                    let od = try open(old, oe.name)
                    let nd: WalkDir
                    do { nd = try open(new, ne.name) } catch { Sys.close(od.fd); throw error }
                    var below = false
                    let outer = only
                    only = outer?.child(ne.name)
                    defer { only = outer }
                    if only != nil || pairs?.handOver(od, nd) != true {
                        defer { Sys.close(od.fd); Sys.close(nd.fd) }
                        below = try compare(old: od, new: nd)
                    }
                    // Every ancestor of a change is reported as modified (moby); path order puts it first.
                    if below && !differs { changes.append(Change(.modify, path, info: ni)) }
                    if !below && !differs { quietDirectories[path] = ni }
                    changed = changed || below || differs
                } else if differs {
                    changes.append(Change(.modify, path, info: ni))
                    changed = true
                } else if ni.links > 1 {
                    linkCandidates.append(Change(.modify, path, info: ni))
                }
            }
            return changed
        }

        func open(_ dir: WalkDir, _ name: [UInt8]) throws -> WalkDir {
            let fd = try Walker.openChild(dir, name)
            return WalkDir(fd: fd, path: dir.child(name), absolute: dir.absoluteChild(name))
        }

        /// Different if mode, owner or rdev differ; for non-directories also size or mtime
        /// (moby's tolerance: equal seconds and one side's nanoseconds 0 is "truncated by tar");
        /// when both nanoseconds are 0 the content decides (continuity); then the layer xattrs.
        enum Verdict { case same, different, sameIfContentEqual }

        static func differ(_ o: FileInfo, _ n: FileInfo, old: WalkDir, new: WalkDir, name: [UInt8]) throws -> Verdict {
            if o.kind != n.kind || o.permissions != n.permissions || o.uid != n.uid || o.gid != n.gid || o.rdev != n.rdev {
                return .different
            }
            if !n.isDirectory {
                if o.size != n.size || o.mtime != n.mtime { return .different }
                if o.mtimeNanoseconds != n.mtimeNanoseconds && o.mtimeNanoseconds != 0 && n.mtimeNanoseconds != 0 { return .different }
            }
            if try old.xattrs(name) != new.xattrs(name) {
                return .different
            }
            if !n.isDirectory && o.mtimeNanoseconds == 0 && n.mtimeNanoseconds == 0 {
                switch n.kind {
                case .regular where n.size > 0:
                    return .sameIfContentEqual
                case .symlink:
                    return try Sys.readlinkat(old.fd, name) != Sys.readlinkat(new.fd, name) ? .different : .same
                default: break
                }
            }
            return .same
        }

        /// Merge the content compares: changed files become modifications, unchanged ones may
        /// still be hardlink peers.
        mutating func resolveContentCompares() throws {
            for (job, same) in try comparer.results() {
                if !same {
                    changes.append(Change(.modify, job.path, info: job.info))
                } else if job.info.links > 1 {
                    linkCandidates.append(Change(.modify, job.path, info: job.info))
                }
            }
        }

        /// Every ancestor of a change is reported as modified (moby): the ones the walk could not
        /// know about when it left them.
        mutating func reportAncestors() {
            var visited = Set<[UInt8]>()
            var ancestors: [Change] = []
            for i in changes.indices {
                var p = LayerPath.split(changes[i].path).0
                while !p.isEmpty, visited.insert(p).inserted {
                    if let info = quietDirectories[p] { ancestors.append(Change(.modify, p, info: info)) }
                    p = LayerPath.split(p).0
                }
            }
            // One exact growth instead of doubling as they come: the list is the largest thing a
            // diff keeps, and a doubled copy of it was the peak of the whole run.
            quietDirectories = [:]
            changes.reserveCapacity(changes.count + ancestors.count)
            changes.append(contentsOf: ancestors)
        }

        static func readFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ shown: [UInt8]) throws -> Int {
            var got = 0
            while got < count {
                let n = try Sys.read(fd, buf + got, count - got, shown: shown)
                if n == 0 { break }
                got += n
            }
            return got
        }
    }
}

/// The directory pairs of one `changes` run, shared by its threads: a thread about to descend
/// into a pair hands it over when another thread waits idle, else descends itself; so at most
/// one pair per idle thread is pending, and each thread keeps its own `State`.
final class PairWalk: Sendable {
    private struct Shared {
        var pending: [(old: WalkDir, new: WalkDir)] = []
        var busy = 1              // the first thread, on the roots
        var failure: Error?
        var found: [TreeDiff.State] = []
    }
    private let template: TreeDiff.State
    private let shared = Condition(Shared())

    init(_ template: TreeDiff.State) {
        self.template = template
    }

    /// Compare the roots on this thread and `helpers` more; the merged findings.
    func run(_ old: WalkDir, _ new: WalkDir, helpers: Int) throws -> TreeDiff.State {
        let group = DispatchGroup()
        for _ in 0..<helpers {
            DispatchQueue.global().async(group: group) { self.work(first: nil) }
        }
        work(first: (old, new))
        group.wait()
        let (pending, failure, found) = shared.withLock { ($0.pending, $0.failure, $0.found) }
        for p in pending {
            Sys.close(p.old.fd)
            Sys.close(p.new.fd)
        }
        if let failure { throw failure }
        var merged = template.sibling()
        for f in found { merged.absorb(f) }
        return merged
    }

    /// Take a pair (its descriptors with it) if a thread waits for one and none has failed.
    func handOver(_ old: WalkDir, _ new: WalkDir) -> Bool {
        let taken = shared.withLockCountingWaiters { s, waiting in
            guard s.failure == nil, waiting > s.pending.count else { return false }
            s.pending.append((old, new))
            return true
        }
        if taken { shared.signal() }
        return taken
    }

    private func work(first: (old: WalkDir, new: WalkDir)?) {
        var state = template.sibling()
        state.pairs = self
        var pair = first
        var owned = false                 // the roots belong to the caller
        while true {
            if let (old, new) = pair {
                var error: Error?
                do { _ = try state.compare(old: old, new: new) } catch let e { error = e }
                if owned {
                    Sys.close(old.fd)
                    Sys.close(new.fd)
                }
                let over = shared.withLock { s in
                    if let error, s.failure == nil { s.failure = error }
                    s.busy -= 1
                    return s.busy == 0 || s.failure != nil
                }
                if over { shared.broadcast() }
            }
            pair = shared.wait(until: { $0.failure != nil || !$0.pending.isEmpty || $0.busy == 0 }) { s in
                guard s.failure == nil, let next = s.pending.popLast() else { return nil }
                s.busy += 1
                return next
            }
            guard pair != nil else { break }
            owned = true
        }
        shared.withLock { $0.found.append(state) }
    }
}

/// Content compares (continuity's rule) for files whose stat cannot tell: queued by the walk,
/// worked off by a second thread while the walk goes on, and by the walking thread at the end.
/// Results are kept by job index, so the outcome does not depend on timing.
final class ContentComparer: Sendable {
    struct Job: Sendable {
        var path: [UInt8]
        var info: FileInfo
        var old: [UInt8]
        var new: [UInt8]
    }

    private struct Queue {
        var jobs: [Job] = []
        var outcomes: [Result<Bool, Error>?] = []
        var next = 0
        var closed = false
    }
    private let queue = Condition(Queue())

    init() {}

    func add(_ job: Job) {
        queue.withLock {
            $0.jobs.append(job)
            $0.outcomes.append(nil)
        }
        queue.signal()
    }

    /// No more jobs will come.
    func close() {
        queue.withLock { $0.closed = true }
        queue.broadcast()
    }

    /// Take and run jobs until the queue is closed and empty.
    func work() {
        let size = 1 << 18
        let a = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        let b = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { a.deallocate(); b.deallocate() }
        while true {
            let taken = queue.wait(until: { $0.next < $0.jobs.count || $0.closed }) { q -> (Int, Job)? in
                guard q.next < q.jobs.count else { return nil }
                defer { q.next += 1 }
                return (q.next, q.jobs[q.next])
            }
            guard let (i, job) = taken else { return }
            let outcome = Result { try Self.sameContent(job.old, job.new, job.info.size, a, b, size) }
            queue.withLock {
                $0.outcomes[i] = outcome
                // Only the layer path and its stat are needed from here on (memory: one job per
                // compared file is kept until the end).
                $0.jobs[i].old = []
                $0.jobs[i].new = []
            }
        }
    }

    /// (job, same content) for every job, in the order they were queued; the first I/O error is thrown.
    func results() throws -> [(Job, Bool)] {
        try queue.withLock { q in try zip(q.jobs, q.outcomes).map { ($0, try $1!.get()) } }
    }

    /// Both files have `size` bytes by their stat; read exactly that much (no read for EOF).
    static func sameContent(_ pa: [UInt8], _ pb: [UInt8], _ size: Int64, _ bufA: UnsafeMutableRawPointer, _ bufB: UnsafeMutableRawPointer, _ chunk: Int) throws -> Bool {
        let a = try Sys.open(pa, O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(a) }
        let b = try Sys.open(pb, O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(b) }
        var left = size
        while left > 0 {
            let want = Int(min(Int64(chunk), left))
            let na = try TreeDiff.State.readFull(a, bufA, want, pa)
            let nb = try TreeDiff.State.readFull(b, bufB, want, pb)
            if na != nb || memcmp(bufA, bufB, na) != 0 { return false }
            if na < want { return true }
            left -= Int64(na)
        }
        return true
    }
}
