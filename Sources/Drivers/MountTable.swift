// The mounts of a driver's layers, counted per layer under one lock and corrected by what the
// kernel has mounted.
import DiffKitSystem

/// The mounts of a driver's layers: a reference count per layer that follows the
/// kernel as containers/storage's does — a layer found mounted (by an earlier process, say) counts
/// as one reference, one found unmounted (externally) as none — under one lock, so two threads
/// never both mount or unmount a layer; and the set this process mounted, for cleanup. The
/// driver says how to mount and unmount one layer (`Mounter`), at each call.
final class MountTable: Sendable {
    /// How a driver mounts one layer.
    struct Mounter {
        var mountPoint: (String) -> [UInt8]
        var mount: (String) throws -> Void
        var unmount: (String) throws -> Void
    }

    private struct Counts {
        var counts: [String: Int] = [:]
        var mine = Set<String>()

        /// The count, corrected by what the kernel has mounted.
        func count(_ id: String, _ m: Mounter) -> Int {
            let n = counts[id, default: 0]
            let mounted = Sys.isMountPoint(m.mountPoint(id))
            return n == 0 && mounted ? 1 : n > 0 && !mounted ? 0 : n
        }

        mutating func setCount(_ id: String, _ n: Int) { counts[id] = n > 0 ? n : nil }

        mutating func drop(_ id: String, _ m: Mounter) throws {
            counts[id] = nil
            mine.remove(id)
            try m.unmount(id)
        }
    }
    private let state = Locked(Counts())

    init() {}

    /// The layer's mount point, mounted at the first reference (undone if mounting fails).
    func acquire(_ id: String, _ m: Mounter) throws -> [UInt8] {
        try state.withLock { s in
            let n = s.count(id, m) + 1
            if n > 1 {
                s.setCount(id, n)
                return m.mountPoint(id)
            }
            do {
                try m.mount(id)
            } catch {
                try? m.unmount(id)
                throw error
            }
            s.setCount(id, 1)
            s.mine.insert(id)
            return m.mountPoint(id)
        }
    }

    /// Drop one reference; the last unmounts.
    func release(_ id: String, _ m: Mounter) throws {
        try state.withLock { s in
            let n = max(0, s.count(id, m) - 1)
            s.setCount(id, n)
            if n > 0 { return }
            s.mine.remove(id)
            try m.unmount(id)
        }
    }

    /// Unmount whatever references remain (before the layer is removed).
    func forget(_ id: String, _ m: Mounter) throws { try state.withLock { try $0.drop(id, m) } }

    /// Unmount everything this process mounted.
    func releaseAll(_ m: Mounter) throws {
        try state.withLock { s in
            for id in s.mine.sorted() { try s.drop(id, m) }
        }
    }
}
