// Store imports and exports from structured concurrency: a cancelled import throws
// CancellationError and leaves no layer behind (nor its record, marker or tar-split); a
// cancelled export throws CancellationError; uncancelled, they give what the synchronous forms give.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized, .requires(.root)) struct StoreCancellationTests {
    static func manyFiles() throws -> [UInt8] {
        let src = try Fixture.make((0..<300).map { .file("d/f\($0)", String(repeating: "y", count: 3000)) })
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
        defer { Fixture.cleanup(tarDir(tar)) }
        return try Pipe.read(tar)
    }

    /// The store's own files (records, markers, tar-splits), hidden lock dirs aside.
    func storeFiles(_ home: String) throws -> [String] {
        try listing(home + "/layers").filter { !$0.hasPrefix(".") }
    }

    @Test func cancelledImportLeavesNoLayerOnVFS() async throws { try await cancelledImportLeavesNoLayer("vfs") }

    @Test(.requires(.root, .filesystem("overlay")))
    func cancelledImportLeavesNoLayerOnOverlay2() async throws { try await cancelledImportLeavesNoLayer("overlay2") }

    func cancelledImportLeavesNoLayer(_ driver: String) async throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: driver, home: Bytes.of(home))
        defer { try? store.driver.cleanup() }
        try store.create(id: "base", parent: nil)
        let before = try storeFiles(home)
        let bytes = try Self.manyFiles()
        let reader = GatedReader(bytes, gate: bytes.count / 2)
        let task = Task { try await store.importLayer(id: "top", parent: "base", from: .reader(reader), name: "gated") }
        while !reader.reachedGate { try await Task.sleep(nanoseconds: 1_000_000) }
        task.cancel()
        reader.open()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(try store.list().map(\.id) == ["base"])
        #expect(!store.driver.exists(id: "top"))
        #expect(try storeFiles(home) == before)
        // The id is free again: the same import, not cancelled, succeeds.
        let made = try await store.importLayer(id: "top", parent: "base", from: .bytes(bytes), name: "t")
        let null = try Sys.open(Bytes.of("/dev/null"), O_WRONLY)
        defer { close(null) }
        #expect(made.diffID == (try await store.export(id: "top", to: null, name: "t", compression: .none)).digests.diffID)
    }

    @Test(arguments: [false, true])
    func cancelledExportThrowsCancellationError(_ regenerate: Bool) async throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        _ = try await store.importLayer(id: "l", parent: nil, from: .bytes(try Self.manyFiles()), name: "t")
        let out = try Fixture.tempDir("out")
        defer { Fixture.cleanup(out) }
        let fd = try Sys.open(Bytes.of(out + "/l.tar"), O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { close(fd) }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await store.export(id: "l", to: fd, name: "l", compression: .gzip(level: 1), regenerate: regenerate)
        }
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        // The layer is still there and exports (and it was not left locked).
        #expect(try await store.export(id: "l", to: fd, name: "l", compression: .none, regenerate: regenerate).source
                == (regenerate ? .regenerated(reason: nil) : .original))
        try store.remove(id: "l")
    }
}
