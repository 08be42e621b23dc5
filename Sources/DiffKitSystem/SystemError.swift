// A failed system call, as it crosses the module boundary: the errno and the path.
import SystemPackage

/// A failed system call: what was being done, to which path, and the errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    /// What was being done (`open`, `write`, `mknod`, …).
    public var operation: String
    /// The path it was done to, printable.
    public var path: String
    /// The error number the call returned.
    public var errno: Errno

    /// An error of `operation` on `path` with `errno`.
    public init(_ operation: String, _ path: String, _ errno: Errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// An error of `operation` on a byte path with a raw errno value.
    public init(_ operation: String, _ path: [UInt8], errno code: Int32) {
        self.init(operation, Bytes.string(path), Errno(rawValue: code))
    }

    /// `PATH: OPERATION: ERRNO`, one line.
    public var description: String { "\(path): \(operation): \(errno)" }
}
