// Content compares (continuity's rule) for files whose stat cannot tell: queued by the walks as
// tickets, worked off in ticket order by a thread of their own, and taken over by the thread
// that needs a result first, so a result is never waited for while nobody works on it.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Whether two files of the same size hold the same bytes, for the walks of one `changes` run.
///
/// A job is a ticket; ``resolve(_:)`` gives its outcome, running the job on the calling thread
/// when no worker has taken it yet. Only tickets not yet resolved are kept, so memory follows
/// how far the walk runs ahead of the ordering, not the size of the tree.
final class ContentComparer: Sendable {
    struct Job: Sendable {
        var old: [UInt8]
        var new: [UInt8]
        var size: Int64
    }

    private struct Queue {
        var waiting: [Int: Job] = [:]           // not taken by anyone yet
        var order: [Int] = []                   // tickets in the order they came (some taken since)
        var head = 0
        var done: [Int: Result<Bool, Error>] = [:]
        var next = 0
        var closed = false
    }
    private let queue = Condition(Queue())

    init() {}

    /// Queue a compare; the ticket to ask for its outcome.
    func add(_ job: Job) -> Int {
        let ticket = queue.withLock { q in
            let t = q.next
            q.next += 1
            q.waiting[t] = job
            q.order.append(t)
            return (t, q.order.count - q.head >= Self.batch)
        }
        if ticket.1 { queue.signal() }
        return ticket.0
    }

    /// Whether the outcome of `ticket` is known.
    func isDone(_ ticket: Int) -> Bool {
        queue.withLock { $0.done[ticket] != nil }
    }

    /// The outcome of `ticket` (same content or not), once: run here if nobody has taken it,
    /// else waited for.
    func resolve(_ ticket: Int, buffers: CompareBuffers) throws -> Bool {
        let mine = queue.withLock { $0.waiting.removeValue(forKey: ticket) }
        if let job = mine {
            return try Self.sameContent(job, buffers)
        }
        return try queue.wait(until: { $0.done[ticket] != nil }) { $0.done.removeValue(forKey: ticket)! }.get()
    }

    /// Run the oldest job nobody has taken, on the calling thread (one waiting for something
    /// else); false if there was none.
    func runNext(buffers: CompareBuffers) -> Bool {
        guard let (ticket, job) = queue.withLock({ Self.take(&$0) }) else { return false }
        let outcome = Result { try Self.sameContent(job, buffers) }
        queue.withLock { $0.done[ticket] = outcome }
        queue.broadcast()
        return true
    }

    private static func take(_ q: inout Queue) -> (Int, Job)? {
        while q.head < q.order.count {
            let t = q.order[q.head]
            q.head += 1
            if q.head == q.order.count {
                q.order.removeAll(keepingCapacity: true)
                q.head = 0
            }
            if let job = q.waiting.removeValue(forKey: t) { return (t, job) }
        }
        return nil
    }

    /// No more jobs will come: the worker stops.
    func close() {
        queue.withLock { $0.closed = true }
        queue.broadcast()
    }

    /// A worker that ran out of jobs sleeps until this many wait (a thread woken for each job
    /// costs more than the job); the few left at the end are taken by whoever asks for them.
    static let batch = 16

    /// Take and run jobs in ticket order until ``close()``.
    func work() {
        let buffers = CompareBuffers()
        while true {
            var taken = queue.withLock { Self.take(&$0) }
            if taken == nil {
                taken = queue.wait(until: { $0.order.count - $0.head >= Self.batch || $0.closed }) { Self.take(&$0) }
            }
            guard let (ticket, job) = taken else {
                if queue.withLock({ $0.closed }) { return }
                continue
            }
            let outcome = Result { try Self.sameContent(job, buffers) }
            queue.withLock { $0.done[ticket] = outcome }
            queue.broadcast()
        }
    }

    /// Both files have `job.size` bytes by their stat; read exactly that much (no read for EOF).
    static func sameContent(_ job: Job, _ buffers: CompareBuffers) throws -> Bool {
        let bufA = buffers.a, bufB = buffers.b
        let a = try Sys.open(job.old, O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(a) }
        let b = try Sys.open(job.new, O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(b) }
        var left = job.size
        while left > 0 {
            let want = Int(min(Int64(CompareBuffers.size), left))
            let na = try readFull(a, bufA, want, job.old)
            let nb = try readFull(b, bufB, want, job.new)
            if na != nb || memcmp(bufA, bufB, na) != 0 { return false }
            if na < want { return true }
            left -= Int64(na)
        }
        return true
    }

    static func readFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ shown: [UInt8]) throws -> Int {
        var got = 0
        while got < count {
            let n = try Sys.read(fd, buf + got, count - got, shown: shown)
            if n == 0 { break }
            got += n
        }
        return got
    }
}

/// The two read buffers of one thread's content compares.
final class CompareBuffers {
    static let size = 1 << 18
    let a = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    let b = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)

    deinit {
        a.deallocate()
        b.deallocate()
    }
}
