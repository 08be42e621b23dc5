// RawInput: the decompressed bytes of an input, in chunks.
import DiffKitSystem
import CArchive
import CDiffKitArchive
#if canImport(Glibc)
import Glibc
#endif

/// The decompressed bytes of an input (any compression libarchive detects, or none), in chunks.
/// gzip, the usual compression of pulled layers, is inflated through ISA-L instead (GzipInflater).
public final class RawInput {
    private let archive: OpaquePointer
    private let name: String
    /// The input had no bytes at all.
    public private(set) var isEmpty = false
    /// How many further `next()` calls a chunk stays valid for (0: only until the next call).
    public var chunksStayValid: Int { gzip != nil ? GzipInflater.rotation - 1 : 0 }
    /// The input is compressed (a filter besides the plain read).
    public var isCompressed: Bool { gzip != nil || archive_filter_count(archive) > 1 }

    /// What the input is read through: a descriptor's reads or a caller's reader, the first
    /// bytes (read to detect gzip) given again first.
    private let feed: ReaderFeed
    /// The gzip input's inflater; nil: libarchive decompresses (or there is nothing to).
    private var gzip: GzipInflater?
    /// With gzip, the first chunk (inflated to tell an empty stream from one with bytes).
    private var first: UnsafeRawBufferPointer?

    /// Open `fd` and detect its compression; throws an ``ArchiveError`` when it cannot be read.
    public convenience init(fd: Int32, name: String) throws {
        Sys.growPipe(fd)
        try self.init(reader: DescriptorReader(fd: fd, name: name), name: name, descriptor: true)
    }

    /// Read `reader` and detect its compression; throws an ``ArchiveError`` when it cannot be
    /// read (its `underlying` is the reader's own error when it threw).
    public convenience init(reader: any LayerReader, name: String) throws {
        try self.init(reader: reader, name: name, descriptor: false)
    }

    private init(reader: any LayerReader, name: String, descriptor: Bool) throws {
        feed = ReaderFeed(reader)
        guard let a = archive_read_new() else {
            throw ArchiveError(archive: name, entry: nil, errno: ENOMEM, message: "cannot allocate a reader")
        }
        archive = a
        self.name = name
        // The first bytes, to tell gzip (a member whose method is deflate) from anything else.
        let head = feed.peek(3)
        if feed.failure == nil, head.count >= 3, head[0] == 0x1F, head[1] == 0x8B, head[2] == 8 {
            let feed = self.feed
            let inflater = GzipInflater(prefix: feed.takePeeked(), name: name) { buffer in
                try feed.reader.read(into: buffer)
            }
            gzip = inflater
            do {
                first = try inflater.next()
            } catch {
                throw error as? ArchiveError ?? failure("unreadable input", cause: error)
            }
            if first == nil { isEmpty = true }
            return
        }
        archive_read_support_filter_all(a)
        archive_read_support_format_raw(a)
        archive_read_support_format_empty(a)
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        var r = feed.open(a)
        if r == ARCHIVE_OK { r = archive_read_next_header2(a, entry) }
        if r == ARCHIVE_EOF { isEmpty = true; return }
        if r != ARCHIVE_OK && r != ARCHIVE_WARN {
            // Every property is set: deinit frees the archive.
            throw failure("unreadable input")
        }
    }

    deinit { archive_read_free(archive) }

    /// The next chunk (valid until the next call, or longer: `chunksStayValid`), or nil at the end.
    public func next() throws -> UnsafeRawBufferPointer? {
        if isEmpty { return nil }
        if let gzip {
            if let f = first {
                first = nil
                return f
            }
            do { return try gzip.next() } catch let e as ArchiveError { throw e } catch {
                throw failure("read error", cause: error)
            }
        }
        var buf: UnsafeRawPointer? = nil
        var size = 0
        var offset: la_int64_t = 0
        while true {
            let r = archive_read_data_block(archive, &buf, &size, &offset)
            if r == ARCHIVE_EOF { return nil }
            if r != ARCHIVE_OK && r != ARCHIVE_WARN { throw failure("read error") }
            if let buf, size > 0 { return UnsafeRawBufferPointer(start: buf, count: size) }
        }
    }

    /// The error of a failed read: the reader's own (as the cause) when it threw, else libarchive's.
    private func failure(_ fallback: String, cause: (any Error)? = nil) -> ArchiveError {
        if let cause = cause ?? feed.failure {
            return ArchiveError(archive: name, entry: nil, errno: 0, message: "cannot read it: \(cause)", underlying: cause)
        }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? fallback
        return ArchiveError(archive: name, entry: nil, errno: archive_errno(archive), message: message)
    }
}
