// Native overlay diffs on a real overlay mount: the upper dir exported natively, and the naive
// diff of the merged view, both applied onto a copy of the lower, give the merged view.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Overlay {
    static func mount(lower: String, upper: String, work: String, merged: String) throws {
        let data = "lowerdir=\(lower),upperdir=\(upper),workdir=\(work),index=off"
        if Glibc.mount("overlay", merged, "overlay", 0, data) != 0 {
            throw TestError("mount overlay on \(merged): errno \(errno)")
        }
    }

    static func unmount(_ merged: String) { _ = umount2(merged, Int32(MNT_DETACH)) }
}

@Suite(.serialized) struct OverlayTests {
    @Test(.requires(.root, .filesystem("overlay"))) func nativeAndNaiveExportsGiveTheMergedView() throws {
        let tmp = try Fixture.tempDir("ovl")
        defer { Fixture.cleanup(tmp) }
        let lower = tmp + "/lower", upper = tmp + "/upper", work = tmp + "/work", merged = tmp + "/merged"
        for d in [lower, upper, work, merged] { mkdir(d, 0o755) }
        try Fixture.apply(lower, [
            .file("keep", "k"), .file("gone", "g"), .file("d/a", "a"), .file("d/b", "b"), .dir("d/sub"), .file("d/sub/deep", "x"),
            .file("e/old", "o"), .file("chm", "c", mode: 0o644), .file("own", "o"), .file("x/y/z", "z"), .symlink("link", to: "keep"),
        ])
        try Overlay.mount(lower: lower, upper: upper, work: work, merged: merged)
        var mounted = true
        defer { if mounted { Overlay.unmount(merged) } }
        // Changes through the mount: the kernel writes whiteouts, opaque dirs and copy-ups.
        try Fixture.apply(merged, [
            .remove("gone"), .remove("d/b"), .remove("e"), .file("e/new", "recreated"), .chmod("chm", 0o600),
            .chown("own", 5, 6), .xattr("keep", "user.tag", "v"), .file("n/new-file", "n"), .hardlink("n/link", to: "n/new-file"),
            .remove("x/y"), .remove("link"), .dir("link"), .file("d/!early", "sorts before .wh."),
        ])
        let expected = try Manifest.of(merged)

        let native = try Pipe.tarFile { fd in
            try Layers.export(directory: Bytes.of(upper), to: fd, name: "upper", whiteouts: .overlay(xattrPrefix: "trusted."))
        }
        defer { Fixture.cleanup(tarDir(native)) }
        let headers = try Pipe.headers(native).map(\.displayName)
        // The kernel's whiteouts come out as .wh. entries; the recreated dir is opaque, its marker right after it.
        #expect(headers.contains(".wh.gone") && headers.contains("d/.wh.b") && headers.contains("x/.wh.y"))
        #expect(headers.firstIndex(of: "e/.wh..wh..opq") == headers.firstIndex(of: "e/")! + 1)
        #expect(!(try Pipe.headers(native)).contains { h in h.xattrs.contains { Bytes.string($0.name).contains("overlay") } })

        let naive = try Pipe.tarFile { fd in try Layers.diff(base: Bytes.of(lower), layer: Bytes.of(merged), to: fd, name: "merged") }
        defer { Fixture.cleanup(tarDir(naive)) }

        for tar in [native, naive] {
            let target = try Fixture.copy(lower)
            defer { Fixture.cleanup(target) }
            _ = try Pipe.apply(tar, to: target)
            #expect(try Manifest.of(target) == expected, "\(tar == native ? "native" : "naive")")
        }

        // Native apply into a fresh upper, mounted over the same lower, gives the same merged view.
        Overlay.unmount(merged)
        mounted = false
        let upper2 = tmp + "/upper2", work2 = tmp + "/work2"
        mkdir(upper2, 0o755)
        mkdir(work2, 0o755)
        _ = try Pipe.apply(native, to: upper2, options: ApplyOptions(whiteouts: .overlay(xattrPrefix: "trusted.")))
        try Overlay.mount(lower: lower, upper: upper2, work: work2, merged: merged)
        mounted = true
        #expect(try Manifest.of(merged) == expected)
    }
}
