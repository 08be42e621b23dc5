// LayerStore's mounts: a layer's view mounted through the store, counted on disk across
// processes, so the driver mounts at the first and unmounts at the last.
import DiffKitSystem
import SystemPackage
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

extension LayerStore {
    // MARK: mounts

    /// Mounts of a layer through the store are counted on disk (`layers/.mounts/ID`), so `mount`
    /// twice (from two processes) needs `umount` twice; the driver is asked to mount at the first
    /// and to unmount at the last. A count whose mount the kernel no longer has starts again at 0.
    private func mountCount(_ id: String) -> Int {
        guard let text = try? Sys.readFile(meta + Bytes.of("/.mounts/" + id)),
              let n = Int(String(decoding: text, as: UTF8.self).trimmingCharacters(in: [" ", "\n"])) else { return 0 }
        return n
    }

    func setMountCount(_ id: String, _ n: Int) throws {
        let path = meta + Bytes.of("/.mounts/" + id)
        if n > 0 { try writeFileAtomically(path, Bytes.of("\(n)\n")) } else { try? Sys.unlink(path) }

    }

    /// The directory of layer `id`'s view, mounted if the driver mounts; counted across processes,
    /// so each call needs an ``unmount(id:)``.
    public func mount(id: String) throws -> FilePath {
        try reading(id) {
            _ = try record(id)
            return try withLock {
                var n = mountCount(id)
                let path = try driver.getBytes(id: id)
                if n > 0 && !driver.isMounted(id: id) { n = 0 }
                // The driver counts references per process; the store's count is across them.
                if n > 0 { try driver.put(id: id) }
                try setMountCount(id, n + 1)
                return FilePath(bytes: path)
            }
        }
    }

    /// Drop one ``mount(id:)`` of layer `id`; the last one unmounts.
    public func unmount(id: String) throws {
        try reading(id) {
            _ = try record(id)
            try withLock {
                let n = mountCount(id)
                if n > 1 && driver.isMounted(id: id) { return try setMountCount(id, n - 1) }
                try driver.put(id: id)
                try setMountCount(id, 0)
            }
        }
    }
}
