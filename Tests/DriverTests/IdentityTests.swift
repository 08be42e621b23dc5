// Layer identity: byte-exact re-export of tars from four writers on each driver, the regenerate
// fallback, reproducible digests equal across drivers and runs, compressed round trips.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Identity {
    static var writers: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/fixtures/writers"
    }

    static func sha(_ path: String) throws -> String {
        try Shell.run("sha256sum \(path) | cut -d' ' -f1").output.trimmingCharacters(in: [" ", "\n"])
    }

    /// A store home for `driver` (btrfs on a loop image, kept open by the returned handle).
    static func home(_ driver: String, in dir: String) throws -> (String, LoopFilesystem?) {
        guard driver == "btrfs" else { return (dir + "/" + driver, nil) }
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q", megabytes: 300)
        return (fs.mountPoint + "/store", fs)
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        String(drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed())
    }
}

@Suite(.serialized) struct IdentityTests {
    /// Each writer's tar, imported as a base and as a child, exports to the same bytes; once a file
    /// changes the export is regenerated (with a warning), never a mix; --regenerate always is.
    @Test(.requires(.root), arguments: ["vfs", "overlay2"])
    func byteExactReexport(driver: String) throws {
        let dir = try Fixture.tempDir("identity")
        defer { Fixture.cleanup(dir) }
        let (home, fs) = try Identity.home(driver, in: dir)
        defer { fs?.close() }
        let cli = "--driver \(driver) --home \(home)"
        for writer in ["gnu", "bsdtar", "python", "go"] {
            let tar = Identity.writers + "/\(writer).tar"
            let want = try Identity.sha(tar)
            for (id, parent) in [("\(writer)-base", ""), ("\(writer)-child", "--parent \(writer)-base")] {
                let (s1, out, e1) = try CLI.run("\(cli) import \(id) \(parent) -i \(tar) --json")
                #expect(s1 == 0 && out.contains("\"diffID\":\"sha256:\(want)\""), "\(writer) \(driver): \(out) \(e1)")
                let (s2, _, e2) = try CLI.run("\(cli) export \(id) -o \(dir)/out.tar")
                #expect(s2 == 0 && e2.contains("diffID sha256:\(want)"), "\(e2)")
                #expect(try Identity.sha(dir + "/out.tar") == want, "\(writer) on \(driver) as \(id): not byte-exact")
            }
            // --regenerate: a fresh tar (DiffKit's own writer), same content.
            let (s3, _, _) = try CLI.run("\(cli) export \(writer)-base --regenerate -o \(dir)/regen.tar")
            #expect(s3 == 0)
            #expect(try Identity.sha(dir + "/regen.tar") != want || writer == "go")
            // A change: the export says so and regenerates.
            let (_, mnt, _) = try CLI.run("\(cli) mount \(writer)-child")
            let path = mnt.trimmingCharacters(in: ["\n"])
            try Shell.check("echo changed > '\(path)/etc/hello'")
            _ = try CLI.run("\(cli) umount \(writer)-child")
            let (s4, _, e4) = try CLI.run("\(cli) export \(writer)-child -o \(dir)/changed.tar")
            #expect(s4 == 0 && e4.contains("changed since it was imported"), "\(e4)")
            #expect(try Identity.sha(dir + "/changed.tar") != want)
            let headers = try Pipe.headers(dir + "/changed.tar").map(\.displayName)
            #expect(headers.contains("etc/hello"), "\(headers)")
        }
    }

    /// byteExactReexport on btrfs: a test of its own, for its own need.
    @Test(.requires(.root, .filesystem("btrfs"))) func byteExactReexportOnBtrfs() throws {
        try byteExactReexport(driver: "btrfs")
    }

    /// `--reproducible`: the same layer content gives the same digest on vfs, overlay2, btrfs and
    /// aufs, and on every run.
    @Test(.requires(.root, .filesystem("btrfs"))) func reproducibleDigestIsTheSameOnEveryDriver() throws {
        let dir = try Fixture.tempDir("repro")
        defer { Fixture.cleanup(dir) }
        try Shell.check("""
            set -e; cd \(dir); mkdir -p b/etc b/usr/lib b/gone b/keep; echo 1 > b/etc/a; echo 2 > b/etc/b; echo 3 > b/usr/lib/c
            echo g > b/gone/x; ln b/usr/lib/c b/keep/c-link; cp -a b n; echo changed > n/etc/a; rm n/etc/b; rm -rf n/gone
            mkdir -p n/usr/lib/new/deep; echo z > n/usr/lib/new/deep/z; chmod 700 n/usr/lib/c; ln -s /etc/a n/usr/sym
            setfattr -n user.x -v 1 n/usr/lib/new/deep/z; tar -C b -cf base.tar .
            """)
        _ = try CLI.run("diff \(dir)/b \(dir)/n -o \(dir)/layer.tar")
        var digests: [String: Set<String>] = [:]
        for driver in ["vfs", "overlay2", "btrfs", "aufs"] {
            let (home, fs) = try Identity.home(driver, in: dir)
            defer { fs?.close() }
            let cli = "--driver \(driver) --home \(home)"
            try Shell.check("\(CLI.binary) \(cli) import base -i \(dir)/base.tar -q >/dev/null && \(CLI.binary) \(cli) import L --parent base -i \(dir)/layer.tar -q >/dev/null")
            for run in 0..<2 {
                let (s, out, err) = try CLI.run("\(cli) export L --reproducible --source-date-epoch 1700000000 --json -o \(dir)/r.tar")
                #expect(s == 0, "\(driver): \(err)")
                let digest = out.split(separator: "\"").drop { $0 != "digest" }.dropFirst(2).first.map(String.init) ?? ""
                digests[driver, default: []].insert(digest)
                #expect(digest == "sha256:" + (try Identity.sha(dir + "/r.tar")), "run \(run)")
            }
        }
        #expect(digests.values.allSatisfy { $0.count == 1 }, "\(digests)")
        #expect(Set(digests.values.flatMap { $0 }).count == 1, "\(digests)")
    }

    /// gzip and zstd exports: the printed digest is the file's, the diffID the decompressed
    /// tar's, and importing the compressed file gives the same tree.
    @Test(.requires(.root), arguments: ["gzip:9", "zstd:19", "gzip", "zstd"])
    func compressedExportRoundTrip(_ compression: String) throws {
        let dir = try Fixture.tempDir("compress")
        defer { Fixture.cleanup(dir) }
        let cli = "--home \(dir)/h"
        try Shell.check("\(CLI.binary) \(cli) import L -i \(Identity.writers)/go.tar -q >/dev/null")
        let (s, out, err) = try CLI.run("\(cli) export L --regenerate --compress \(compression) --json -o \(dir)/l.blob")
        #expect(s == 0, "\(err)")
        let tool = compression.hasPrefix("gzip") ? "gzip" : "zstd"
        let diffID = try Shell.run("\(tool) -dc \(dir)/l.blob | sha256sum | cut -d' ' -f1").output.trimmingCharacters(in: ["\n"])
        #expect(out.contains("\"digest\":\"sha256:\(try Identity.sha(dir + "/l.blob"))\""), "\(out)")
        #expect(out.contains("\"io.diffkit.diffID\":\"sha256:\(diffID)\""), "\(out)")
        #expect(out.contains("tar+\(tool)"))
        let (s2, _, e2) = try CLI.run("\(cli) import M -i \(dir)/l.blob")
        #expect(s2 == 0, "\(e2)")
        let a = Bytes.string(try LayerStore(driverName: "vfs", home: Bytes.of(dir + "/h")).mount(id: "L"))
        let b = Bytes.string(try LayerStore(driverName: "vfs", home: Bytes.of(dir + "/h")).mount(id: "M"))
        #expect(try Manifest.of(a) == Manifest.of(b))
    }
}

@Suite(.serialized) struct ImageTests {
    static var script: String { Identity.writers.replacingSuffix("writers", "images") + "/make-image.py" }

    /// An OCI layout (index → manifest, gzip and plain layers) and a docker save archive of the
    /// same three layers import as the same chain (chain IDs), verified; a second import reuses it;
    /// a tampered blob is refused and leaves nothing.
    @Test(.requires(.root), arguments: ["vfs", "overlay2"])
    func importImage(driver: String) throws {
        let dir = try Fixture.tempDir("image")
        defer { Fixture.cleanup(dir) }
        try Shell.check("""
            set -e; cd \(dir); mkdir -p a/etc b/etc c; echo 1 > a/etc/one; echo 2 > b/etc/two; touch b/etc/.wh.one; echo 3 > c/three
            for l in a b c; do tar -C $l -cf $l.tar .; done; python3 \(Self.script) img a.tar b.tar c.tar
            """)
        let cli = "--driver \(driver) --home \(dir)/h"
        let (s1, top1, e1) = try CLI.run("\(cli) import-image \(dir)/img/oci -q")
        #expect(s1 == 0, "\(e1)")
        let (s2, top2, e2) = try CLI.run("\(cli) import-image \(dir)/img/docker-save.tar -q")
        #expect(s2 == 0 && top2 == top1, "\(e2)")
        let (_, ls, _) = try CLI.run("\(cli) ls")
        #expect(ls.split(separator: "\n").count == 3, "\(ls)")
        let store = try LayerStore(driverName: driver, home: Bytes.of(dir + "/h"))
        defer { try? store.driver.cleanup() }
        let view = Bytes.string(try store.mount(id: String(top1.dropLast())))
        #expect(try listing(view) == ["etc/", "etc/two", "three"])
        try store.unmount(id: String(top1.dropLast()))
        // Tampered: one byte of the last layer's blob changed.
        try Shell.check("cd \(dir)/img/oci/blobs/sha256 && f=$(ls -S | tail -n +1 | head -1) && cp -r \(dir)/img/oci \(dir)/bad && printf X | dd of=\(dir)/bad/blobs/sha256/$f bs=1 seek=600 conv=notrunc 2>/dev/null")
        let (s3, _, e3) = try CLI.run("--driver \(driver) --home \(dir)/h2 import-image \(dir)/bad -q")
        #expect(s3 == 1 && (e3.contains("digest") || e3.contains("diffID")), "\(e3)")
        let (_, ls2, _) = try CLI.run("--driver \(driver) --home \(dir)/h2 ls")
        #expect(ls2.split(separator: "\n").count < 3)
    }
}

extension String {
    func replacingSuffix(_ old: String, _ new: String) -> String { hasSuffix(old) ? String(dropLast(old.count)) + new : self }
}

@Suite(.serialized) struct ConformanceCommandTests {
    /// `difftool conformance` passes on vfs and overlay2 (exit 0) and fails, exit 1, where a
    /// driver cannot work (aufs without its module here; with the module it must pass).
    @Test(.requires(.root)) func conformanceCommand() throws {
        let dir = try Fixture.tempDir("conf")
        defer { Fixture.cleanup(dir) }
        for driver in ["vfs", "overlay2"] {
            let (s, out, err) = try CLI.run("conformance --driver \(driver) --home \(dir)")
            #expect(s == 0 && out.contains("9 passed, 0 failed"), "\(driver): \(out) \(err)")
        }
        let aufs = access("/sys/module/aufs", F_OK) == 0
        let (s, out, _) = try CLI.run("conformance --driver aufs --home \(dir) --json")
        #expect(aufs ? s == 0 : (s == 1 && out.contains("\"failed\":")), "\(out)")
    }
}
