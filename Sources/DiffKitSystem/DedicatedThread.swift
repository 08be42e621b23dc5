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
                do {
                    try SystemThread { continuation.resume(with: Result { try work(isCancelled) }) }.detach()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
        }
    }
}
