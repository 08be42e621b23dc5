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

/// Inflates a gzip stream read through `read` into chunks of at most 1 MiB.
final class GzipInflater {
    /// Read more input into the buffer; returns 0 at the end. Throws the source's error.
    typealias Read = (UnsafeMutableRawBufferPointer) throws -> Int

    private let read: Read
    private let name: String
    private let state = UnsafeMutablePointer<inflate_state>.allocate(capacity: 1)
    private let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    private let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
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
        output.deallocate()
    }

    private func startMember(at p: UnsafeMutableRawPointer, count: Int) {
        isal_inflate_init(state)
        state.pointee.crc_flag = UInt32(ISAL_GZIP)
        state.pointee.next_in = p.assumingMemoryBound(to: UInt8.self)
        state.pointee.avail_in = UInt32(count)
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

    /// The next chunk of decompressed bytes (valid until the next call), or nil at the end.
    func next() throws -> UnsafeRawBufferPointer? {
        var produced = 0
        while produced < output.count && !finished {
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
