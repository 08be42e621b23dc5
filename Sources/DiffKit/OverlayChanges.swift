// Changes of an overlay layer read from its upper dir alone (containers/storage's
// OverlayChanges, BEHAVIOUR.md §3.5): the walk is over the upper dir; the lower dirs are only
// looked up at the paths the upper holds, so the cost follows the size of the layer, not of
// the image.
import ArchiveBridge

#if canImport(Glibc)
import Glibc
#endif

public enum OverlayChanges {
    /// Changes of `upper` over `lowers` (nearest first). A 0/0 device is a deletion; an opaque
    /// directory that hides something is reported deleted (and not added) and its children as
    /// added or modified (CHG-OVL-3); an entry the parent's view has is a modification, except a
    /// directory whose size, mode, owner and mtime are all unchanged; parents of additions and
    /// deletions are reported modified. Two refinements over containers/storage: a whiteout of a
    /// name the lowers do not have is not a deletion, and lookups follow overlay's own rules (a
    /// non-directory or an opaque directory in a lower hides the lowers below it).
    public static func changes(upper: [UInt8], lowers: [[UInt8]], xattrPrefix: String = "trusted.") throws -> [Change] {
        let opaqueName = Bytes.of(xattrPrefix + "overlay.opaque")
        var view = try ParentView(lowers: lowers, opaqueName: opaqueName)
        defer { view.close() }
        var changes: [Change] = []
        var changedDirs = Set<[UInt8]>()
        /// The directories above the entry being visited (their stat from the walk).
        var ancestors: [FileInfo] = []

        try Walker.walk(root: upper, visit: { dir, name, info in
            let path = dir.child(name)
            let below = try view.lookup(name)
            var kind: Change.Kind
            if info.isOverlayWhiteout {
                guard below != nil else { return .skip }
                kind = .delete
            } else if info.isDirectory, below != nil,
                      try Sys.getXattr(path: dir.absoluteChild(name), name: opaqueName) == [UInt8(ascii: "y")] {
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
            if kind != .modify {
                // Parents of an addition or deletion are modified even when their own metadata is not.
                var p = LayerPath.split(path).0
                var depth = ancestors.count
                while !p.isEmpty {
                    depth -= 1
                    if changedDirs.insert(p).inserted { changes.append(Change(.modify, p, info: ancestors[depth])) }
                    p = LayerPath.split(p).0
                }
            }
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
}

/// The parent layer's merged view, looked up one directory at a time as the upper is walked:
/// for the current directory, the descriptors of that directory in each lower where it is
/// visible, nearest first, cut after an opaque one or where a lower hides it.
struct ParentView {
    private var levels: [[Int32]]
    private let opaqueName: [UInt8]

    init(lowers: [[UInt8]], opaqueName: [UInt8]) throws {
        self.opaqueName = opaqueName
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
            guard let st = try Sys.lstatIfExists(fd, name) else { continue }
            let info = FileInfo(st)
            return info.isOverlayWhiteout ? nil : info
        }
        return nil
    }

    /// Descend into directory `name`.
    mutating func enter(_ name: [UInt8]) throws {
        var next: [Int32] = []
        for fd in levels[levels.count - 1] {
            let (sub, err) = Sys.tryOpenat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            if sub < 0 {
                if err == ENOENT { continue }
                // Not a directory (a file, a symlink or a whiteout): it hides every lower below.
                if err == ENOTDIR || err == ELOOP { break }
                next.forEach(Sys.close)
                throw SystemError("open", name, errno: err)
            }
            next.append(sub)
            let opaque = try Sys.getXattr(path: name, fd: sub, name: opaqueName)
            if opaque == [UInt8(ascii: "y")] { break }
        }
        levels.append(next)
    }

    mutating func leave() {
        levels.removeLast().forEach(Sys.close)
    }
}
