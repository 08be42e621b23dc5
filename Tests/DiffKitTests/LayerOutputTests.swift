// The layer output's hand-over: a TarWriter on its pipe gives its buffers by reference, anything
// else written there goes through the pipe; either way the digests are those of the bytes written,
// a stream written both ways fails instead of coming out misordered, and a failed output stops
// the producer instead of leaving it blocked.
import DiffKitArchive
import DiffKitSystem
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LayerOutputTests {
    /// Many entries over more bytes than the output's buffers hold, so they go round several times.
    static func writeEntries(_ w: TarWriter, count: Int = 40) throws {
        for i in 0..<count {
            var h = TarHeader(name: Array("f\(i)".utf8), kind: .regular)
            h.mode = 0o644
            h.size = Int64(100_000 + i * 7_001)
            try w.writeHeader(h)
            let data = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: Int(h.size))
            try data.withUnsafeBytes { try w.writeData($0) }
        }
        try w.finish()
    }

    func readAll(_ path: String) throws -> [UInt8] {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try buf.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count, shown: Bytes.of(path)) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    /// `produce` through a layer output into a file; the digests and the file's bytes.
    func output(_ compression: Compression, _ produce: (Int32) throws -> Void) throws -> (LayerDigests, [UInt8]) {
        let dir = try Fixture.tempDir("out")
        defer { Fixture.cleanup(dir) }
        let path = dir + "/blob"
        let fd = try Sys.open(Bytes.of(path), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        let d: LayerDigests
        do {
            defer { Sys.close(fd) }
            d = try LayerOutput.write(to: fd, name: "t", compression: compression, produce)
        }
        return (d, try readAll(path))
    }

    /// The tar the writer makes on a plain file, for comparison.
    func plainTar() throws -> [UInt8] {
        let dir = try Fixture.tempDir("plain")
        defer { Fixture.cleanup(dir) }
        let path = dir + "/tar"
        let fd = try Sys.open(Bytes.of(path), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        try Self.writeEntries(TarWriter(fd: fd, name: "t"))
        Sys.close(fd)
        return try readAll(path)
    }

    @Test func tarWriterHandsOverBuffersInOrder() throws {
        let tar = try plainTar()
        #expect(tar.count > 6 << 20)
        let (d, bytes) = try output(.none) { fd in try Self.writeEntries(TarWriter(fd: fd, name: "t")) }
        #expect(bytes == tar ? true : false, "the output differs from the tar")
        #expect(d.diffID == SHA256.hex(tar))
        #expect(d.digest == d.diffID)
        #expect(d.size == Int64(tar.count) && d.uncompressedSize == Int64(tar.count))
    }

    @Test func compressedFromTarWriter() throws {
        let tar = try plainTar()
        let (d, bytes) = try output(.zstd(level: 1)) { fd in try Self.writeEntries(TarWriter(fd: fd, name: "t")) }
        #expect(d.diffID == SHA256.hex(tar))
        #expect(d.digest == SHA256.hex(bytes))
        #expect(d.uncompressedSize == Int64(tar.count) && d.size == Int64(bytes.count))
    }

    @Test func bytesWrittenToThePipeAreHashedInOrder() throws {
        let tar = try plainTar()
        let (d, bytes) = try output(.none) { fd in
            // Uneven pieces, as a reassembly writes headers and file contents.
            var at = 0, step = 1
            while at < tar.count {
                let n = min(step, tar.count - at)
                try tar.withUnsafeBytes { try Sys.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)]), shown: "t") }
                at += n
                step = step * 3 % 1_000_003 + 1
            }
        }
        #expect(bytes == tar ? true : false, "the output differs from the tar")
        #expect(d.diffID == SHA256.hex(tar))
    }

    @Test func writtenBothWaysFails() throws {
        #expect(throws: ArchiveError.self) {
            _ = try output(.none) { fd in
                try Array("raw bytes first".utf8).withUnsafeBytes { try Sys.writeAll(fd, $0, shown: "t") }
                // Let the pipe's reader hand them over before the writer's buffers come.
                usleep(100_000)
                try Self.writeEntries(TarWriter(fd: fd, name: "t"))
            }
        }
    }

    @Test(arguments: [Compression.none, .gzip(level: 1)])
    func aFailedOutputStopsTheProducer(_ compression: Compression) throws {
        // A descriptor open for reading only: every write to it fails.
        let fd = try Sys.open(Bytes.of("/dev/null"), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        #expect(throws: (any Error).self) {
            _ = try LayerOutput.write(to: fd, name: "t", compression: compression) { pipe in
                try Self.writeEntries(TarWriter(fd: pipe, name: "t"), count: 200)
            }
        }
    }

    @Test func aKnownDiffIDIsNotRecomputed() throws {
        let (d, _) = try output(.gzip(level: 1)) { fd in try Self.writeEntries(TarWriter(fd: fd, name: "t"), count: 3) }
        let (k, _) = try output(.gzip(level: 1)) { _ in }
        #expect(d.diffID != k.diffID)
        var known: LayerDigests? = nil
        let dir = try Fixture.tempDir("k")
        defer { Fixture.cleanup(dir) }
        let fd = try Sys.open(Bytes.of(dir + "/b"), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        defer { Sys.close(fd) }
        known = try LayerOutput.write(to: fd, name: "t", compression: .gzip(level: 1), diffID: "sha256:given") { p in
            try Self.writeEntries(TarWriter(fd: p, name: "t"), count: 3)
        }
        #expect(known?.diffID == "sha256:given")
        #expect(known?.digest == d.digest)
    }
}
