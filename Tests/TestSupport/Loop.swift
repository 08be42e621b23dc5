// A real filesystem on a loop device, made inside a test (xfs with project quotas, btrfs, …).
// `close()` unmounts and detaches; call it from a `defer` so a failing test cleans up too.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

public final class LoopFilesystem {
    /// Where it is mounted.
    public let mountPoint: String
    public let device: String
    private let dir: String
    private var mounted = true

    /// A sparse image of `megabytes`, formatted with `mkfs` (e.g. "mkfs.xfs -q -f") and mounted
    /// with `options` (e.g. "pquota").
    public init(mkfs: String, megabytes: Int, options: String = "") throws {
        dir = try Fixture.tempDir("loop")
        let image = dir + "/image", mnt = dir + "/mnt"
        do {
            try Shell.check("truncate -s \(megabytes)M \(image) && \(mkfs) \(image)")
            let (status, out) = try Shell.run("losetup --find --show \(image)")
            guard status == 0, out.hasPrefix("/dev/loop") else { throw TestError("losetup: \(out)") }
            device = String(out.split(separator: "\n")[0])
        } catch {
            Fixture.cleanup(dir)
            throw error
        }
        mountPoint = mnt
        mkdir(mnt, 0o755)
        do {
            try Shell.check("mount \(options.isEmpty ? "" : "-o " + options) \(device) \(mnt)")
        } catch {
            _ = try? Shell.run("losetup -d \(device)")
            Fixture.cleanup(dir)
            throw error
        }
    }

    /// Mount again with other options (the filesystem keeps its content).
    public func remount(options: String) throws {
        try Shell.check("umount \(mountPoint)")
        try Shell.check("mount \(options.isEmpty ? "" : "-o " + options) \(device) \(mountPoint)")
    }

    public func close() {
        guard mounted else { return }
        mounted = false
        // Anything still mounted below (overlays of a failed test) goes first.
        _ = try? Shell.run("grep -o ' \(mountPoint)/[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l")
        _ = try? Shell.run("umount \(mountPoint) || umount -l \(mountPoint)")
        _ = try? Shell.run("losetup -d \(device)")
        Fixture.cleanup(dir)
    }

    deinit { close() }
}
