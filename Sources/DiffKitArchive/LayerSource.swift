// Where a layer's bytes come from: a descriptor, a buffer in memory, or a reader of the caller's
// own (containerd's Apply takes an io.Reader). Whatever the source, the bytes go through the same
// RawInput (ISA-L's inflate for gzip, libarchive's decompression for the rest) and TarStream (its
// checks, digest, record, read-ahead).
import CArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// A caller's own source of bytes, read in order until it returns 0.
///
/// It is called from one thread at a time, but not always the same one (a stream reads ahead on
/// a thread of its own), hence `Sendable`.
public protocol LayerReader: Sendable {
    /// Read at most `buffer.count` bytes into `buffer`; returns how many, 0 at the end.
    /// An error thrown here ends the read; it is reported as an `ArchiveError` whose
    /// `underlying` is this error.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// The bytes of a layer (a tar, in any compression libarchive detects).
public enum LayerSource: Sendable {
    /// An open descriptor, read from its current offset (it is not closed, and may be closed by
    /// the caller once the read returned).
    case descriptor(FileDescriptor)
    /// The bytes themselves.
    case bytes([UInt8])
    /// A reader of the caller's own.
    case reader(any LayerReader)
}

/// A `.bytes` source as a reader.
struct BufferReader: LayerReader {
    let bytes: [UInt8]
    let offset = Locked(0)

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        offset.withLock { at in
            let n = min(buffer.count, bytes.count - at)
            if n > 0 {
                bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
            }
            at += n
            return n
        }
    }
}

/// A descriptor as a reader (errors name `name`).
struct DescriptorReader: LayerReader {
    let fd: Int32
    let name: String

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try Sys.read(fd, buffer.baseAddress!, buffer.count, shown: Bytes.of(name))
    }
}

/// Feeds libarchive from a `LayerReader` (archive_read_open's read callback), keeping the
/// reader's own error for the caller. The first bytes can be looked at before (`peek`): they are
/// given again first.
final class ReaderFeed {
    let reader: any LayerReader
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    /// Bytes at the buffer's start read by `peek` and not given out yet.
    private var peeked = 0
    /// What the reader threw, if it did.
    var failure: (any Error)?

    init(_ reader: any LayerReader) { self.reader = reader }

    deinit { buffer.deallocate() }

    /// The first bytes, at least `count` of them unless the input is shorter (or fails: see
    /// `failure`); they stay to be read again.
    func peek(_ count: Int) -> UnsafeRawBufferPointer {
        while peeked < count, failure == nil {
            do {
                let n = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[peeked...]))
                guard n >= 0, n <= buffer.count - peeked else {
                    failure = ArchiveError(archive: "reader", entry: nil, errno: 0, message: "read returned \(n)")
                    break
                }
                if n == 0 { break }
                peeked += n
            } catch {
                failure = error
            }
        }
        return UnsafeRawBufferPointer(rebasing: buffer[..<peeked])
    }

    /// The peeked bytes, handed over: the feed gives them no more.
    func takePeeked() -> UnsafeRawBufferPointer {
        defer { peeked = 0 }
        return UnsafeRawBufferPointer(rebasing: buffer[..<peeked])
    }

    /// Open `archive` on this feed (the feed must outlive it).
    func open(_ archive: OpaquePointer) -> Int32 {
        archive_read_open(archive, Unmanaged.passUnretained(self).toOpaque(), nil, { _, context, out in
            let me = Unmanaged<ReaderFeed>.fromOpaque(context!).takeUnretainedValue()
            if me.peeked > 0 {
                out?.pointee = UnsafeRawPointer(me.buffer.baseAddress)
                return la_ssize_t(me.takePeeked().count)
            }
            if me.failure != nil { return -1 }
            do {
                let n = try me.reader.read(into: me.buffer)
                guard n >= 0, n <= me.buffer.count else {
                    me.failure = ArchiveError(archive: "reader", entry: nil, errno: 0, message: "read returned \(n)")
                    return -1
                }
                out?.pointee = UnsafeRawPointer(me.buffer.baseAddress)
                return la_ssize_t(n)
            } catch {
                me.failure = error
                return -1
            }
        }, nil)
    }
}
