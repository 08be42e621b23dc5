// Compression of a byte stream through libarchive's write filters (gzip, zstd).
import CArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

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

    /// Compress `p`; compressed bytes reach the sink as they come. Throws an ``ArchiveError`` or the sink's error.
    public func write(_ p: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < p.count {
            let n = archive_write_data(archive, p.baseAddress! + off, p.count - off)
            if n < 0 { try check(Int32(n)) }
            off += n
        }
    }

    /// Flush the rest and end the compressed stream. Throws an ``ArchiveError`` or the sink's error.
    public func finish() throws {
        try check(archive_write_close(archive))
    }
}
