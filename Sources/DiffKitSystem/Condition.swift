// A value that threads share and wait on: the one producer/consumer primitive of the project.
// Plain shared state uses `Locked` (a Synchronization.Mutex); this adds what a Mutex has not, a condition
// variable, for the read-ahead ring, the pair walk and the content compares.
#if canImport(Glibc)
import Glibc
#endif

/// `State` guarded by a mutex, with a condition variable to wait until it is ready.
///
/// Every access to the state is inside `withLock` or `wait(until:then:)`; after a change that
/// another thread may wait for, call `signal()` or `broadcast()`.
// @unchecked: `state` is only read or written with `mutex` held (every path below locks it).
package final class Condition<State>: @unchecked Sendable {
    // Heap-allocated, so the pthread objects never move (a Swift stored property may).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State
    private var waiting = 0

    package init(_ state: State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Run `body` on the state with the lock held.
    package func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Wait until `ready` holds for the state, then run `body` on it, the lock held throughout.
    package func wait<R>(until ready: (State) -> Bool, then body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(state) {
            waiting += 1
            pthread_cond_wait(cond, mutex)
            waiting -= 1
        }
        return try body(&state)
    }

    /// Run `body` with the lock held and the number of threads waiting in `wait(until:then:)`.
    package func withLockCountingWaiters<R>(_ body: (inout State, _ waiting: Int) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state, waiting)
    }

    /// Wake one waiting thread.
    package func signal() { pthread_cond_signal(cond) }

    /// Wake every waiting thread.
    package func broadcast() { pthread_cond_broadcast(cond) }
}
