// SHA-256 digests (diffIDs, blob digests) through the system's libcrypto.
import CCrypto
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 through libcrypto (its SHA256_* functions: no EVP set-up).
public final class SHA256 {
    private var ctx = SHA256_CTX()

    /// A new digest.
    public init() {
        SHA256_Init(&ctx)
    }

    /// Add bytes to the digest.
    public func update(_ p: UnsafeRawBufferPointer) {
        if p.count > 0 { SHA256_Update(&ctx, p.baseAddress, p.count) }
    }

    /// `sha256:<hex>`.
    public func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        SHA256_Final(&out, &ctx)
        return "sha256:" + out.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// `sha256:<hex>` of a file's content, read in 1 MiB chunks.
    public static func ofFile(_ path: [UInt8]) throws -> String {
        let fd = try Sys.open(path, O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        let h = SHA256()
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        while true {
            let n = try Sys.read(fd, buf, 1 << 20, shown: path)
            if n == 0 { return h.finish() }
            h.update(UnsafeRawBufferPointer(start: buf, count: n))
        }
    }

    /// `sha256:<hex>` of a byte array.
    public static func hex(_ bytes: [UInt8]) -> String {
        let h = SHA256()
        bytes.withUnsafeBytes { h.update($0) }
        return h.finish()
    }
}
