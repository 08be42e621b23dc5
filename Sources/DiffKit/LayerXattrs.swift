// LayerXattrs: the extended attributes a layer carries, read from a file.
import DiffKitArchive
import DiffKitSystem
#if canImport(Glibc)
import Glibc
#endif

/// The extended attributes a layer carries: `security.capability` and `user.*`
/// (containers/storage's set; moby carries only the capability).
package enum LayerXattrs {
    static let capability = Bytes.of("security.capability")
    static let userPrefix = Bytes.of("user.")

    static let userOverlayPrefix = Bytes.of("user.overlay.")

    /// `user.overlay.*` is overlayfs's own state under userxattr, never layer content.
    package static func isExported(_ name: [UInt8]) -> Bool {
        name == capability || (name.starts(with: userPrefix) && !name.starts(with: userOverlayPrefix))
    }

    /// The exported attributes of a file, sorted by name; `fd` is used when open, `name` in
    /// `dirfd` when given (the common "no attributes" answer then costs one short lookup).
    package static func read(path: [UInt8], fd: Int32 = -1, dirfd: Int32 = -1, name entry: [UInt8] = []) throws -> [Xattr] {
        var out: [Xattr] = []
        for name in try Sys.listXattrs(path: path, fd: fd, dirfd: dirfd, name: entry) where isExported(name) {
            if let v = try Sys.getXattr(path: path, fd: fd, name: name) { out.append(Xattr(name: name, value: v)) }
        }
        return out.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }
}
