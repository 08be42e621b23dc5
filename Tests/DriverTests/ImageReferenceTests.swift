// import-image of a layout or archive that holds several images: one is chosen by reference
// (PATH:REF, oci:PATH:REF) or by platform (a multi-platform index), never guessed — the layouts
// umoci and `skopeo copy` make hold an untagged empty image beside the tagged ones.
import DiffKitArchive
import DiffKitSystem
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Layouts {
    /// Writes, in `dir`: `multi/` an OCI layout with an untagged image without layers and two
    /// tagged images (`one`: file a; `two`: files a and b in two layers); `platforms/` a layout
    /// whose only entry is a multi-platform index (linux/amd64: file amd64, linux/arm64: file
    /// arm64, linux/arm/v7: file armv7); `saved.tar` a docker save archive of `one` and `two`.
    static let script = #"""
    import hashlib, io, json, os, sys, tarfile
    out = sys.argv[1]

    def layer(files):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, data in files:
                i = tarfile.TarInfo(name); i.size = len(data); i.mtime = 1700000000
                t.addfile(i, io.BytesIO(data))
        return b.getvalue()

    def layout(root):
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
        def put(data):
            d = hashlib.sha256(data).hexdigest()
            open(os.path.join(root, "blobs", "sha256", d), "wb").write(data)
            return {"digest": "sha256:" + d, "size": len(data)}
        return put

    def image(put, layers, arch="amd64", variant=None):
        descs = [dict(put(l), mediaType="application/vnd.oci.image.layer.v1.tar") for l in layers]
        plat = {"architecture": arch, "os": "linux"}
        if variant: plat["variant"] = variant
        config = json.dumps(dict(plat, rootfs={"type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]})).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(put(config), mediaType="application/vnd.oci.image.config.v1+json"), "layers": descs}).encode()
        return dict(put(manifest), mediaType="application/vnd.oci.image.manifest.v1+json", platform=plat)

    la, lb = layer([("a", b"A\n")]), layer([("b", b"B\n")])
    put = layout(os.path.join(out, "multi"))
    empty = image(put, [])
    one = dict(image(put, [la]), annotations={"org.opencontainers.image.ref.name": "one"})
    two = dict(image(put, [la, lb]), annotations={"org.opencontainers.image.ref.name": "two"})
    for d in (empty, one, two): d.pop("platform")
    json.dump({"schemaVersion": 2, "manifests": [empty, one, two]}, open(os.path.join(out, "multi", "index.json"), "w"))

    put = layout(os.path.join(out, "platforms"))
    ms = [image(put, [layer([(n, n.encode())])], arch, v) for n, arch, v in
          [("amd64", "amd64", None), ("arm64", "arm64", None), ("armv7", "arm", "v7")]]
    idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms}).encode()
    top = dict(put(idx), mediaType="application/vnd.oci.image.index.v1+json",
               annotations={"org.opencontainers.image.ref.name": "latest"})
    json.dump({"schemaVersion": 2, "manifests": [top]}, open(os.path.join(out, "platforms", "index.json"), "w"))

    with tarfile.open(os.path.join(out, "saved.tar"), "w") as t:
        def add(name, data):
            i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
        entries = []
        for tag, layers in (("example/one:1", [la]), ("example/two:2", [la, lb])):
            names = []
            for l in layers:
                n = hashlib.sha256(l).hexdigest() + "/layer.tar"; names.append(n); add(n, l)
            cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]}}).encode()
            cn = hashlib.sha256(cfg).hexdigest() + ".json"; add(cn, cfg)
            entries.append({"Config": cn, "RepoTags": [tag], "Layers": names})
        add("manifest.json", json.dumps(entries).encode())
    """#

    static func make() throws -> String {
        let dir = try Fixture.tempDir("layouts")
        try writeFile(dir + "/make.py", script)
        try Shell.check("python3 \(dir)/make.py \(dir)")
        return dir
    }
}

@Suite(.serialized) struct ImageReferenceTests {
    /// Several tagged images and none named: refused, listing them — never the first one taken
    /// silently (an untagged image without layers, in umoci's layouts). Named, the right one.
    @Test(.requires(.root)) func ociLayoutWithSeveralImages() throws {
        let dir = try Layouts.make()
        defer { Fixture.cleanup(dir) }
        let h = "--home \(dir)/store"
        let (s0, out0, e0) = try CLI.run("\(h) import-image \(dir)/multi")
        #expect(s0 == 1 && out0.isEmpty, "\(out0)")
        #expect(e0.contains("holds 3 images") && e0.contains("(untagged), one, two"), "\(e0)")
        let (s1, top1, e1) = try CLI.run("\(h) import-image \(dir)/multi:two")
        #expect(s1 == 0, "\(e1)")
        let root = try CLI.run("\(h) mount \(top1.trimmingCharacters(in: ["\n"]))").1.trimmingCharacters(in: ["\n"])
        let files = try listing(root)
        #expect(files == ["a", "b"], "\(files)")
        let (s2, top2, e2) = try CLI.run("\(h) import-image oci:\(dir)/multi:one")
        #expect(s2 == 0 && top2 != top1, "\(e2)")
        let (s3, _, e3) = try CLI.run("\(h) import-image \(dir)/multi:three")
        #expect(s3 == 1 && e3.contains("no image tagged three") && e3.contains("one, two"), "\(e3)")
        _ = try CLI.run("\(h) umount \(top1.trimmingCharacters(in: ["\n"]))")
    }

    /// A multi-platform index: the host's platform by default (amd64 here), another with
    /// --platform (a variant where asked), and a platform it lacks refused, listing what it has.
    @Test(.requires(.root)) func multiPlatformIndex() throws {
        let dir = try Layouts.make()
        defer { Fixture.cleanup(dir) }
        let h = "--home \(dir)/store"
        func files(_ args: String) throws -> (Int32, [String], String) {
            let (s, top, e) = try CLI.run("\(h) import-image \(args)")
            guard s == 0 else { return (s, [], e) }
            let id = top.trimmingCharacters(in: ["\n"])
            let root = try CLI.run("\(h) mount \(id)").1.trimmingCharacters(in: ["\n"])
            defer { _ = try? CLI.run("\(h) umount \(id)") }
            return (s, try listing(root), e)
        }
        let host = try files("\(dir)/platforms")
        #expect(host.0 == 0 && host.1.contains("amd64") && !host.1.contains("arm64"), "\(host)")
        let arm = try files("\(dir)/platforms:latest --platform linux/arm64")
        #expect(arm.0 == 0 && arm.1.contains("arm64") && !arm.1.contains("amd64"), "\(arm)")
        let v7 = try files("\(dir)/platforms --platform linux/arm/v7")
        #expect(v7.0 == 0 && v7.1.contains("armv7"), "\(v7)")
        let none = try files("\(dir)/platforms --platform linux/s390x")
        #expect(none.0 == 1 && none.2.contains("no image for linux/s390x") && none.2.contains("linux/arm64"), "\(none)")
        let bad = try CLI.run("\(h) import-image \(dir)/platforms --platform amd64")
        #expect(bad.0 == 64, "\(bad)")
    }

    /// A docker save archive of two images: refused unnamed, listing the tags; chosen by its
    /// repository tag or by the tag alone.
    @Test(.requires(.root)) func dockerArchiveWithSeveralImages() throws {
        let dir = try Layouts.make()
        defer { Fixture.cleanup(dir) }
        let h = "--home \(dir)/store"
        let (s0, _, e0) = try CLI.run("\(h) import-image \(dir)/saved.tar")
        #expect(s0 == 1 && e0.contains("holds 2 images") && e0.contains("example/one:1, example/two:2"), "\(e0)")
        let (s1, top1, e1) = try CLI.run("\(h) import-image \(dir)/saved.tar:example/two:2")
        #expect(s1 == 0, "\(e1)")
        let (s2, top2, e2) = try CLI.run("\(h) import-image docker-archive:\(dir)/saved.tar:1")
        #expect(s2 == 0 && top2 != top1, "\(e2)")
    }
}
