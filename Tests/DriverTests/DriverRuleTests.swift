// Driver and store rules the graphtest scenarios do not reach: a child's root takes its
// parent's root mode (vfs, overlay2, aufs), a native diff only against the nearest lower,
// btrfs templates and the snapshot rule for files changed in place, the store's template
// children, a live import's temp files, when an export may reuse the imported bytes, and the
// aufs mount plan at the page's edge.
import DiffKitArchive
import DiffKitSystem
import DiffKit
@testable import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

private func mode(_ path: [UInt8]) throws -> UInt32 {
    UInt32(try Sys.fstatat(AT_FDCWD, path).st_mode) & 0o7777
}

/// A tar of hand-made regular entries (content "" for a whiteout).
private func regularTar(_ entries: [(String, String)]) throws -> String {
    try Pipe.tarFile { fd in
        let w = TarWriter(fd: fd, name: "rules")
        for (name, content) in entries {
            var h = TarHeader(name: Bytes.of(name), kind: .regular)
            h.mode = 0o644
            h.mtime = 1_600_000_000
            h.size = Int64(content.utf8.count)
            try w.writeHeader(h)
            if h.size > 0 { try Bytes.of(content).withUnsafeBytes { try w.writeData($0) } }
        }
        try w.finish()
    }
}

private func importTar(_ store: LayerStore, _ id: String, parent: String?, _ tar: String) throws {
    let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
    defer { close(fd) }
    _ = try store.importLayer(id: id, parent: parent, from: fd, name: tar)
}

@Suite(.serialized) struct DriverRuleTests {
    /// A child's root starts as its parent's root looks: mode 0750 on the parent, 0750 on the child.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func childRootTakesParentRootMode(driver: String) throws {
        let home = try Fixture.tempDir("rootmode")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: driver, home: Bytes.of(home))
        defer { try? store.driver.cleanup() }
        try store.create(id: "base", parent: nil)
        // The directory the parent's root is, without a mount (a base layer needs none).
        let baseRoot = try store.mount(id: "base")
        #expect(chmod(Bytes.string(baseRoot), 0o750) == 0)
        try store.unmount(id: "base")
        try store.create(id: "child", parent: "base")
        let own: [UInt8]
        switch driver {
        case "overlay2": own = Bytes.of(try store.driver.metadata(id: "child")["UpperDir"]!)
        case "aufs": own = Bytes.of(try store.driver.metadata(id: "child")["DiffDir"]!)
        default: own = Bytes.of(try store.driver.metadata(id: "child")["Dir"]!)
        }
        #expect(try mode(own) == 0o750)
    }

    /// overlay2 diffs natively only against the nearest lower: against a grandparent the mounted
    /// trees are compared, so the middle layer's changes are in it.
    @Test(.requires(.root, .filesystem("overlay"))) func overlay2DiffAgainstAGrandparentIsNaive() throws {
        let home = try Fixture.tempDir("ovl")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "overlay2", home: Bytes.of(home))
        defer { try? store.driver.cleanup() }
        for (id, parent) in [("base", nil), ("mid", "base"), ("top", "mid")] as [(String, String?)] {
            try store.create(id: id, parent: parent)
            try Fixture.apply(Bytes.string(try store.mount(id: id)), [.file("in-" + id, id)])
            try store.unmount(id: id)
        }
        #expect(try store.driver.changes(id: "top", parent: "base").map(\.line) == ["A /in-mid", "A /in-top"])
        #expect(try store.driver.changes(id: "top", parent: "mid").map(\.line) == ["A /in-top"])
        #expect(try store.driver.diffSize(id: "top", parent: "base") == 6)
    }

    /// btrfs: a layer made from a template has the template's content; in a child (a snapshot),
    /// files rewritten in place — same inode, size and (truncated) mtime, new ctime — are changes.
    @Test(.requires(.root, .filesystem("btrfs"))) func btrfsTemplateAndInPlaceChanges() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 256)
        defer { fs.close() }
        let store = try LayerStore(driverName: "btrfs", home: Bytes.of(fs.mountPoint + "/home"))
        try store.create(id: "base", parent: nil)
        let t = 1_600_000_000
        try Fixture.apply(Bytes.string(try store.mount(id: "base")),
                          [.file("f", "aaaa"), .time("f", t), .file("d/g", "bbbb"), .time("d/g", t), .file("same", "s"), .time("same", t)])
        try store.unmount(id: "base")

        try store.create(id: "copy", parent: nil, template: "base")
        #expect(try listing(Bytes.string(try store.mount(id: "copy"))) == ["d/", "d/g", "f", "same"])
        try store.unmount(id: "copy")

        try store.create(id: "child", parent: "base")
        let child = Bytes.string(try store.mount(id: "child"))
        for (path, content) in [("f", "cccc"), ("d/g", "dddd")] {
            let before = try Sys.fstatat(AT_FDCWD, Bytes.of(child + "/" + path)).st_ino
            let fd = open(child + "/" + path, O_WRONLY)
            #expect(fd >= 0)
            #expect(pwrite(fd, content, 4, 0) == 4)
            close(fd)
            try Fixture.apply(child, [.time(path, t)])
            #expect(try Sys.fstatat(AT_FDCWD, Bytes.of(child + "/" + path)).st_ino == before)
        }
        try store.unmount(id: "child")
        #expect(try store.changes(id: "child").map(\.line) == ["C /d", "C /d/g", "C /f"])
    }

    /// Children of one parent are made at the same time by two imports (twoProcessesImportAndMount
    /// failed with "base/committed: rename: No such file or directory"): making a child marks the
    /// parent committed without a temp file another creator could be writing and renaming too.
    /// Here the other creator is caught mid-write: its temp file must be left as it is.
    @Test(.requires(.root, .filesystem("overlay"))) func overlay2CommittedMarkerLeavesAnotherCreatorsTempFile() throws {
        let home = try Fixture.tempDir("ovl")
        defer { Fixture.cleanup(home) }
        let d = try Overlay2Driver(home: Bytes.of(home))
        try d.create(id: "base", parent: nil, options: [:])
        try Fixture.apply(home, [.file("base/committed.tmp", "")])
        try d.create(id: "child", parent: "base", options: [:])
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/committed")) != nil)
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/committed.tmp")) != nil)
        // A second child finds the marker there already.
        try d.create(id: "child2", parent: "base", options: [:])
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/committed")) != nil)
    }

    /// A layer made from a template depends on it: the template cannot be removed first.
    @Test(.requires(.root)) func templateCannotBeRemovedBeforeItsCopy() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        try store.create(id: "base", parent: nil)
        try store.create(id: "copy", parent: nil, template: "base")
        #expect(throws: DriverError.self) { try store.remove(id: "base") }
        #expect(try store.list().map(\.id).sorted() == ["base", "copy"])
        try store.remove(id: "copy")
        try store.remove(id: "base")
        #expect(try store.list().isEmpty)
    }

    /// Opening the store while another process imports (its layer lock held): that import's
    /// marker and tar-split temp file are left alone; a leftover record temp file goes. Once the
    /// lock is gone, the next open removes the abandoned import.
    @Test(.requires(.root)) func openingTheStoreLeavesALiveImportAlone() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        _ = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let layers = home + "/layers"
        try Fixture.apply(layers, [.file("live.incomplete", ""), .file("live.tar-split.tmp", "split"), .file("old.tmp", "x")])
        // Close-on-exec: a difftool started meanwhile by a test running beside this one must not
        // inherit the descriptor, and with it the lock, past the close below.
        let lock = open(layers + "/.locks/live", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(lock >= 0)
        #expect(flock(lock, LOCK_EX) == 0)
        _ = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(layers + "/live.tar-split.tmp")) != nil)
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(layers + "/live.incomplete")) != nil)
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(layers + "/old.tmp")) == nil)
        close(lock)
        _ = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(layers + "/live.tar-split.tmp")) == nil)
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(layers + "/live.incomplete")) == nil)
    }

    /// The imported bytes are given back only while the files are as imported: a chmod alone
    /// (content and checksums unchanged) makes the export regenerate, with the new mode.
    @Test(.requires(.root)) func metadataChangeRegeneratesTheExport() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let tar = try regularTar([("f", "content"), ("g", "other")])
        defer { Fixture.cleanup(tarDir(tar)) }
        try importTar(store, "base", parent: nil, tar)
        var source: ExportSource? = nil
        let first = try Pipe.tarFile { fd in source = try store.export(id: "base", to: fd, name: "x") }
        defer { Fixture.cleanup(tarDir(first)) }
        #expect(source == .original)
        #expect(try Pipe.read(first) == Pipe.read(tar))
        #expect(chmod(Bytes.string(try store.mount(id: "base")) + "/f", 0o600) == 0)
        let second = try Pipe.tarFile { fd in source = try store.export(id: "base", to: fd, name: "x") }
        defer { Fixture.cleanup(tarDir(second)) }
        #expect(source == .regenerated(reason: "the layer's files changed since it was imported"))
        #expect(try Pipe.headers(second).first { $0.displayName == "f" }?.mode == 0o600)
    }

    /// User namespaces made on two threads at once while a third reads a pipe: the helper child
    /// behind each namespace holds no copy of another thread's descriptors. (It did: two such
    /// children each held the other's pipe and waited for it forever, and a child that waited held
    /// the write end of a btrfs send stream, so its reader never saw the end.)
    @Test(.requires(.root)) func namespaceChildrenHoldNoOtherDescriptors() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let done = Condition(0)
        for _ in 0..<2 {
            try SystemThread {
                for _ in 0..<50 { _ = try? UserNamespace(uids: [], gids: []) }
                done.withLock { $0 += 1 }
                done.broadcast()
            }.detach()
        }
        // The write end closes while namespaces are being made: the reader sees the end at once.
        usleep(2_000)
        close(ends[1])
        var byte: UInt8 = 0
        var poll = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
        #expect(Glibc.poll(&poll, 1, 10_000) == 1 && read(ends[0], &byte, 1) == 0, "a child held the pipe's write end")
        close(ends[0])
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let start = deadline.tv_sec
        while done.withLock({ $0 }) < 2 {
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            if deadline.tv_sec - start > 300 { Issue.record("namespace children waited for each other"); return }
            usleep(10_000)
        }
    }

    /// A change the stamp cannot see (here: the stamp recorded again after the file was
    /// rewritten at the same size) is caught by the CRC-32C of the file as it streams: the export
    /// fails naming the file, instead of giving back bytes the recorded diffID does not match.
    @Test(.requires(.root)) func contentChangeTheStampMissesFailsTheExport() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let tar = try regularTar([("f", "content"), ("g", "other")])
        defer { Fixture.cleanup(tarDir(tar)) }
        try importTar(store, "base", parent: nil, tar)
        let dir = Bytes.string(try store.mount(id: "base"))
        try Fixture.apply(dir, [.file("f", "CONTENT")])
        var r = try store.record("base")
        r.stamp = try TreeStamp.of(Bytes.of(dir))
        try store.write(r)
        let error = #expect(throws: DriverError.self) {
            _ = try Pipe.tarFile { fd in try store.export(id: "base", to: fd, name: "x") }
        }
        guard case let .changedSinceImport(id, path)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(id == "base" && path == "f")
    }

    /// A layer that whites out a file it added itself cannot be given back byte for byte (the
    /// first file's content is not on disk): the import says so and the export regenerates.
    @Test(.requires(.root)) func layerDeletingItsOwnFileIsRegenerated() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let tar = try regularTar([("keep", "k"), ("x", "gone"), (".wh.x", "")])
        defer { Fixture.cleanup(tarDir(tar)) }
        try importTar(store, "base", parent: nil, tar)
        var source: ExportSource? = nil
        let out = try Pipe.tarFile { fd in source = try store.export(id: "base", to: fd, name: "x") }
        defer { Fixture.cleanup(tarDir(out)) }
        #expect(source == .regenerated(reason: nil))
        #expect(try Pipe.headers(out).map(\.displayName) == ["keep"])
    }

    /// aufs mount data: a branch that exactly fills the first mount's room goes in it; the next
    /// one is appended by a remount.
    @Test func aufsPlanAtThePageEdge() {
        // Room: 71 - 54 = 17 = "br:/r=rw".count + ":/a=ro+wh".count.
        let plan = AufsBranches.plan(rw: "/r", ro: ["/a", "/b"], pageSize: 71, dirperm1: false)
        #expect(plan.data.hasPrefix("br:/r=rw:/a=ro+wh,"))
        #expect(plan.appends == ["append:/b=ro+wh"])
        let tight = AufsBranches.plan(rw: "/r", ro: ["/a"], pageSize: 70, dirperm1: false)
        #expect(tight.data.hasPrefix("br:/r=rw,"))
        #expect(tight.appends == ["append:/a=ro+wh"])
    }
}
