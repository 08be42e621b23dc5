// The naive diff restricted to the paths a filesystem says may have changed (btrfs send): the
// same comparison, entry by entry, as the full walk, but only at those paths and their ancestors.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Relative layer paths (no leading `/`), each naming either the entry alone or the entry and
/// everything below it. Ancestors of a path are part of the set as directories to go through.
package struct PathSet: Sendable {
    struct Node: Sendable {
        var children: [[UInt8]: Int] = [:]
        var whole = false
    }
    var nodes = [Node()]

    /// An empty set.
    package init() {}

    /// Whether no path was inserted.
    package var isEmpty: Bool { nodes[0].children.isEmpty }

    /// Add `path`; `subtree`: everything below it too. Empty components are ignored, so the root
    /// itself (`""`) adds nothing: the root is never a change.
    package mutating func insert(_ path: [UInt8], subtree: Bool = false) {
        var node = 0
        var any = false
        for name in path.split(separator: LayerPath.slash) {
            any = true
            let key = Array(name)
            if let next = nodes[node].children[key] {
                node = next
            } else {
                nodes.append(Node())
                nodes[node].children[key] = nodes.count - 1
                node = nodes.count - 1
            }
        }
        if any && subtree { nodes[node].whole = true }
    }

    /// Whether `path` is in the set, as an entry, an ancestor of one, or below a whole subtree.
    package func covers(_ path: [UInt8]) -> Bool {
        var node = 0
        for name in path.split(separator: LayerPath.slash) {
            if nodes[node].whole { return true }
            guard let next = nodes[node].children[Array(name)] else { return false }
            node = next
        }
        return true
    }

    var root: Cursor { Cursor(set: self, node: 0) }

    /// A directory of the set during a walk.
    struct Cursor: Sendable {
        let set: PathSet
        let node: Int

        /// Whether entry `name` of this directory is to be compared.
        func has(_ name: [UInt8]) -> Bool { set.nodes[node].children[name] != nil }

        /// The restriction below entry `name`: nil when everything below it is to be compared.
        func child(_ name: [UInt8]) -> Cursor? {
            guard let n = set.nodes[node].children[name], !set.nodes[n].whole else { return nil }
            return Cursor(set: set, node: n)
        }
    }
}

extension TreeDiff {
    /// The changes that turn `base` into `layer`, as ``changes(base:layer:snapshots:)`` reports
    /// them, where `paths` holds every path at which the two trees may differ (the caller knows
    /// it, as btrfs does from a send stream): only those entries and their ancestors are read and
    /// judged, by the same rules. `paths` may hold more (judged unchanged where they are);
    /// anything changed outside it is not found.
    ///
    /// `peers(inode)` gives every path of a changed file with more than one link in `layer`, so
    /// the unchanged members of its hardlink group are found as the full walk finds them.
    package static func changes(base: [UInt8], layer: [UInt8], at paths: PathSet, snapshots: Bool = false,
                               peers: (UInt64) throws -> [[UInt8]]) throws -> [Change] {
        func run(_ set: PathSet, changedLinks: [UInt64: FileInfo]) throws -> [Change] {
            let newFd = try Walker.openRoot(layer)
            defer { Sys.close(newFd) }
            let comparer = ContentComparer()
            let walk = try DiffWalk(comparer: comparer, base: base, from: BaseOnDemand(root: base), layer: layer,
                                    newFd: newFd, snapshots: snapshots)
            var out: [Change] = []
            let sequencer = ChangeSequencer(comparer: comparer, changedLinks: changedLinks) { out.append($0) }
            try walk.compare(new: WalkDir(fd: newFd, path: [], absolute: layer), only: set.root, into: sequencer)
            try sequencer.finish()
            return out
        }

        var changes = try run(paths, changedLinks: [:])
        // The other names of changed multi-link files, where the full walk would find them as
        // unchanged link peers (or as changes of their own).
        var more = PathSet()
        var changedLinks: [UInt64: FileInfo] = [:]
        for c in changes where c.kind != .delete && !c.isLinkPeer {
            guard let i = c.info, !i.isDirectory, i.links > 1, changedLinks.updateValue(i, forKey: i.inode) == nil else { continue }
            for p in try peers(i.inode) where !paths.covers(p) { more.insert(p) }
        }
        if !more.isEmpty { changes += try run(more, changedLinks: changedLinks) }
        changes.sort(by: Change.pathOrder)
        var out: [Change] = []
        for c in changes where out.last?.path != c.path { out.append(c) }
        return out
    }
}
