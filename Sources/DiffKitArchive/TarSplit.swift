// TarSplit: what an import keeps so an unchanged layer can be exported again byte for byte
// (the idea of vbatts/tar-split, which docker and containers/storage keep per layer, in a
// compact format of DiffKit's own): every byte of the tar that is
// not file content, verbatim, and for each file's content its name (as stored), size and
// CRC-32C. zstd-compressed; a 30,000-entry layer's record is a few hundred KiB.
//
// Format, after decompression: "DKTS1\n", then records
//   0x01 len:uvarint bytes          raw bytes (headers, extended headers, padding, the end)
//   0x02 len:uvarint name size:uvarint crc:u32le   a file's content
//   0x03                            end (a record without it is incomplete and never used)
import DiffKitSystem
import CDiffKitArchive

#if canImport(Glibc)
import Glibc
#endif

/// Tar-split records: what an import keeps so an unchanged layer can be exported again byte for byte.
public enum TarSplit {
    static let magic = Bytes.of("DKTS1\n")

    /// One piece of a recorded tar, in stream order.
    public enum Segment: Equatable {
        /// Bytes that are not file content (headers, extended headers, padding, the end), verbatim.
        case raw([UInt8])
        /// A file's content: its name as stored, its size in bytes and its CRC-32C.
        case file(name: [UInt8], size: Int64, crc: UInt32)
    }
}

/// A TarStreamRecorder writing a record to a file descriptor.
public final class TarSplitWriter: TarStreamRecorder {
    private let compressor: Compressor
    private var buffer: [UInt8] = []
    private var pendingRaw: [UInt8] = []
    private var currentName: [UInt8] = []
    private var currentSize: Int64 = 0
    /// Why the stream cannot be reproduced, if it cannot.
    public private(set) var invalidReason: String?

    /// A recorder writing a zstd-compressed record to `fd`; `name` is what errors call it.
    public init(fd: Int32, name: String) throws {
        compressor = try Compressor(.zstd(level: 3), name: name) { p in try Sys.writeAll(fd, p, shown: name) }
        buffer = TarSplit.magic
    }

    private func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { buffer.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        buffer.append(UInt8(v))
    }

    private func flushBuffer(force: Bool = false) throws {
        if buffer.count >= 1 << 16 || (force && !buffer.isEmpty) {
            try buffer.withUnsafeBytes { try compressor.write($0) }
            buffer.removeAll(keepingCapacity: true)
        }
    }

    private func flushRaw() throws {
        guard !pendingRaw.isEmpty else { return }
        buffer.append(0x01)
        varint(UInt64(pendingRaw.count))
        buffer += pendingRaw
        pendingRaw.removeAll(keepingCapacity: true)
        try flushBuffer()
    }

    /// Record bytes that are not file content.
    public func raw(_ bytes: UnsafeRawBufferPointer) throws {
        pendingRaw.append(contentsOf: bytes)
        if pendingRaw.count >= 1 << 16 { try flushRaw() }
    }

    /// Hashes of the names whose content was recorded: a later entry of the same name (or a
    /// whiteout of it) replaces that content on disk, and then the tar cannot be given back.
    private var fileNames = Set<Int>()

    private static func key(_ name: [UInt8]) -> Int {
        var h = Hasher()
        for part in name.split(separator: UInt8(ascii: "/")) where part != [UInt8(ascii: ".")] { h.combine(Array(part)) }
        return h.finalize()
    }

    /// Note an entry's name; a name repeated after its content, or whited out in the same layer,
    /// makes the record unusable.
    public func entry(name: [UInt8]) {
        guard invalidReason == nil else { return }
        if fileNames.contains(Self.key(name)) {
            invalidate("'\(Bytes.string(name))' appears twice; the first one's content is not in the layer")
        }
        var parts = name.split(separator: UInt8(ascii: "/"))
        if let last = parts.last, last.starts(with: Bytes.of(".wh.")) {
            parts[parts.count - 1] = last.dropFirst(4)
            if fileNames.contains(Self.key(Array(parts.joined(separator: [UInt8(ascii: "/")])))) {
                invalidate("'\(Bytes.string(name))' deletes a file of the same layer")
            }
        }
    }

    /// A file's content of `size` bytes follows.
    public func beginFile(name: [UInt8], size: Int64) throws {
        fileNames.insert(Self.key(name))
        try flushRaw()
        currentName = name
        currentSize = size
    }

    /// Record the file's CRC-32C, once its content has passed.
    public func endFile(crc: UInt32) throws {
        buffer.append(0x02)
        varint(UInt64(currentName.count))
        buffer += currentName
        varint(UInt64(currentSize))
        withUnsafeBytes(of: crc.littleEndian) { buffer.append(contentsOf: $0) }
        try flushBuffer()
    }

    /// Mark the record unusable for `reason` (the first reason is kept).
    public func invalidate(_ reason: String) {
        if invalidReason == nil { invalidReason = reason }
    }

    /// Write the end marker and flush everything.
    public func finish() throws {
        try flushRaw()
        buffer.append(0x03)
        try flushBuffer(force: true)
        try compressor.finish()
    }
}

/// Reads a record's segments in order.
public final class TarSplitReader {
    private let input: RawInput
    private let name: String
    private var chunk = UnsafeRawBufferPointer(start: nil, count: 0)
    private var position = 0
    private var ended = false

    /// Read a record from `fd`; throws an ``ArchiveError`` when it is not a tar-split record.
    public init(fd: Int32, name: String) throws {
        input = try RawInput(fd: fd, name: name)
        self.name = name
        guard try bytes(TarSplit.magic.count) == TarSplit.magic else { throw corrupt("not a DiffKit tar-split record") }
    }

    private func corrupt(_ message: String) -> ArchiveError {
        ArchiveError(archive: name, entry: nil, errno: 0, message: message)
    }

    /// Make sure the current chunk has a byte left.
    private func fill() throws {
        while position >= chunk.count {
            guard let next = try input.next() else { throw corrupt("the record is truncated") }
            chunk = next
            position = 0
        }
    }

    private func byte() throws -> UInt8 {
        try fill()
        defer { position += 1 }
        return chunk[position]
    }

    private func bytes(_ n: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        while out.count < n {
            try fill()
            let take = min(n - out.count, chunk.count - position)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[position..<(position + take)]))
            position += take
        }
        return out
    }

    private func varint() throws -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 63 { throw corrupt("a bad number in the record") }
        }
    }

    /// The next segment, or nil after the end marker.
    public func next() throws -> TarSplit.Segment? {
        if ended { return nil }
        switch try byte() {
        case 0x01:
            return .raw(try bytes(Int(try varint())))
        case 0x02:
            let name = try bytes(Int(try varint()))
            let size = Int64(try varint())
            let c = try bytes(4)
            let crc = UInt32(c[0]) | UInt32(c[1]) << 8 | UInt32(c[2]) << 16 | UInt32(c[3]) << 24
            return .file(name: name, size: size, crc: crc)
        case 0x03:
            ended = true
            return nil
        default:
            throw corrupt("an unknown record type")
        }
    }
}
