// The layer output's hand-over: a TarWriter writing to the layer output's pipe gives its filled
// buffers to the output's thread by reference (no copy of every byte through the pipe), and takes
// an empty one back. The pipe stays for anything else written to that descriptor (a byte-exact
// reassembly, a caller's own bytes): a thread of the output reads it into the same buffers, so the
// output sees one ordered stream either way. Both at once cannot be ordered, and fail.
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Fixed buffers going round between whoever fills them (a TarWriter, the pipe's reader) and the
/// layer output's thread that hashes, compresses and writes them.
final class OutputChannel: @unchecked Sendable {
    // @unchecked: every mutable field is in `state`, reached only through its lock; a buffer's
    // bytes belong to one thread at a time, handed over under that lock.

    /// Where a buffer came from.
    enum Source { case writer, pipe }

    /// A filled buffer: `count` bytes at `base`; `written` when they already reached the output.
    struct Filled {
        var base: UnsafeMutableRawPointer
        var count: Int
        var written: Bool
    }

    private struct State {
        var free: [UnsafeMutableRawPointer] = []
        var filled: [Filled] = []
        /// Sources still submitting; the consumer ends when none is left and nothing is queued.
        var open = 2
        var used: Set<Source> = []
        var failure: Error?
    }

    let bufferSize: Int
    /// The descriptor the finished stream goes to (a writer may write its buffers there itself).
    let output: Int32
    /// Uncompressed output: the filling thread writes its buffer to `output` before handing it
    /// over, so the write's copy is paid by the producer and the hash by the other core.
    let writerWrites: Bool
    private let all: [UnsafeMutableRawPointer]
    private let state: Condition<State>

    /// Eight buffers: runs of small files (the producer slow, the hash starved) and of large ones
    /// (the other way round) alternate; four carried too little across them (export with digests
    /// 134 -> 124 ms on the real base, RSS 20 -> 23 MiB).
    init(output: Int32, writerWrites: Bool, buffers: Int = 8, bufferSize: Int = 1 << 20) {
        self.output = output
        self.writerWrites = writerWrites
        self.bufferSize = bufferSize
        all = (0..<buffers).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096) }
        state = Condition(State(free: all))
    }

    deinit { for b in all { b.deallocate() } }

    // MARK: the descriptors served

    private static let attached = Locked<[Int32: OutputChannel]>([:])

    /// The channel serving `fd` (a layer output's pipe), if any.
    static func serving(_ fd: Int32) -> OutputChannel? {
        attached.withLock { $0[fd] }
    }

    /// Serve `fd` until `detach(from:)`, which must come before `fd` is closed.
    func attach(to fd: Int32) {
        Self.attached.withLock { $0[fd] = self }
    }

    func detach(from fd: Int32) {
        _ = Self.attached.withLock { $0.removeValue(forKey: fd) }
    }

    // MARK: filling side

    /// An empty buffer, waiting for one if all are in use.
    func take() -> UnsafeMutableRawPointer {
        state.wait(until: { !$0.free.isEmpty }) { $0.free.removeLast() }
    }

    /// Give back a buffer without contents.
    func giveBack(_ buffer: UnsafeMutableRawPointer) {
        state.withLock { $0.free.append(buffer) }
        state.broadcast()
    }

    /// Hand over `count` bytes of `buffer` from `source`. Throws the consumer's failure (the buffer
    /// is then taken back unused), or an error when both sources have written.
    func submit(_ buffer: UnsafeMutableRawPointer, count: Int, written: Bool, from source: Source) throws {
        try state.withLock { s in
            if s.failure == nil {
                s.used.insert(source)
                if s.used.count > 1 {
                    s.failure = ArchiveError(archive: "layer output", entry: nil, errno: 0,
                                             message: "written both by a tar writer and through its pipe; the order is lost")
                }
            }
            if let f = s.failure {
                s.free.append(buffer)
                throw f
            }
            s.filled.append(Filled(base: buffer, count: count, written: written))
        }
        state.broadcast()
    }

    /// No more buffers from `source`.
    func end(_ source: Source) {
        state.withLock { $0.open -= 1 }
        state.broadcast()
    }

    /// The consumer's failure, if it has failed.
    var failure: Error? { state.withLock { $0.failure } }

    // MARK: consuming side

    /// The next filled buffer in order, or nil once every source has ended and all is consumed.
    func next() -> Filled? {
        state.wait(until: { !$0.filled.isEmpty || $0.open == 0 }) { s in
            s.filled.isEmpty ? nil : s.filled.removeFirst()
        }
    }

    /// A consumed buffer goes back to the free ones.
    func consumed(_ f: Filled) { giveBack(f.base) }

    /// The consumer failed: every later submission is refused with `error` (the first is kept).
    func fail(_ error: Error) {
        state.withLock { s in if s.failure == nil { s.failure = error } }
        state.broadcast()
    }
}
