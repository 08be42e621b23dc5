// Shared state behind a lock: Swift's `Synchronization.Mutex`, with its hand-overs made visible
// to ThreadSanitizer, so that CI's sanitized run reports real races and only those.
import CDiffKitSystem
import Synchronization

/// `State` that threads share, reached only with the lock held (`withLock`).
///
/// A `Synchronization.Mutex` inside; the lock and unlock are also announced to ThreadSanitizer
/// (a no-op outside a `--sanitize=thread` build), which cannot see the Mutex's hand-over through
/// the kernel on Linux and would otherwise report every contended section as a race.
package final class Locked<State>: Sendable {
    private let mutex: Mutex<State>

    package init(_ state: sending State) {
        mutex = Mutex(state)
    }

    /// Run `body` on the state with the lock held.
    package func withLock<R>(_ body: (inout sending State) throws -> sending R) throws -> sending R {
        let me = Unmanaged.passUnretained(self).toOpaque()
        return try mutex.withLock { state in
            dk_tsan_acquire(me)
            defer { dk_tsan_release(me) }
            return try body(&state)
        }
    }

    /// Run `body` on the state with the lock held (a body that cannot throw).
    package func withLock<R>(_ body: (inout sending State) -> sending R) -> sending R {
        let me = Unmanaged.passUnretained(self).toOpaque()
        return mutex.withLock { state in
            dk_tsan_acquire(me)
            defer { dk_tsan_release(me) }
            return body(&state)
        }
    }
}
