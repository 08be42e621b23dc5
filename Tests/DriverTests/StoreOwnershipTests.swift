// Ownership under ID maps through every way in: `difftool apply` (the reported reproduction and
// the hostile corpus in every whiteout form), store imports on vfs, overlay2 (on real overlay
// mounts: a whiteout device owned by the mapped root still hides) and aufs, a store whose lower
// layer has owners outside the map, import-image and migrate. After each, a walk finds no inode
// owned by a host ID outside the map.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum StoreOwnership {
    /// Two layers as tars made by GNU tar from explicit names (so no parent directory entries):
    /// base has etc/conf, d/{a,b}, gone, x/y/z/file (owned 3:4); child deletes gone, makes d
    /// opaque with d/c in it, and adds new/deep/file, a hardlink and a symlink in implicit parents.
    static func layerTars(_ dir: String) throws {
        try Shell.check("""
            set -e; cd \(dir); mkdir -p b/etc b/d b/x/y/z c/d c/new/deep c/ln c/sl
            echo c > b/etc/conf; echo a > b/d/a; echo b > b/d/b; echo g > b/gone; echo f > b/x/y/z/file
            tar -C b --numeric-owner --owner=0 --group=0 -cf base.tar etc/conf d/a d/b gone
            tar -C b --numeric-owner --owner=3 --group=4 -rf base.tar x/y/z/file
            : > c/.wh.gone; : > c/d/.wh..wh..opq; echo c > c/d/c; echo n > c/new/deep/file
            ln c/new/deep/file c/ln/hard; ln -s ../new/deep/file c/sl/soft
            tar -C c --numeric-owner --owner=0 --group=0 -cf child.tar .wh.gone d/.wh..wh..opq d/c new/deep/file ln/hard sl/soft
            """)
    }

    /// The directories a driver keeps a layer's own files in.
    static func layerDirs(_ driver: String, _ home: String, _ ids: [String]) -> [String] {
        ids.map { id in
            switch driver {
            case "overlay2": return "\(home)/overlay2/\(id)/diff"
            case "aufs": return "\(home)/aufs/diff/\(id)"
            default: return "\(home)/\(driver)/dir/\(id)"
            }
        }
    }
}

@Suite(.serialized) struct StoreOwnershipTests {
    /// The report: a tar with x/y/z/file and no entries for x, x/y, x/y/z, applied under the map,
    /// made those parents 0:0 (host root). They are the mapped root pair now.
    @Test(.requires(.root)) func reportedReproduction() throws {
        let dir = try Fixture.tempDir("repro")
        defer { Fixture.cleanup(dir) }
        try Shell.check("cd \(dir) && mkdir -p src/x/y/z ROOT && echo hi > src/x/y/z/file && tar -C src --numeric-owner --owner=0 --group=0 -cf L.tar x/y/z/file")
        let (status, _, err) = try CLI.run("apply \(dir)/ROOT --uid-map 0:100000:65536 --gid-map 0:100000:65536 -i \(dir)/L.tar")
        #expect(status == 0, "\(err)")
        for p in ["x", "x/y", "x/y/z", "x/y/z/file"] {
            #expect(try Ownership.owner("\(dir)/ROOT/\(p)") == "100000:100000", "\(p)")
        }
        // An owner the map cannot take: refused, naming the input and the entry, exit 1.
        try Shell.check("cd \(dir) && tar -C src --numeric-owner --owner=70000 --group=0 -cf U.tar x/y/z/file")
        let (s2, _, e2) = try CLI.run("apply \(dir)/ROOT --uid-map 0:100000:65536 --gid-map 0:100000:65536 -i \(dir)/U.tar")
        #expect(s2 == 1 && e2.contains("U.tar") && e2.contains("x/y/z/file") && e2.contains("70000:0"), "\(e2)")
        // A map that leaves gids as host IDs, or has no container root: refused up front.
        let (s3, _, e3) = try CLI.run("apply \(dir)/ROOT --uid-map 0:100000:65536 -i \(dir)/L.tar")
        #expect(s3 == 1 && e3.contains("gid map"), "\(e3)")
        let (s4, _, e4) = try CLI.run("apply \(dir)/ROOT --uid-map 1:100000:65536 --gid-map 0:100000:65536 -i \(dir)/L.tar")
        #expect(s4 == 1 && e4.contains("container root"), "\(e4)")
    }

    /// The hostile corpus through the CLI in the plain, overlay and aufs forms under a single
    /// range map, and in the overlay form under a multi-range map, onto a root whose lower content is owned inside the map:
    /// whatever the exit status, nothing in the root is owned outside the map afterwards; the
    /// plain form's status under the single map is the one EXPECTED documents.
    @Test(.requires(.root)) func hostileCorpusStaysInsideTheMap() throws {
        let base = "/tmp/dkhostile-owners"
        var failures: [String] = []
        let modes: [(String, String, IDMap, String)] = [
            ("plain", "", Ownership.single, Ownership.singleFlags),
            ("overlay", "--whiteouts overlay", Ownership.single, Ownership.singleFlags),
            ("aufs", "--whiteouts aufs", Ownership.single, Ownership.singleFlags),
            ("overlay, multi-range", "--whiteouts overlay", Ownership.multi, Ownership.multiFlags),
        ]
        // The lower of each map (symlinks out of the root, a fifo, an /etc), owned by its root
        // pair as a store's layer would be; copied for every run.
        var prepare = "rm -rf \(base) && mkdir -p \(base)/victim/dir && echo secret > \(base)/victim/hello"
        for (i, map) in [Ownership.single, Ownership.multi].enumerated() {
            let t = "\(base)/lower\(i)"
            prepare += """
                 && mkdir -p \(t)/etc && ln -s \(base)/victim \(t)/lowerabs && ln -s ../victim \(t)/lowerrel &&
                ln -s \(base)/victim/hello \(t)/lowerfile && ln -s /etc \(t)/lowetc && echo root:x:0:0 > \(t)/etc/passwd &&
                mkfifo \(t)/fifo && echo k > \(t)/keep && chown -hR \(map.rootPair.uid):\(map.rootPair.gid) \(t)
                """
        }
        try Shell.check(prepare)
        for c in try Hostile.corpus() {
            // One shell per tar: each mode applies onto its own copy of the lower.
            var script = "true"
            for (i, (_, form, map, flags)) in modes.enumerated() {
                let lower = "\(base)/lower\(map == Ownership.single ? 0 : 1)"
                script += "; rm -rf \(base)/root\(i) && cp -a \(lower) \(base)/root\(i) && \(CLI.binary) apply \(base)/root\(i) -i \(c.file) \(form) \(flags) 2>&1; echo \"EXIT\(i)=$?\""
            }
            let (_, out) = try Shell.run(script)
            for (i, (name, _, map, _)) in modes.enumerated() {
                let line = out.split(separator: "\n").first { $0.hasPrefix("EXIT\(i)=") }
                let status = line.flatMap { Int32($0.dropFirst("EXIT\(i)=".count)) } ?? -1
                if name == "plain" && status != c.expected[2] {
                    failures.append("\(c.name) [\(name)]: exit \(status), documented \(c.expected[2]): \(out)")
                }
                let bad = try Ownership.outside(["\(base)/root\(i)"], map)
                if !bad.isEmpty { failures.append("\(c.name) [\(name)], exit \(status): owned outside the map: \(bad)") }
            }
        }
        try Shell.run("rm -rf \(base)")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// Store imports under the store's map on vfs, overlay2 and aufs: the layers' own
    /// directories (roots, implicit parents, whiteout devices or files, opaque directories,
    /// links) hold nothing outside the map; on overlay2 the merged view of the child, on a real
    /// overlay mount, hides what the whiteout device (owned by the mapped root) and the opaque
    /// directory hide, and owns nothing outside the map either.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func storeImportUnderTheStoresMap(driver: String) throws {
        let dir = try Fixture.tempDir("store-owners")
        defer { Fixture.cleanup(dir) }
        try StoreOwnership.layerTars(dir)
        let cli = "--driver \(driver) --home \(dir)/h"
        let (s1, _, e1) = try CLI.run("\(cli) import base -i \(dir)/base.tar \(Ownership.singleFlags)")
        let (s2, _, e2) = try CLI.run("\(cli) import child --parent base -i \(dir)/child.tar \(Ownership.singleFlags)")
        #expect(s1 == 0 && s2 == 0, "\(e1) \(e2)")
        let dirs = StoreOwnership.layerDirs(driver, dir + "/h", ["base", "child"])
        #expect(try Ownership.outside(dirs, Ownership.single) == [])
        #expect(try Ownership.owner(dirs[0] + "/x/y") == "100000:100000")
        #expect(try Ownership.owner(dirs[0] + "/x/y/z/file") == "100003:100004")
        #expect(try Ownership.owner(dirs[1] + "/new/deep") == "100000:100000")
        if driver == "overlay2" {
            let wh = try Sys.fstatat(AT_FDCWD, Bytes.of(dirs[1] + "/gone"))
            #expect(wh.st_mode & S_IFMT == S_IFCHR && wh.st_rdev == 0 && "\(wh.st_uid):\(wh.st_gid)" == "100000:100000")
            let (sm, merged, em) = try CLI.run("\(cli) mount child")
            #expect(sm == 0, "\(em)")
            let view = String(merged.dropLast())
            #expect(try listing(view) == ["d/", "d/c", "etc/", "etc/conf", "ln/", "ln/hard", "new/", "new/deep/", "new/deep/file",
                                          "sl/", "sl/soft", "x/", "x/y/", "x/y/z/", "x/y/z/file"])
            #expect(try Ownership.outside([view], Ownership.single) == [])
            _ = try CLI.run("\(cli) umount child")
        }
        if driver == "aufs" {
            #expect(try Ownership.owner(dirs[1] + "/.wh.gone") == "100000:100000")
        }
        // An import under another map than the store's is refused and leaves no layer.
        let store = try LayerStore(driverName: driver, home: Bytes.of(dir + "/h"), idMap: Ownership.single)
        defer { try? store.driver.cleanup() }
        let fd = try Sys.open(Bytes.of(dir + "/child.tar"), O_RDONLY)
        defer { close(fd) }
        #expect { _ = try store.importLayer(id: "other", parent: "base", from: fd, name: "child.tar", options: ApplyOptions(idMap: Ownership.multi)) }
            throws: { "\($0)".contains("not the one the store was opened with") }
        #expect((try? store.record("other")) == nil)
    }

    /// A store keeps the map it was first opened with: later commands without one use it (a
    /// child's root is the mapped root's, an export maps back to container IDs), another map is
    /// refused.
    @Test(.requires(.root)) func storeRemembersItsMap() throws {
        let dir = try Fixture.tempDir("store-map")
        defer { Fixture.cleanup(dir) }
        try StoreOwnership.layerTars(dir)
        let cli = "--driver vfs --home \(dir)/h"
        let (s1, _, e1) = try CLI.run("\(cli) import base -i \(dir)/base.tar \(Ownership.singleFlags)")
        #expect(s1 == 0, "\(e1)")
        let (s2, _, e2) = try CLI.run("\(cli) create child --parent base")
        let (s3, _, e3) = try CLI.run("\(cli) import other --parent base -i \(dir)/child.tar")
        #expect(s2 == 0 && s3 == 0, "\(e2) \(e3)")
        #expect(try Ownership.outside(StoreOwnership.layerDirs("vfs", dir + "/h", ["base", "child", "other"]), Ownership.single) == [])
        let (s4, _, e4) = try CLI.run("\(cli) export base -o \(dir)/out.tar --regenerate")
        #expect(s4 == 0, "\(e4)")
        let file = try Pipe.headers(dir + "/out.tar").first { $0.name == Bytes.of("x/y/z/file") }
        #expect(file?.uid == 3 && file?.gid == 4)
        let (s5, _, e5) = try CLI.run("\(cli) import third --parent base -i \(dir)/child.tar --uid-map 0:200000:65536 --gid-map 0:200000:65536")
        #expect(s5 == 1 && e5.contains("was made under the ID map uid 0:100000:65536 gid 0:100000:65536"), "\(e5)")
    }

    /// A store whose base layer was made without the map (owners and root 0:0), then a child
    /// imported under the map: on overlay2 and aufs the child's root and the implicit parents
    /// that copy the base's directories take the mapped root's IDs instead of host root; vfs,
    /// which would copy the base's files into the child, refuses naming an owner outside the map.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func lowerOutsideTheMap(driver: String) throws {
        let dir = try Fixture.tempDir("store-mixed")
        defer { Fixture.cleanup(dir) }
        try StoreOwnership.layerTars(dir)
        let cli = "--driver \(driver) --home \(dir)/h"
        let (s1, _, e1) = try CLI.run("\(cli) import base -i \(dir)/base.tar")
        #expect(s1 == 0, "\(e1)")
        try Shell.check("cd \(dir) && mkdir -p t/etc/more && echo m > t/etc/more/file && tar -C t --numeric-owner --owner=0 --group=0 -cf t.tar etc/more/file")
        let (s2, _, e2) = try CLI.run("\(cli) import child --parent base -i \(dir)/t.tar \(Ownership.singleFlags)")
        if driver == "vfs" {
            #expect(s2 == 1 && e2.contains("outside the ID map"), "\(e2)")
            let (_, ls, _) = try CLI.run("\(cli) ls")
            #expect(!ls.contains("child"), "\(ls)")
            return
        }
        #expect(s2 == 0, "\(e2)")
        let child = StoreOwnership.layerDirs(driver, dir + "/h", ["child"])
        #expect(try Ownership.outside(child, Ownership.single) == [])
        #expect(try Ownership.owner(child[0] + "/etc") == "100000:100000")
    }

    /// import-image under a map: every layer's own directory holds nothing outside the map,
    /// though the layer tars leave their parent directories out.
    @Test(.requires(.root, .filesystem("overlay"))) func importImageUnderAMap() throws {
        let dir = try Fixture.tempDir("image-owners")
        defer { Fixture.cleanup(dir) }
        try StoreOwnership.layerTars(dir)
        try Shell.check("cd \(dir) && python3 \(ImageTests.script) img base.tar child.tar")
        let (s, top, e) = try CLI.run("--driver overlay2 --home \(dir)/h import-image \(dir)/img/docker-save.tar -q \(Ownership.singleFlags)")
        #expect(s == 0, "\(e)")
        #expect(!top.isEmpty)
        let (_, out) = try Shell.run("ls -d \(dir)/h/overlay2/*/diff")
        let dirs = out.split(separator: "\n").map(String.init)
        #expect(dirs.count == 2)
        #expect(try Ownership.outside(dirs, Ownership.single) == [])
    }

    /// migrate under the stores' map: an aufs store made under the map, moved to overlay2, has
    /// layer roots, implicit parents and whiteout devices inside the map, and the merged view of
    /// the top layer is the source's content.
    @Test(.requires(.root, .filesystem("overlay"))) func migrateUnderAMap() throws {
        let dir = try Fixture.tempDir("migrate-owners")
        defer { Fixture.cleanup(dir) }
        try StoreOwnership.layerTars(dir)
        let src = "--driver aufs --home \(dir)/a"
        let (s1, _, e1) = try CLI.run("\(src) import base -i \(dir)/base.tar \(Ownership.singleFlags)")
        let (s2, _, e2) = try CLI.run("\(src) import child --parent base -i \(dir)/child.tar \(Ownership.singleFlags)")
        #expect(s1 == 0 && s2 == 0, "\(e1) \(e2)")
        let (s3, _, e3) = try CLI.run("migrate --from aufs --from-home \(dir)/a --to overlay2 --to-home \(dir)/o \(Ownership.singleFlags)")
        #expect(s3 == 0, "\(e3)")
        let dirs = StoreOwnership.layerDirs("overlay2", dir + "/o", ["base", "child"])
        #expect(try Ownership.outside(dirs, Ownership.single) == [])
        #expect(try Ownership.owner(dirs[0] + "/x/y/z/file") == "100003:100004")
        let (sm, merged, em) = try CLI.run("--driver overlay2 --home \(dir)/o mount child")
        #expect(sm == 0, "\(em)")
        #expect(try listing(String(merged.dropLast())).contains("new/deep/file"))
        #expect(try !listing(String(merged.dropLast())).contains("gone"))
        #expect(try !listing(String(merged.dropLast())).contains("d/a"))
        _ = try CLI.run("--driver overlay2 --home \(dir)/o umount child")
    }
}
