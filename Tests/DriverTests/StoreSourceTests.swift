// A store import takes any source of bytes: a buffer and a caller's reader import the same layer,
// with the same diffID, as a descriptor, and the layer exports back to the same bytes.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A caller's reader over a buffer, 777 bytes at a time.
final class SmallReads: LayerReader {
    let bytes: [UInt8]
    let offset = Locked(0)
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        offset.withLock { at in
            let n = min(777, buffer.count, bytes.count - at)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
            at += n
            return n
        }
    }
}

@Suite(.serialized, .requires(.root)) struct StoreSourceTests {
    @Test func importFromABufferAndAReaderAsFromADescriptor() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let src = try Fixture.make([.file("etc/hosts", "127.0.0.1"), .file("data", String(repeating: "d", count: 200_000))])
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let bytes = try Pipe.read(tar)
        let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
        let a = try store.importLayer(id: "a", parent: nil, from: fd, name: tar)
        close(fd)
        let b = try store.importLayer(id: "b", parent: nil, from: .bytes(bytes), name: "buffer")
        let c = try store.importLayer(id: "c", parent: nil, from: .reader(SmallReads(bytes)), name: "reader")
        #expect(b.diffID == a.diffID && c.diffID == a.diffID)
        #expect(b.size == a.size && c.size == a.size)
        let tree = try Manifest.of(Bytes.string(try store.mount(id: "a")))
        for id in ["b", "c"] {
            #expect(try Manifest.of(Bytes.string(try store.mount(id: id))) == tree)
            var made: LayerExport? = nil
            let out = try Pipe.tarFile { fd in made = try store.export(id: id, to: fd, name: id, compression: .none) }
            #expect(made?.source == .original)
            #expect(made?.digests.diffID == a.diffID)
            defer { Fixture.cleanup(tarDir(out)) }
            #expect(try Pipe.read(out) == bytes)
        }
    }
}
