// Apply from any source of bytes: a buffer and a caller's reader give what a descriptor gives;
// a reader's own error reaches the caller as the cause.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A caller's reader: `bytes` in chunks of at most `chunk`, failing with `failure` after
/// `failAfter` bytes when set.
final class ChunkReader: LayerReader {
    let bytes: [UInt8]
    let chunk: Int
    let failAfter: Int?
    let offset = Locked(0)

    init(_ bytes: [UInt8], chunk: Int, failAfter: Int? = nil) {
        self.bytes = bytes
        self.chunk = chunk
        self.failAfter = failAfter
    }

    struct Failure: Error, Equatable { var at: Int }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try offset.withLock { at in
            if let failAfter, at >= failAfter { throw Failure(at: at) }
            let n = min(chunk, buffer.count, bytes.count - at, (failAfter ?? Int.max) - at)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
            at += n
            return n
        }
    }
}

@Suite(.requires(.root)) struct LayerSourceTests {
    static let tree: [Op] = [
        .dir("etc"), .file("etc/hosts", "127.0.0.1 localhost"), .symlink("etc/link", to: "hosts"),
        .hardlink("etc/hard", to: "etc/hosts"), .file("big", String(repeating: "0123456789", count: 300_000)),
        .dir("empty", mode: 0o700),
    ]

    /// The tree as a tar (gzip-compressed when asked) and its bytes.
    func layer(_ compression: Compression) throws -> (path: String, bytes: [UInt8]) {
        let src = try Fixture.make(Self.tree)
        defer { Fixture.cleanup(src) }
        let path = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t", compression: compression) }
        return (path, try Pipe.read(path))
    }

    func applied(_ source: (String) throws -> LayerSource, name: String) throws -> (manifest: [String], size: Int64) {
        let root = try Fixture.tempDir("root")
        defer { Fixture.cleanup(root) }
        let size = try Layers.apply(root: Bytes.of(root), from: source(root), name: name)
        return (try Manifest.of(root), size)
    }

    @Test(arguments: [Compression.none, .gzip(level: 1)])
    func bufferAndReaderApplyAsADescriptorDoes(_ compression: Compression) throws {
        let (path, bytes) = try layer(compression)
        defer { Fixture.cleanup(tarDir(path)) }
        let fd = try Sys.open(Bytes.of(path), O_RDONLY)
        defer { close(fd) }
        let fromFd = try applied({ _ in .descriptor(FileDescriptor(rawValue: fd)) }, name: path)
        let fromBytes = try applied({ _ in .bytes(bytes) }, name: "buffer")
        // Odd small chunks: headers and data split across reads.
        let fromReader = try applied({ _ in .reader(ChunkReader(bytes, chunk: 1000)) }, name: "reader")
        #expect(fromFd.manifest.count > 5)
        #expect(fromBytes.manifest == fromFd.manifest)
        #expect(fromReader.manifest == fromFd.manifest)
        #expect(fromBytes.size == fromFd.size && fromReader.size == fromFd.size)
    }

    @Test func emptySourcesAreEmptyLayers() throws {
        #expect(try applied({ _ in .bytes([]) }, name: "empty").size == 0)
        #expect(try applied({ _ in .reader(ChunkReader([], chunk: 10)) }, name: "empty").size == 0)
    }

    @Test func theStreamDigestIsTheSameFromEverySource() throws {
        let (path, bytes) = try layer(.gzip(level: 1))
        defer { Fixture.cleanup(tarDir(path)) }
        func diffID(_ source: LayerSource) throws -> String {
            let stream = try TarStream(source: source, name: "t")
            let digest = SHA256()
            stream.digest = digest
            let reader = try TarReader(stream: stream, name: "t")
            while try reader.next() != nil {}
            try stream.drain()
            return digest.finish()
        }
        let fd = try Sys.open(Bytes.of(path), O_RDONLY)
        defer { close(fd) }
        let expected = try diffID(.descriptor(FileDescriptor(rawValue: fd)))
        #expect(try diffID(.bytes(bytes)) == expected)
        #expect(try diffID(.reader(ChunkReader(bytes, chunk: 4096))) == expected)
    }

    @Test(arguments: [Compression.none, .gzip(level: 1)])
    func aReadersErrorIsTheCause(_ compression: Compression) throws {
        let (path, bytes) = try layer(compression)
        defer { Fixture.cleanup(tarDir(path)) }
        for failAfter in [0, 700, bytes.count / 2] {
            let root = try Fixture.tempDir("root")
            defer { Fixture.cleanup(root) }
            let reader = ChunkReader(bytes, chunk: 512, failAfter: failAfter)
            let error = #expect(throws: ArchiveError.self) {
                try Layers.apply(root: Bytes.of(root), from: .reader(reader), name: "reader")
            }
            #expect(error?.archive == "reader")
            #expect((error?.underlying as? ChunkReader.Failure)?.at == failAfter, "\(String(describing: error))")
        }
    }
}
