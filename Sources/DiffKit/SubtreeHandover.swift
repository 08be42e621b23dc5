// The second core of a naive diff: the first walk hands a subtree it will reach later to a
// second thread, which walks it at once into a bounded channel; the first walk takes the events
// from the channel when it gets there, so the order is the one-thread order.
import DiffKitArchive
import DiffKitSystem

/// Subtrees given by the first walk of a `changes` run to a second thread, one at a time, and
/// only when that thread waits for work.
final class SubtreeHandover: Sendable {
    private struct Job: @unchecked Sendable {   // the descriptors go with it to the other thread
        let old: WalkDir?
        let new: WalkDir
        let channel: SubtreeChannel
    }
    private struct Shared {
        var job: Job?
        var idle = false
        var stopped = false
        var current: SubtreeChannel?
    }
    private let walk: DiffWalk
    private let shared = Condition(Shared())

    /// A second thread walking as `walk` does (it hands nothing further over).
    init(_ walk: DiffWalk) {
        var w = walk
        w.handover = nil
        self.walk = w
    }

    /// Give `descent` of the directories `old`/`new` to the second thread if it waits for work:
    /// the channel its events will come through, or nil (then the caller walks it).
    func offer(_ descent: DiffWalk.Descent, old: WalkDir?, new: WalkDir) throws -> SubtreeChannel? {
        guard shared.withLock({ $0.idle && $0.job == nil && !$0.stopped }) else { return nil }
        guard let nd = try? walk.openChild(new, descent.name) else { return nil }
        var od: WalkDir?
        if descent.pair, let old {
            guard let o = try? walk.openChild(old, descent.name) else {
                Sys.close(nd.fd)
                return nil
            }
            od = o
        }
        let channel = SubtreeChannel()
        shared.withLock { $0.job = Job(old: od, new: nd, channel: channel) }
        shared.signal()
        return channel
    }

    /// The second thread: walk what is handed over until ``stop()``.
    func work() {
        let buffers = CompareBuffers()
        shared.withLock { $0.idle = true }
        while true {
            // Waiting for a subtree, compare contents meanwhile.
            while shared.withLock({ $0.job == nil && !$0.stopped }) && walk.comparer.runNext(buffers: buffers) {}
            let next = shared.wait(until: { $0.job != nil || $0.stopped }) { s -> Job? in
                s.idle = false
                guard !s.stopped, let job = s.job else { return nil }
                s.job = nil
                s.current = job.channel
                return job
            }
            guard let job = next else { return }
            var failure: Error?
            do {
                if let old = job.old {
                    try walk.compare(old: old, new: job.new, only: nil, into: job.channel)
                } else {
                    try walk.addAll(job.new, into: job.channel)
                }
            } catch {
                failure = error
            }
            if let old = job.old { Sys.close(old.fd) }
            Sys.close(job.new.fd)
            job.channel.finish(failure)
            shared.withLock {
                $0.current = nil
                $0.idle = true
            }
        }
    }

    /// No more work: the thread ends; a subtree it is walking that nobody will read is dropped.
    func stop() {
        let (job, current) = shared.withLock { s in
            s.stopped = true
            defer { s.job = nil }
            return (s.job, s.current)
        }
        if let job {
            if let old = job.old { Sys.close(old.fd) }
            Sys.close(job.new.fd)
        }
        current?.abandon()
        shared.broadcast()
    }
}

/// The events of one handed-over subtree, from the thread walking it to the walk that will
/// report them: at most `capacity` at a time (the walker waits), an unchanged directory with
/// nothing below it dropped at once.
final class SubtreeChannel: DiffEventSink, Sendable {
    private struct State {
        var events = Ring<DiffEvent>()
        var finished = false
        var failure: Error?
        var abandoned = false
    }
    private let capacity: Int
    private let state = Condition(State())

    /// Thrown to the walking thread when nobody will read its events.
    struct Abandoned: Error {}

    init(capacity: Int = 16384) {
        self.capacity = capacity
    }

    func helpWhileWaiting() -> Bool { false }

    func put(_ event: DiffEvent) throws {
        let dropped = try state.wait(until: { $0.events.count < self.capacity || $0.abandoned }) { s -> Bool in
            if s.abandoned { throw Abandoned() }
            if case .leave = event, case .enter = s.events.last {
                _ = s.events.removeLast()
                return true
            }
            s.events.append(event)
            return false
        }
        if !dropped { state.signal() }
    }

    /// The walk of the subtree ended (with `failure`, if it failed).
    func finish(_ failure: Error?) {
        state.withLock {
            $0.finished = true
            $0.failure = failure
        }
        state.signal()
    }

    /// Put every event into `sink` as they come, until the walk of the subtree ends; its error is thrown.
    func drain(into sink: DiffEventSink) throws {
        while true {
            while state.withLock({ $0.events.isEmpty && !$0.finished }) && sink.helpWhileWaiting() {}
            let (batch, done, failure) = state.wait(until: { !$0.events.isEmpty || $0.finished }) { s in
                var batch: [DiffEvent] = []
                batch.reserveCapacity(s.events.count)
                while !s.events.isEmpty { batch.append(s.events.removeFirst()) }
                return (batch, s.finished, s.failure)
            }
            state.signal()
            for e in batch { try sink.put(e) }
            if done {
                if let failure { throw failure }
                return
            }
        }
    }

    /// Nobody will read: the walker's next `put` throws.
    func abandon() {
        state.withLock { $0.abandoned = true }
        state.broadcast()
    }
}
