// export-image without engines: the OCI layout's and the docker archive's structure, every
// digest checked by sha256sum against the bytes written, the imported tars given back byte for
// byte, reproducible output across drivers and runs, and failures (unknown top, broken chain,
// full disk, a destination in use, cancellation) that leave nothing at the destination.
// EngineTests.swift loads the same images into dockerd, a registry and umoci.
import DiffKit
import DiffKitArchive
import DiffKitJSON
import DiffKitSystem
import Drivers
@testable import Images
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A small image shaped like a distribution's: a base tree (merged /usr, a setuid binary,
/// hardlinks, symlinks, a fifo, files owned by other users, a 0640 file of group 42, a sticky
/// /tmp) and two layers of changes (edits, additions, deletions, a mode and an owner change, a
/// directory deleted and made again).
enum ImageFixture {
    static func bytes(seed: UInt64, count: Int) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    static let passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"

    static let base: [Op] = [
        .symlink("bin", to: "usr/bin"), .symlink("lib", to: "usr/lib"),
        .file("etc/passwd", passwd), .file("etc/group", "root:x:0:\nshadow:x:42:\nuser:x:1000:\n"),
        .file("etc/shadow", "root:*:19000:0:99999:7:::\n", mode: 0o640, gid: 42),
        .file("etc/os-release", "ID=diffkit\nVERSION_ID=1\n"),
        .file("usr/bin/tool", "#!/bin/sh\necho tool\n", mode: 0o755), .hardlink("usr/bin/tool-alias", to: "usr/bin/tool"),
        .file("usr/bin/su", "setuid\n", mode: 0o4755),
        .bytes("usr/lib/libdemo.so.1", bytes(seed: 1, count: 200_000)), .symlink("usr/lib/libdemo.so", to: "libdemo.so.1"),
        .file("usr/share/doc/demo/README", "demo\n"), .file("usr/share/doc/demo/copyright", "(c) demo\n"),
        .dir("tmp", mode: 0o1777), .dir("root", mode: 0o700),
        .dir("home/user", uid: 1000, gid: 1000), .file("home/user/.profile", "PATH=/usr/bin\n", uid: 1000, gid: 1000),
        .file("var/log/empty.log", ""), .fifo("var/spool/pipe"),
    ]

    static let layer1: [Op] = [
        .file("etc/passwd", passwd + "app:x:999:999::/opt/app:/bin/false\n"),
        .file("usr/bin/newtool", "#!/bin/sh\necho new\n", mode: 0o755),
        .remove("usr/share/doc/demo/README"), .chmod("etc/os-release", 0o600),
        .file("opt/app/config.yml", "a: 1\n"), .file("opt/app/bin/run", "#!/bin/sh\n", mode: 0o755),
        .bytes("usr/lib/libdemo.so.1", bytes(seed: 2, count: 150_000)),
        .dir("var/cache/app", uid: 999, gid: 999), .file("home/user/notes", "n\n", uid: 1000, gid: 1000),
    ]

    static let layer2: [Op] = [
        .remove("opt/app"), .file("opt/app/VERSION", "2\n"),
        .remove("usr/bin/tool-alias"), .file("etc/app.conf", "x=1\n"),
        .chown("home/user/.profile", 1001, 1001), .symlink("usr/bin/app", to: "/opt/app/bin/run"),
        .remove("var/spool/pipe"),
    ]

    /// The three trees, each a temp dir: base, base + layer 1, base + layers 1 and 2.
    static func trees() throws -> [String] {
        let base = try Fixture.make(base, tag: "img0")
        let one = try Fixture.copy(base)
        try Fixture.apply(one, layer1)
        let two = try Fixture.copy(one)
        try Fixture.apply(two, layer2)
        return [base, one, two]
    }

    /// The chain imported into `store` as layers `ids` (base first) from DiffKit's own tars: the
    /// base tree whole, then each tree's diff against the one before.
    @discardableResult
    static func importChain(into store: LayerStore, ids: [String] = ["base", "l1", "l2"], trees: [String]) throws -> [String] {
        for (i, id) in ids.enumerated() {
            let tar = try Pipe.tarFile { fd in
                if i == 0 {
                    try Layers.export(directory: Bytes.of(trees[0]), to: fd, name: id)
                } else {
                    try Layers.diff(base: Bytes.of(trees[i - 1]), layer: Bytes.of(trees[i]), to: fd, name: id)
                }
            }
            defer { Fixture.cleanup(tarDir(tar)) }
            let fd = try Sys.open(Bytes.of(tar), O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            _ = try store.importLayer(id: id, parent: i == 0 ? nil : ids[i - 1], from: fd, name: tar)
        }
        return ids
    }

    /// Layer tars as another tool writes them: DiffKit's diffs unpacked as plain files (whiteouts
    /// stay `.wh.` files) and tarred again by GNU tar (`./` names, GNU headers, sorted). Paths
    /// of the tars, base first, in `dir`.
    static func foreignTars(trees: [String], in dir: String) throws -> [String] {
        var tars: [String] = []
        for i in trees.indices {
            let tree = dir + "/tree\(i)"
            try Shell.check("mkdir -p '\(tree)'")
            let tar = try Pipe.tarFile { fd in
                if i == 0 {
                    try Layers.export(directory: Bytes.of(trees[0]), to: fd, name: "base")
                } else {
                    try Layers.diff(base: Bytes.of(trees[i - 1]), layer: Bytes.of(trees[i]), to: fd, name: "diff\(i)")
                }
            }
            defer { Fixture.cleanup(tarDir(tar)) }
            try Shell.check("tar -C '\(tree)' --numeric-owner -xpf '\(tar)'")
            let out = dir + "/layer\(i).tar"
            try Shell.check("tar -C '\(tree)' --format=gnu --sort=name --numeric-owner -cf '\(out)' .")
            tars.append(out)
        }
        return tars
    }

    /// An OCI layout at `dir` holding one image tagged `tag` whose layers are `tars`, gzip-
    /// compressed (as a registry serves them), written by Python (another tool than DiffKit).
    static func foreignLayout(tars: [String], at dir: String, tag: String) throws {
        let script = #"""
        import gzip, hashlib, json, os, sys
        out, tag, tars = sys.argv[1], sys.argv[2], sys.argv[3:]
        os.makedirs(os.path.join(out, "blobs", "sha256"))
        def put(data):
            d = hashlib.sha256(data).hexdigest()
            open(os.path.join(out, "blobs", "sha256", d), "wb").write(data)
            return {"digest": "sha256:" + d, "size": len(data)}
        layers, diffs = [], []
        for t in tars:
            raw = open(t, "rb").read()
            diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
            layers.append(dict(put(gzip.compress(raw, mtime=0)), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diffs},
                             "history": [{"created_by": "layer %d" % i} for i in range(len(tars))]}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": dict(put(config), mediaType="application/vnd.oci.image.config.v1+json"),
                               "layers": layers}).encode()
        m = dict(put(manifest), mediaType="application/vnd.oci.image.manifest.v1+json",
                 annotations={"org.opencontainers.image.ref.name": tag})
        json.dump({"schemaVersion": 2, "manifests": [m]}, open(os.path.join(out, "index.json"), "w"))
        open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
        """#
        let py = try Fixture.tempDir("py")
        defer { Fixture.cleanup(py) }
        try Fixture.apply(py, [.file("layout.py", script)])
        try Shell.check("python3 '\(py)/layout.py' '\(dir)' '\(tag)' " + tars.map { "'\($0)'" }.joined(separator: " "))
    }

    /// The manifest (Tree.swift) of layer `id`'s merged view in `store`.
    static func mergedView(_ store: LayerStore, _ id: String, mtimes: Bool = true) throws -> [String] {
        let path = try store.mount(id: id)
        defer { try? store.unmount(id: id) }
        return try Manifest.of(path.string, mtimes: mtimes)
    }
}

/// Checks on written images shared with EngineTests.
enum ImageChecks {
    /// sha256sum's digest of what `command` prints.
    static func sha256(of command: String) throws -> String {
        let dir = try Fixture.tempDir("sum")
        defer { Fixture.cleanup(dir) }
        let (status, out) = try Shell.run("\(command) >'\(dir)/bytes' && sha256sum <'\(dir)/bytes'")
        guard status == 0 else { throw TestError("\(command): \(out)") }
        return "sha256:" + String(out.prefix(64))
    }

    static func size(_ path: String) throws -> Int64 {
        Int64(try Sys.fstatat(AT_FDCWD, Bytes.of(path)).st_size)
    }

    static func document<T: Decodable>(_ path: String, as: T.Type) throws -> T {
        try JSONDocument.decode(T.self, from: Sys.readFile(Bytes.of(path)))
    }

    static func decompress(_ mediaType: String) -> String {
        mediaType.hasSuffix("+gzip") ? "gzip -dc" : mediaType.hasSuffix("+zstd") ? "zstd -dcq" : "cat"
    }

    /// Everything an OCI layout must be, checked against the export's result: oci-layout, an
    /// index naming the manifest (tagged), the manifest naming the config and the layer blobs,
    /// the config's diff_ids and history, every blob's digest and size (sha256sum of the bytes;
    /// a layer's diffID of its decompressed bytes), and no other file.
    static func verifyLayout(_ dir: String, _ made: ImageExport, tag: ImageTag?) throws {
        #expect(String(decoding: try Sys.readFile(Bytes.of(dir + "/oci-layout")), as: UTF8.self) == #"{"imageLayoutVersion":"1.0.0"}"#)
        let index = try document(dir + "/index.json", as: ImageIndex.self)
        #expect(index.schemaVersion == 2 && index.mediaType == MediaType.ociIndex)
        let entry = try #require(index.manifests.count == 1 ? index.manifests[0] : nil)
        let manifestBlob = try #require(made.manifest)
        #expect(entry.digest == manifestBlob.digest && entry.size == manifestBlob.size && entry.mediaType == MediaType.ociManifest)
        #expect(entry.refName == tag?.tag)
        #expect(entry.annotations?[AnnotationKey.imageName] == tag?.description)
        var blobs: Set<String> = []
        func blob(_ digest: String, size: Int64) throws -> String {
            let path = dir + "/blobs/sha256/" + digest.dropFirst(7)
            #expect(try sha256(of: "cat '\(path)'") == digest, "\(path)")
            #expect(try self.size(path) == size, "\(path)")
            blobs.insert(String(digest.dropFirst(7)))
            return path
        }
        let manifest = try document(try blob(entry.digest, size: entry.size), as: ImageManifest.self)
        #expect(manifest.schemaVersion == 2 && manifest.mediaType == MediaType.ociManifest)
        #expect(manifest.config.digest == made.config.digest && manifest.config.mediaType == MediaType.ociConfig)
        let config = try document(try blob(manifest.config.digest, size: manifest.config.size), as: ImageConfig.self)
        #expect(config.rootfs?.type == "layers")
        #expect(config.rootfs?.diffIDs == made.layers.map(\.digests.diffID))
        #expect(config.history?.count == made.layers.count)
        #expect(config.os == "linux" && config.architecture == Platform.host.architecture)
        #expect(manifest.layers.count == made.layers.count)
        for (d, l) in zip(manifest.layers, made.layers) {
            #expect(d.digest == l.digests.digest && d.size == l.digests.size && d.mediaType == l.digests.mediaType)
            let path = try blob(d.digest, size: d.size)
            #expect(try sha256(of: "\(decompress(d.mediaType)) '\(path)'") == l.digests.diffID)
        }
        #expect(try listing(dir).sorted() == (["blobs/", "blobs/sha256/", "index.json", "oci-layout"]
            + blobs.map { "blobs/sha256/" + $0 }).sorted())
    }

    /// Everything a docker save archive must be: the entries (a directory and a layer.tar per
    /// layer, the config, manifest.json, repositories when tagged) in a tar GNU tar reads, the
    /// manifest naming the config, the tags and the layer tars in order, the config's diff_ids
    /// those of the layer tars (sha256sum), and repositories pointing at the top layer.
    static func verifyArchive(_ path: String, _ made: ImageExport, tag: ImageTag?) throws {
        let dir = try Fixture.tempDir("unpacked")
        defer { Fixture.cleanup(dir) }
        try Shell.check("tar -C '\(dir)' -xf '\(path)'")
        let entries = try manifestNames(dir)
        let m = try #require(try document(dir + "/manifest.json", as: [DockerManifestEntry].self).first)
        #expect(m.config == made.config.digest.dropFirst(7) + ".json")
        #expect(try sha256(of: "cat '\(dir)/\(m.config)'") == made.config.digest)
        #expect(m.repoTags == tag.map { [$0.description] })
        let config = try document(dir + "/" + m.config, as: ImageConfig.self)
        #expect(config.rootfs?.diffIDs == made.layers.map(\.digests.diffID))
        let chains = Image.chainIDs(made.layers.map(\.digests.diffID))
        #expect(m.layers == chains.map { $0.dropFirst(7) + "/layer.tar" })
        for (name, l) in zip(m.layers, made.layers) {
            #expect(try sha256(of: "cat '\(dir)/\(name)'") == l.digests.diffID)
            #expect(try size(dir + "/" + name) == l.digests.size)
        }
        var expected = [m.config, "manifest.json"] + m.layers + m.layers.map { String($0.dropLast("layer.tar".count)) }
        if let tag, let top = chains.last {
            let repositories = try document(dir + "/repositories", as: [String: [String: String]].self)
            #expect(repositories == [tag.name: [tag.tag: String(top.dropFirst(7))]])
            expected.append("repositories")
        }
        #expect(entries.sorted() == expected.sorted())
    }

    /// The entry names of the tree at `dir`, directories with a trailing `/`.
    static func manifestNames(_ dir: String) throws -> [String] { try listing(dir) }

    /// What is in `dir` (names only), to show nothing was left behind.
    static func names(_ dir: String) throws -> [String] {
        let fd = try Sys.open(Bytes.of(dir), O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        return try Sys.readDirectory(fd, shown: Bytes.of(dir)).map { Bytes.string($0.name) }.sorted()
    }
}

@Suite(.serialized) struct ExportImageTests {
    static let compressions: [Compression] = [.none, .gzip(level: 6), .zstd(level: 3)]

    @Test(.requires(.root, .command("zstd")), arguments: compressions)
    func ociLayoutHoldsTheChainWithVerifiedDigests(_ compression: Compression) throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        let tag = try ImageTag(parsing: "example.test:5000/demo/app:1.0")
        let made = try store.exportImage(top: "l2", to: FilePath(work + "/oci"),
                                         options: ImageExportOptions(format: .oci, tag: tag, compression: compression))
        #expect(made.layers.map(\.id) == ["base", "l1", "l2"])
        #expect(made.layers.allSatisfy { $0.source == .original && $0.digests.mediaType == compression.mediaType })
        #expect(made.layers.map(\.digests.diffID) == (try ["base", "l1", "l2"].map { try store.record($0).diffID }))
        try ImageChecks.verifyLayout(work + "/oci", made, tag: tag)
        #expect(try ImageChecks.names(work) == ["home", "oci"])

        // Read back (as import-image reads it) into a fresh store: the chain and the tree.
        let again = try LayerStore(driverName: "vfs", home: FilePath(work + "/again"))
        let imported = try ImageLayout.withLayout(at: FilePath(work + "/oci")) { layout in
            try again.importImage(try layout.image(reference: "1.0"))
        }
        #expect(imported.layers.map(\.diffID) == made.layers.map(\.digests.diffID))
        #expect(try ImageFixture.mergedView(again, try #require(imported.top)) == Manifest.of(trees[2]))
    }

    @Test(.requires(.root)) func dockerArchiveIsTheTarDockerSaveWrites() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        let tag = try ImageTag(parsing: "demo/app:2")
        let made = try store.exportImage(top: "l2", to: FilePath(work + "/image.tar"),
                                         options: ImageExportOptions(format: .dockerArchive, tag: tag))
        #expect(made.manifest == nil && made.format == .dockerArchive)
        try ImageChecks.verifyArchive(work + "/image.tar", made, tag: tag)
        // Python's tarfile reads it too (another reader than GNU tar), with the same sizes.
        let (status, out) = try Shell.run("python3 -c \"import tarfile,sys; [print(m.name, m.size) for m in tarfile.open(sys.argv[1])]\" '\(work)/image.tar'")
        #expect(status == 0)
        #expect(out.contains("manifest.json"))
        // Untagged: no RepoTags, no repositories; over the file just written (replaced whole).
        let untagged = try store.exportImage(top: "l1", to: FilePath(work + "/image.tar"), options: ImageExportOptions(format: .dockerArchive))
        try ImageChecks.verifyArchive(work + "/image.tar", untagged, tag: nil)
        #expect(try ImageChecks.names(work) == ["home", "image.tar"])

        let again = try LayerStore(driverName: "vfs", home: FilePath(work + "/again"))
        let imported = try ImageLayout.withLayout(at: FilePath(work + "/image.tar")) { layout in
            try again.importImage(try layout.image())
        }
        #expect(imported.layers.map(\.diffID) == untagged.layers.map(\.digests.diffID))
        #expect(try ImageFixture.mergedView(again, try #require(imported.top)) == Manifest.of(trees[1]))
    }

    @Test(.requires(.root)) func archiveHeadersHoldLargeSizesInBase256() throws {
        // A layer of 8 GiB or more does not fit USTAR's octal size field.
        let small = DockerArchiveWriter.header("x/layer.tar", directory: false, size: 0o77777777777 - 1, mtime: 5)
        #expect(Array(small[124..<136]) == Array("77777777776\0".utf8))
        let big = DockerArchiveWriter.header("x/layer.tar", directory: false, size: 1 << 34, mtime: 5)
        #expect(big[124] == 0x80 && Array(big[125..<131]) == [0, 0, 0, 0, 0, 0])
        #expect(Array(big[131..<136]) == [0x04, 0, 0, 0, 0])
        // GNU tar reads the base-256 size (its listing shows it) in an archive of that header.
        let dir = try Fixture.tempDir("hdr")
        defer { Fixture.cleanup(dir) }
        try (big + [UInt8](repeating: 0, count: 1024)).withUnsafeBytes { b in
            let fd = try Sys.open(Bytes.of(dir + "/h.tar"), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
            defer { close(fd) }
            try Sys.writeAll(fd, b, shown: "h.tar")
        }
        #expect(try Shell.run("tar -tvf '\(dir)/h.tar' 2>&1").output.contains("17179869184"))
    }

    @Test(.requires(.root)) func unchangedImportedLayersAreWrittenByteForByte() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        // Layers written by GNU tar (not as DiffKit would write them), imported as an image.
        let tars = try ImageFixture.foreignTars(trees: trees, in: work)
        try ImageFixture.foreignLayout(tars: tars, at: work + "/src", tag: "1")
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        let imported = try ImageLayout.withLayout(at: FilePath(work + "/src")) { try store.importImage(try $0.image()) }
        let top = try #require(imported.top)
        let originals = try tars.map { try ImageChecks.sha256(of: "cat '\($0)'") }

        for format in ImageFormat.allCases {
            let out = work + "/out-\(format.rawValue)"
            let made = try store.exportImage(top: top, to: FilePath(out), options: ImageExportOptions(format: format))
            #expect(made.layers.map(\.digests.diffID) == originals)
            #expect(made.layers.allSatisfy { $0.source == .original })
            #expect(made.layers.map(\.id) == imported.layers.map(\.id))
            if format == .oci {
                for (l, tar) in zip(made.layers, tars) {
                    #expect(try Shell.run("cmp '\(out)/blobs/sha256/\(l.digests.digest.dropFirst(7))' '\(tar)'").status == 0)
                }
            }
        }

        // A file changed in the top layer: that layer is regenerated (and says why), the others kept.
        let dir = try store.mount(id: top)
        try Fixture.apply(dir.string, [.file("etc/app.conf", "x=2\n")])
        try store.unmount(id: top)
        let made = try store.exportImage(top: top, to: FilePath(work + "/changed"))
        #expect(made.layers.dropLast().allSatisfy { $0.source == .original })
        guard case .regenerated(reason: .some) = made.layers.last!.source else {
            Issue.record("the changed layer was not regenerated: \(made.layers.last!.source)")
            return
        }
        #expect(made.layers.last!.digests.diffID != originals.last!)
    }

    @Test(.requires(.root, .filesystem("overlay")))
    func reproducibleOutputIsTheSameOnEveryDriverAndRun() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let tag = try ImageTag(parsing: "demo:r")
        var digests: [String] = []
        var archives: [String] = []
        var layouts: [[String]] = []
        for driver in ["vfs", "overlay2"] {
            let store = try LayerStore(driverName: driver, home: FilePath(work + "/\(driver)"))
            try ImageFixture.importChain(into: store, trees: trees)
            // A chain made in the store too (layers written through their mounted views), not imported.
            try store.create(id: "w0", parent: nil, readWrite: true)
            try Fixture.apply(try store.mount(id: "w0").string, ImageFixture.base)
            try store.unmount(id: "w0")
            try store.create(id: "w1", parent: "w0", readWrite: true)
            try Fixture.apply(try store.mount(id: "w1").string, ImageFixture.layer1)
            try store.unmount(id: "w1")
            for top in ["l1", "w1"] {
                for run in 0..<2 {
                    var export = ExportOptions()
                    export.reproducibleTime = 1_700_000_000
                    let name = "\(driver)-\(top)-\(run)"
                    let oci = try store.exportImage(top: top, to: FilePath(work + "/\(name)"),
                                                    options: ImageExportOptions(format: .oci, tag: tag, compression: .gzip(level: 6), export: export))
                    try ImageChecks.verifyLayout(work + "/\(name)", oci, tag: tag)
                    #expect(oci.layers.allSatisfy { $0.source == .regenerated(reason: nil) })
                    digests.append(try #require(oci.manifest).digest)
                    layouts.append(try Manifest.of(work + "/\(name)", mtimes: false))
                    try store.exportImage(top: top, to: FilePath(work + "/\(name).tar"),
                                          options: ImageExportOptions(format: .dockerArchive, tag: tag, export: export))
                    archives.append(try ImageChecks.sha256(of: "cat '\(work)/\(name).tar'"))
                }
            }
        }
        // Every directory above a change is in the layer with its own owner (home/user is
        // 1000's; the last layer adds a file in it), or docker's apply would make it root's.
        let archive = try Fixture.tempDir("unpacked")
        defer { Fixture.cleanup(archive) }
        try Shell.check("tar -C '\(archive)' -xf '\(work)/vfs-l1-0.tar'")
        let last = try #require(try ImageChecks.document(archive + "/manifest.json", as: [DockerManifestEntry].self).first?.layers.last)
        let home = try Pipe.headers(archive + "/" + last).first { $0.displayName == "home/user/" }
        #expect(home?.uid == 1000 && home?.gid == 1000, "\(String(describing: home))")
        // vfs and overlay2, two runs each, imported and built: one manifest digest, one archive.
        #expect(Set(digests).count == 1, "\(digests)")
        #expect(Set(archives).count == 1, "\(archives)")
        #expect(Set(layouts.map { $0.joined(separator: "\n") }).count == 1)
        // And a config dated with the time given, naming no layer.
        let config = try ImageChecks.document(work + "/vfs-l1-0/blobs/sha256/" + {
            let m = try ImageChecks.document(work + "/vfs-l1-0/blobs/sha256/" + digests[0].dropFirst(7), as: ImageManifest.self)
            return String(m.config.digest.dropFirst(7))
        }(), as: ImageConfig.self)
        #expect(config.created == "2023-11-14T22:13:20Z")
        #expect(config.history?.allSatisfy { $0.created == "2023-11-14T22:13:20Z" && $0.comment == nil } == true)
    }

    @Test(.requires(.root)) func failuresLeaveNothingAtTheDestination() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let home = work + "/home"
        let store = try LayerStore(driverName: "vfs", home: FilePath(home))
        try ImageFixture.importChain(into: store, trees: trees)
        let out = try Fixture.tempDir("eximg-out")
        defer { Fixture.cleanup(out) }

        func fails(_ top: String, _ format: ImageFormat, _ expected: String, compression: Compression = .none) {
            let error = #expect(throws: (any Error).self) {
                try store.exportImage(top: top, to: FilePath(out + "/image"), options: ImageExportOptions(format: format, compression: compression))
            }
            #expect(error.map { "\($0)".contains(expected) } == true, "\(String(describing: error))")
            #expect((try? ImageChecks.names(out)) == [], "left in \(out)")
        }
        for format in ImageFormat.allCases {
            // An unknown top.
            fails("nope", format, "layer nope: not found")
        }
        fails("l2", .dockerArchive, "plain layer tars", compression: .gzip(level: 1))

        // A layer whose files are gone (the driver's directory removed): its export fails midway.
        try Shell.check("rm -rf '\(home)/vfs/dir/l1'")
        for format in ImageFormat.allCases { fails("l2", format, "layer 2/3 (l1)") }
        // A broken chain: l1's record is gone, so l2's parent is not in the store.
        try Sys.unlink(Bytes.of(home + "/layers/l1"))
        for format in ImageFormat.allCases { fails("l2", format, "broken chain: layer l2 has parent l1") }
        #expect(try ImageChecks.names(out) == [])

        // A destination in use: a non-empty directory is left as it was.
        try Fixture.apply(out, [.file("image/keep", "k")])
        let inUse = #expect(throws: ImageExportError.self) {
            try store.exportImage(top: "base", to: FilePath(out + "/image"))
        }
        #expect(inUse.map { "\($0)".contains("exists and is not empty") } == true)
        #expect(try listing(out) == ["image/", "image/keep"])
        // An empty directory is taken (renamed over).
        try Shell.check("rm -rf '\(out)/image' && mkdir '\(out)/image'")
        try store.exportImage(top: "base", to: FilePath(out + "/image"))
        #expect(try ImageChecks.names(out + "/image") == ["blobs", "index.json", "oci-layout"])
    }

    @Test(.requires(.root)) func aFullDiskLeavesNothing() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        let small = work + "/small"
        try Shell.check("mkdir '\(small)' && mount -t tmpfs -o size=256k tmpfs '\(small)'")
        defer { _ = try? Shell.run("umount '\(small)'") }
        for format in ImageFormat.allCases {
            let error = #expect(throws: (any Error).self) {
                try store.exportImage(top: "l2", to: FilePath(small + "/image"), options: ImageExportOptions(format: format))
            }
            #expect(error.map { "\($0)".contains("No space left on device") } == true, "\(String(describing: error))")
            #expect(try ImageChecks.names(small) == [])
            // Through the command: exit 1, one line naming the layer, nothing left.
            let (status, _, err) = try CLI.run("--home \(work)/home export-image l2 -o \(small)/image --format \(format.rawValue)")
            #expect(status == 1)
            #expect(err.hasPrefix("difftool: error: layer ") && err.contains("No space left on device"), "\(err)")
            #expect(try ImageChecks.names(small) == [])
        }
        // What fits is written: the base alone (200 kB of its 256 kB).
        try store.exportImage(top: "base", to: FilePath(small + "/image"), options: ImageExportOptions(format: .dockerArchive))
        #expect(try ImageChecks.names(small) == ["image"])
    }

    @Test(.requires(.root)) func aCancelledExportLeavesNothing() async throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        for format in ImageFormat.allCases {
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await store.exportImage(top: "l2", to: FilePath(work + "/image"), options: ImageExportOptions(format: format))
            }
            await #expect(throws: CancellationError.self) { try await task.value }
            #expect(try ImageChecks.names(work) == ["home"])
        }
        let made = try await store.exportImage(top: "l2", to: FilePath(work + "/image"))
        #expect(made.layers.count == 3)
    }

    @Test(.requires(.root)) func theCommand() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("eximg")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        let h = "--home \(work)/home"

        let (s1, out1, _) = try CLI.run("\(h) export-image l2 -o \(work)/oci --tag demo:1 --compress gzip:1")
        #expect(s1 == 0)
        let index = try ImageChecks.document(work + "/oci/index.json", as: ImageIndex.self)
        #expect(out1 == index.manifests[0].digest + "\n")
        #expect(index.manifests[0].refName == "1")

        let (s2, out2, _) = try CLI.run("\(h) export-image l2 -o \(work)/d.tar --format docker-archive --tag demo:2 --reproducible --source-date-epoch 86400 --json")
        #expect(s2 == 0)
        #expect(out2.hasPrefix(#"{"config":{"digest":"sha256:"#) && out2.contains(#""format":"docker-archive""#)
            && out2.contains(#""manifest":null"#) && out2.contains(#""source":"regenerated""#), "\(out2)")
        #expect(try Shell.run("tar -xOf \(work)/d.tar manifest.json").output.contains(#""RepoTags":["demo:2"]"#))

        // Usage errors (64) and failures (1), with nothing written.
        for (args, status, message) in [
            ("export-image l2 -o \(work)/x --format docker-archive --compress zstd", 64, "compression is for --format oci"),
            ("export-image l2 -o \(work)/x --tag Bad:1", 64, "--tag"),
            ("export-image l2 -o \(work)/x --source-date-epoch 5", 64, "goes with --reproducible"),
            ("export-image l2 -o \(work)/x --platform linux", 64, "--platform"),
            ("export-image nope -o \(work)/x", 1, "difftool: error: layer nope: not found"),
            ("export-image l2 -o \(work)/oci", 1, "exists and is not empty"),
        ] as [(String, Int32, String)] {
            let (s, _, err) = try CLI.run("\(h) \(args)")
            #expect(s == status, "\(args): \(err)")
            #expect(err.contains(message), "\(args): \(err)")
        }
        #expect(try ImageChecks.names(work) == ["d.tar", "home", "oci"])
    }

    @Test func tagsAreCheckedAsDockerChecksThem() throws {
        for (text, name, tag) in [("app", "app", "latest"), ("app:1.2", "app", "1.2"), ("team/app:v1_x-2", "team/app", "v1_x-2"),
                                  ("localhost:5000/app", "localhost:5000/app", "latest"),
                                  ("registry.example:5000/a/b:c", "registry.example:5000/a/b", "c"),
                                  ("a__b/c-d.e:_x", "a__b/c-d.e", "_x")] {
            let t = try ImageTag(parsing: text)
            #expect(t.name == name && t.tag == tag, "\(text)")
        }
        for text in ["", "App:1", "app:", "app:.x", "app:-x", "a//b:1", "-a:1", "a_:1", "a___b:1", "app:x y", "host:port/a:1",
                     "app:" + String(repeating: "t", count: 129)] {
            #expect(throws: ImageExportError.self, "\(text)") { try ImageTag(parsing: text) }
        }
    }
}
