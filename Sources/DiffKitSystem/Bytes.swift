// Byte strings: paths and names are bytes on Linux.

/// Byte strings: paths and names are bytes on Linux, never assumed to be UTF-8.
public enum Bytes {
    /// A printable form for messages (invalid UTF-8 is replaced, never used for I/O).
    public static func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
    /// A printable form of any byte sequence for messages (invalid UTF-8 is replaced).
    public static func string<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        String(decoding: Array(bytes), as: UTF8.self)
    }
    /// The UTF-8 bytes of a string.
    public static func of(_ s: String) -> [UInt8] { Array(s.utf8) }
}
