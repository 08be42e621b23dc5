// TarStream: the decompressed bytes of a tar on their way to the tar parser (libarchive), read
// block by block once. It does two jobs libarchive cannot:
//  - checks what libarchive would let through silently: a NUL inside a PAX path (libarchive cuts
//    the name there), a name given both by a GNU long-name header and a PAX record (libarchive
//    takes the later one, Go's reader the GNU one; DiffKit refuses the ambiguity), header
//    checksums, and bounds: an extended header (PAX, GNU long name) above 1 MiB, and more than
//    1 MiB after the end-of-archive marker, are not read (CVE-2017-14992's lesson);
//  - records, for a layer import, every byte that is not file content (headers, extended headers,
//    padding, the end) plus each file's name, size and CRC-32C: the tar-split idea
//    (as vbatts/tar-split keeps for docker), so an unchanged layer can be exported again byte for byte.
import DiffKitSystem
import CArchive
import CDiffKitArchive

#if canImport(Glibc)
import Glibc
#endif

/// What a TarStream reports to a recorder, in stream order.
public protocol TarStreamRecorder: AnyObject {
    /// Bytes that are not file content.
    func raw(_ bytes: UnsafeRawBufferPointer) throws
    /// Every entry's name (as stored), before its content if it has some.
    func entry(name: [UInt8])
    /// The content of the entry named `name` (as stored) follows: `size` bytes.
    func beginFile(name: [UInt8], size: Int64) throws
    /// Its CRC-32C, once all of it has passed.
    func endFile(crc: UInt32) throws
    /// The stream cannot be reproduced (e.g. its end was not read in full).
    func invalidate(_ reason: String)
}

/// The decompressed bytes of a tar on their way to the parser, checked block by block for what
/// libarchive would let through, digested and recorded when asked.
public final class TarStream {
    /// Extended headers (PAX records, GNU long names) larger than this are refused.
    public static let maxExtendedHeader = 1 << 20
    /// Bytes after the end-of-archive marker that are read (and kept for a byte-exact export).
    public static let maxTrailer = 1 << 20

    private let input: RawInput
    private let ownFd: Int32
    private let name: String
    /// Where the stream reports its pieces for a tar-split record, when set.
    public var recorder: TarStreamRecorder?
    /// SHA-256 of every byte read (the layer's diffID), when set.
    public var digest: SHA256?
    /// Decompressed bytes handed to the parser so far (at the end: all that were read).
    public private(set) var bytesRead: Int64 = 0
    /// The first problem found; the parser is then given an end of input and reports this.
    public private(set) var failure: ArchiveError?
    /// The producing side's counterparts (the read-ahead thread's, when there is one).
    fileprivate private(set) var producedBytes: Int64 = 0
    private var producerFailure: ArchiveError?
    private var readAhead: ReadAhead?
    private var readAheadTried = false

    private enum State {
        case header, sparseExtension, extended(left: Int), payload(left: Int64), padding(left: Int), trailer, end
    }
    private var state = State.header
    private var block = [UInt8](repeating: 0, count: 512)
    private var blockFill = 0
    private var extended: [UInt8] = []
    private var extendedType: UInt8 = 0
    private var padAfterExtended = 0
    private var paxPath: [UInt8]? = nil
    private var paxLinkPath: [UInt8]? = nil
    private var paxSize: Int64? = nil
    private var sparseName: [UInt8]? = nil
    private var gnuLongName: [UInt8]? = nil
    private var gnuLongLink: [UInt8]? = nil
    private var entries = 0
    private var lastName = ""
    private var crc: UInt32 = 0
    private var trailerBytes = 0
    private var sourceDone = false

    /// Read `fd` (any compression libarchive knows); `name` is what errors call it.
    public convenience init(fd: Int32, name: String) throws {
        try self.init(source: .descriptor(FileDescriptor(rawValue: fd)), name: name)
    }

    /// Read `source` (any compression libarchive knows); `name` is what errors call it.
    public init(source: LayerSource, name: String) throws {
        switch source {
        case let .descriptor(descriptor):
            let fd = descriptor.rawValue
            // Our own descriptor: a read-ahead thread may still be reading when the caller closes its.
            ownFd = dup(fd)
            guard ownFd >= 0 else { throw ArchiveError(archive: name, entry: nil, errno: errno, message: "cannot read it") }
            do { input = try RawInput(fd: ownFd, name: name) } catch { close(ownFd); throw error }
        case let .bytes(bytes):
            ownFd = -1
            input = try RawInput(reader: BufferReader(bytes: bytes), name: name)
        case let .reader(reader):
            ownFd = -1
            input = try RawInput(reader: reader, name: name)
        }
        self.name = name
        if input.isEmpty { sourceDone = true; state = .end }
    }

    deinit { if ownFd >= 0 { close(ownFd) } }

    /// The next chunk of decompressed bytes, checked (and recorded); empty at the end of the input,
    /// or after a failure (see `failure`). Valid until the next call.
    ///
    /// With more than one core and work to take off the parser's thread (decompression, the
    /// digest, the record), reading and the checks run on a read-ahead thread a few chunks ahead
    /// of the parser (the same bytes in the same order);
    /// the digest and the record are complete once `drain()` or `stop()` returned.
    public func nextChunk() -> UnsafeRawBufferPointer {
        if readAhead == nil, !readAheadTried, !sourceDone, producerFailure == nil,
           digest != nil || recorder != nil || input.isCompressed, sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1 {
            readAheadTried = true
            readAhead = ReadAhead(self)
        }
        if let readAhead, let (chunk, count) = readAhead.take() {
            bytesRead = count
            return chunk
        }
        // One thread, or the read-ahead has finished: the producer's state is this thread's to read.
        let chunk = readAhead == nil ? produce() : UnsafeRawBufferPointer(start: nil, count: 0)
        bytesRead = producedBytes
        failure = producerFailure
        return chunk
    }

    /// After the parser's end of archive: read what follows it (bounded), for the record.
    public func drain() throws {
        while nextChunk().count > 0 {}
        stop()
        if let failure { throw failure }
    }

    /// Stop reading ahead (the thread ends); for a stream let go before its end.
    public func stop() {
        readAhead?.stop()
    }

    /// How many further chunks a chunk stays valid for (the read-ahead may then keep it as is).
    fileprivate var chunksStayValid: Int { input.chunksStayValid }

    /// Read, check and record the next chunk (on the read-ahead thread when there is one).
    fileprivate func produce() -> UnsafeRawBufferPointer {
        if producerFailure != nil || sourceDone { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let next: UnsafeRawBufferPointer?
        do { next = try input.next() } catch {
            producerFailure = error as? ArchiveError ?? self.error("\(error)", underlying: error)
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        guard let next, let buf = next.baseAddress else {
            sourceDone = true
            finishInput()
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        let size = next.count
        digest?.update(next)
        producedBytes += Int64(size)
        var chunk = UnsafeRawBufferPointer(start: buf, count: size)
        do {
            if case .trailer = state, trailerBytes + size > Self.maxTrailer {
                chunk = UnsafeRawBufferPointer(start: buf, count: max(0, Self.maxTrailer - trailerBytes))
                try consume(chunk)
                recorder?.invalidate("more than \(Self.maxTrailer) bytes follow the end of the archive; they were not read")
                sourceDone = true
                return chunk
            }
            try consume(chunk)
        } catch let e as ArchiveError {
            producerFailure = e
            return UnsafeRawBufferPointer(start: nil, count: 0)
        } catch {
            fail("\(error)", underlying: error)
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return chunk
    }

    private func fail(_ message: String, errno: Int32 = 0, underlying: (any Error)? = nil) {
        if producerFailure == nil {
            producerFailure = ArchiveError(archive: name, entry: entryLabel, errno: errno, message: message, underlying: underlying)
        }
    }

    /// The entry being read, by number (its name may be what is wrong).
    private var entryLabel: String? {
        switch state {
        case .payload, .padding, .sparseExtension: return lastName
        default: return "#\(entries + 1)" + (entries > 0 ? " (after \(lastName))" : "")
        }
    }

    private func error(_ message: String, entry: String? = nil, underlying: (any Error)? = nil) -> ArchiveError {
        ArchiveError(archive: name, entry: entry ?? entryLabel, errno: 0, message: message, underlying: underlying)
    }

    private func finishInput() {
        switch state {
        case .header where blockFill == 0, .trailer, .end: state = .end
        case .payload, .padding: fail("truncated: the input ends inside an entry's data")
        default: fail("truncated: the input ends inside a header")
        }
    }

    // MARK: the block machine

    private func consume(_ chunk: UnsafeRawBufferPointer) throws {
        var p = chunk.baseAddress!
        var n = chunk.count
        while n > 0 {
            switch state {
            case .header, .sparseExtension:
                let take = min(512 - blockFill, n)
                block.withUnsafeMutableBytes { b in (b.baseAddress! + blockFill).copyMemory(from: p, byteCount: take) }
                blockFill += take
                p += take; n -= take
                if blockFill == 512 {
                    blockFill = 0
                    try block.withUnsafeBytes { try recorder?.raw($0) }
                    if case .sparseExtension = state {
                        if block[504] == 0 { try startPayload() }
                    } else {
                        try header()
                    }
                }
            case let .extended(left):
                let take = min(left, n)
                extended.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
                try recorder?.raw(UnsafeRawBufferPointer(start: p, count: take))
                p += take; n -= take
                if take == left { try finishExtended() } else { state = .extended(left: left - take) }
            case let .payload(left):
                let take = Int(min(left, Int64(n)))
                if recorder != nil { crc = dk_crc32c(crc, p, take) }
                p += take; n -= take
                if Int64(take) == left { try endPayload() } else { state = .payload(left: left - Int64(take)) }
            case let .padding(left):
                let take = min(left, n)
                try recorder?.raw(UnsafeRawBufferPointer(start: p, count: take))
                p += take; n -= take
                state = take == left ? .header : .padding(left: left - take)
            case .trailer:
                trailerBytes += n
                try recorder?.raw(UnsafeRawBufferPointer(start: p, count: n))
                n = 0
            case .end:
                n = 0
            }
        }
    }

    private static func isHeaderOnly(_ flag: UInt8) -> Bool {
        (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(flag)
    }

    /// A full header block in `block`.
    private func header() throws {
        if block.allSatisfy({ $0 == 0 }) {
            state = .trailer
            trailerBytes = 0
            return
        }
        guard let stored = Self.number(block[148..<156]), Self.checksums(block).contains(stored) else {
            throw error("corrupt header (checksum mismatch)")
        }
        guard let size = Self.number(block[124..<136]), size >= 0 else { throw error("corrupt header (invalid size field)") }
        let flag = block[156]
        switch flag {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            guard size <= Self.maxExtendedHeader else {
                throw error("an extended header of \(size) bytes exceeds the limit of \(Self.maxExtendedHeader)")
            }
            extendedType = flag
            extended.removeAll(keepingCapacity: true)
            padAfterExtended = Int((512 - size % 512) % 512)
            if size == 0 { try finishExtended() } else { state = .extended(left: Int(size)) }
        default:
            try beginEntry(flag: flag, headerSize: size)
        }
    }

    private func finishExtended() throws {
        switch extendedType {
        case UInt8(ascii: "x"): try parsePAX(extended)
        case UInt8(ascii: "g"): break
        case UInt8(ascii: "L"): gnuLongName = try Self.gnuString(extended, error("a NUL byte inside a GNU long name"))
        default: gnuLongLink = try Self.gnuString(extended, error("a NUL byte inside a GNU long link name"))
        }
        state = padAfterExtended > 0 ? .padding(left: padAfterExtended) : .header
    }

    /// GNU long names end with NULs; one inside the name is refused (Go cuts there, libarchive too).
    private static func gnuString(_ body: [UInt8], _ failure: ArchiveError) throws -> [UInt8] {
        var s = body[...]
        while s.last == 0 { s = s.dropLast() }
        if s.contains(0) { throw failure }
        return Array(s)
    }

    private func parsePAX(_ body: [UInt8]) throws {
        var i = 0
        while i < body.count {
            guard let sp = body[i...].firstIndex(of: UInt8(ascii: " ")),
                  let len = Int(String(decoding: body[i..<sp], as: UTF8.self)), len > sp - i + 1, i + len <= body.count,
                  body[i + len - 1] == UInt8(ascii: "\n"),
                  let eq = body[(sp + 1)..<(i + len)].firstIndex(of: UInt8(ascii: "="))
            else { throw error("malformed PAX record at offset \(i) of an extended header") }
            let key = Array(body[(sp + 1)..<eq])
            let value = Array(body[(eq + 1)..<(i + len - 1)])
            switch String(decoding: key, as: UTF8.self) {
            case "path":
                if value.contains(0) { throw error("a NUL byte inside the PAX path '\(Bytes.string(value.prefix { $0 != 0 }))'") }
                paxPath = value
            case "linkpath":
                if value.contains(0) { throw error("a NUL byte inside the PAX linkpath '\(Bytes.string(value.prefix { $0 != 0 }))'") }
                paxLinkPath = value
            case "GNU.sparse.name":
                // PAX sparse files (GNU 1.0) keep their real name here; the header's is made up.
                if value.contains(0) { throw error("a NUL byte inside the PAX GNU.sparse.name") }
                sparseName = value
            case "size":
                guard let v = Int64(String(decoding: value, as: UTF8.self)), v >= 0 else { throw error("invalid PAX size '\(Bytes.string(value))'") }
                paxSize = v
            default: break
            }
            i += len
        }
    }

    private func beginEntry(flag: UInt8, headerSize: Int64) throws {
        // The entry's name: PAX path, else GNU long name, else USTAR prefix + name.
        var stored = Array(block[0..<100].prefix { $0 != 0 })
        let magic = Array(block[257..<263])
        if magic == Bytes.of("ustar") + [0], block[345] != 0 {
            stored = Array(block[345..<500].prefix { $0 != 0 }) + [UInt8(ascii: "/")] + stored
        }
        if let pax = paxPath, let gnu = gnuLongName, pax != gnu {
            throw error("ambiguous name: a GNU long name '\(Bytes.string(gnu))' and a PAX path '\(Bytes.string(pax))'", entry: Bytes.string(pax))
        }
        if let pax = paxLinkPath, let gnu = gnuLongLink, pax != gnu {
            throw error("ambiguous link name: a GNU long link '\(Bytes.string(gnu))' and a PAX linkpath '\(Bytes.string(pax))'", entry: Bytes.string(paxPath ?? gnuLongName ?? stored))
        }
        let name = sparseName ?? paxPath ?? gnuLongName ?? stored
        entries += 1
        lastName = Bytes.string(name)
        var size = paxSize ?? headerSize
        if Self.isHeaderOnly(flag) { size = 0 }
        paxPath = nil; paxLinkPath = nil; paxSize = nil; sparseName = nil; gnuLongName = nil; gnuLongLink = nil
        pendingName = name
        pendingSize = size
        recorder?.entry(name: name)
        // Old GNU sparse files carry their map in extension blocks after the header.
        if flag == UInt8(ascii: "S") && block[482] != 0 {
            state = .sparseExtension
            return
        }
        try startPayload()
    }

    private var pendingName: [UInt8] = []
    private var pendingSize: Int64 = 0

    private func startPayload() throws {
        crc = 0
        if recorder != nil, pendingSize > 0 { try recorder!.beginFile(name: pendingName, size: pendingSize) }
        if pendingSize == 0 {
            state = .header
        } else {
            state = .payload(left: pendingSize)
        }
    }

    private func endPayload() throws {
        try recorder?.endFile(crc: crc)
        let pad = Int((512 - pendingSize % 512) % 512)
        state = pad > 0 ? .padding(left: pad) : .header
    }

    // MARK: header fields

    /// Octal (NUL/space terminated) or base-256 (GNU) numeric field.
    static func number(_ field: ArraySlice<UInt8>) -> Int64? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            if first == 0xFF { return nil }  // negative
            var v: Int64 = Int64(first & 0x3F)
            for b in field.dropFirst() {
                if v > (Int64.max >> 8) { return nil }
                v = v << 8 | Int64(b)
            }
            return v
        }
        var v: Int64 = 0
        var seen = false
        for b in field {
            if b == 0 || b == UInt8(ascii: " ") { if seen { break } else { continue } }
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "7"), v <= (Int64.max >> 3) else { return nil }
            v = v << 3 | Int64(b - UInt8(ascii: "0"))
            seen = true
        }
        return v
    }

    /// The unsigned and signed sums of a header with its checksum field taken as spaces.
    static func checksums(_ b: [UInt8]) -> [Int64] {
        var u: Int64 = 0
        var s: Int64 = 0
        for (i, x) in b.enumerated() {
            let v = (148..<156).contains(i) ? UInt8(ascii: " ") : x
            u += Int64(v)
            s += Int64(Int8(bitPattern: v))
        }
        return [u, s]
    }
}

/// A thread that runs a stream's `produce()` ahead of its parser: chunks are copied into a
/// ring of four buffers (so at most four chunks, about 4 MiB, are ahead), handed over in order.
/// An input whose chunks outlive the ring's (gzip's inflater turns over its buffers) is not
/// copied: the ring holds its chunks as they are.
final class ReadAhead: Sendable {
    private struct Slot {
        var buffer: UnsafeMutableRawPointer? = nil
        var capacity = 0
        var count = 0
        var bytesRead: Int64 = 0
        /// The chunk itself, not a copy (the input's; never freed here).
        var borrowed: UnsafeRawPointer? = nil
    }
    /// Chunks alive at once: the parser's, three in the ring, and the one just produced.
    static let inFlight = 5
    private struct Ring {
        var slots = [Slot](repeating: Slot(), count: 4)
        var filled = 0            // slots produced (in order)
        var taken = 0             // slots the consumer took; the last one is in use until the next take
        var finished = false
        var stopped = false
    }
    private let ring = Condition(Ring())

    /// nil when no thread can be started: the stream then reads on the parser's thread.
    init?(_ stream: TarStream) {
        // Detached: the thread holds the stream (and its own copy of the input descriptor) until
        // it has finished, so letting a stream go mid-way never waits on a blocked read.
        guard let thread = try? SystemThread({ [self] in self.run(stream) }) else { return nil }
        thread.detach()
    }

    deinit {
        ring.withLock { for s in $0.slots { s.buffer?.deallocate() } }
    }

    private func run(_ stream: TarStream) {
        let borrow = stream.chunksStayValid >= Self.inFlight
        while true {
            let stop = ring.withLock { $0.stopped }
            let chunk = stop ? UnsafeRawBufferPointer(start: nil, count: 0) : stream.produce()
            // A slot is free when the consumer has moved past it (the one it holds is not free).
            let free = ring.wait(until: { $0.stopped || $0.filled - $0.taken < $0.slots.count - 1 }) { r -> Slot? in
                if r.stopped || chunk.count == 0 {
                    r.finished = true
                    return nil
                }
                return r.slots[r.filled % r.slots.count]
            }
            guard var slot = free else {
                ring.broadcast()
                return
            }
            // The slot is the producer's alone until `filled` moves past it.
            if borrow {
                slot.borrowed = chunk.baseAddress
            } else if slot.capacity < chunk.count {
                slot.buffer?.deallocate()
                slot.buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk.count, alignment: 64)
                slot.capacity = chunk.count
            }
            if !borrow { slot.buffer!.copyMemory(from: chunk.baseAddress!, byteCount: chunk.count) }
            slot.count = chunk.count
            slot.bytesRead = stream.producedBytes
            ring.withLock {
                $0.slots[$0.filled % $0.slots.count] = slot
                $0.filled += 1
            }
            ring.broadcast()
        }
    }

    /// The next chunk and the bytes read up to it; nil at the end (the thread has finished).
    func take() -> (UnsafeRawBufferPointer, Int64)? {
        let slot = ring.wait(until: { $0.taken != $0.filled || $0.finished }) { r -> Slot? in
            if r.taken == r.filled { return nil }
            defer { r.taken += 1 }
            return r.slots[r.taken % r.slots.count]
        }
        guard let slot else { return nil }
        ring.broadcast()
        return (UnsafeRawBufferPointer(start: slot.borrowed ?? UnsafeRawPointer(slot.buffer), count: slot.count), slot.bytesRead)
    }

    /// Stop the thread: it reads no further chunk once this returns.
    func stop() {
        ring.withLock { $0.stopped = true }
        ring.broadcast()
    }
}
