// gzip input (inflated through ISA-L, not libarchive): the same bytes as gunzip gives, so the same
// diffID, whatever the header carries, the level, the members and how the source cuts its reads;
// a truncated or corrupted stream is an error, never a shorter layer.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct GzipInputTests {
    /// A tar of about 6 MiB: files of mixed compressibility.
    static func sampleTar(_ dir: String) throws -> String {
        let src = try Fixture.make([
            .file("etc/text", String(repeating: "the quick brown fox\n", count: 60_000)),
            .file("bin/random", String(ChecksumTests.bytes(300_000, seed: 7).map { Character(UnicodeScalar($0 % 94 + 33)) })),
            .file("empty", ""),
            // Distinct lines over several MiB: more inflated chunks than the inflater's buffers go
            // round, so a chunk overwritten before its time shows.
            .file("var/log/lines", (0..<400_000).map { "line \($0)\n" }.joined()),
        ])
        defer { Fixture.cleanup(src) }
        let tar = dir + "/layer.tar"
        let fd = try Sys.open(Bytes.of(tar), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        defer { Sys.close(fd) }
        try Layers.export(directory: Bytes.of(src), to: fd, name: "t")
        return tar
    }

    /// Every decompressed byte of `source`, read through RawInput.
    func inflate(_ source: LayerSource) throws -> [UInt8] {
        let input: RawInput
        switch source {
        case let .bytes(b): input = try RawInput(reader: ChunkReader(b, chunk: 1 << 20), name: "t")
        case let .reader(r): input = try RawInput(reader: r, name: "t")
        case let .descriptor(d): input = try RawInput(fd: d.rawValue, name: "t")
        }
        var out: [UInt8] = []
        while let c = try input.next() { out += c }
        return out
    }

    func digest(_ path: String) throws -> String {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        let stream = try TarStream(fd: fd, name: path)
        stream.digest = SHA256()
        let reader = try TarReader(stream: stream, name: path)
        while try reader.next() != nil {}
        return stream.digest!.finish()
    }

    @Test(arguments: ["gzip -1", "gzip -6", "gzip -9 -n", "cat a.gz x.gz-empty b.gz", "cat x.gz junk"])
    func sameBytesAsGunzip(_ how: String) throws {
        let dir = try Fixture.tempDir("gz")
        defer { Fixture.cleanup(dir) }
        let tar = try Self.sampleTar(dir)
        let plain = try Pipe.read(tar)
        if how.hasPrefix("cat") {
            // Members one after another (an empty one too), or bytes after the last member.
            try Shell.check("""
                cd \(dir) && gzip -c layer.tar > x.gz && gzip -c < /dev/null > x.gz-empty && printf 'not gzip' > junk && \
                head -c 1000000 layer.tar | gzip -c > a.gz && tail -c +1000001 layer.tar | gzip -c > b.gz && \(how) > layer.tar.gz
                """)
        } else {
            try Shell.check("cd \(dir) && \(how) -c layer.tar > layer.tar.gz")
        }
        let gz = try Pipe.read(dir + "/layer.tar.gz")
        let fd = try Sys.open(Bytes.of(dir + "/layer.tar.gz"), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        #expect(try inflate(.descriptor(FileDescriptor(rawValue: fd))) == plain ? true : false, "descriptor")
        #expect(try inflate(.bytes(gz)) == plain ? true : false, "buffer")
        // A reader that gives one byte, then odd sizes: the header split across reads.
        #expect(try inflate(.reader(ChunkReader(gz, chunk: 1))) == plain ? true : false, "1-byte reads")
        #expect(try inflate(.reader(ChunkReader(gz, chunk: 4093))) == plain ? true : false, "odd reads")
        #expect(try digest(dir + "/layer.tar.gz") == SHA256.hex(plain))
    }

    /// Every entry's name and content, read by a parser that takes its time (so the read-ahead
    /// runs as far ahead as it may, holding the inflater's chunks in its ring).
    func entries(_ path: String, slow: Bool) throws -> [[UInt8]] {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        let stream = try TarStream(fd: fd, name: path)
        // A digest gives the read-ahead work even on a plain tar: it runs there too.
        stream.digest = SHA256()
        let reader = try TarReader(stream: stream, name: path)
        var out: [[UInt8]] = []
        while let h = try reader.next() {
            var data = h.name
            try reader.readData { chunk, _ in
                if slow { usleep(3_000) }
                data += chunk
            }
            out.append(data)
        }
        return out
    }

    @Test func aSlowParserGetsEveryChunkIntact() throws {
        let dir = try Fixture.tempDir("gz")
        defer { Fixture.cleanup(dir) }
        let tar = try Self.sampleTar(dir)
        try Shell.check("gzip -1 -c \(tar) > \(dir)/layer.tar.gz")
        let plain = try entries(tar, slow: false)
        #expect(try entries(dir + "/layer.tar.gz", slow: true) == plain ? true : false, "gzip")
        // libarchive's chunks (a plain tar) live only until its next read: copied, never kept.
        #expect(try entries(tar, slow: true) == plain ? true : false, "plain")
    }

    @Test func headerWithEveryOptionalField() throws {
        let dir = try Fixture.tempDir("gz")
        defer { Fixture.cleanup(dir) }
        let tar = try Self.sampleTar(dir)
        // FEXTRA, FNAME, FCOMMENT and FHCRC, which gzip(1) never writes.
        try Shell.check("""
            python3 - \(tar) \(dir)/layer.tar.gz <<'PY'
            import sys, zlib, struct
            data = open(sys.argv[1], 'rb').read()
            extra = b'AB' + struct.pack('<H', 4) + b'wxyz'
            h = b'\\x1f\\x8b\\x08' + bytes([4 | 8 | 16 | 2]) + struct.pack('<I', 0) + b'\\x00\\x03'
            h += struct.pack('<H', len(extra)) + extra + b'layer.tar\\x00' + b'a comment\\x00'
            h += struct.pack('<H', zlib.crc32(h) & 0xffff)
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = c.compress(data) + c.flush()
            open(sys.argv[2], 'wb').write(h + body + struct.pack('<II', zlib.crc32(data), len(data) & 0xffffffff))
            PY

            """)
        #expect(try inflate(.bytes(try Pipe.read(dir + "/layer.tar.gz"))) == (try Pipe.read(tar)) ? true : false)
    }

    @Test func emptyGzipIsAnEmptyInput() throws {
        let dir = try Fixture.tempDir("gz")
        defer { Fixture.cleanup(dir) }
        try Shell.check("gzip -c < /dev/null > \(dir)/e.gz")
        let input = try RawInput(reader: ChunkReader(try Pipe.read(dir + "/e.gz"), chunk: 7), name: "e")
        #expect(input.isEmpty)
        #expect(try input.next() == nil)
    }

    /// Damage: cut short, a flipped byte in the data, a wrong CRC or size in the trailer.
    @Test(arguments: ["truncated", "data", "crc", "size"])
    func damagedStreamsFail(_ damage: String) throws {
        let dir = try Fixture.tempDir("gz")
        defer { Fixture.cleanup(dir) }
        let tar = try Self.sampleTar(dir)
        try Shell.check("gzip -6 -c \(tar) > \(dir)/layer.tar.gz")
        var gz = try Pipe.read(dir + "/layer.tar.gz")
        switch damage {
        case "truncated": gz.removeLast(gz.count / 3)
        case "data": gz[gz.count / 2] ^= 0x55
        case "crc": gz[gz.count - 8] ^= 1
        default: gz[gz.count - 4] ^= 1
        }
        #expect(throws: ArchiveError.self) { _ = try inflate(.bytes(gz)) }
        // And an apply of it fails (nothing half-applied is claimed as a layer).
        let root = try Fixture.tempDir("root")
        defer { Fixture.cleanup(root) }
        #expect(throws: (any Error).self) { _ = try Layers.apply(root: Bytes.of(root), from: .bytes(gz), name: "damaged") }
    }
}
