// gzip input through ISA-L's inflate: about twice zlib's speed (which libarchive uses) on a layer
// compressed at gzip's default level, streaming in fixed buffers. Behaviour follows libarchive's
// gzip reader, which it replaces for this one format: members one after another are one stream,
// each member's CRC-32 and size are checked, a truncated member is an error, and bytes after a
// member that do not start another are ignored.
import CISAL
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Inflates a gzip stream read through `read` into chunks of at most 512 KiB.
final class GzipInflater {
    /// Read more input into the buffer; returns 0 at the end. Throws the source's error.
    typealias Read = (UnsafeMutableRawBufferPointer) throws -> Int

    private let read: Read
    private let name: String
    // Aligned for ISA-L's vector code (Swift's own alignment of the struct is only 8).
    private let state = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<inflate_state>.size, alignment: 64)
        .bindMemory(to: inflate_state.self, capacity: 1)
    private let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    /// Output buffers used in turn, so a chunk stays valid for `outputs.count - 1` further
    /// calls: a read-ahead keeps a few in flight without copying them.
    private let outputs = (0..<GzipInflater.rotation).map { _ in
        UnsafeMutableRawBufferPointer.allocate(byteCount: 512 << 10, alignment: 4096)
    }
    private var turn = 0
    /// How many output buffers go round.
    static let rotation = 7
    private var inputEnded = false
    private var finished = false

    /// `prefix`: bytes already read from the source (its first ones); then `read` is called.
    init(prefix: UnsafeRawBufferPointer, name: String, read: @escaping Read) {
        self.read = read
        self.name = name
        input.baseAddress!.copyMemory(from: prefix.baseAddress!, byteCount: prefix.count)
        startMember(at: input.baseAddress!, count: prefix.count)
    }

    deinit {
        state.deallocate()
        input.deallocate()
        for o in outputs { o.deallocate() }
    }

    private func startMember(at p: UnsafeMutableRawPointer, count: Int) {
        // isal_inflate_init leaves some fields (the window size, hist_bits) as they are: zero
        // them all first (0: the full 32 KiB window).
        UnsafeMutableRawPointer(state).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<inflate_state>.size)
        isal_inflate_init(state)
        state.pointee.next_in = p.assumingMemoryBound(to: UInt8.self)
        state.pointee.avail_in = UInt32(count)
        needHeader = true
    }

    /// The member's header is read here, not by ISA-L: then the deflate data and the trailer
    /// (CRC-32 and size, checked: ISAL_GZIP_NO_HDR_VER).
    private var needHeader = true

    /// Skip the member's header (10 bytes, then the optional extra field, name, comment and
    /// header CRC), reading more input as needed.
    private func skipHeader() throws {
        while true {
            let n = Int(state.pointee.avail_in)
            if let p = state.pointee.next_in, let length = try Self.headerLength(p, n, failure) {
                state.pointee.next_in = p + length
                state.pointee.avail_in = UInt32(n - length)
                state.pointee.crc_flag = UInt32(ISAL_GZIP_NO_HDR_VER)
                needHeader = false
                return
            }
            if n >= input.count { throw failure("gzip: a member's header is longer than 1 MiB") }
            if try !refill() { throw failure("truncated gzip input") }
        }
    }

    /// The header's length if the `n` bytes at `p` hold all of it; nil if more are needed.
    static func headerLength(_ p: UnsafePointer<UInt8>, _ n: Int, _ failure: (String) -> ArchiveError) throws -> Int? {
        guard n >= 10 else { return nil }
        // Reserved flag bits set: not a header libarchive would take either.
        guard p[0] == 0x1F, p[1] == 0x8B, p[2] == 8, p[3] & 0xE0 == 0 else { throw failure("gzip: not a valid gzip header") }
        let flags = p[3]
        var at = 10
        if flags & 4 != 0 {                   // FEXTRA: a 2-byte length, then the field
            guard n >= at + 2 else { return nil }
            at += 2 + (Int(p[at]) | Int(p[at + 1]) << 8)
            guard n >= at else { return nil }
        }
        for flag: UInt8 in [8, 16] where flags & flag != 0 {  // FNAME, FCOMMENT: zero-terminated
            while at < n && p[at] != 0 { at += 1 }
            guard at < n else { return nil }
            at += 1
        }
        if flags & 2 != 0 { at += 2 }         // FHCRC
        return n >= at ? at : nil
    }

    private func failure(_ message: String) -> ArchiveError {
        ArchiveError(archive: name, entry: nil, errno: 0, message: message)
    }

    /// Move what is left of the input to the buffer's start and read more after it; false at the
    /// source's end (nothing was added).
    private func refill() throws -> Bool {
        if inputEnded { return false }
        let left = Int(state.pointee.avail_in)
        if left > 0, let from = state.pointee.next_in {
            input.baseAddress!.copyMemory(from: from, byteCount: left)
        }
        let n = try read(UnsafeMutableRawBufferPointer(rebasing: input[left...]))
        state.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
        state.pointee.avail_in = UInt32(left + n)
        if n == 0 { inputEnded = true }
        return n > 0
    }

    /// After a member: another one follows when the next bytes are a gzip header's magic
    /// (a deflate member); anything else ends the stream, as libarchive does.
    private func nextMember() throws -> Bool {
        while state.pointee.avail_in < 3, try refill() {}
        let n = Int(state.pointee.avail_in)
        guard n >= 3, let p = state.pointee.next_in, p[0] == 0x1F, p[1] == 0x8B, p[2] == 8 else { return false }
        startMember(at: UnsafeMutableRawPointer(p), count: n)
        return true
    }

    /// The next chunk of decompressed bytes (valid for `rotation - 1` further calls), or nil at
    /// the end.
    func next() throws -> UnsafeRawBufferPointer? {
        let output = outputs[turn]
        turn = (turn + 1) % outputs.count
        var produced = 0
        while produced < output.count && !finished {
            if needHeader { try skipHeader() }
            state.pointee.next_out = (output.baseAddress! + produced).assumingMemoryBound(to: UInt8.self)
            state.pointee.avail_out = UInt32(output.count - produced)
            let r = isal_inflate(state)
            produced = output.count - Int(state.pointee.avail_out)
            switch r {
            case ISAL_DECOMP_OK, ISAL_END_INPUT, ISAL_OUT_OVERFLOW: break
            case ISAL_INCORRECT_CHECKSUM: throw failure("gzip: a member's CRC-32 or size does not match its data")
            case ISAL_INVALID_WRAPPER: throw failure("gzip: not a valid gzip header")
            default: throw failure("gzip: invalid compressed data (\(r))")
            }
            if state.pointee.block_state == ISAL_BLOCK_FINISH {
                if try !nextMember() { finished = true }
            } else if state.pointee.avail_out > 0, state.pointee.avail_in == 0 || r == ISAL_END_INPUT {
                if try !refill() {
                    throw failure("truncated gzip input")
                }
            }
        }
        return produced == 0 ? nil : UnsafeRawBufferPointer(start: output.baseAddress, count: produced)
    }
}
