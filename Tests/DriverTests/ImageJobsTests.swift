// import-image --jobs: layers applied at once on overlay2 (each layer's diff dir is its own),
// one after the other on vfs (a child starts as a copy of its parent); the same chain and the
// same merged tree whatever the jobs; a failure in one job leaves the store as it was; and a
// layer that takes a directory's attributes from a lower still being written is applied again.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import Images
import SystemPackage
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An image of five gzip-compressed layers, made from trees by difftool's own writer (`tar`,
/// then `diff` of each tree against the one before), written as OCI layouts.
enum JobsImage {
    /// Writes an OCI layout of the gzip tars given (base first) into the directory given.
    static let layoutScript = #"""
    import gzip, hashlib, json, os, sys
    out, blobs = sys.argv[1], sys.argv[2:]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
    def put(data):
        d = hashlib.sha256(data).hexdigest()
        open(os.path.join(out, "blobs", "sha256", d), "wb").write(data)
        return {"digest": "sha256:" + d, "size": len(data)}
    layers, diffs = [], []
    for b in blobs:
        data = open(b, "rb").read()
        layers.append(dict(put(data), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
        diffs.append("sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(put(config), mediaType="application/vnd.oci.image.config.v1+json"), "layers": layers}).encode()
    top = dict(put(manifest), mediaType="application/vnd.oci.image.manifest.v1+json")
    json.dump({"schemaVersion": 2, "manifests": [top]}, open(os.path.join(out, "index.json"), "w"))
    """#

    /// The trees, each the one before changed: adds, edits, deletions (file and subtree),
    /// a chmod and chown of a directory, symlinks, hardlinks, an opaque-making replacement.
    static let steps: [[Op]] = [
        [.dir("etc"), .file("etc/hosts", "127.0.0.1 localhost\n"), .file("etc/passwd", "root:x:0:0\n"),
         .dir("usr/bin"), .file("usr/bin/sh", String(repeating: "sh", count: 5000), mode: 0o755),
         .symlink("bin", to: "usr/bin"), .dir("var/lib/app", mode: 0o750, uid: 10, gid: 20),
         .file("var/lib/app/data", "v1"), .dir("tmp", mode: 0o1777)],
        [.file("etc/passwd", "root:x:0:0\napp:x:10:20\n"), .file("usr/bin/tool", String(repeating: "t", count: 70000), mode: 0o755),
         .hardlink("usr/bin/tool2", to: "usr/bin/tool"), .remove("etc/hosts")],
        [.dir("opt/pkg/share/doc"), .file("opt/pkg/share/doc/README", "read me"), .file("opt/pkg/lib.so", String(repeating: "L", count: 300000)),
         .chmod("var/lib/app", 0o700), .chown("var/lib/app", 11, 21)],
        [.remove("opt/pkg/share"), .file("opt/pkg/VERSION", "2"), .file("var/lib/app/data", "v2"),
         .symlink("usr/bin/sh2", to: "sh")],
        [.remove("var/lib/app"), .dir("var/lib/app"), .file("var/lib/app/fresh", "new"),
         .file("etc/hosts", "back\n")],
    ]

    /// In `dir`: `s0`…`s4`, `l0.tar.gz`…`l4.tar.gz`, `oci/` (all five) and `prefix/` (the first
    /// two: the same chain IDs as the first two of `oci/`).
    static func make(_ dir: String) throws {
        try Shell.check("mkdir -p \(dir)/s0")
        for (k, ops) in steps.enumerated() {
            let tree = "\(dir)/s\(k)"
            if k > 0 {
                try Shell.check("mkdir \(tree)")
                try TreeCopy.copy(from: Bytes.of("\(dir)/s\(k - 1)"), to: Bytes.of(tree))
            }
            try Fixture.apply(tree, ops)
            let tar = k == 0 ? "tar \(tree)" : "diff \(dir)/s\(k - 1) \(tree)"
            try Shell.check("\(CLI.binary) \(tar) -o \(dir)/l\(k).tar && gzip -n \(dir)/l\(k).tar")
        }
        try writeFile(dir + "/layout.py", layoutScript)
        let blobs = (0..<steps.count).map { "\(dir)/l\($0).tar.gz" }
        try Shell.check("python3 \(dir)/layout.py \(dir)/oci \(blobs.joined(separator: " "))")
        try Shell.check("python3 \(dir)/layout.py \(dir)/prefix \(blobs[0]) \(blobs[1])")
    }

    /// The names below `root`, one level (a driver's home: its layer dirs and `l/`).
    static func entries(_ root: String) throws -> [String] {
        let (s, out) = try Shell.run("cd \(root) && find . -maxdepth 2 | sort")
        guard s == 0 else { throw TestError("find \(root): \(out)") }
        return out.split(separator: "\n").map(String.init)
    }
}

/// A shared count that readers wait on until it reaches `parties` (or throw after `seconds`):
/// readers that meet there were running at the same time.
final class Barrier: Sendable {
    let parties: Int
    let seconds: Double
    let count = Locked(0)

    init(parties: Int, seconds: Double = 20) {
        self.parties = parties
        self.seconds = seconds
    }

    func arriveAndWait() throws {
        count.withLock { $0 += 1 }
        try wait()
    }

    func wait() throws {
        var waited = 0.0
        while count.withLock({ $0 }) < parties {
            if waited > seconds { throw TestError("only \(count.withLock { $0 }) of \(parties) jobs ran at once") }
            usleep(2000)
            waited += 0.002
        }
    }
}

/// Serves `bytes`, stopping once at offset `at` at the barrier (or, with `arrives: false`,
/// only waiting there for it to fill).
final class BarrierReader: LayerReader {
    let bytes: [UInt8]
    let at: Int
    let barrier: Barrier
    let arrives: Bool
    let state = Locked((offset: 0, passed: false))

    init(_ bytes: [UInt8], at: Int, barrier: Barrier, arrives: Bool = true) {
        self.bytes = bytes
        self.at = at
        self.barrier = barrier
        self.arrives = arrives
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let stop = state.withLock { $0.offset >= at && !$0.passed }
        if stop {
            if arrives { try barrier.arriveAndWait() } else { try barrier.wait() }
            state.withLock { $0.passed = true }
        }
        return state.withLock { s in
            let end = s.passed ? bytes.count : at
            let n = min(buffer.count, end - s.offset)
            if n > 0 { bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + s.offset, byteCount: n) } }
            s.offset += n
            return n
        }
    }
}

@Suite(.serialized) struct ImageJobsTests {
    /// --jobs 1 and --jobs 4 import the five-layer image as the same chain (same ids, same
    /// diffIDs), and the top layer's merged view is the last tree, on vfs, overlay2 and aufs.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func sameChainWhateverTheJobs(driver: String) throws {
        let dir = try Fixture.tempDir("jobs")
        defer { Fixture.cleanup(dir) }
        try JobsImage.make(dir)
        var manifests: [[String]] = []
        var outputs: [String] = []
        for jobs in [1, 4] {
            let home = "\(dir)/h\(jobs)"
            let (s, out, e) = try CLI.run("--driver \(driver) --home \(home) import-image \(dir)/oci --jobs \(jobs) --json -q")
            #expect(s == 0, "\(driver) --jobs \(jobs): \(e)")
            outputs.append(out)
            let store = try LayerStore(driverName: driver, home: FilePath(home))
            defer { try? store.driver.cleanup() }
            let records = try store.list()
            let top = try #require(records.first { r in records.allSatisfy { $0.parent != r.id } }).id
            #expect(records.count == 5 && out.contains("\"top\":\"\(top)\""), "\(out)")
            if driver == "aufs" {
                // Without the aufs module a chain this deep does not mount: its branches, compared.
                var branches: [String] = []
                var id: String? = top
                while let layer = id {
                    branches += try Manifest.of(try #require(try store.driver.branch(id: layer)).directory.string).map { layer + " " + $0 }
                    id = try store.record(layer).parent
                }
                manifests.append(branches)
            } else {
                let view = try store.mount(id: top)
                manifests.append(try Manifest.of(view.string))
                try store.unmount(id: top)
            }
        }
        #expect(outputs[0] == outputs[1] && outputs[0].hasPrefix("{\"layers\":[{\"diffID\":\"sha256:"), "\(outputs)")
        #expect(manifests[0] == manifests[1])
        if driver != "aufs" { #expect(manifests[1] == (try Manifest.of("\(dir)/s4")), "the merged view is the last tree") }
    }

    /// On overlay2 and aufs the layers go in at once; on vfs one after the other, whatever the jobs.
    /// Seen through the library: how many were applied at once at most.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func concurrencyFollowsTheDriver(driver: String) throws {
        let dir = try Fixture.tempDir("jobs")
        defer { Fixture.cleanup(dir) }
        try JobsImage.make(dir)
        let store = try LayerStore(driverName: driver, home: FilePath(dir + "/h"))
        defer { try? store.driver.cleanup() }
        let image = try ImageLayout(directory: FilePath(dir + "/oci")).image()
        let made = try store.importImage(image, options: ImageImportOptions(jobs: 4))
        #expect(made.layers.count == 5 && made.layers.allSatisfy { !$0.reused })
        #expect(made.concurrent == (driver != "vfs"))
        if driver == "vfs" { #expect(made.mostAtOnce == 1) }
        // Imported again: every layer reused, nothing applied.
        let again = try store.importImage(image, options: ImageImportOptions(jobs: 4))
        #expect(again.layers.allSatisfy(\.reused) && again.top == made.top && again.mostAtOnce == 0)
    }

    /// Jobs overlap on overlay2, proven without timing: each of four layers' tars stops after
    /// its first block until all four have reached that point, which only four jobs running at
    /// once can do (one after the other, the first would wait in vain and fail).
    @Test(.requires(.root, .filesystem("overlay"))) func jobsRunAtOnceOnOverlay2() throws {
        let dir = try Fixture.tempDir("jobs")
        defer { Fixture.cleanup(dir) }
        let store = try LayerStore(driverName: "overlay2", home: FilePath(dir + "/h"))
        defer { try? store.driver.cleanup() }
        let barrier = Barrier(parties: 4)
        var layers: [ChainLayer] = []
        for k in 0..<4 {
            try Shell.check("mkdir -p \(dir)/t\(k)/d\(k) && head -c 200000 /dev/urandom > \(dir)/t\(k)/d\(k)/f && tar -C \(dir)/t\(k) -cf \(dir)/t\(k).tar .")
            let bytes = try Pipe.read("\(dir)/t\(k).tar")
            layers.append(ChainLayer(id: "L\(k)", name: "t\(k).tar") { apply in
                try apply(.reader(BarrierReader(bytes, at: 512, barrier: barrier)))
            })
        }
        let made = try store.importChain(layers, on: nil, jobs: 4)
        #expect(made.concurrent && made.mostAtOnce == 4 && made.layers.map(\.id) == ["L0", "L1", "L2", "L3"])
        #expect(try store.list().map(\.id).sorted() == ["L0", "L1", "L2", "L3"])
        #expect(try store.record("L3").parent == "L2")
        let view = try store.mount(id: "L3")
        #expect(try listing(view.string).filter { $0.hasSuffix("/f") }.count == 4)
        try store.unmount(id: "L3")
    }

    /// A corrupt middle layer with --jobs 4: the import fails naming it, and the store is as it
    /// was — the same `ls`, no directory left in the driver's home, no record or marker.
    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2"])
    func corruptMiddleLayerLeavesTheStoreAsItWas(driver: String) throws {
        let dir = try Fixture.tempDir("jobs")
        defer { Fixture.cleanup(dir) }
        try JobsImage.make(dir)
        let h = "--driver \(driver) --home \(dir)/h"
        // Before: the image's first two layers (the same chain IDs), imported on their own.
        let (s0, _, e0) = try CLI.run("\(h) import-image \(dir)/prefix -q")
        #expect(s0 == 0, "\(e0)")
        let ls = try CLI.run("\(h) ls").1
        let home = try JobsImage.entries("\(dir)/h/\(driver)")
        let meta = try JobsImage.entries("\(dir)/h/layers")
        // The third layer's blob damaged in the middle of its compressed stream.
        try Shell.check("""
            cd \(dir) && blob=$(python3 -c 'import json,sys; m=json.load(open("oci/index.json"))["manifests"][0]["digest"][7:]; \
            print(json.load(open("oci/blobs/sha256/"+m))["layers"][2]["digest"][7:])') && \
            size=$(stat -c %s oci/blobs/sha256/$blob) && \
            printf 'XXXXXXXX' | dd of=oci/blobs/sha256/$blob bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
            """)
        let (s1, out1, e1) = try CLI.run("\(h) import-image \(dir)/oci --jobs 4 -q")
        #expect(s1 == 1 && out1.isEmpty && e1.contains("layer 3") && e1.split(separator: "\n").count == 1, "\(e1)")
        #expect(try CLI.run("\(h) ls").1 == ls)
        // Except overlay2's `committed` marker on the parent: made with its first child (as moby
        // makes it, and never takes back), it only has the layer mount without an upper.
        let after = try JobsImage.entries("\(dir)/h/\(driver)").filter { !$0.hasSuffix("/committed") || home.contains($0) }
        #expect(after == home, "left: \(Set(after).subtracting(home)), gone: \(Set(home).subtracting(after))")
        #expect(try JobsImage.entries("\(dir)/h/layers").filter { !$0.hasPrefix("./.locks/") } == meta.filter { !$0.hasPrefix("./.locks/") })
    }

    /// A layer whose tar leaves a directory implicit (`d/b` without `d/`) takes `d`'s
    /// attributes from the layer below. Applied while that one was still waiting (its tar held
    /// until this one is in), it is applied again once the lower is complete: `d` is the
    /// lower's 0700 owned 7:8, as applied one after the other — not a default 0755 root.
    @Test(.requires(.root, .filesystem("overlay"))) func implicitDirectoryIsAppliedAgainOnceTheLowerIsIn() throws {
        let dir = try Fixture.tempDir("jobs")
        defer { Fixture.cleanup(dir) }
        try writeFile(dir + "/tars.py", """
            import io, tarfile
            def tar(path, entries):
                with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
                    for name, kind, mode, data in entries:
                        i = tarfile.TarInfo(name); i.mode = mode; i.uid, i.gid = 7, 8; i.mtime = 1700000000
                        if kind == "dir": i.type = tarfile.DIRTYPE; t.addfile(i)
                        else: i.size = len(data); t.addfile(i, io.BytesIO(data))
            tar("lower.tar", [("d", "dir", 0o700, b""), ("d/a", "file", 0o644, b"a")])
            tar("upper.tar", [("d/b", "file", 0o644, b"b")])
            """)
        try Shell.check("cd \(dir) && python3 tars.py")
        let lower = try Pipe.read(dir + "/lower.tar"), upper = try Pipe.read(dir + "/upper.tar")
        var trees: [[String]] = []
        for jobs in [1, 2] {
            let store = try LayerStore(driverName: "overlay2", home: FilePath("\(dir)/h\(jobs)"))
            defer { try? store.driver.cleanup() }
            // The lower's tar is held until the upper is in (with two jobs; with one, the
            // lower goes first and the gate is already open when the upper is read).
            let gate = Barrier(parties: 1)
            if jobs == 1 { gate.count.withLock { $0 = 1 } }
            let made = try store.importChain([
                ChainLayer(id: "lower", name: "lower.tar") { apply in
                    try apply(.reader(BarrierReader(lower, at: 0, barrier: gate, arrives: false)))
                },
                ChainLayer(id: "upper", name: "upper.tar") { apply in
                    defer { gate.count.withLock { $0 = 1 } }
                    return try apply(.bytes(upper))
                },
            ], on: nil, jobs: jobs)
            #expect(made.appliedAgain == (jobs == 2 ? ["upper"] : []))
            let view = try store.mount(id: "upper")
            trees.append(try Manifest.of(view.string))
            try store.unmount(id: "upper")
            let own = try #require(try store.driver.branch(id: "upper")).directory
            var st = stat()
            #expect(lstat(Bytes.string(own) + "/d", &st) == 0 && st.st_mode & 0o7777 == 0o700 && st.st_uid == 7)
        }
        #expect(trees[0] == trees[1])
    }
}
