// EntryPath: the one type for a path inside a layer at the public boundary.

/// A path inside a layer — a tar entry's name, a change's path — relative, with no leading `/`.
///
/// It keeps the bytes the layer holds: a name need not be UTF-8, and it is never normalised (a
/// `FilePath` would fold `a//b` and drop a trailing `/`, which a tar entry's name must keep as
/// written). Host paths are `FilePath`; paths inside a layer are `EntryPath`.
public struct EntryPath: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The path's bytes, as the layer holds them.
    public var bytes: [UInt8]

    /// The path made of `bytes`.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// The path spelled by `string` (its UTF-8 bytes).
    public init(_ string: String) { bytes = Array(string.utf8) }
    /// The path spelled by a string literal.
    public init(stringLiteral value: String) { self.init(value) }

    /// A printable form (invalid UTF-8 replaced): for messages, never for I/O.
    public var description: String { String(decoding: bytes, as: UTF8.self) }
    /// The path's components (split at `/`, empty ones dropped).
    public var components: [EntryPath] {
        bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map { EntryPath(Array($0)) }
    }

    /// Byte order: the order changes are delivered and layer tars are written in.
    public static func < (a: EntryPath, b: EntryPath) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
