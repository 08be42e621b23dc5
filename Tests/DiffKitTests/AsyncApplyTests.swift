// The async forms: they give what the synchronous ones give, and a cancelled task stops them
// between entries with CancellationError.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.requires(.root)) struct AsyncApplyTests {
    /// 300 small files, as tar bytes.
    static func manyFiles() throws -> [UInt8] {
        let src = try Fixture.make((0..<300).map { .file("f\(1000 + $0)", String(repeating: "x", count: 3000)) })
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
        defer { Fixture.cleanup(tarDir(tar)) }
        return try Pipe.read(tar)
    }

    /// The synchronous form (in an async function, a call without `await` is the async form's).
    static func applySynchronously(_ bytes: [UInt8], to root: String) throws -> Int64 {
        try Layers.apply(root: Bytes.of(root), from: .bytes(bytes), name: "t")
    }

    @Test func asyncApplyEqualsTheSynchronousOne() async throws {
        let bytes = try Self.manyFiles()
        let a = try Fixture.tempDir("a")
        defer { Fixture.cleanup(a) }
        let b = try Fixture.tempDir("b")
        defer { Fixture.cleanup(b) }
        let sync = try Self.applySynchronously(bytes, to: a)
        let async = try await Layers.apply(root: Bytes.of(b), from: .bytes(bytes), name: "t")
        #expect(async == sync)
        #expect(try Manifest.of(b) == Manifest.of(a))
    }

    @Test func cancelledMidwayThrowsCancellationError() async throws {
        let bytes = try Self.manyFiles()
        let root = try Fixture.tempDir("root")
        defer { Fixture.cleanup(root) }
        let reader = GatedReader(bytes, gate: bytes.count / 2)
        let task = Task { try await Layers.apply(root: Bytes.of(root), from: .reader(reader), name: "gated") }
        while !reader.reachedGate { try await Task.sleep(nanoseconds: 1_000_000) }
        task.cancel()
        reader.open()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        // It stopped mid-way: some files are there, not all.
        let applied = try listing(root).count
        #expect(applied > 10 && applied < 300, "\(applied) entries applied")
    }

    @Test func cancelledBeforeItStartsAppliesNothing() async throws {
        let bytes = try Self.manyFiles()
        let root = try Fixture.tempDir("root")
        defer { Fixture.cleanup(root) }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await Layers.apply(root: Bytes.of(root), from: .bytes(bytes), name: "t")
        }
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(try listing(root).isEmpty)
    }

    @Test func cancelledExportThrowsCancellationError() async throws {
        let src = try Fixture.make((0..<50).map { .file("f\($0)", "x") })
        defer { Fixture.cleanup(src) }
        let dir = try Fixture.tempDir("out")
        defer { Fixture.cleanup(dir) }
        let fd = try Sys.open(Bytes.of(dir + "/out.tar"), O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { close(fd) }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await Layers.export(directory: Bytes.of(src), to: fd, name: "t", compression: .gzip(level: 1))
        }
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        // Not cancelled: the same call finishes, with digests.
        let digests = try await Layers.export(directory: Bytes.of(src), to: fd, name: "t", compression: .none)
        #expect(digests.uncompressedSize > 0)
    }
}
