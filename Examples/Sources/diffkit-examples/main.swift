// DiffKit from the outside: four jobs an engine built on the library does, each on temporary
// directories made here, printing what it did. Exits 1 at the first failure.
//
//   1. apply a layer tar into a directory (from a descriptor, and from a reader of our own);
//   2. diff two directories into a compressed layer tar, with its digests;
//   3. import a layer into a store and export it again, with its digests;
//   4. cancel a long apply from structured concurrency.
import DiffKit
import DiffKitArchive
import Drivers
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

struct Failure: Error, CustomStringConvertible {
    var description: String
}

func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
    if !ok { throw Failure(description: what()) }
}

func path(_ s: String) -> FilePath { FilePath(s) }

/// A new empty directory under /tmp.
func temporaryDirectory(_ tag: String) throws -> String {
    var template = Array("/tmp/diffkit-example-\(tag).XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed (errno \(errno))") }
    return String(cString: p)
}

func write(_ file: String, _ text: String) throws {
    let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    try check(fd >= 0, "cannot create \(file)")
    defer { close(fd) }
    let bytes = Array(text.utf8)
    try check(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count, "cannot write \(file)")
}

func readAll(_ file: String) throws -> [UInt8] {
    let fd = open(file, O_RDONLY | O_CLOEXEC)
    try check(fd >= 0, "cannot open \(file)")
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        try check(n >= 0, "cannot read \(file)")
        if n == 0 { return out }
        out += buf[0..<n]
    }
}

func exists(_ file: String) -> Bool { access(file, F_OK) == 0 }

func removeTree(_ dir: String) { _ = system("rm -rf '\(dir)'") }

/// A reader of our own: the bytes of a buffer, `chunk` at a time, each read taking `delay`
/// microseconds (a slow network, say).
final class SlowReader: LayerReader {
    let bytes: [UInt8]
    let chunk: Int
    let delay: UInt32
    let offset = Mutex(0)

    init(_ bytes: [UInt8], chunk: Int, delay: UInt32 = 0) {
        self.bytes = bytes
        self.chunk = chunk
        self.delay = delay
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if delay > 0 { usleep(delay) }
        return offset.withLock { at in
            let n = min(chunk, buffer.count, bytes.count - at)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
            at += n
            return n
        }
    }
}

/// Write a file with `body(fd)`; its path.
func output(_ file: String, _ body: (FileDescriptor) throws -> Void) throws -> String {
    let fd = try FileDescriptor.open(path(file), .writeOnly, options: [.create, .truncate, .closeOnExec],
                                     permissions: [.ownerReadWrite, .groupRead, .otherRead])
    defer { try? fd.close() }
    try body(fd)
    return file
}

// MARK: the four jobs

func applyTar(in work: String) throws {
    print("== 1. apply a layer tar into a directory")
    let src = work + "/src"
    mkdir(src, 0o755); mkdir(src + "/etc", 0o755)
    try write(src + "/etc/hostname", "example\n")
    try write(src + "/README", "hello from a layer\n")
    // A layer tar to apply: everything in `src`, as DiffKit writes it.
    let tar = try output(work + "/layer.tar") { fd in
        _ = try Layers.export(directory: path(src), to: fd, name: "layer.tar", compression: .none)
    }
    let root = work + "/root"
    mkdir(root, 0o755)
    let fd = try FileDescriptor.open(path(tar), .readOnly, options: .closeOnExec)
    defer { try? fd.close() }
    let size = try Layers.apply(root: path(root), from: .descriptor(fd), name: tar)
    try check(exists(root + "/etc/hostname") && exists(root + "/README"), "the applied tree lacks its files")
    print("applied \(tar) from a descriptor into \(root): \(size) bytes")

    let copy = work + "/root-from-reader"
    mkdir(copy, 0o755)
    let fromReader = try Layers.apply(root: path(copy), from: .reader(SlowReader(try readAll(tar), chunk: 1000)), name: "reader")
    try check(fromReader == size && exists(copy + "/etc/hostname"), "the reader's apply differs from the descriptor's")
    print("applied the same bytes from a reader of our own into \(copy): \(fromReader) bytes")
}

func diffDirectories(in work: String) throws {
    print("== 2. diff two directories into a tar, with its digests")
    let base = work + "/base", layer = work + "/layer"
    for d in [base, layer] {
        mkdir(d, 0o755)
        try write(d + "/kept", "same\n")
    }
    try write(base + "/removed", "old\n")
    try write(layer + "/added", "new\n")
    var digests: LayerDigests? = nil
    let blob = try output(work + "/diff.tar.gz") { fd in
        digests = try Layers.diff(base: path(base), layer: path(layer), to: fd, name: "diff.tar.gz", compression: .gzip(level: 6))
    }
    guard let d = digests else { throw Failure(description: "no digests") }
    print("wrote \(blob): \(d.mediaType)")
    print("  diffID \(d.diffID) (\(d.uncompressedSize) bytes uncompressed)")
    print("  digest \(d.digest) (\(d.size) bytes)")
    try check(Int64(try readAll(blob).count) == d.size, "the blob's size is not the one reported")
    try check(d.digest != d.diffID, "a compressed blob has its own digest")
}

func storeRoundTrip(in work: String) throws {
    print("== 3. import into a store and export, with digests")
    let home = work + "/store"
    let store = try LayerStore(driverName: "vfs", home: path(home))
    let src = work + "/app"
    mkdir(src, 0o755)
    try write(src + "/app.conf", "port=8080\n")
    let tar = try output(work + "/app.tar") { fd in
        _ = try Layers.export(directory: path(src), to: fd, name: "app.tar", compression: .none)
    }
    let made = try store.importLayer(id: "app", parent: nil, from: .bytes(try readAll(tar)), name: tar)
    print("imported layer \(made.id): \(made.size) bytes, diffID \(made.diffID)")

    var exported: LayerExport? = nil
    let blob = try output(work + "/app.tar.zst") { fd in
        exported = try store.export(id: "app", to: fd, name: "app.tar.zst", compression: .zstd(level: 3))
    }
    guard let e = exported else { throw Failure(description: "no export") }
    print("exported \(blob) (\(e.source == .original ? "the imported tar, byte for byte" : "regenerated")): \(e.digests.mediaType)")
    print("  diffID \(e.digests.diffID)")
    print("  digest \(e.digests.digest) (\(e.digests.size) bytes)")
    try check(e.source == .original && e.digests.diffID == made.diffID, "the export's diffID is not the import's")
}

func cancelLongApply(in work: String) async throws {
    print("== 4. cancel a long apply")
    let src = work + "/many"
    mkdir(src, 0o755)
    for i in 0..<2000 { try write(src + "/file\(i)", String(repeating: "x", count: 512)) }
    let tar = try output(work + "/many.tar") { fd in
        _ = try Layers.export(directory: path(src), to: fd, name: "many.tar", compression: .none)
    }
    let root = work + "/cancelled"
    mkdir(root, 0o755)
    // A slow source: 4 KiB per millisecond, so the apply takes about a second.
    let reader = SlowReader(try readAll(tar), chunk: 4096, delay: 1000)
    let apply = Task { try await Layers.apply(root: path(root), from: .reader(reader), name: "many.tar") }
    try await Task.sleep(nanoseconds: 200_000_000)
    apply.cancel()
    do {
        let size = try await apply.value
        throw Failure(description: "the apply finished (\(size) bytes) although it was cancelled")
    } catch is CancellationError {
        let applied = (0..<2000).filter { exists(root + "/file\($0)") }.count
        print("cancelled after \(applied) of 2000 files: CancellationError")
        try check(applied < 2000, "every file was applied")
    }
}

// MARK: main

let work: String
do {
    work = try temporaryDirectory("run")
} catch {
    print("error: \(error)")
    exit(1)
}
do {
    try applyTar(in: work)
    try diffDirectories(in: work)
    try storeRoundTrip(in: work)
    try await cancelLongApply(in: work)
    removeTree(work)
    print("all four examples passed")
} catch {
    print("error: \(error)")
    removeTree(work)
    exit(1)
}
