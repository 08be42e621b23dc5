// RawInput: the decompressed bytes of an input, in chunks.
import DiffKitSystem
import CArchive
import CDiffKitArchive
#if canImport(Glibc)
import Glibc
#endif

/// The decompressed bytes of an input (any compression libarchive detects, or none), in chunks.
public final class RawInput {
    private let archive: OpaquePointer
    private let name: String
    /// The input had no bytes at all.
    public private(set) var isEmpty = false
    /// The input is compressed (a filter besides the plain read).
    public var isCompressed: Bool { archive_filter_count(archive) > 1 }

    /// What a reader input is read through (nil: a descriptor).
    private let feed: ReaderFeed?

    /// Open `fd` and detect its compression; throws an ``ArchiveError`` when it cannot be read.
    public convenience init(fd: Int32, name: String) throws {
        try self.init(fd: fd, reader: nil, name: name)
    }

    /// Read `reader` and detect its compression; throws an ``ArchiveError`` when it cannot be
    /// read (its `underlying` is the reader's own error when it threw).
    public convenience init(reader: any LayerReader, name: String) throws {
        try self.init(fd: -1, reader: reader, name: name)
    }

    private init(fd: Int32, reader: (any LayerReader)?, name: String) throws {
        feed = reader.map(ReaderFeed.init)
        guard let a = archive_read_new() else {
            throw ArchiveError(archive: name, entry: nil, errno: ENOMEM, message: "cannot allocate a reader")
        }
        archive = a
        self.name = name
        archive_read_support_filter_all(a)
        archive_read_support_format_raw(a)
        archive_read_support_format_empty(a)
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        var r: Int32
        if let feed {
            r = feed.open(a)
        } else {
            Sys.growPipe(fd)
            r = archive_read_open_fd(a, fd, 1 << 20)
        }
        if r == ARCHIVE_OK { r = archive_read_next_header2(a, entry) }
        if r == ARCHIVE_EOF { isEmpty = true; return }
        if r != ARCHIVE_OK && r != ARCHIVE_WARN {
            // Every property is set: deinit frees the archive.
            throw failure("unreadable input")
        }
    }

    deinit { archive_read_free(archive) }

    /// The next chunk (valid until the next call), or nil at the end.
    public func next() throws -> UnsafeRawBufferPointer? {
        if isEmpty { return nil }
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
    private func failure(_ fallback: String) -> ArchiveError {
        if let cause = feed?.failure {
            return ArchiveError(archive: name, entry: nil, errno: 0, message: "cannot read it: \(cause)", underlying: cause)
        }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? fallback
        return ArchiveError(archive: name, entry: nil, errno: archive_errno(archive), message: message)
    }
}
