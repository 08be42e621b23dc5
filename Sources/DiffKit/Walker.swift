// The one tree walker: openat / getdents64 / fstatat, depth-first in byte order of names,
// each entry stat'ed exactly once. Everything that reads a tree (changes, exports, copies,
// sizes) goes through it.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// An open directory inside a walk.
package struct WalkDir: Sendable {
    /// Descriptor of the directory (valid during the visit).
    package let fd: Int32
    /// Path relative to the walk's root (empty for the root).
    package let path: [UInt8]
    /// Absolute path, for the calls that need one (xattrs) and for messages.
    package let absolute: [UInt8]

    /// The relative path of entry `name` of this directory.
    package func child(_ name: [UInt8]) -> [UInt8] { LayerPath.join(path, name) }
    /// The absolute path of entry `name` of this directory.
    package func absoluteChild(_ name: [UInt8]) -> [UInt8] { absolute + [LayerPath.slash] + name }

    /// The layer xattrs of entry `name` of this directory.
    package func xattrs(_ name: [UInt8]) throws -> [Xattr] {
        try LayerXattrs.read(path: absoluteChild(name), dirfd: fd, name: name)
    }
}

/// Depth-first walks of a directory tree in name-byte order, one `fstatat` per entry.
package enum Walker {
    /// What a walk does after visiting a directory: go into it or skip it.
    package enum Step { case descend, skip }

    /// Open a directory for walking (follows a symlink only for the root itself).
    package static func openRoot(_ path: [UInt8]) throws -> Int32 {
        try Sys.open(path, O_RDONLY | O_DIRECTORY)
    }

    /// Open directory `name` of `dir` for walking, without following a symlink.
    package static func openChild(_ dir: WalkDir, _ name: [UInt8]) throws -> Int32 {
        try Sys.openat(dir.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: dir.absoluteChild(name))
    }

    /// Walk everything below `root` (not the root itself). `visit(dir, name, info)` is called in
    /// depth-first pre-order with entries of a directory sorted by name bytes; return `.skip`
    /// to not descend into a directory. `leave(dir)` runs after a directory's children.
    package static func walk(
        root: [UInt8],
        visit: (WalkDir, [UInt8], FileInfo) throws -> Step,
        leave: ((WalkDir) throws -> Void)? = nil
    ) throws {
        let fd = try openRoot(root)
        defer { Sys.close(fd) }
        try walk(WalkDir(fd: fd, path: [], absolute: root), visit: visit, leave: leave)
    }

    /// Walk everything below the open directory `dir`, as ``walk(root:visit:leave:)`` does.
    package static func walk(
        _ dir: WalkDir,
        visit: (WalkDir, [UInt8], FileInfo) throws -> Step,
        leave: ((WalkDir) throws -> Void)? = nil
    ) throws {
        for e in try Sys.readDirectory(dir.fd, shown: dir.absolute) {
            let info = FileInfo(try Sys.fstatat(dir.fd, e.name, shown: dir.absoluteChild(e.name)))
            if try visit(dir, e.name, info) == .descend && info.isDirectory {
                let sub = try openChild(dir, e.name)
                defer { Sys.close(sub) }
                try walk(WalkDir(fd: sub, path: dir.child(e.name), absolute: dir.absoluteChild(e.name)), visit: visit, leave: leave)
            }
        }
        try leave?(dir)
    }
}
