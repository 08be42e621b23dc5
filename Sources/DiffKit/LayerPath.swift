// LayerPath: byte-path helpers for the relative paths of a layer.
import DiffKitArchive
import DiffKitSystem
#if canImport(Glibc)
import Glibc
#endif

/// Byte-path helpers. Layer paths are relative (`a/b`), bytes, never with a leading `/`.
package enum LayerPath {
    /// The path separator byte, `/`.
    package static let slash = UInt8(ascii: "/")

    /// `dir/name`, or `name` alone when `dir` is empty (the root).
    package static func join(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] {
        dir.isEmpty ? name : dir + [slash] + name
    }

    /// (parent, base) of a relative path.
    package static func split(_ path: [UInt8]) -> ([UInt8], [UInt8]) {
        guard let i = path.lastIndex(of: slash) else { return ([], path) }
        return (Array(path[..<i]), Array(path[(i + 1)...]))
    }

    /// Whether `dir` is a proper ancestor of `path` (`a` of `a/b`, not of `a-b` or `a`).
    package static func isAncestor(_ dir: [UInt8], of path: [UInt8]) -> Bool {
        path.count > dir.count && path[dir.count] == slash && path.starts(with: dir)
    }

    /// Lexical clean as Go's filepath.Clean, returning the components; `..` that would climb
    /// above the start is kept as a leading `..` so the caller can refuse it.
    package static func components(_ name: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for part in name.split(separator: slash, omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.first == UInt8(ascii: ".") && part.last == UInt8(ascii: ".") {
                if let last = out.last, last != [UInt8(ascii: "."), UInt8(ascii: ".")] { out.removeLast() } else if name.first != slash {
                    out.append(Array(part))
                }
                continue
            }
            out.append(Array(part))
        }
        return out
    }
}
