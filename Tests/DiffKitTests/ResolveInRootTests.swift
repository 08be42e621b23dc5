// In-root resolution under renames elsewhere on the machine: openat2 with RESOLVE_IN_ROOT fails
// with EAGAIN when a `..` is walked while any rename happens (a build, another test), and the
// resolution must not turn that into a failed apply.
import DiffKitSystem
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ResolveInRootTests {
    @Test func dotDotPathsResolveWhileRenamesRun() throws {
        let dir = try Fixture.tempDir("resolve")
        defer { Fixture.cleanup(dir) }
        try Shell.check("mkdir -p \(dir)/root/a/b/c && echo x > \(dir)/root/target && ln -s ../../../../../../.. \(dir)/root/a/b/c/up && touch \(dir)/r0")
        let rootfd = try Sys.open(Bytes.of(dir + "/root"), O_RDONLY | O_DIRECTORY)
        defer { Sys.close(rootfd) }
        // Renames on another thread for as long as the lookups run.
        let stop = Locked(false)
        let renamer = try SystemThread {
            var i = 0
            while !stop.withLock({ $0 }) {
                let (from, to) = i % 2 == 0 ? ("r0", "r1") : ("r1", "r0")
                _ = rename(dir + "/" + from, dir + "/" + to)
                i += 1
            }
        }
        var failures: [Int32] = []
        for _ in 0..<20_000 {
            let (fd, e) = Sys.openInRoot(rootfd, Bytes.of("a/b/c/up/a/b/c/up/target"), O_RDONLY)
            if fd >= 0 { Sys.close(fd) } else { failures.append(e) }
        }
        stop.withLock { $0 = true }
        renamer.join()
        let failed = failures.count
        #expect(failed == 0, "\(failed) lookups failed, errno \(Set(failures))")
    }
}
