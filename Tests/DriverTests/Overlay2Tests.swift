// overlay2 beyond the shared conformance suite: moby's layout, refcounted mounts, the depth
// limit, native diffs against naive ones on real mounts, native apply, changes from the upper
// alone, and project quotas on a real xfs image.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct Overlay2Tests {
    func withDriver(options: [String: String] = [:], idMap: IDMap = .identity, _ body: (Overlay2Driver, String) throws -> Void) throws {
        let home = try Fixture.tempDir("ovl2")
        defer { Fixture.cleanup(home) }
        let d = try Overlay2Driver(home: Bytes.of(home), options: options, idMap: idMap)
        defer { try? d.cleanup() }
        try body(d, home)
    }

    func text(_ path: String) throws -> String { String(decoding: try Pipe.read(path), as: UTF8.self) }

    func isOverlayMount(_ path: [UInt8]) -> Bool {
        guard let fd = try? Sys.open(path, O_RDONLY | O_DIRECTORY) else { return false }
        defer { close(fd) }
        return Sys.filesystemType(fd) == 0x794C7630
    }

    @Test(.requires(.root, .filesystem("overlay"))) func layoutIsMobys() throws {
        try withDriver { d, home in
            try d.create(id: "base", parent: nil, options: [:])
            try d.create(id: "mid", parent: "base", options: [:])
            try d.create(id: "top", parent: "mid", options: [:])
            var links: [String: String] = [:]
            for id in ["base", "mid", "top"] {
                let l = try text(home + "/\(id)/link")
                #expect(l.count == 26 && l.allSatisfy { ("A"..."Z").contains($0) || ("2"..."7").contains($0) })
                #expect(Bytes.string(try Sys.readlinkat(AT_FDCWD, Bytes.of(home + "/l/" + l))) == "../\(id)/diff")
                links[id] = l
            }
            #expect(try text(home + "/top/lower") == "l/\(links["mid"]!):l/\(links["base"]!)")
            #expect(try text(home + "/mid/lower") == "l/\(links["base"]!)")
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/lower")) == nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/committed")) != nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/mid/committed")) != nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/top/committed")) == nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/top/work")) != nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/base/work")) == nil)

            let m = try d.metadata(id: "top")
            #expect(m["LowerDir"] == "\(home)/mid/diff:\(home)/base/diff")
            #expect(m["UpperDir"] == "\(home)/top/diff" && m["WorkDir"] == "\(home)/top/work" && m["MergedDir"] == "\(home)/top/merged")
            #expect(try d.metadata(id: "base")["LowerDir"] == nil)
            let status = Dictionary(uniqueKeysWithValues: d.status())
            #expect(status["Backing Filesystem"] != nil && status["Supports d_type"] == "true")
            #expect(status["Native Overlay Diff"] == "true" && status["userxattr"] == "false")

            try d.remove(id: "top")
            #expect(!d.exists(id: "top"))
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/l/" + links["top"]!)) == nil)
            #expect(throws: DriverError.self) { try d.remove(id: "") }
            #expect("\(DriverError.emptyID)" == "refusing to remove the directories: id is empty")
            #expect(throws: DriverError.self) { try d.create(id: "rosize", parent: "base", options: ["size": "10M"]) }
            #expect(throws: DriverError.self) { try d.createReadWrite(id: "rwbogus", parent: "base", options: ["inodes": "10"]) }
        }
    }

    @Test(.requires(.root, .filesystem("overlay"))) func unknownAndInvalidOptionsAreRejected() throws {
        let home = try Fixture.tempDir("ovl2opt")
        defer { Fixture.cleanup(home) }
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.bogus": "1"]) }
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.override_kernel_check": "maybe"]) }
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.size": "lots"]) }
        _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.override_kernel_check": "true"])
        // /tmp is not xfs with pquota: a size cannot be enforced, so it is refused.
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.size": "10M"]) }
        let d = try Overlay2Driver(home: Bytes.of(home))
        try d.create(id: "b", parent: nil, options: [:])
        #expect(throws: DriverError.self) { try d.createReadWrite(id: "rw", parent: "b", options: ["size": "10M"]) }
    }

    @Test(.requires(.root, .filesystem("overlay"))) func mountsAreReferenceCounted() throws {
        try withDriver { d, home in
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "base")), [.file("f", "base")])
            // A layer without lowers is its diff dir, unmounted.
            #expect(try d.getBytes(id: "base") == Bytes.of(home + "/base/diff"))
            try d.put(id: "base")
            try d.create(id: "child", parent: "base", options: [:])
            let p1 = try d.getBytes(id: "child")
            let p2 = try d.getBytes(id: "child")
            #expect(p1 == p2 && p1 == Bytes.of(home + "/child/merged"))
            #expect(isOverlayMount(p1))
            try d.put(id: "child")
            #expect(isOverlayMount(p1))
            try d.put(id: "child")
            #expect(!isOverlayMount(p1))
            #expect(try Sys.lstatIfExists(AT_FDCWD, p1) == nil)

            // A mount made by another process (another driver here) is adopted: its put unmounts.
            _ = try d.getBytes(id: "child")
            let other = try Overlay2Driver(home: Bytes.of(home))
            try other.put(id: "child")
            #expect(!isOverlayMount(p1))
            try d.put(id: "child")

            // A committed layer (one with a child) mounts read-only, without upper.
            try d.create(id: "grandchild", parent: "child", options: [:])
            let ro = Bytes.string(try d.getBytes(id: "child"))
            #expect(try text(ro + "/f") == "base")
            #expect(open(ro + "/new", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EROFS)
            // cleanup unmounts all this driver mounted.
            _ = try d.getBytes(id: "grandchild")
            try d.cleanup()
            #expect(!isOverlayMount(Bytes.of(ro)) && !isOverlayMount(Bytes.of(home + "/grandchild/merged")))
        }
    }

    /// moby refuses a 129th lower; with `lowerdir+` the limit is overlay's own (500). The chain's
    /// mount data is past a page from 128 lowers on (absolute paths), and past a page even with
    /// relative paths at the limit: the other two mount paths are what DeepLayerRead goes through.
    @Test(.requires(.root, .filesystem("overlay"))) func depthLimit() throws {
        try withDriver { d, home in
            #expect((home.utf8.count + "/l/".count + 26 + 1) * 128 >= Sys.pageSize)
            #expect(d.maxLowers == 128 || ("l/".count + 26 + 1) * d.maxLowers >= Sys.pageSize)
            try d.create(id: "l0", parent: nil, options: [:])
            for i in 1...d.maxLowers { try d.create(id: "l\(i)", parent: "l\(i - 1)", options: [:]) }
            #expect(try d.metadata(id: "l\(d.maxLowers)")["LowerDir"]!.split(separator: ":").count == d.maxLowers)
            #expect { try d.create(id: "deeper", parent: "l\(d.maxLowers)", options: [:]) } throws: { e in
                "\(e)".contains("max depth exceeded")
            }
            #expect(!d.exists(id: "deeper"))
        }
    }

    /// Changes made through the merged mount (creates, deletes, type changes, a directory deleted
    /// and recreated, renames, chmod/chown, xattrs, hardlinks): the native export and the naive one,
    /// each applied onto a copy of the parent, give the same tree, and it is the merged view.
    @Test(.requires(.root, .filesystem("overlay")), arguments: [UInt64(1), 2, 3, 4, 5, 6])
    func nativeEqualsNaive(seed: UInt64) throws {
        try withDriver { d, home in
            var rng = SplitMix(seed: seed)
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, RandomTree.ops(&rng, count: 80) + [.file("dd/x", "x"), .file("dd/y", "y"), .file("t", "t"), .dir("ren/sub"), .file("ren/sub/f", "f")])
            try d.create(id: "child", parent: "base", options: [:])
            let merged = Bytes.string(try d.getBytes(id: "child"))
            // The fixed entries get their own changes below; random ones touch the rest.
            let others = try Manifest.of(base).filter { line in !["dd", "t", "ren"].contains { line.hasPrefix($0 + " ") || line.hasPrefix($0 + "/") } }
            try Fixture.apply(merged, RandomTree.mutations(&rng, in: others, count: 30)
                + [.remove("dd"), .dir("dd"), .file("dd/z", "z"), .remove("t"), .dir("t"), .rename("ren", "ren2"),
                 .file("hl/a", "shared"), .hardlink("hl/b", to: "hl/a")])
            let expected = try Manifest.of(merged)
            try d.put(id: "child")

            let native = try Pipe.tarFile { fd in try d.diff(id: "child", parent: "base", to: fd, name: "native", options: ExportOptions()) }
            defer { Fixture.cleanup(tarDir(native)) }
            let naive = try Pipe.tarFile { fd in try d.naiveDiff(id: "child", parent: "base", to: fd, name: "naive", options: ExportOptions()) }
            defer { Fixture.cleanup(tarDir(naive)) }
            // The native export is the one read from the upper: whiteouts of kernel devices are 0600,
            // the recreated directory carries its opaque marker.
            let nh = try Pipe.headers(native)
            #expect(nh.contains { $0.displayName == "dd/.wh..wh..opq" })
            #expect(nh.filter { $0.displayName.hasPrefix(".wh.") || $0.displayName.contains("/.wh.") }.allSatisfy { $0.mode & 0o777 == 0o600 || $0.displayName.hasSuffix(".wh..wh..opq") })
            #expect(try Pipe.headers(naive).filter { $0.displayName.contains(".wh.") }.allSatisfy { $0.mode == 0 })

            for tar in [native, naive] {
                let target = try Fixture.copy(base)
                defer { Fixture.cleanup(target) }
                _ = try Pipe.apply(tar, to: target)
                #expect(try Manifest.of(target) == expected, "\(tar == native ? "native" : "naive") export, seed \(seed)")
            }
        }
    }

    /// Native apply into the diff dir: whiteouts become 0/0 devices owned by the mapped root, an
    /// opaque marker the opaque xattr, implicit parents take the lower's attributes, IDs mapped.
    @Test(.requires(.root, .filesystem("overlay"))) func nativeApply() throws {
        let map = IDMap(uids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)], gids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)])
        try withDriver(idMap: map) { d, home in
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "base")), [
                .file("gone", "g"), .file("d/old1", "1"), .file("d/old2", "2"), .dir("x/y", mode: 0o700, uid: 100_005, gid: 100_006), .file("x/y/keep", "k"),
            ])
            try d.create(id: "child", parent: "base", options: [:])
            let tar = try Pipe.tarFile { fd in
                let w = LayerWriter(tar: TarWriter(fd: fd, name: "t"), root: [], options: ExportOptions())
                try w.writeWhiteout(for: Bytes.of("gone"), time: 0)
                var dir = TarHeader(name: Bytes.of("d/"), kind: .directory)
                dir.mode = 0o750
                dir.uid = 7
                dir.gid = 8
                try w.tar.writeHeader(dir)
                try w.writeOpaqueMarker(directory: Bytes.of("d"), header: dir)
                var f = TarHeader(name: Bytes.of("d/new"), kind: .regular)
                f.mode = 0o644
                f.size = 3
                try w.tar.writeHeader(f)
                try Array("new".utf8).withUnsafeBytes { try w.tar.writeData($0) }
                var z = TarHeader(name: Bytes.of("x/y/z"), kind: .regular)
                z.mode = 0o600
                try w.tar.writeHeader(z)
                try w.tar.finish()
            }
            defer { Fixture.cleanup(tarDir(tar)) }
            let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
            defer { close(fd) }
            let size = try d.applyDiff(id: "child", from: TarReader(fd: fd, name: tar), name: tar, options: ApplyOptions())
            #expect(size == 3)
            let diff = home + "/child/diff"
            let wh = try Sys.fstatat(AT_FDCWD, Bytes.of(diff + "/gone"))
            #expect(wh.st_mode & S_IFMT == S_IFCHR && wh.st_rdev == 0 && wh.st_uid == 100_000 && wh.st_gid == 100_000)
            #expect(try Sys.getXattr(path: Bytes.of(diff + "/d"), name: Bytes.of("trusted.overlay.opaque")) == Bytes.of("y"))
            let dst = try Sys.fstatat(AT_FDCWD, Bytes.of(diff + "/d"))
            #expect(dst.st_uid == 100_007 && dst.st_gid == 100_008 && dst.st_mode & 0o7777 == 0o750)
            let y = try Sys.fstatat(AT_FDCWD, Bytes.of(diff + "/x/y"))
            #expect(y.st_mode & 0o7777 == 0o700 && y.st_uid == 100_005 && y.st_gid == 100_006)

            let merged = Bytes.string(try d.getBytes(id: "child"))
            defer { try? d.put(id: "child") }
            #expect(try Manifest.of(merged, mtimes: false).map { String($0.split(separator: " ")[0]) } == ["d", "d/new", "x", "x/y", "x/y/keep", "x/y/z"])
            // And exported natively again, the layer is the same stream's content.
            let lines = try d.changes(id: "child", parent: "base").map(\.line)
            #expect(lines == ["D /d", "A /d/new", "D /gone", "C /x", "C /x/y", "A /x/y/z"], "\(lines)")
        }
    }

    /// Changes read from the upper alone (containers/storage's OverlayChanges), and the naive
    /// fallback when the parent is not the direct lower.
    @Test(.requires(.root, .filesystem("overlay"))) func changesFromTheUpper() throws {
        try withDriver { d, _ in
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "base")), [.file("d/a", "a"), .file("d/b", "b"), .file("f", "f"), .file("k/deep/x", "x")])
            try d.create(id: "mid", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "mid")), [.remove("f"), .remove("d"), .dir("d"), .file("d/c", "c"), .file("k/deep/y", "y")])
            try d.put(id: "mid")
            #expect(try d.changes(id: "mid", parent: "base").map(\.line) == ["D /d", "A /d/c", "D /f", "C /k", "C /k/deep", "A /k/deep/y"])
            #expect(try d.diffSize(id: "mid", parent: "base") == 2)
            try d.create(id: "top", parent: "mid", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "top")), [.file("f", "back")])
            try d.put(id: "top")
            #expect(try d.changes(id: "top", parent: "mid").map(\.line) == ["A /f"])
            // Against the grandparent the upper alone says nothing: the trees are compared.
            let naive = try d.naiveChanges(id: "top", parent: "base").map(\.line)
            #expect(try d.changes(id: "top", parent: "base").map(\.line) == naive)
            #expect(naive.contains("D /d/a") && naive.contains("A /d/c") && naive.contains("C /f") && naive.contains("A /k/deep/y"))
        }
    }

    /// graphtest's SetQuota on a real xfs image, without project quotas: a size is refused with a
    /// clear error (the half with quotas is `projectQuotaEnforcedOnXFS`).
    @Test(.requires(.root, .filesystem("overlay"), .filesystem("xfs"))) func projectQuotaOnXFS() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.xfs -q -f", megabytes: 320)
        defer { fs.close() }
        let home = fs.mountPoint + "/home"
        #expect { _ = try Overlay2Driver(home: Bytes.of(home + "0"), options: ["overlay2.size": "20M"]) } throws: { e in
            "\(e)".contains("overlay2.size") && "\(e)".contains("xfs mounted without pquota")
        }
        do {
            let d = try Overlay2Driver(home: Bytes.of(home + "0"))
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Project Quota"] == "false")
            try d.create(id: "b", parent: nil, options: [:])
            #expect(throws: DriverError.self) { try d.createReadWrite(id: "rw", parent: "b", options: ["size": "50M"]) }
            #expect(!d.exists(id: "rw"))
        }
    }

    /// graphtest's SetQuota on a real xfs image with `pquota`: a 50 MiB layer takes 25 MiB and
    /// refuses a further 50 MiB, and `overlay2.size` limits read-write layers by default. Needs a
    /// kernel built with CONFIG_XFS_QUOTA (without it xfs refuses the `pquota` mount); its skip is
    /// allowed in Tests/ALLOWED_SKIPS, and DIFFKIT_REQUIRE_QUOTA=1 makes it a failure.
    @Test(.requires(.root, .filesystem("overlay"), .filesystem("xfs"), .xfsQuota))
    func projectQuotaEnforcedOnXFS() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.xfs -q -f", megabytes: 320, options: "pquota")
        defer { fs.close() }
        let home = fs.mountPoint + "/home"
        do {
            let d = try Overlay2Driver(home: Bytes.of(home))
            defer { try? d.cleanup() }
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Project Quota"] == "true")
            try Graph.createBase(d, "Base")
            try d.createReadWrite(id: "quota", parent: "Base", options: ["size": "50M"])
            let root = Bytes.string(try d.getBytes(id: "quota"))
            #expect(try QuotaWrite.write(root + "/25M", megabytes: 25) == 0)
            let e = try QuotaWrite.write(root + "/50M", megabytes: 50)
            #expect(e == EDQUOT || e == ENOSPC)
            #expect(try d.metadata(id: "quota")["QuotaLimit"] == String(50 << 20))
            // A read-write layer without a size is not limited.
            try d.createReadWrite(id: "free", parent: "Base", options: [:])
            #expect(try QuotaWrite.write(Bytes.string(try d.getBytes(id: "free")) + "/60M", megabytes: 60) == 0)
        }
        do {
            let d = try Overlay2Driver(home: Bytes.of(home + "2"), options: ["overlay2.size": "20M"])
            defer { try? d.cleanup() }
            try d.create(id: "ro", parent: nil, options: [:])
            try d.createReadWrite(id: "rw", parent: "ro", options: [:])
            let e = try QuotaWrite.write(Bytes.string(try d.getBytes(id: "rw")) + "/30M", megabytes: 30)
            #expect(e == EDQUOT || e == ENOSPC)
            #expect(try QuotaWrite.write(Bytes.string(try d.getBytes(id: "ro")) + "/30M", megabytes: 30) == 0)
        }
    }
}
