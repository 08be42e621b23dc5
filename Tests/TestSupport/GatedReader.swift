// A LayerReader that stops at a gate: it serves its bytes until `gate`, then blocks until the
// test opens it, so a test can cancel an operation while it is known to be mid-way.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

public final class GatedReader: LayerReader {
    private struct State {
        var offset = 0
        var reachedGate = false
        var open = false
    }
    private let bytes: [UInt8]
    private let gate: Int
    private let state = Locked(State())

    /// Serve `bytes`, blocking at offset `gate` until `open()`.
    public init(_ bytes: [UInt8], gate: Int) {
        self.bytes = bytes
        self.gate = gate
    }

    /// True once a read has stopped at the gate.
    public var reachedGate: Bool { state.withLock { $0.reachedGate } }

    /// Let the reads go on.
    public func open() { state.withLock { $0.open = true } }

    /// Up to 4 KiB from the current offset; blocks at the gate until `open()`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n: Int? = state.withLock { s in
                if s.offset >= gate && !s.open {
                    s.reachedGate = true
                    return nil
                }
                let end = s.open ? bytes.count : gate
                let n = min(4096, buffer.count, end - s.offset)
                bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + s.offset, byteCount: n) }
                s.offset += n
                return n
            }
            if let n { return n }
            usleep(1000)
        }
    }
}
