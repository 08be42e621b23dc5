// A layer lock held a moment by someone else (a child forked by another thread of the process
// shares every lock until it execs) does not fail an import on that layer or its removal: the
// store tries again for up to a second.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct StoreLockTests {
    /// Holds `home/layers/.locks/ID` (another open file description, as a forked child's copy
    /// behaves) for `milliseconds`, then lets go.
    static func holdLock(home: String, id: String, exclusive: Bool, milliseconds: UInt32) throws -> SystemThread {
        let fd = try Sys.open(Bytes.of(home + "/layers/.locks/" + id), O_RDWR | O_CLOEXEC)
        guard Sys.tryFlock(fd, exclusive ? LOCK_EX : LOCK_SH) == 0 else { throw TestError("flock \(id)") }
        return try SystemThread(shown: Bytes.of("lock holder")) {
            usleep(milliseconds * 1000)
            Sys.close(fd)
        }
    }

    @Test(.requires(.root)) func aLockHeldAMomentIsWaitedFor() throws {
        let home = try Fixture.tempDir("locks")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(home))
        let empty = try Pipe.tarFile { fd in try TarWriter(fd: fd, name: "empty").finish() }
        defer { Fixture.cleanup(tarDir(empty)) }
        func importLayer(_ id: String, parent: String?) throws {
            let fd = try Sys.open(Bytes.of(empty), O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            _ = try store.importLayer(id: id, parent: parent, from: fd, name: empty)
        }
        try importLayer("base", parent: nil)
        // The parent held exclusively for 200 ms (as an import's lock a forked child still shares).
        let holder = try Self.holdLock(home: home, id: "base", exclusive: true, milliseconds: 200)
        try importLayer("child", parent: "base")
        holder.join()
        // The layer held shared for 200 ms (as an export's): its removal waits, then goes ahead.
        let reader = try Self.holdLock(home: home, id: "child", exclusive: false, milliseconds: 200)
        try store.remove(id: "child")
        reader.join()
        #expect(try store.list().map(\.id) == ["base"])
        // Held for longer than the store waits: refused, as before.
        let long = try Self.holdLock(home: home, id: "base", exclusive: false, milliseconds: 2_500)
        #expect(throws: DriverError.self) { try store.remove(id: "base") }
        long.join()
    }
}
