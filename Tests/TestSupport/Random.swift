// Deterministic random trees and change sets, for tests that compare two ways of doing one job.
import DiffKitArchive
import DiffKitSystem
import DiffKit

/// Deterministic generator for test trees.
public struct SplitMix {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

public enum RandomTree {
    public static func name(_ rng: inout SplitMix) -> String { ["a", "b", "c", "d-e", "f.g", "h", "i_j"][rng.below(7)] + String(rng.below(20)) }

    public static func ops(_ rng: inout SplitMix, count: Int) -> [Op] {
        var dirs = [""], files: [String] = [], links: [String] = [], ops: [Op] = []
        for _ in 0..<count {
            let parent = dirs[rng.below(dirs.count)]
            let path = (parent.isEmpty ? "" : parent + "/") + name(&rng)
            if dirs.contains(path) || files.contains(path) || links.contains(path) { continue }
            switch rng.below(10) {
            case 0, 1: dirs.append(path); ops.append(.dir(path, mode: [0o755, 0o700, 0o1777][rng.below(3)]))
            case 2 where !files.isEmpty: ops.append(.hardlink(path, to: files[rng.below(files.count)])); files.append(path)
            case 3: ops.append(.symlink(path, to: ["../x", "/etc", name(&rng)][rng.below(3)])); links.append(path)
            case 4: ops.append(.file(path, String(repeating: "q", count: rng.below(3000)), uid: UInt32(rng.below(3)), gid: 7)); files.append(path)
            default: ops.append(.file(path, "content \(rng.next())", mode: [0o644, 0o600, 0o755, 0o4755][rng.below(4)])); files.append(path)
            }
        }
        return ops
    }

    /// Mutations of an existing tree, given as manifest lines (path first).
    public static func mutations(_ rng: inout SplitMix, in manifest: [String], count: Int) -> [Op] {
        let entries = manifest.map { ($0.split(separator: " ")[0], $0.split(separator: " ")[1]) }
        var ops: [Op] = []
        var removed: [String] = []
        for _ in 0..<count where !entries.isEmpty {
            let (p, kind) = entries[rng.below(entries.count)]
            let path = String(p)
            if removed.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { continue }
            switch rng.below(9) {
            case 0: ops.append(.remove(path)); removed.append(path)
            case 1 where kind != "symlink": ops.append(.chmod(path, 0o751))
            case 2: ops.append(.chown(path, 3, 4))
            case 3 where kind == "regular": ops.append(.file(path + ".new", "added"))
            case 4 where kind == "regular": ops.append(.remove(path)); ops.append(.dir(path)); ops.append(.file(path + "/inside", "i")); removed.append(path)
            case 5 where kind == "directory": ops.append(.file(path + "/fresh", "f"))
            case 6 where kind == "regular": ops.append(.remove(path)); ops.append(.file(path, "rewritten \(rng.next())")); removed.append(path)
            case 7: ops.append(.rename(path, path + ".mv")); removed.append(path); removed.append(path + ".mv")
            case 8 where kind == "regular" && !ops.contains(where: { if case .hardlink(path + ".ln", _) = $0 { return true }; return false }):
                ops.append(.hardlink(path + ".ln", to: path))
            default: ops.append(.xattr(path, "user.m", "\(rng.below(9))"))
            }
        }
        return ops.filter { op in
            if case let .xattr(p, _, _) = op { return !manifest.contains { $0.hasPrefix(p + " symlink") } }
            return true
        }
    }
}
