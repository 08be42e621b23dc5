// Layer output: a tar stream on its way out, compressed (gzip or zstd, through libarchive's
// filters) and digested while it streams (SHA-256 through the system's libcrypto): the
// uncompressed digest is the layer's diffID, the compressed one its blob digest. The tar is
// produced on the calling thread into a pipe; a second thread hashes, compresses and writes,
// so the two cores share the work and memory stays bounded.
import CArchive
import CCrypto
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

public enum Compression: Sendable, Equatable {
    case none
    case gzip(level: Int)
    case zstd(level: Int)

    /// `none`, `gzip`, `gzip:9`, `zstd`, `zstd:19`.
    public init?(parsing s: String) {
        let parts = s.split(separator: ":", maxSplits: 1)
        let level = parts.count == 2 ? Int(parts[1]) : nil
        if parts.count == 2 && level == nil { return nil }
        switch parts.first.map(String.init) ?? "" {
        case "none" where level == nil: self = .none
        case "gzip": guard (1...9).contains(level ?? 6) else { return nil }; self = .gzip(level: level ?? 6)
        case "zstd": guard (1...22).contains(level ?? 3) else { return nil }; self = .zstd(level: level ?? 3)
        default: return nil
        }
    }

    /// The OCI media type of a layer blob in this compression.
    public var mediaType: String {
        switch self {
        case .none: return "application/vnd.oci.image.layer.v1.tar"
        case .gzip: return "application/vnd.oci.image.layer.v1.tar+gzip"
        case .zstd: return "application/vnd.oci.image.layer.v1.tar+zstd"
        }
    }
}

/// SHA-256 through libcrypto's EVP interface.
public final class SHA256 {
    private let ctx: OpaquePointer

    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ p: UnsafeRawBufferPointer) {
        if p.count > 0 { EVP_DigestUpdate(ctx, p.baseAddress, p.count) }
    }

    /// `sha256:<hex>`.
    public func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &n)
        return "sha256:" + out.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// `sha256:<hex>` of a file's content, read in 1 MiB chunks.
    public static func ofFile(_ path: [UInt8]) throws -> String {
        let fd = try Sys.open(path, O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        let h = SHA256()
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        while true {
            let n = try Sys.read(fd, buf, 1 << 20, shown: path)
            if n == 0 { return h.finish() }
            h.update(UnsafeRawBufferPointer(start: buf, count: n))
        }
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let h = SHA256()
        bytes.withUnsafeBytes { h.update($0) }
        return h.finish()
    }
}

/// What an export wrote.
public struct LayerDigests: Sendable, Equatable {
    /// SHA-256 of the uncompressed tar.
    public var diffID: String
    /// SHA-256 of the bytes written (equal to diffID when uncompressed).
    public var digest: String
    /// Bytes written.
    public var size: Int64
    /// Bytes of the uncompressed tar.
    public var uncompressedSize: Int64
    public var mediaType: String
}

/// A libarchive write filter chain used as a plain compressor: raw format, one entry, no blocking.
public final class Compressor {
    private let archive: OpaquePointer
    private let name: String
    fileprivate let sink: (UnsafeRawBufferPointer) throws -> Void
    fileprivate var failure: Error?

    /// Compressed bytes go to `sink`.
    public init(_ compression: Compression, name: String, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let a = archive_write_new() else {
            throw ArchiveError(archive: name, entry: nil, errno: ENOMEM, message: "cannot allocate a writer")
        }
        archive = a
        self.name = name
        self.sink = sink
        archive_write_set_format_raw(a)
        archive_write_set_bytes_per_block(a, 0)
        switch compression {
        case .none: break
        case let .gzip(level):
            try check(archive_write_add_filter_gzip(a))
            try check(archive_write_set_filter_option(a, "gzip", "compression-level", "\(level)"))
            // No timestamp in the gzip header: the same tar gives the same blob.
            try check(archive_write_set_filter_option(a, "gzip", "timestamp", nil))
        case let .zstd(level):
            try check(archive_write_add_filter_zstd(a))
            try check(archive_write_set_filter_option(a, "zstd", "compression-level", "\(level)"))
        }
        let r = archive_write_open2(a, Unmanaged.passUnretained(self).toOpaque(), nil, { _, context, buffer, length in
            let me = Unmanaged<Compressor>.fromOpaque(context!).takeUnretainedValue()
            do {
                try me.sink(UnsafeRawBufferPointer(start: buffer, count: length))
                return la_ssize_t(length)
            } catch {
                me.failure = error
                return -1
            }
        }, nil, nil)
        try check(r)
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_filetype(entry, 0o100000)
        archive_entry_set_pathname(entry, "layer.tar")
        try check(archive_write_header(a, entry))
    }

    deinit { archive_write_free(archive) }

    private func check(_ r: Int32) throws {
        if r == ARCHIVE_OK || r == ARCHIVE_WARN { return }
        if let failure { throw failure }
        let msg = archive_error_string(archive).map { String(cString: $0) } ?? "compression failed"
        throw ArchiveError(archive: name, entry: nil, errno: archive_errno(archive), message: msg)
    }

    public func write(_ p: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < p.count {
            let n = archive_write_data(archive, p.baseAddress! + off, p.count - off)
            if n < 0 { try check(Int32(n)) }
            off += n
        }
    }

    public func finish() throws {
        try check(archive_write_close(archive))
    }
}

public enum LayerOutput {
    /// Run `produce` with a descriptor to write an uncompressed tar to; what it writes reaches
    /// `fd` compressed as asked, and the digests are returned. Memory is bounded by the pipe.
    public static func write(to fd: Int32, name: String, compression: Compression,
                             progress: (@Sendable (Int64, Int) -> Void)? = nil,
                             _ produce: (Int32) throws -> Void) throws -> LayerDigests {
        var pipefd: [Int32] = [0, 0]
        if pipe(&pipefd) != 0 { throw SystemError("pipe", Bytes.of(name), errno: errno) }
        Sys.growPipe(pipefd[1])
        let consumer = Consumer(input: pipefd[0], output: fd, name: name, compression: compression)
        consumer.progress = progress
        let done = DispatchSemaphore(value: 0)
        // The consumer is handed to one other thread and read here only after `done.wait()`.
        nonisolated(unsafe) let c = consumer
        DispatchQueue.global().async {
            c.run()
            done.signal()
        }
        var produced: Error? = nil
        do { try produce(pipefd[1]) } catch { produced = error }
        Sys.close(pipefd[1])
        done.wait()
        Sys.close(pipefd[0])
        if let produced { throw produced }
        if let e = consumer.failure { throw e }
        return consumer.digests(compression)
    }

    private final class Consumer {
        let input: Int32
        let output: Int32
        let name: String
        let compression: Compression
        let tarHash = SHA256()
        let blobHash = SHA256()
        var tarBytes: Int64 = 0
        var blobBytes: Int64 = 0
        var failure: Error?
        var progress: (@Sendable (Int64, Int) -> Void)?

        init(input: Int32, output: Int32, name: String, compression: Compression) {
            self.input = input
            self.output = output
            self.name = name
            self.compression = compression
        }

        func run() {
            let size = 1 << 20
            let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            defer { buf.deallocate() }
            do {
                let emit: (UnsafeRawBufferPointer) throws -> Void = { [self] p in
                    blobHash.update(p)
                    blobBytes += Int64(p.count)
                    try Sys.writeAll(output, p, shown: name)
                }
                let compressor = compression == .none ? nil : try Compressor(compression, name: name, sink: emit)
                while true {
                    let n = try Sys.read(input, buf, size, shown: Bytes.of(name))
                    if n == 0 { break }
                    let chunk = UnsafeRawBufferPointer(start: buf, count: n)
                    tarHash.update(chunk)
                    tarBytes += Int64(n)
                    progress?(tarBytes, 0)
                    if let compressor { try compressor.write(chunk) } else { try emit(chunk) }
                }
                try compressor?.finish()
            } catch {
                failure = error
                // Keep reading (and dropping) so the producer is never left blocked on the pipe;
                // the failure is reported when it is done.
                while (try? Sys.read(input, buf, size, shown: Bytes.of(name))).map({ $0 > 0 }) ?? false {}
            }
        }

        func digests(_ compression: Compression) -> LayerDigests {
            let diffID = tarHash.finish()
            let blob = compression == .none ? diffID : blobHash.finish()
            return LayerDigests(diffID: diffID, digest: blob, size: blobBytes, uncompressedSize: tarBytes, mediaType: compression.mediaType)
        }
    }
}
