// export-image against the real engines, each started by its test on private paths and stopped
// by PID in a defer (Tests/TestSupport/Engines.swift): dockerd loads the docker archive and a
// container of it shows the chain's merged view; an OCI layout goes through docker-registry and
// back with skopeo and imports as the same chain; umoci unpacks the layout to the same tree.
// Images come from another tool (GNU tar layers in a layout Python wrote, imported with
// import-image) and from DiffKit itself (a base directory and two layers made with `diff`).
import DiffKit
import DiffKitArchive
import DiffKitJSON
import DiffKitSystem
import Drivers
import Images
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct EngineTests {
    /// What docker adds to every container (its init layer and the mount points under it).
    static let initLayer: Set<String> = [".dockerenv", "dev", "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf", "proc", "sys"]

    /// Manifest lines without docker's init-layer paths.
    static func withoutInitLayer(_ lines: [String]) -> [String] {
        lines.filter { line in
            let path = String(line.prefix { $0 != " " })
            return !initLayer.contains(path) && !path.hasPrefix("dev/")
        }
    }

    /// Two tree manifests are equal; if not, the lines only one of them has.
    static func expectSame(_ got: [String], _ expected: [String], _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got == expected, "\(what) only here: \(Set(got).subtracting(expected).sorted()); missing: \(Set(expected).subtracting(got).sorted())",
                sourceLocation: sourceLocation)
    }

    /// `difftool ARGS` that must succeed; its stdout.
    @discardableResult
    static func difftool(_ args: String) throws -> String {
        let (status, out, err) = try CLI.run(args)
        guard status == 0 else { throw TestError("difftool \(args): exit \(status): \(err)") }
        return out
    }

    /// The foreign image (GNU tar layers in a layout Python wrote, tagged `1.0`) imported with
    /// `import-image` into a vfs store at `home`; the top layer's id (its chain ID).
    static func importForeignImage(trees: [String], work: String, home: String) throws -> String {
        let tars = try ImageFixture.foreignTars(trees: trees, in: work)
        try ImageFixture.foreignLayout(tars: tars, at: work + "/src", tag: "1.0")
        return try difftool("--home \(home) import-image oci:\(work)/src:1.0").trimmingCharacters()
    }

    /// A container of `image` created (never started) and exported by `docker`, unpacked by GNU
    /// tar: the manifest of its tree without docker's init layer.
    static func containerTree(_ docker: DockerDaemon, image: String, work: String) throws -> [String] {
        let container = try docker.docker("create \(image) /nonexistent").trimmingCharacters()
        defer { _ = try? docker.docker("rm \(container)") }
        let dir = try Fixture.tempDir("container")
        defer { Fixture.cleanup(dir) }
        try docker.docker("export -o \(dir)/rootfs.tar \(container)")
        try Shell.check("mkdir '\(dir)/rootfs' && tar -C '\(dir)/rootfs' --numeric-owner -xpf '\(dir)/rootfs.tar'")
        return withoutInitLayer(try Manifest.of(dir + "/rootfs"))
    }

    /// `docker load` of `archive`, which must name `tag`; the loaded image's ID and its layers' diffIDs.
    static func load(_ docker: DockerDaemon, _ archive: String, tag: String) throws -> (id: String, diffIDs: [String]) {
        let loaded = try docker.docker("load -i \(archive)")
        #expect(loaded.contains("Loaded image: \(tag)"), "\(loaded)")
        let id = try docker.docker("image inspect --format '{{.Id}}' \(tag)").trimmingCharacters()
        let layers = try docker.docker("image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' \(tag)")
        return (id, layers.split(separator: "\n").map(String.init))
    }

    @Test(.requires(.root, .filesystem("overlay"), .command("dockerd"), .command("docker")))
    func dockerLoadsTheArchiveOfAnImportedImage() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("engine")
        defer { Fixture.cleanup(work) }
        let home = work + "/home"
        let top = try Self.importForeignImage(trees: trees, work: work, home: home)
        let json = try Self.difftool("--home \(home) export-image \(top) -o \(work)/image.tar --format docker-archive --tag diffkit/imported:1 --json")
        let store = try LayerStore(driverName: "vfs", home: FilePath(home))
        let view = try ImageFixture.mergedView(store, top)
        #expect(view == (try Manifest.of(trees[2])))

        let docker = try DockerDaemon(storageDriver: "overlay2")
        defer { docker.stop() }
        let (id, diffIDs) = try Self.load(docker, work + "/image.tar", tag: "diffkit/imported:1")
        // The image ID is the config's digest; the layers are the imported tars, byte for byte.
        #expect(json.hasPrefix(#"{"config":{"digest":"\#(id)""#), "\(json)")
        let originals = try (0..<3).map { try ImageChecks.sha256(of: "cat '\(work)/layer\($0).tar'") }
        #expect(diffIDs == originals)
        Self.expectSame(try Self.containerTree(docker, image: "diffkit/imported:1", work: work), Self.withoutInitLayer(view))
    }

    @Test(.requires(.root, .filesystem("overlay"), .command("dockerd"), .command("docker")))
    func dockerLoadsTheArchiveOfAnImageDiffKitBuilt() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("engine")
        defer { Fixture.cleanup(work) }
        let h = "--home \(work)/home"
        // A base directory and two layers made with diff, imported as a chain.
        try Self.difftool("tar \(trees[0]) -o \(work)/base.tar")
        try Self.difftool("diff \(trees[0]) \(trees[1]) -o \(work)/one.tar")
        try Self.difftool("diff \(trees[1]) \(trees[2]) -o \(work)/two.tar")
        try Self.difftool("\(h) import base -i \(work)/base.tar")
        try Self.difftool("\(h) import one --parent base -i \(work)/one.tar")
        try Self.difftool("\(h) import two --parent one -i \(work)/two.tar")
        try Self.difftool("\(h) export-image two -o \(work)/image.tar --format docker-archive --tag diffkit/built:1")
        // Reproducible (every layer regenerated), dated after the files so no mtime is clamped.
        try Self.difftool("\(h) export-image two -o \(work)/repro.tar --format docker-archive --tag diffkit/built:r --reproducible --source-date-epoch 4102444800")
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        let view = Self.withoutInitLayer(try ImageFixture.mergedView(store, "two"))

        let docker = try DockerDaemon(storageDriver: "overlay2")
        defer { docker.stop() }
        let built = try Self.load(docker, work + "/image.tar", tag: "diffkit/built:1")
        #expect(built.diffIDs == (try ["base", "one", "two"].map { try #require(try store.record($0).diffID) }))
        Self.expectSame(try Self.containerTree(docker, image: "diffkit/built:1", work: work), view)
        let repro = try Self.load(docker, work + "/repro.tar", tag: "diffkit/built:r")
        #expect(repro.diffIDs.count == 3)
        Self.expectSame(try Self.containerTree(docker, image: "diffkit/built:r", work: work), view)
    }

    @Test(.requires(.root, .command("docker-registry"), .command("skopeo"), .command("curl")))
    func aLayoutThroughARegistryAndBackIsTheSameChain() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("engine")
        defer { Fixture.cleanup(work) }
        let home = work + "/home"
        let top = try Self.importForeignImage(trees: trees, work: work, home: home)
        let store = try LayerStore(driverName: "vfs", home: FilePath(home))
        let view = try ImageFixture.mergedView(store, top)

        let registry = try Registry()
        defer { registry.stop() }
        for compress in ["none", "gzip", "zstd"] {
            let layout = "\(work)/oci-\(compress)", back = "\(work)/back-\(compress)", again = "\(work)/again-\(compress)"
            try Self.difftool("--home \(home) export-image \(top) -o \(layout) --tag diffkit/roundtrip:\(compress) --compress \(compress)")
            let remote = "docker://\(registry.address)/diffkit/roundtrip:\(compress)"
            try Shell.check("skopeo copy --quiet oci:\(layout):\(compress) \(remote) --dest-tls-verify=false")
            try Shell.check("skopeo copy --quiet \(remote) oci:\(back):\(compress) --src-tls-verify=false")
            // import-image of the copy: the same chain IDs (the layer ids) and the same tree.
            let json = try Self.difftool("--home \(again) import-image \(back):\(compress) --json")
            let imported = try JSONDocument.decode(ImportJSON.self, from: Bytes.of(json))
            let chain = try store.layerChain(top: top).map(\.id)
            #expect(imported.layers.map(\.id) == chain, "\(compress)")
            #expect(imported.top == top)
            let copy = try LayerStore(driverName: "vfs", home: FilePath(again))
            Self.expectSame(try ImageFixture.mergedView(copy, top), view, "\(compress)")
        }
    }

    @Test(.requires(.root, .command("umoci")))
    func umociUnpacksTheLayoutToTheSameTree() throws {
        let trees = try ImageFixture.trees()
        defer { trees.forEach(Fixture.cleanup) }
        let work = try Fixture.tempDir("engine")
        defer { Fixture.cleanup(work) }
        let store = try LayerStore(driverName: "vfs", home: FilePath(work + "/home"))
        try ImageFixture.importChain(into: store, trees: trees)
        let view = try ImageFixture.mergedView(store, "l2")
        // umoci 0.4 reads plain and gzip layers (not zstd).
        for compress in ["none", "gzip"] {
            try Self.difftool("--home \(work)/home export-image l2 -o \(work)/oci-\(compress) --tag diffkit/umoci:1 --compress \(compress)")
            try Shell.check("umoci unpack --image \(work)/oci-\(compress):1 \(work)/bundle-\(compress)")
            Self.expectSame(try Manifest.of(work + "/bundle-\(compress)/rootfs"), view, "\(compress)")
        }
    }
}

/// `import-image --json`.
struct ImportJSON: Decodable {
    struct Layer: Decodable {
        var id: String
        var diffID: String
    }
    var top: String?
    var layers: [Layer]
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.last, c == "\n" || c == " " { s.removeLast() }
        return String(s)
    }
}
