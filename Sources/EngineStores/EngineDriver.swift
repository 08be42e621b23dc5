// Where an engine's driver keeps a layer's files, and read-only views of them: a layer with
// lowers is mounted as an overlay of its own diff and its lowers only (no upper, so nothing is
// written to them), on a directory of DiffKit's own; a plain tree (vfs, btrfs, an overlay base
// layer) is read where it is, or bind-mounted read-only where a caller asked for a mount.
import DiffKitSystem
import DiffKit
import Drivers
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A layer's files as the engine's driver keeps them.
enum LayerFiles: Sendable {
    /// An overlay branch: the layer's `diff` over its lowers' (absolute, nearest first);
    /// `lowerLinks` are the `lower` file's `l/<LINK>` entries, relative to `home`.
    case overlay(home: [UInt8], id: String, diff: [UInt8], lowerLinks: [String], lowers: [[UInt8]])
    /// A full tree (vfs dir, btrfs subvolume).
    case tree([UInt8])
}

/// The driver directory of an adopted store.
struct EngineDriver: Sendable {
    /// The engine's name for the driver (`overlay2`, `overlay`, `vfs`, `btrfs`).
    let name: String
    /// The driver's directory in the engine's store.
    let home: [UInt8]

    var isOverlay: Bool { name == "overlay2" || name == "overlay" }
    var isBtrfs: Bool { name == "btrfs" }

    /// Check that `home` has the driver's layout.
    func checkLayout() throws {
        let expected: String
        switch name {
        case "overlay2", "overlay": expected = "l"
        case "vfs": expected = "dir"
        default: expected = "subvolumes"
        }
        // An empty store may lack the directory of layers still: only a present one that is not a directory is wrong.
        let p = home + Bytes.of("/" + expected)
        if Sys.exists(p) && !EngineFiles.isDirectory(p) {
            throw EngineStoreError.notAStore(path: Bytes.string(home), expected: "a \(name) driver directory (\(expected)/ is not a directory)", hint: nil)
        }
    }

    /// Where layer `id`'s files are; throws when the driver has no such layer.
    func files(_ id: String) throws -> LayerFiles {
        switch name {
        case "overlay2", "overlay":
            let dir = home + Bytes.of("/" + id)
            let diff = dir + Bytes.of("/diff")
            guard EngineFiles.isDirectory(diff) else {
                throw EngineStoreError.badRecord(path: Bytes.string(diff), reason: "layer \(id)'s directory is missing")
            }
            let links = try EngineFiles.optionalText(dir + Bytes.of("/lower")).map {
                $0.split(separator: ":").map(String.init)
            } ?? []
            let lowers = try links.map { link -> [UInt8] in
                let name = link.hasPrefix("l/") ? String(link.dropFirst(2)) : ""
                guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                    throw EngineStoreError.badRecord(path: Bytes.string(dir) + "/lower", reason: "'\(link)' is not an l/<link> entry")
                }
                let target = try Sys.readlinkat(AT_FDCWD, home + Bytes.of("/l/" + name))
                // "../<id>/diff", relative to home/l
                let prefix = Bytes.of("../")
                guard target.starts(with: prefix), target.split(separator: LayerPath.slash).count == 3,
                      Array(target.split(separator: LayerPath.slash)[2]) == Bytes.of("diff") else {
                    throw EngineStoreError.badRecord(path: Bytes.string(home) + "/l/" + name, reason: "points to \(Bytes.string(target)), not ../<id>/diff")
                }
                return home + [LayerPath.slash] + target.dropFirst(3)
            }
            return .overlay(home: home, id: id, diff: diff, lowerLinks: links, lowers: lowers)
        case "vfs":
            let dir = home + Bytes.of("/dir/" + id)
            guard EngineFiles.isDirectory(dir) else { throw EngineStoreError.badRecord(path: Bytes.string(dir), reason: "layer \(id)'s directory is missing") }
            return .tree(dir)
        default:
            let dir = home + Bytes.of("/subvolumes/" + id)
            guard EngineFiles.isDirectory(dir) else { throw EngineStoreError.badRecord(path: Bytes.string(dir), reason: "layer \(id)'s subvolume is missing") }
            return .tree(dir)
        }
    }
}


/// Read-only views of an adopted store's layers, mounted below DiffKit's own directory.
final class EngineViews: Sendable {
    /// DiffKit's directory for this store's mounts (`<state>/<key>`).
    let directory: [UInt8]
    private let counter = Atomic<Int>(0)

    init(directory: [UInt8]) {
        self.directory = directory
    }

    /// Run `body` with the root of the layer's whole tree: a plain tree where it is, a layer
    /// with lowers through an overlay of its branches mounted for the duration.
    func withView<R>(_ files: LayerFiles, _ body: ([UInt8]) throws -> R) throws -> R {
        switch files {
        case let .tree(dir): return try body(dir)
        case let .overlay(_, _, diff, _, lowers) where lowers.isEmpty: return try body(diff)
        case .overlay:
            try makeDirectories(directory + Bytes.of("/views"))
            let target = directory + Bytes.of("/views/\(getpid())-\(counter.add(1, ordering: .relaxed).oldValue)")
            try Sys.mkdir(target, mode: 0o700)
            defer {
                if Sys.isMountPoint(target) { try? Sys.unmount(target) }
                try? Sys.rmdir(target)
            }
            try mountView(files, on: target)
            return try body(target)
        }
    }

    /// Mount the layer's whole tree read-only on `target` (an empty directory of DiffKit's own).
    func mountView(_ files: LayerFiles, on target: [UInt8]) throws {
        switch files {
        case let .tree(dir): try bindReadOnly(dir, on: target)
        case let .overlay(_, _, diff, _, lowers) where lowers.isEmpty: try bindReadOnly(diff, on: target)
        case let .overlay(home, id, diff, links, lowers):
            // Only lowers, no upper or work dir: overlayfs writes nothing to its lowers.
            let absolute = "lowerdir=" + ([diff] + lowers).map(Bytes.string).joined(separator: ":")
            let relative = "lowerdir=" + ([id + "/diff"] + links).joined(separator: ":")
            if absolute.utf8.count < Sys.pageSize {
                try Sys.mountOverlay(target: target, data: absolute)
            } else if relative.utf8.count < Sys.pageSize {
                try Sys.mountOverlay(from: home, target: target, data: relative)
            } else {
                try Sys.mountOverlay(target: target, parameters: ([diff] + lowers).map { ("lowerdir+", Bytes.string($0)) })
            }
        }
    }

    /// A bind mount of `source` on `target`, then made read-only.
    private func bindReadOnly(_ source: [UInt8], on target: [UInt8]) throws {
        try Sys.bindMount(source, on: target)
        do {
            try Sys.mount(source: "none", target: target, type: "", flags: UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), data: "")
        } catch {
            try? Sys.unmount(target)
            throw error
        }
    }
}

/// `mkdir -p` of a directory of DiffKit's own (0700).
func makeDirectories(_ path: [UInt8]) throws {
    if EngineFiles.isDirectory(path) { return }
    var prefix: [UInt8] = []
    for part in path.split(separator: LayerPath.slash, omittingEmptySubsequences: true) {
        prefix += [LayerPath.slash] + part
        if path.first != LayerPath.slash && prefix.first == LayerPath.slash && prefix.count == part.count + 1 {
            prefix.removeFirst()
        }
        let e = Sys.tryMkdir(prefix, mode: 0o700)
        if e != 0 && e != EEXIST { throw SystemError("mkdir", prefix, errno: e) }
    }
}
