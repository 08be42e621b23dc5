// Changes of a layer read from its own branch alone — an overlay upper dir (containers/storage's
// pkg/archive OverlayChanges) or an aufs diff dir (moby's pkg/archive Changes): the walk is
// over the branch; the lower branches are only looked up at the paths the branch holds, so the
// cost follows the size of the layer, not of the image.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Changes of a layer read from its own branch (an overlay upper dir or an aufs diff dir),
/// looking paths up in the lower branches only where the branch has them.
package enum BranchChanges {
    static let wh = Bytes.of(".wh.")
    static let whMeta = Bytes.of(".wh..wh.")
    static let whOpaque = Bytes.of(".wh..wh..opq")

    /// Changes of branch `upper` over `lowers` (nearest first), whose deletions take `form`
    /// (overlay: 0/0 devices and the opaque xattr; aufs: `.wh.` files and `.wh..wh..opq`). A
    /// whiteout is a deletion; an opaque directory that hides something is reported deleted (and
    /// not added) and its children as added or modified; an entry the parent's view
    /// has is a modification, except a directory whose size, mode, owner and mtime are all
    /// unchanged; every ancestor of an addition or deletion is modified (containers/storage).
    /// Refinements over the references: a whiteout of a name the lowers do not have is not a
    /// deletion, aufs meta entries (`.wh..wh.*`) are skipped with what is below them, and lookups
    /// follow the union's rules (a whiteout, a non-directory or an opaque directory in a lower
    /// hides the lowers below it).
    /// `redirected`, asked for each directory of the branch, returns the changes of a directory
    /// and its subtree when they are found elsewhere (a redirected overlay directory), else nil.
    package static func changes(upper: [UInt8], lowers: [[UInt8]], form: WhiteoutForm,
                               redirected: ((WalkDir, [UInt8], FileInfo, FileInfo?) throws -> [Change]?)? = nil) throws -> [Change] {
        let aufs = form == .aufs
        var opaqueName: [UInt8] = []
        if case let .overlay(prefix) = form { opaqueName = Bytes.of(prefix + "overlay.opaque") }
        var view = try ParentView(lowers: lowers, form: form)
        defer { view.close() }
        var changes: [Change] = []
        var changedDirs = Set<[UInt8]>()
        /// The directories above the entry being visited (their stat from the walk).
        var ancestors: [FileInfo] = []
        func markAncestors(_ path: [UInt8]) {
            var p = LayerPath.split(path).0
            var depth = ancestors.count
            while !p.isEmpty {
                depth -= 1
                if changedDirs.insert(p).inserted { changes.append(Change(.modify, p, info: ancestors[depth])) }
                p = LayerPath.split(p).0
            }
        }

        try Walker.walk(root: upper, visit: { dir, name, info in
            var path = dir.child(name)
            if aufs && name.starts(with: whMeta) { return .skip }
            let deleted: [UInt8]? = aufs ? (name.starts(with: wh) ? Array(name.dropFirst(4)) : nil) : (info.isOverlayWhiteout ? name : nil)
            let below = try view.lookup(deleted ?? name)
            var kind: Change.Kind
            if let deleted {
                guard below != nil else { return .skip }
                kind = .delete
                path = dir.child(deleted)
            } else if info.isDirectory, let redirected, let sub = try redirected(dir, name, info, below) {
                if !sub.isEmpty { markAncestors(path) }
                changes += sub
                return .skip
            } else if info.isDirectory, below != nil, try Self.isOpaque(dir, name, aufs: aufs, opaqueName: opaqueName) {
                kind = .delete
            } else if let below {
                if info.isDirectory && below.isDirectory && below.size == info.size && below.permissions == info.permissions
                    && below.uid == info.uid && below.gid == info.gid
                    && below.mtime == info.mtime && below.mtimeNanoseconds == info.mtimeNanoseconds {
                    try view.enter(name)
                    ancestors.append(info)
                    return .descend
                }
                kind = .modify
            } else {
                kind = .add
            }
            if info.isDirectory { changedDirs.insert(path) }
            // Parents of an addition or deletion are modified even when their own metadata is not.
            if kind != .modify { markAncestors(path) }
            changes.append(Change(kind, path, info: kind == .delete ? nil : info))
            if info.isDirectory {
                try view.enter(name)
                ancestors.append(info)
            }
            return .descend
        }, leave: { dir in
            if !dir.path.isEmpty {
                view.leave()
                ancestors.removeLast()
            }
        })
        return changes.sorted(by: Change.pathOrder)
    }

    static func isOpaque(_ dir: WalkDir, _ name: [UInt8], aufs: Bool, opaqueName: [UInt8]) throws -> Bool {
        if aufs { return try Sys.lstatIfExists(dir.fd, name + [LayerPath.slash] + whOpaque) != nil }
        return try Sys.getXattr(path: dir.absoluteChild(name), name: opaqueName) == [UInt8(ascii: "y")]
    }
}

/// The parent layer's merged view, looked up one directory at a time as the branch is walked:
/// for the current directory, the descriptors of that directory in each lower where it is
/// visible, nearest first, cut after an opaque one or where a lower hides it.
struct ParentView {
    private var levels: [[Int32]]
    private let aufs: Bool
    private var opaqueName: [UInt8] = []

    init(lowers: [[UInt8]], form: WhiteoutForm) throws {
        aufs = form == .aufs
        if case let .overlay(prefix) = form { opaqueName = Bytes.of(prefix + "overlay.opaque") }
        var fds: [Int32] = []
        for l in lowers {
            do { fds.append(try Sys.open(l, O_RDONLY | O_DIRECTORY)) } catch {
                fds.forEach(Sys.close)
                throw error
            }
        }
        levels = [fds]
    }

    mutating func close() {
        for level in levels { level.forEach(Sys.close) }
        levels = []
    }

    /// What the parent's view has at `name` in the current directory: the nearest lower's entry,
    /// nil when no lower has it or the nearest one holding it is a whiteout.
    func lookup(_ name: [UInt8]) throws -> FileInfo? {
        for fd in levels[levels.count - 1] {
            if aufs, try Sys.lstatIfExists(fd, BranchChanges.wh + name) != nil { return nil }
            guard let st = try Sys.lstatIfExists(fd, name) else { continue }
            let info = FileInfo(st)
            return info.isOverlayWhiteout && !aufs ? nil : info
        }
        return nil
    }

    /// Descend into directory `name`.
    mutating func enter(_ name: [UInt8]) throws {
        var next: [Int32] = []
        for fd in levels[levels.count - 1] {
            if aufs, try Sys.lstatIfExists(fd, BranchChanges.wh + name) != nil { break }
            let (sub, err) = Sys.tryOpenat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            if sub < 0 {
                if err == ENOENT { continue }
                // Not a directory (a file, a symlink or a whiteout): it hides every lower below.
                if err == ENOTDIR || err == ELOOP { break }
                next.forEach(Sys.close)
                throw SystemError("open", name, errno: err)
            }
            next.append(sub)
            let opaque = aufs ? try Sys.lstatIfExists(sub, BranchChanges.whOpaque) != nil
                : try Sys.getXattr(path: name, fd: sub, name: opaqueName) == [UInt8(ascii: "y")]
            if opaque { break }
        }
        levels.append(next)
    }

    mutating func leave() {
        levels.removeLast().forEach(Sys.close)
    }
}
