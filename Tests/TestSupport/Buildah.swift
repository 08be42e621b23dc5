// Debian's buildah on a containers/storage root of the test's own (private --root and
// --runroot, the storage driver asked for, chroot isolation, no network): images are made from
// scratch with `buildah from scratch`, `copy`, `mount` and `commit`.
import DiffKitSystem
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// buildah on a containers/storage root of the test's own; `stop()` unmounts what it left and
/// removes the directory (call it in a `defer`).
public final class Buildah {
    /// The temp dir holding the storage root (`DIR/root`) and run root (`DIR/run`).
    public let dir: String
    /// The storage driver (overlay, vfs).
    public let storageDriver: String
    /// The containers/storage root: `<driver>-layers/layers.json`, `<driver>/`, …
    public var root: String { dir + "/root" }

    public init(storageDriver: String) throws {
        dir = try Fixture.tempDir("buildah")
        self.storageDriver = storageDriver
        try Shell.check("mkdir -p '\(dir)/root' '\(dir)/run'")
    }

    /// Run `buildah ARGS`; returns its standard output (stderr is kept apart, for the error).
    @discardableResult
    public func run(_ args: String) throws -> String {
        let command = "BUILDAH_ISOLATION=chroot buildah --root '\(root)' --runroot '\(dir)/run' --storage-driver \(storageDriver) \(args)"
        let (status, out) = try Shell.run("\(command) 2>'\(dir)/stderr'")
        if status != 0 {
            let err = (try? Pipe.read(dir + "/stderr")).map { String(decoding: $0, as: UTF8.self) } ?? ""
            throw TestError("buildah \(args): exit \(status): \(out)\(err)")
        }
        return out.trimmingWhitespace()
    }

    /// Unmount whatever buildah left mounted below the directory, and remove it.
    public func stop() {
        _ = try? run("umount --all")
        _ = try? Shell.run("grep -o ' \(dir)[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l")
        Fixture.cleanup(dir)
    }
}
