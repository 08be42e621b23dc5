// Blocking work for async callers: a long synchronous job (an apply, an export) run on a thread
// of its own, so it never holds one of the few threads of Swift's cooperative pool, and told
// when the awaiting task is cancelled.
import CDiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Runs a blocking job on a new thread for an awaiting task.
public enum DedicatedThread {
    /// Run `work` on a thread of its own and await its result. `work` is given a check that
    /// becomes true once the awaiting task is cancelled (at once if it already is); the job asks
    /// it between its steps and ends with `CancellationError`. The result (or error) is the job's.
    public static func run<R: Sendable>(
        _ work: @escaping @Sendable (_ isCancelled: @escaping @Sendable () -> Bool) throws -> R
    ) async throws -> R {
        let cancelled = Locked(false)
        let isCancelled: @Sendable () -> Bool = { cancelled.withLock { $0 } }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<R, any Error>) in
                let started = start { continuation.resume(with: Result { try work(isCancelled) }) }
                if started != 0 { continuation.resume(throwing: SystemError("pthread_create", [], errno: started)) }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
        }
    }

    private final class Job: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Start a detached thread running `body`; pthread_create's result (0: started).
    private static func start(_ body: @escaping @Sendable () -> Void) -> Int32 {
        let context = Unmanaged.passRetained(Job(body)).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { context in
            Unmanaged<Job>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<Job>.fromOpaque(context).release()
            return r
        }
        pthread_detach(thread)
        return 0
    }
}
