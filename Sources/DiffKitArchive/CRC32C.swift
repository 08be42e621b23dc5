// CRC32C: the Castagnoli checksum a tar-split record keeps of each file's content.
import DiffKitSystem
import CDiffKitArchive
#if canImport(Glibc)
import Glibc
#endif

/// CRC-32C (Castagnoli), the checksum a tar-split record keeps of each file's content.
public enum CRC32C {
    /// `crc` updated with the bytes of `p` (start with 0).
    public static func update(_ crc: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        p.count == 0 ? crc : dk_crc32c(crc, p.baseAddress, p.count)
    }

    /// The same by table only (the path of CPUs without SSE4.2); tests compare the two.
    package static func updateByTable(_ crc: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        p.count == 0 ? crc : dk_crc32c_table(crc, p.baseAddress, p.count)
    }
}
