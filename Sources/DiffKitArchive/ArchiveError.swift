// A tar stream that could not be read or written: libarchive's errno and message, and the entry
// it was on.

/// A tar stream that could not be read or written.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    /// The archive (file name, or "stdin"/"stdout").
    public var archive: String
    /// The entry being read or written when it failed, if any.
    public var entry: String?
    /// libarchive's errno (`archive_errno`), or 0 when the error is DiffKit's own.
    public var errno: Int32
    /// What went wrong, in words.
    public var message: String
    /// The error that caused this one, when it came from elsewhere (a caller's `LayerReader`, a
    /// system call); `message` already describes it.
    public var underlying: (any Error)?

    /// An error reading or writing `archive`, at `entry` if any; `underlying` is its cause, if any.
    public init(archive: String, entry: String?, errno: Int32, message: String, underlying: (any Error)? = nil) {
        self.archive = archive
        self.entry = entry
        self.errno = errno
        self.message = message
        self.underlying = underlying
    }

    /// `ARCHIVE: entry ENTRY: MESSAGE (errno N)`, one line.
    public var description: String {
        var s = archive
        if let entry { s += ": entry \(entry)" }
        s += ": \(message)"
        if errno != 0 { s += " (errno \(errno))" }
        return s
    }
}
