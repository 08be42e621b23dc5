// Exports as values: the digests the library returns are those of the bytes it wrote, checked
// against sha256sum, gzip and zstd run on the written files.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ExportDigestTests {
    static let compressions: [Compression] = [.none, .gzip(level: 6), .zstd(level: 3)]

    /// sha256sum's digest of what `command` prints.
    func sha256(of command: String) throws -> String {
        let (status, out) = try Shell.run("\(command) | sha256sum")
        #expect(status == 0, "\(command): \(out)")
        return "sha256:" + String(out.prefix(64))
    }

    func decompress(_ c: Compression) -> String {
        switch c {
        case .none: return "cat"
        case .gzip: return "gzip -dc"
        case .zstd: return "zstd -dcq"
        }
    }

    func fileSize(_ path: String) throws -> Int64 {
        Int64(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(path))!.st_size)
    }

    @Test(.requires(.root, .command("zstd")), arguments: compressions)
    func storeExportDigestsAreThoseOfTheWrittenBytes(_ compression: Compression) throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let src = try Fixture.make([.file("etc/hosts", "127.0.0.1"), .file("big", String(repeating: "abc", count: 100_000))])
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
        let imported = try store.importLayer(id: "base", parent: nil, from: fd, name: tar)
        close(fd)

        var made: LayerExport? = nil
        let out = try Pipe.tarFile { fd in made = try store.export(id: "base", to: fd, name: "base", compression: compression) }
        defer { Fixture.cleanup(tarDir(out)) }
        let d = try #require(made).digests
        #expect(made?.source == .original)
        #expect(d.digest == (try sha256(of: "cat \(out)")))
        #expect(d.size == (try fileSize(out)))
        #expect(d.diffID == (try sha256(of: "\(decompress(compression)) \(out)")))
        #expect(d.diffID == imported.diffID)
        #expect(d.diffID == (try sha256(of: "cat \(tar)")))
        #expect(d.uncompressedSize == (try fileSize(tar)))
        #expect(d.mediaType == compression.mediaType)
        if compression == .none { #expect(d.digest == d.diffID) } else { #expect(d.digest != d.diffID) }
    }

    @Test(.requires(.root, .command("zstd")), arguments: compressions)
    func directoryDiffDigestsAreThoseOfTheWrittenBytes(_ compression: Compression) throws {
        let a = try Fixture.make([.file("keep", "k"), .file("gone", "g")])
        defer { Fixture.cleanup(a) }
        let b = try Fixture.make([.file("keep", "k"), .file("new", String(repeating: "n", count: 50_000))])
        defer { Fixture.cleanup(b) }
        var made: LayerDigests? = nil
        let out = try Pipe.tarFile { fd in
            made = try Layers.diff(base: Bytes.of(a), layer: Bytes.of(b), to: fd, name: "diff", compression: compression)
        }
        defer { Fixture.cleanup(tarDir(out)) }
        let d = try #require(made)
        #expect(d.digest == (try sha256(of: "cat \(out)")))
        #expect(d.size == (try fileSize(out)))
        #expect(d.diffID == (try sha256(of: "\(decompress(compression)) \(out)")))
        #expect(d.mediaType == compression.mediaType)
        // The tar applies: the digests describe a real layer.
        let dir = try Fixture.tempDir("raw")
        defer { Fixture.cleanup(dir) }
        let raw = dir + "/raw.tar"
        try Shell.check("\(decompress(compression)) \(out) > \(raw)")
        let names = Set(try Pipe.headers(raw).map { Bytes.string($0.name) })
        #expect(names.isSuperset(of: [".wh.gone", "new"]), "\(names)")
    }
}
