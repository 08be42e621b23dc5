// TarReader: a pull-style, streaming reader of any tar flavour (V7, USTAR, PAX, GNU) under any
// compression (none, gzip, zstd, xz, bzip2, detected from the bytes), through libarchive, fed by
// a TarStream (which decompresses, checks what libarchive lets through, and can record the
// stream for a byte-exact export). Every failure becomes an ArchiveError naming the entry;
// nothing is retried silently.
import DiffKitSystem
import CArchive

#if canImport(Glibc)
import Glibc
#endif

/// A streaming reader of a tar in any flavour (V7, USTAR, PAX, GNU) and compression (none, gzip,
/// zstd, xz, bzip2, detected from the bytes); every failure throws an ``ArchiveError`` naming the entry.
public final class TarReader {
    private let archive: OpaquePointer
    private let entry: OpaquePointer
    private let archiveName: String
    /// The decompressed input, checked on its way to libarchive.
    public let stream: TarStream
    private var current: String? = nil
    /// Entries returned so far.
    public private(set) var entries = 0
    /// Called with (entry, message) for each warning libarchive gives (e.g. a name it could not
    /// convert); the reader goes on.
    public var onWarning: ((String, String) -> Void)?

    /// Read from `fd`; `name` is what errors call the archive.
    public convenience init(fd: Int32, name: String) throws {
        try self.init(stream: try TarStream(fd: fd, name: name), name: name)
    }

    /// Read from `source` (a descriptor, bytes, a reader); `name` is what errors call the archive.
    public convenience init(source: LayerSource, name: String) throws {
        try self.init(stream: try TarStream(source: source, name: name), name: name)
    }

    /// Read from `stream` (set its digest and recorder before: the parser starts reading here).
    public init(stream: TarStream, name: String) throws {
        Locale.setUTF8Once
        guard let a = archive_read_new() else {
            throw ArchiveError(archive: name, entry: nil, errno: ENOMEM, message: "cannot allocate a reader")
        }
        archive = a
        entry = archive_entry_new()
        archiveName = name
        self.stream = stream
        // The stream is decompressed already: no filters here (a tar whose first name began
        // with a compressor's magic bytes would be taken for compressed).
        archive_read_support_format_tar(a)
        archive_read_support_format_gnutar(a)
        // An empty stream is an empty layer (moby accepts it too), not an error.
        archive_read_support_format_empty(a)
        let r = archive_read_open(a, Unmanaged.passUnretained(stream).toOpaque(), nil, { _, context, buffer in
            let stream = Unmanaged<TarStream>.fromOpaque(context!).takeUnretainedValue()
            let chunk = stream.nextChunk()
            buffer?.pointee = chunk.baseAddress
            return stream.failure == nil ? la_ssize_t(chunk.count) : -1
        }, nil)
        if r != ARCHIVE_OK {
            // Every property is set: deinit frees the archive and the entry.
            throw failure()
        }
    }

    deinit {
        stream.stop()
        archive_entry_free(entry)
        archive_read_free(archive)
    }

    private func failure(_ fallback: String = "unreadable archive") -> ArchiveError {
        if let f = stream.failure { return f }
        let code = archive_errno(archive)
        let msg = archive_error_string(archive).map { String(cString: $0) } ?? fallback
        return ArchiveError(archive: archiveName, entry: current, errno: code, message: msg)
    }

    private func check(_ r: Int32) throws {
        switch r {
        case ARCHIVE_OK, ARCHIVE_EOF: return
        case ARCHIVE_WARN:
            let msg = archive_error_string(archive).map { String(cString: $0) } ?? "warning"
            onWarning?(current ?? "", msg)
        default: throw failure()
        }
    }

    /// The next entry's header, or nil at the end of the archive. Data not read is skipped.
    public func next() throws -> TarHeader? {
        let r = archive_read_next_header2(archive, entry)
        if r == ARCHIVE_EOF {
            try stream.drain()
            return nil
        }
        current = nil
        if r != ARCHIVE_OK && r != ARCHIVE_WARN {
            current = entries == 0 ? nil : "after entry \(entries)"
            throw failure()
        }
        let name = Self.bytes(archive_entry_pathname(entry))
        current = Bytes.string(name)
        try check(r)
        entries += 1
        return try header(name: name)
    }

    private static func bytes(_ p: UnsafePointer<CChar>?) -> [UInt8] {
        guard let p else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    private func header(name: [UInt8]) throws -> TarHeader {
        let e = entry
        let kind: TarHeader.Kind
        var link: [UInt8] = []
        if let hl = archive_entry_hardlink(e) {
            kind = .hardlink
            link = Self.bytes(hl)
        } else {
            switch archive_entry_filetype(e) {
            case 0o100000: kind = .regular
            case 0o040000: kind = .directory
            case 0o120000: kind = .symlink; link = Self.bytes(archive_entry_symlink(e))
            case 0o020000: kind = .characterDevice
            case 0o060000: kind = .blockDevice
            case 0o010000: kind = .fifo
            default:
                throw ArchiveError(archive: archiveName, entry: current, errno: 0,
                                   message: "unsupported entry type (mode \(String(archive_entry_mode(e), radix: 8)))")
            }
        }
        if name.isEmpty {
            throw ArchiveError(archive: archiveName, entry: "#\(entries)", errno: 0, message: "entry has an empty name")
        }
        var h = TarHeader(name: name, kind: kind)
        h.linkName = link
        h.mode = UInt32(archive_entry_perm(e)) & 0o7777
        h.uid = Int(archive_entry_uid(e))
        h.gid = Int(archive_entry_gid(e))
        h.userName = Self.bytes(archive_entry_uname(e))
        h.groupName = Self.bytes(archive_entry_gname(e))
        h.size = archive_entry_size_is_set(e) != 0 ? archive_entry_size(e) : 0
        h.mtime = Int64(archive_entry_mtime(e))
        h.mtimeNanoseconds = Int32(truncatingIfNeeded: archive_entry_mtime_nsec(e))
        if archive_entry_atime_is_set(e) != 0 { h.atime = Int64(archive_entry_atime(e)) }
        if kind == .characterDevice || kind == .blockDevice {
            h.devMajor = UInt32(truncatingIfNeeded: archive_entry_rdevmajor(e))
            h.devMinor = UInt32(truncatingIfNeeded: archive_entry_rdevminor(e))
        }
        if archive_entry_xattr_reset(e) > 0 {
            var n: UnsafePointer<CChar>? = nil
            var v: UnsafeRawPointer? = nil
            var size = 0
            while archive_entry_xattr_next(e, &n, &v, &size) == ARCHIVE_OK {
                let value = v.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                h.xattrs.append(Xattr(name: Self.bytes(n), value: value))
            }
        }
        return h
    }

    /// Stream the current entry's data: `body(chunk, offset)` for each block. Offsets can jump
    /// (sparse entries); the holes are zeros.
    public func readData(_ body: (UnsafeRawBufferPointer, Int64) throws -> Void) throws {
        var buf: UnsafeRawPointer? = nil
        var size = 0
        var offset: la_int64_t = 0
        while true {
            let r = archive_read_data_block(archive, &buf, &size, &offset)
            if r == ARCHIVE_EOF { return }
            try check(r)
            if size > 0, let buf { try body(UnsafeRawBufferPointer(start: buf, count: size), offset) }
        }
    }
}

/// libarchive converts names through the locale; in the C locale its pax code misbehaves with
/// non-ASCII names, so DiffKit sets LC_CTYPE to C.UTF-8 once.
enum Locale {
    static let setUTF8Once: Void = {
        if setlocale(LC_CTYPE, "C.UTF-8") == nil { _ = setlocale(LC_CTYPE, "C.utf8") }
    }()
}
