// TarWriter: a streaming tar encoder with the byte format of Go's archive/tar, which docker,
// buildah and containerd all write through: USTAR when the header fits
// (with the prefix/name split), PAX otherwise, records sorted, `PaxHeaders.0/` names,
// xattrs as SCHILY.xattr records only, and exactly 1024 zero bytes at the end.
// A dedicated encoder rather than libarchive's pax writer, whose extended-header names, LIBARCHIVE
// records and atime/ctime emission differ from Go (Appendix B).

#if canImport(Glibc)
import DiffKitSystem
import Glibc
#endif

/// Writes tar entries in the byte format of Go's `archive/tar` (USTAR, PAX where needed, SCHILY
/// xattrs, a 1024-byte trailer) to a descriptor, buffered.
public final class TarWriter {
    private let fd: Int32
    private let archiveName: String
    /// Add S_IF* type bits to the mode field, as moby and containers/storage do.
    public var typeBitsInMode: Bool
    private let capacity: Int
    private var buffer: UnsafeMutableRawPointer
    /// The layer output this writer fills buffers for, when `fd` is its pipe.
    private let channel: OutputChannel?
    private var used = 0
    /// Bytes of the current entry still owed, and its padding.
    private var remaining: Int64 = 0
    private var padding = 0
    private var current = ""
    /// Total bytes written so far (uncompressed).
    public private(set) var bytesWritten: Int64 = 0
    /// Called with every chunk as it leaves, e.g. to compute a digest while streaming.
    public var observer: ((UnsafeRawBufferPointer) -> Void)?

    /// A writer to `fd`; `name` is what errors call the archive.
    public init(fd: Int32, name: String, typeBitsInMode: Bool = true) {
        self.fd = fd
        self.archiveName = name
        self.typeBitsInMode = typeBitsInMode
        // On a layer output's pipe, the output's buffers are filled and handed over instead.
        channel = OutputChannel.serving(fd)
        if let channel {
            capacity = channel.bufferSize
            buffer = channel.take()
        } else {
            capacity = 1 << 20
            buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096)
            Sys.growPipe(fd)
        }
    }

    deinit {
        if let channel { channel.giveBack(buffer) } else { buffer.deallocate() }
    }

    private func fail(_ message: String) -> ArchiveError {
        ArchiveError(archive: archiveName, entry: current, errno: 0, message: message)
    }

    // MARK: output buffer

    private func flush() throws {
        guard used > 0 else { return }
        let chunk = UnsafeRawBufferPointer(start: buffer, count: used)
        observer?(chunk)
        do {
            if let channel {
                if channel.writerWrites { try Sys.writeAll(channel.output, chunk, shown: archiveName) }
                try channel.submit(buffer, count: used, written: channel.writerWrites, from: .writer)
                buffer = channel.take()
            } else {
                try Sys.writeAll(fd, chunk, shown: archiveName)
            }
        } catch let e as SystemError {
            throw ArchiveError(archive: archiveName, entry: current, errno: e.errno.rawValue, message: "write: \(e.errno)")
        }
        bytesWritten += Int64(used)
        used = 0
    }

    private func append(_ p: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < p.count {
            if used == capacity { try flush() }
            let n = min(capacity - used, p.count - off)
            (buffer + used).copyMemory(from: p.baseAddress! + off, byteCount: n)
            used += n
            off += n
        }
    }

    private func appendZeros(_ count: Int) throws {
        var left = count
        while left > 0 {
            if used == capacity { try flush() }
            let n = min(capacity - used, left)
            (buffer + used).initializeMemory(as: UInt8.self, repeating: 0, count: n)
            used += n
            left -= n
        }
    }

    // MARK: entries

    /// Write the header of the next entry; its data (if `size > 0`) must follow through
    /// `writeData` or `copyData` before the next header.
    public func writeHeader(_ h: TarHeader) throws {
        if remaining > 0 { throw fail("\(remaining) bytes of data missing before the next header") }
        current = h.displayName
        var hdr = h
        if h.kind != .regular { hdr.size = 0 }
        let block = try encode(hdr)
        try block.withUnsafeBytes { try append($0) }
        remaining = hdr.size
        padding = Int((512 - hdr.size % 512) % 512)
        if remaining == 0 { padding = 0 }
    }

    /// Append data of the current entry.
    public func writeData(_ p: UnsafeRawBufferPointer) throws {
        if Int64(p.count) > remaining { throw fail("data longer than the header's size") }
        try append(p)
        remaining -= Int64(p.count)
        if remaining == 0 { try endEntry() }
    }

    /// Copy the current entry's data from `src`, reading straight into the output buffer.
    /// A file that shrank since it was stat'ed is padded with zeros (and reported), one that grew
    /// is cut at the header's size, so the stream stays well-formed either way.
    @discardableResult
    public func copyData(from src: Int32, path: [UInt8]) throws -> Int64 {
        var short: Int64 = 0
        while remaining > 0 {
            if used == capacity { try flush() }
            let want = Int(min(Int64(capacity - used), remaining))
            let n = try Sys.read(src, buffer + used, want, shown: path)
            if n == 0 {
                short = remaining
                try appendZeros(Int(remaining))
                remaining = 0
                break
            }
            used += n
            remaining -= Int64(n)
        }
        try endEntry()
        return short
    }

    private func endEntry() throws {
        if padding > 0 { try appendZeros(padding) }
        padding = 0
    }

    /// End the archive: two zero blocks, then flush. No padding to a record size (as Go).
    public func finish() throws {
        if remaining > 0 { throw fail("\(remaining) bytes of data missing at the end") }
        try appendZeros(1024)
        try flush()
    }

    // MARK: encoding (Go archive/tar rules)

    private static let typeBits: [TarHeader.Kind: UInt32] = [
        .regular: 0o100000, .directory: 0o040000, .symlink: 0o120000, .hardlink: 0o100000,
        .characterDevice: 0o020000, .blockDevice: 0o060000, .fifo: 0o010000,
    ]

    private static func flag(_ k: TarHeader.Kind) -> UInt8 {
        switch k {
        case .regular: return UInt8(ascii: "0")
        case .hardlink: return UInt8(ascii: "1")
        case .symlink: return UInt8(ascii: "2")
        case .characterDevice: return UInt8(ascii: "3")
        case .blockDevice: return UInt8(ascii: "4")
        case .directory: return UInt8(ascii: "5")
        case .fifo: return UInt8(ascii: "6")
        }
    }

    /// Encode one entry: a USTAR block, or a PAX extended header followed by its main block.
    func encode(_ h: TarHeader) throws -> [UInt8] {
        var pax: [([UInt8], [UInt8])] = []
        var ustarOK = true
        let name = h.name
        var prefix: [UInt8] = []
        var suffix = name

        if name.contains(0) || h.linkName.contains(0) { throw fail("a name contains a NUL byte") }
        if name.count > 100 || !Self.isASCII(name) {
            if let (p, s) = Self.splitUSTARPath(name) { prefix = p; suffix = s } else { ustarOK = false }
            pax.append((Bytes.of("path"), name))
        }
        if h.linkName.count > 100 || !Self.isASCII(h.linkName) {
            ustarOK = false
            pax.append((Bytes.of("linkpath"), h.linkName))
        }
        for (key, value) in [("uname", h.userName), ("gname", h.groupName)]
        where value.count > 32 || !Self.isASCII(value) {
            ustarOK = false
            pax.append((Bytes.of(key), value))
        }
        if h.uid >= 0o7777777 + 1 || h.uid < 0 { ustarOK = false; pax.append((Bytes.of("uid"), Bytes.of(String(h.uid)))) }
        if h.gid >= 0o7777777 + 1 || h.gid < 0 { ustarOK = false; pax.append((Bytes.of("gid"), Bytes.of(String(h.gid)))) }
        if h.size >= 0o77777777777 + 1 { ustarOK = false; pax.append((Bytes.of("size"), Bytes.of(String(h.size)))) }
        if h.mtime < 0 || h.mtime > 0o77777777777 || h.mtimeNanoseconds != 0 {
            ustarOK = false
            pax.append((Bytes.of("mtime"), Self.paxTime(h.mtime, h.mtimeNanoseconds)))
        }
        if !h.xattrs.isEmpty {
            ustarOK = false
            for x in h.xattrs { pax.append((Bytes.of("SCHILY.xattr.") + x.name, x.value)) }
        }
        if h.devMajor > 0o7777777 || h.devMinor > 0o7777777 { throw fail("device number does not fit a tar header") }

        var mode = h.mode & 0o7777
        if typeBitsInMode { mode |= Self.typeBits[h.kind]! }

        if ustarOK {
            var blk = [UInt8](repeating: 0, count: 512)
            Self.fillMain(&blk, h, name: suffix, mode: mode)
            Self.put(&blk, 345, 155, prefix)
            Self.finishBlock(&blk)
            return blk
        }

        // PAX: records sorted by key, in an extended header named dir/PaxHeaders.0/base.
        pax.sort { $0.0.lexicographicallyPrecedes($1.0) }
        var data: [UInt8] = []
        for (k, v) in pax {
            if k.isEmpty || k.contains(UInt8(ascii: "=")) { throw fail("invalid PAX key") }
            data += Self.paxRecord(k, v)
        }
        var out = [UInt8](repeating: 0, count: 512)
        var xname = Self.toASCII(Self.paxHeaderName(name))
        if xname.count > 100 { xname = Array(xname[0..<100]) }
        while xname.last == UInt8(ascii: "/") { xname.removeLast() }
        Self.put(&out, 0, 100, xname)
        Self.octal(&out, 100, 8, 0)
        Self.octal(&out, 108, 8, 0)
        Self.octal(&out, 116, 8, 0)
        Self.octal(&out, 124, 12, Int64(data.count))
        Self.octal(&out, 136, 12, 0)
        out[156] = UInt8(ascii: "x")
        Self.finishBlock(&out)
        out += data
        out += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)

        var blk = [UInt8](repeating: 0, count: 512)
        var main = h
        main.userName = Self.toASCII(h.userName)
        main.groupName = Self.toASCII(h.groupName)
        main.linkName = Self.toASCII(h.linkName)
        Self.fillMain(&blk, main, name: Self.toASCII(name), mode: mode)
        Self.finishBlock(&blk)
        return out + blk
    }

    /// Fields shared by USTAR and the PAX main header (Go's templateV7Plus); numbers that do not
    /// fit are written as 0, their real value travels in a PAX record.
    private static func fillMain(_ b: inout [UInt8], _ h: TarHeader, name: [UInt8], mode: UInt32) {
        putString(&b, 0, 100, name)
        putString(&b, 157, 100, h.linkName)
        octal(&b, 100, 8, Int64(mode))
        octal(&b, 108, 8, Int64(h.uid))
        octal(&b, 116, 8, Int64(h.gid))
        octal(&b, 124, 12, h.kind == .regular ? h.size : 0)
        octal(&b, 136, 12, h.mtime)
        b[156] = flag(h.kind)
        putString(&b, 265, 32, h.userName)
        putString(&b, 297, 32, h.groupName)
        octal(&b, 329, 8, Int64(h.devMajor))
        octal(&b, 337, 8, Int64(h.devMinor))
    }

    /// Magic, version and checksum (6 octal digits, NUL, space).
    private static func finishBlock(_ b: inout [UInt8]) {
        put(&b, 257, 6, Bytes.of("ustar\0"))
        put(&b, 263, 2, Bytes.of("00"))
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 0x20 : Int(b[i]) }
        octal(&b, 148, 7, Int64(sum))
        b[155] = 0x20
    }

    private static func put(_ b: inout [UInt8], _ off: Int, _ len: Int, _ s: [UInt8]) {
        for (i, c) in s.prefix(len).enumerated() { b[off + i] = c }
    }

    /// Go's formatString: truncate; a truncated name never ends in '/'.
    private static func putString(_ b: inout [UInt8], _ off: Int, _ len: Int, _ s: [UInt8]) {
        put(&b, off, len, s)
        if s.count > len && b[off + len - 1] == UInt8(ascii: "/") {
            var n = len
            while n > 0 && b[off + n - 1] == UInt8(ascii: "/") { n -= 1 }
            b[off + n] = 0
        }
    }

    /// Go's formatOctal: zero-padded, leaving room for a NUL; 0 when it does not fit.
    private static func octal(_ b: inout [UInt8], _ off: Int, _ len: Int, _ value: Int64) {
        let limit: Int64 = len - 1 >= 21 ? Int64.max : (1 << (3 * (len - 1)))
        let x = (value >= 0 && value < limit) ? value : 0
        var digits = Bytes.of(String(x, radix: 8))
        if digits.count < len - 1 { digits = [UInt8](repeating: UInt8(ascii: "0"), count: len - 1 - digits.count) + digits }
        put(&b, off, len, digits)
    }

    static func isASCII(_ s: [UInt8]) -> Bool { s.allSatisfy { $0 < 0x80 } }
    static func toASCII(_ s: [UInt8]) -> [UInt8] { isASCII(s) ? s : s.filter { $0 < 0x80 } }

    /// Go's splitUSTARPath.
    static func splitUSTARPath(_ name: [UInt8]) -> ([UInt8], [UInt8])? {
        var length = name.count
        if length <= 100 || !isASCII(name) { return nil }
        if length > 156 { length = 156 } else if name[length - 1] == UInt8(ascii: "/") { length -= 1 }
        guard let i = name[0..<length].lastIndex(of: UInt8(ascii: "/")) else { return nil }
        let nlen = name.count - i - 1
        if i <= 0 || nlen > 100 || nlen == 0 || i > 155 { return nil }
        return (Array(name[0..<i]), Array(name[(i + 1)...]))
    }

    /// path.Join(dir, "PaxHeaders.0", file) for path.Split(name).
    static func paxHeaderName(_ name: [UInt8]) -> [UInt8] {
        let slash = name.lastIndex(of: UInt8(ascii: "/"))
        let dir = slash.map { Array(name[...$0]) } ?? []
        let file = slash.map { Array(name[($0 + 1)...]) } ?? name
        var parts = dir.split(separator: UInt8(ascii: "/")).map(Array.init).filter { $0 != [UInt8(ascii: ".")] }
        parts.append(Bytes.of("PaxHeaders.0"))
        if !file.isEmpty { parts.append(file) }
        let joined = parts.joined(separator: [UInt8(ascii: "/")])
        return (dir.first == UInt8(ascii: "/") ? [UInt8(ascii: "/")] : []) + joined
    }

    /// The bytes of one PAX record `len key=value\n`; public for the tests.
    public static func paxRecordForTests(_ k: [UInt8], _ v: [UInt8]) -> [UInt8] { paxRecord(k, v) }

    static func paxRecord(_ k: [UInt8], _ v: [UInt8]) -> [UInt8] {
        var size = k.count + v.count + 3
        size += String(size).utf8.count
        var rec = Bytes.of(String(size)) + [0x20] + k + [UInt8(ascii: "=")] + v + [0x0A]
        if rec.count != size {
            size = rec.count
            rec = Bytes.of(String(size)) + [0x20] + k + [UInt8(ascii: "=")] + v + [0x0A]
        }
        return rec
    }

    static func paxTime(_ sec: Int64, _ nsec: Int32) -> [UInt8] {
        if nsec == 0 { return Bytes.of(String(sec)) }
        // Go's formatPAXTime, including its correction for negative seconds.
        let (sign, s, ns) = sec < 0 ? ("-", -(sec + 1), 1_000_000_000 - Int64(nsec)) : ("", sec, Int64(nsec))
        var frac = String(ns)
        frac = String(repeating: "0", count: max(0, 9 - frac.count)) + frac
        while frac.hasSuffix("0") { frac.removeLast() }
        return Bytes.of(sign + String(s) + "." + frac)
    }
}
