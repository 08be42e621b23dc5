// Errors that cross the module boundary: a syscall failure keeps the errno and the path,
// an archive failure keeps libarchive's errno and message and the entry it was on.
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

/// A tar stream that could not be read or written.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    /// The archive (file name, or "stdin"/"stdout").
    public var archive: String
    /// The entry being read or written when it failed, if any.
    public var entry: String?
    /// libarchive's errno (`archive_errno`), or 0 when the error is DiffKit's own.
    public var errno: Int32
    public var message: String

    public init(archive: String, entry: String?, errno: Int32, message: String) {
        self.archive = archive
        self.entry = entry
        self.errno = errno
        self.message = message
    }

    public var description: String {
        var s = archive
        if let entry { s += ": entry \(entry)" }
        s += ": \(message)"
        if errno != 0 { s += " (errno \(errno))" }
        return s
    }
}

/// Byte strings: paths and names are bytes on Linux, never assumed to be UTF-8.
public enum Bytes {
    /// A printable form for messages (invalid UTF-8 is replaced, never used for I/O).
    public static func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
    public static func string<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        String(decoding: Array(bytes), as: UTF8.self)
    }
    public static func of(_ s: String) -> [UInt8] { Array(s.utf8) }
}
