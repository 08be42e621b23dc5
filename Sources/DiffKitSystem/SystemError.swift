// A failed system call, as it crosses the module boundary: the errno and the path.
import SystemPackage

/// A failed system call: what was being done, to which path, and the errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String
    public var errno: Errno

    public init(_ operation: String, _ path: String, _ errno: Errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public init(_ operation: String, _ path: [UInt8], errno code: Int32) {
        self.init(operation, Bytes.string(path), Errno(rawValue: code))
    }

    public var description: String { "\(path): \(operation): \(errno)" }
}
