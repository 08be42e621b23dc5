// A thread of its own for blocking work: the one place the project starts a pthread. Dispatch's
// pool is not used for jobs that block (a pipe's other end, a send ioctl, a whole apply): on 2
// cores a pool full of blocked jobs waits about a second before it grows.
#if canImport(Glibc)
import Glibc
#endif

/// A started thread, to be joined (`join`) or left to finish on its own (`detach`).
package struct SystemThread: ~Copyable {
    private let thread: pthread_t

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Start a thread running `body`; throws a ``SystemError`` naming `shown` if none can be made.
    package init(shown: [UInt8] = [], _ body: @escaping () -> Void) throws {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            throw SystemError("pthread_create", shown, errno: r)
        }
        self.thread = thread
    }

    /// A thread neither joined nor detached is detached: it finishes on its own.
    deinit { pthread_detach(thread) }

    /// Wait for the thread to finish.
    package consuming func join() {
        pthread_join(thread, nil)
        discard self
    }

    /// Let the thread finish on its own.
    package consuming func detach() {}

    /// Make a write to a pipe whose reader is gone fail with EPIPE on the calling thread instead
    /// of killing the process with SIGPIPE (for a thread that writes a pipe another thread reads,
    /// which may stop reading on an error of its own). The process's signal handling is left as
    /// it is: a SIGPIPE raised by such a write is directed at this thread and dropped with it.
    package static func blockSIGPIPE() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
