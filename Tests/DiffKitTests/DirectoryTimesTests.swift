// Times after an apply: a directory's mtime is the one of its header even though creating its
// children (after the header) moved it — the applier sets directory times after the stream —
// and a file's is the one of its header. Also the whiteout forms' less common paths: an opaque
// marker after entries of its directory, and a directory made over an overlay whiteout.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One hand-made entry: `name` (a trailing `/` makes a directory), content for a file, mtime.
private struct Entry {
    var name: String
    var content: String = ""
    var mtime: Int64 = 1_500_000_000
    var nanoseconds: Int32 = 0
}

private func tarOf(_ entries: [Entry]) throws -> String {
    try Pipe.tarFile { fd in
        let w = TarWriter(fd: fd, name: "times")
        for e in entries {
            let isDir = e.name.hasSuffix("/")
            var h = TarHeader(name: Bytes.of(e.name), kind: isDir ? .directory : .regular)
            h.mode = isDir ? 0o755 : 0o644
            h.mtime = e.mtime
            h.mtimeNanoseconds = e.nanoseconds
            let data = Bytes.of(e.content)
            h.size = Int64(data.count)
            try w.writeHeader(h)
            if !data.isEmpty { try data.withUnsafeBytes { try w.writeData($0) } }
        }
        try w.finish()
    }
}

/// [seconds, nanoseconds] of a path's mtime.
private func mtime(_ path: String) throws -> [Int64] {
    let info = FileInfo(try Sys.fstatat(AT_FDCWD, Bytes.of(path)))
    return [info.mtime, Int64(info.mtimeNanoseconds)]
}

@Suite(.serialized) struct DirectoryTimesTests {
    /// Directories get their header's time back after their children (and a whiteout inside one,
    /// and the root's own `./` entry) changed it during the stream.
    @Test(.requires(.root)) func directoryTimesAreRestoredAfterTheStream() throws {
        let root = try Fixture.make([.file("d/old", "o")])
        defer { Fixture.cleanup(root) }
        let tar = try tarOf([
            Entry(name: "./", mtime: 1_400_000_000),
            Entry(name: "d/", mtime: 1_500_000_000, nanoseconds: 250_000_000),
            Entry(name: "d/e/", mtime: 1_500_000_100),
            Entry(name: "d/e/f", content: "file", mtime: 1_500_000_200, nanoseconds: 7),
            Entry(name: "d/.wh.old"),
            Entry(name: "top", content: "t", mtime: 1_500_000_300),
        ])
        defer { Fixture.cleanup(tarDir(tar)) }
        _ = try Pipe.apply(tar, to: root)
        #expect(try mtime(root + "/d") == [1_500_000_000, 250_000_000])
        #expect(try mtime(root + "/d/e") == [1_500_000_100, 0])
        #expect(try mtime(root) == [1_400_000_000, 0])
        #expect(try mtime(root + "/d/e/f") == [1_500_000_200, 7])
        #expect(try mtime(root + "/top") == [1_500_000_300, 0])
        #expect(try listing(root) == ["d/", "d/e/", "d/e/f", "top"])
    }

    /// An opaque marker that comes after entries of its directory (a stream not in path order)
    /// keeps those entries and everything the stream put below them, and removes the rest, at
    /// every depth (moby walks the whole directory against the unpacked paths).
    @Test func opaqueMarkerAfterItsDirectorysEntries() throws {
        let root = try Fixture.make([.file("a/b/old", "o"), .file("a/b/old2", "o"), .file("a/gone", "g")])
        defer { Fixture.cleanup(root) }
        let tar = try tarOf([
            Entry(name: "a/"), Entry(name: "a/b/"), Entry(name: "a/b/new", content: "n"), Entry(name: "a/.wh..wh..opq"),
        ])
        defer { Fixture.cleanup(tarDir(tar)) }
        _ = try Pipe.apply(tar, to: root)
        #expect(try listing(root) == ["a/", "a/b/", "a/b/new"])
    }

    /// Overlay form: `.wh.x` makes the whiteout device; a directory `x/` made over it later in
    /// the stream hides what the whiteout hid, so it is opaque (as the kernel makes it).
    @Test(.requires(.root)) func directoryOverAnOverlayWhiteoutIsOpaque() throws {
        let root = try Fixture.tempDir()
        defer { Fixture.cleanup(root) }
        let tar = try tarOf([Entry(name: ".wh.x"), Entry(name: "x/"), Entry(name: "x/f", content: "f"), Entry(name: ".wh.y")])
        defer { Fixture.cleanup(tarDir(tar)) }
        _ = try Pipe.apply(tar, to: root, options: ApplyOptions(whiteouts: .overlay(xattrPrefix: "trusted.")))
        let opaque = Bytes.of("trusted.overlay.opaque")
        #expect(try Sys.getXattr(path: Bytes.of(root + "/x"), name: opaque) == [UInt8(ascii: "y")])
        #expect(FileInfo(try Sys.fstatat(AT_FDCWD, Bytes.of(root + "/y"))).isOverlayWhiteout)
        #expect(try Sys.getXattr(path: Bytes.of(root), name: opaque) == nil)
    }
}
