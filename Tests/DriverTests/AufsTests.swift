// aufs without its module: the seeds' unit tests that need no mount, branch changes,
// diff/apply of aufs whiteouts, the branch-string builder, and migration to overlay2.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct AufsTests {
    func withAufs(_ body: (AufsDriver, String) throws -> Void) throws {
        let home = try Fixture.tempDir("aufs")
        defer { Fixture.cleanup(home) }
        let d = try AufsDriver(home: Bytes.of(home))
        defer { try? d.cleanup() }
        try body(d, home)
    }

    func exists(_ path: String) -> Bool { (try? Sys.fstatat(AT_FDCWD, Bytes.of(path))) != nil }

    @Test(.requires(.root)) func layoutCreateRemoveAndStaleCleanup() throws {
        try withAufs { d, home in
            #expect(d.name == "aufs")
            #expect(["mnt", "layers", "diff"].allSatisfy { exists(home + "/" + $0) })
            _ = try AufsDriver(home: Bytes.of(home))  // a second start on an existing home
            try d.create(id: "1", parent: nil, options: [:])
            #expect(["mnt/1", "diff/1", "layers/1"].allSatisfy { exists(home + "/" + $0) })
            #expect(try Pipe.read(home + "/layers/1").isEmpty)
            try d.create(id: "2", parent: "1", options: [:])
            try d.create(id: "3", parent: "2", options: [:])
            #expect(String(decoding: try Pipe.read(home + "/layers/3"), as: UTF8.self) == "2\n1\n")
            #expect(throws: DriverError.self) { try d.create(id: "4", parent: "missing", options: [:]) }
            #expect(throws: DriverError.self) { try d.create(id: "5", parent: nil, options: ["size": "1G"]) }
            #expect(try d.getBytes(id: "1") == Bytes.of(home + "/diff/1"))
            #expect(throws: DriverError.self) { _ = try d.getBytes(id: "2") }
            let status = Dictionary(uniqueKeysWithValues: d.status())
            #expect(status["Root Dir"] == home && status["Dirs"] == "3" && status["Dirperm1 Supported"] == "false")
            try d.remove(id: "3")
            #expect(!d.exists(id: "3") && !exists(home + "/diff/3") && !exists(home + "/mnt/3") && !exists(home + "/diff/3-removing"))
            // What a killed remove leaves is cleaned at the next start.
            mkdir(home + "/diff/9-removing", 0o755)
            try Fixture.apply(home + "/mnt", [.file("8-removing/x", "x")])
            _ = try AufsDriver(home: Bytes.of(home))
            #expect(!exists(home + "/diff/9-removing") && !exists(home + "/mnt/8-removing"))
        }
    }

    @Test(.requires(.root, .filesystem("btrfs"))) func initRefusesAnIncompatibleFilesystem() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 256)
        defer { fs.close() }
        #expect { _ = try AufsDriver(home: Bytes.of(fs.mountPoint + "/aufs")) } throws: { "\($0)".contains("is on btrfs") }
    }

    /// Changes from the branch (moby's aufs Changes vectors, containers/storage's every-ancestor rule), sizes of
    /// the branch, and the naive fallback needing a mount when the parent is not the nearest.
    @Test(.requires(.root)) func changesAndSizes() throws {
        try withAufs { d, home in
            try d.create(id: "1", parent: nil, options: [:])
            try Fixture.apply(home + "/diff/1", [.file("dir1/file1-1", "one"), .file("dir1/file1-2", "two"), .dir("dir1/subfolder"),
                                                 .time("dir1/subfolder", 1_600_000_000), .bytes("sparse", [UInt8](repeating: 0, count: 1024))])
            try d.create(id: "2", parent: "1", options: [:])
            try Fixture.apply(home + "/diff/2", [.dir("dir1"), .file("dir1/file1-1", "changed"), .file("dir1/.wh.file1-2", ""),
                                                 .dir("dir1/subfolder"), .time("dir1/subfolder", 1_600_000_000),
                                                 .file("dir1/subfolder/newFile", "n"), .file(".wh.ghost", ""),
                                                 .file(".wh..wh.plnk/123.4", "meta")])
            #expect(try d.changes(id: "2", parent: "1").map(\.line)
                == ["C /dir1", "C /dir1/file1-1", "D /dir1/file1-2", "C /dir1/subfolder", "A /dir1/subfolder/newFile"])
            #expect(try d.diffSize(id: "1", parent: nil) == 1024 + 6)
            try d.create(id: "3", parent: "2", options: [:])
            #expect(try d.diffSize(id: "3", parent: "2") == 0)
            try Fixture.apply(home + "/diff/3", [.file("test2.txt", "t")])
            #expect(try d.changes(id: "3", parent: "2").map(\.line) == ["A /test2.txt"])
            // Files by path for re-export, from the branch and then the parents', without a mount.
            let fd = try d.openFile(id: "3", path: "dir1/file1-1").rawValue
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 16)
            #expect(read(fd, &buf, 16) == 7 && Array(buf[0..<7]) == Bytes.of("changed"))
            #expect(throws: SystemError.self) { _ = try d.openFile(id: "3", path: "../../etc/passwd-nope") }
            // Against a grandparent the trees must be compared, which needs the union mounted.
            if !d.moduleLoaded { #expect(throws: DriverError.self) { _ = try d.changes(id: "3", parent: "1") } }
        }
    }

    /// Export keeps `.wh.` files and the opaque marker, leaves out the root meta entries; import
    /// into a fresh layer writes them back as files (aufs's own form).
    @Test(.requires(.root)) func diffAndApplyOfWhiteouts() throws {
        try withAufs { d, home in
            try d.create(id: "1", parent: nil, options: [:])
            try Fixture.apply(home + "/diff/1", [.file("gone", "g"), .file("d/old", "o")])
            try d.create(id: "2", parent: "1", options: [:])
            try Fixture.apply(home + "/diff/2", [.file(".wh.gone", ""), .dir("d"), .file("d/.wh..wh..opq", ""), .file("d/new", "n"),
                                                 .file(".wh..wh.plnk/1.2", "meta"), .file(".wh..wh.aufs", "")])
            let tar = try Pipe.tarFile { fd in try d.diff(id: "2", parent: "1", to: fd, name: "t", options: ExportOptions()) }
            defer { Fixture.cleanup(tarDir(tar)) }
            #expect(try Pipe.headers(tar).map(\.displayName) == [".wh.gone", "d/", "d/.wh..wh..opq", "d/new"])
            try d.create(id: "3", parent: "1", options: [:])
            let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
            defer { close(fd) }
            let size = try d.applyDiff(id: "3", from: TarReader(fd: fd, name: tar), name: tar, options: ApplyOptions())
            #expect(size == 1)
            #expect(try Manifest.of(home + "/diff/3", mtimes: false).map { String($0.split(separator: " ")[0]) } == [".wh.gone", "d", "d/.wh..wh..opq", "d/new"])
            // Applied as a plain tree (how an engine imports it), the layer deletes and hides.
            let target = try Fixture.copy(home + "/diff/1")
            defer { Fixture.cleanup(target) }
            _ = try Pipe.apply(tar, to: target)
            #expect(try Manifest.of(target, mtimes: false).map { String($0.split(separator: " ")[0]) } == ["d", "d/new"])
        }
    }

    /// The branch string: what fits a page goes into the mount data, the rest into `append`
    /// remounts, in order, each branch once and never cut.
    @Test func branchStringBuilder() {
        let few = AufsBranches.plan(rw: "/a/diff/top", ro: ["/a/diff/p1", "/a/diff/p2"], pageSize: 4096, dirperm1: false)
        #expect(few.data == "br:/a/diff/top=rw:/a/diff/p1=ro+wh:/a/diff/p2=ro+wh,dio,xino=/dev/shm/aufs.xino")
        #expect(few.appends.isEmpty)
        #expect(AufsBranches.plan(rw: "/r", ro: [], pageSize: 4096, dirperm1: true).data == "br:/r=rw,dio,xino=/dev/shm/aufs.xino,dirperm1")

        // moby's TestMountMoreThan42Layers: 126 layers with 64-hex ids under a long home.
        let home = "/var/lib/docker/aufs/diff/"
        let ids = (0..<126).map { i in String(repeating: String(i % 10), count: 64) + "\(i)" }
        for dirperm1 in [false, true] {
            let p = AufsBranches.plan(rw: home + "top", ro: ids.map { home + $0 }, pageSize: 4096, dirperm1: dirperm1)
            #expect(p.data.utf8.count < 4096)
            #expect(!p.appends.isEmpty)
            let inData = p.data.split(separator: ",")[0].dropFirst(3).split(separator: ":").dropFirst().map { String($0.dropLast(6)) }
            let appended = p.appends.map { String($0.dropFirst("append:".count).dropLast(6)) }
            #expect(inData + appended == ids.map { home + $0 })
        }
        // A path length that puts the page boundary inside an entry: that entry moves to an append.
        let capacity = 4096 - 54
        let rw = "br:/x=rw"
        let entry = (capacity - rw.count) / 3 + 1
        let dirs = (0..<3).map { _ in "/" + String(repeating: "d", count: entry - ":=ro+wh".count - 1) }
        let p = AufsBranches.plan(rw: "/x", ro: dirs, pageSize: 4096, dirperm1: false)
        #expect(p.appends.count == 1 && p.appends[0] == "append:\(dirs[2])=ro+wh")
        #expect(p.data.hasPrefix(rw + ":\(dirs[0])=ro+wh:\(dirs[1])=ro+wh,"))
    }

    /// Migration of an aufs store with deletions, an opaque directory and hardlinks to overlay2:
    /// every layer's merged view in the target equals the source layer's tree (its chain of
    /// exports applied in order); a second run copies nothing; the source is untouched.
    @Test(.requires(.root, .filesystem("overlay"))) func migrationToOverlay2() throws {
        try withAufs { d, home in
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(home + "/diff/base", [.file("etc/conf", "c"), .file("d/a", "a"), .file("d/b", "b"), .file("gone", "g"),
                                                    .file("hl/x", "shared"), .hardlink("hl/y", to: "hl/x"), .dir("keep", mode: 0o700, uid: 5, gid: 6)])
            try d.create(id: "mid", parent: "base", options: [:])
            try Fixture.apply(home + "/diff/mid", [.file(".wh.gone", ""), .dir("d"), .file("d/.wh..wh..opq", ""), .file("d/c", "c"),
                                                   .file("new/n", "n"), .hardlink("new/n2", to: "new/n"), .file(".wh..wh.plnk/9.9", "meta")])
            try d.create(id: "top", parent: "mid", options: [:])
            try Fixture.apply(home + "/diff/top", [.file("etc/.wh.conf", ""), .file("keep/inside", "i"), .chmod("keep", 0o700), .chown("keep", 5, 6)])
            let before = try Manifest.of(home)

            let target = try Fixture.tempDir("migrated")
            defer { Fixture.cleanup(target) }
            let store = try LayerStore(driverName: "overlay2", home: Bytes.of(target))
            defer { try? store.driver.cleanup() }
            let report = try Migration.run(source: d, layers: try d.layers(), into: store)
            #expect(report.copied == ["base", "mid", "top"])
            #expect(try Migration.run(source: d, layers: try d.layers(), into: store).skipped.count == 3)
            #expect(try Manifest.of(home) == before)

            // Whiteout files became the kernel's form in the target.
            let up = target + "/overlay2/mid/diff"
            #expect(try Sys.fstatat(AT_FDCWD, Bytes.of(up + "/gone")).st_rdev == 0)
            #expect(try Sys.getXattr(path: Bytes.of(up + "/d"), name: Bytes.of("trusted.overlay.opaque")) == Bytes.of("y"))
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(up + "/.wh..wh.plnk")) == nil)

            for (i, id) in ["base", "mid", "top"].enumerated() {
                let view = try Fixture.tempDir("view")
                defer { Fixture.cleanup(view) }
                for layer in ["base", "mid", "top"][...i] {
                    let parent: String? = layer == "base" ? nil : (layer == "mid" ? "base" : "mid")
                    let tar = try Pipe.tarFile { fd in try d.diff(id: layer, parent: parent, to: fd, name: layer, options: ExportOptions()) }
                    defer { Fixture.cleanup(tarDir(tar)) }
                    _ = try Pipe.apply(tar, to: view)
                }
                let merged = Bytes.string(try store.mount(id: id))
                #expect(try Manifest.of(merged) == Manifest.of(view), "layer \(id)")
                try store.unmount(id: id)
            }
        }
    }
}
