// The checksums the byte-exact export relies on: the CRC-32C of three interleaved chains gives what
// the plain table gives, at every length and alignment and across every block boundary.
import DiffKitArchive
import Testing

@Suite struct ChecksumTests {
    /// Bytes of a fixed pseudo-random sequence.
    static func bytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed | 1
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    @Test func knownValue() {
        // The check value of CRC-32C (RFC 3720's "123456789").
        let v = Array("123456789".utf8).withUnsafeBytes { CRC32C.update(0, $0) }
        #expect(v == 0xE306_9283)
    }

    @Test(arguments: [0, 1, 7, 8, 767, 768, 769, 3 * 256 + 13, 24_575, 24_576, 24_577, 3 * 8192 * 2 + 771, 200_003])
    func interleavedEqualsTable(length: Int) {
        let data = Self.bytes(length + 7, seed: UInt64(length) &+ 0x9E37)
        for offset in [0, 1, 3, 7] {
            data.withUnsafeBytes { all in
                let p = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                #expect(CRC32C.update(0x1234_5678, p) == CRC32C.updateByTable(0x1234_5678, p), "length \(length) offset \(offset)")
                // In two pieces, as a file read in chunks.
                let cut = length / 3
                let a = UnsafeRawBufferPointer(rebasing: p[0..<cut]), b = UnsafeRawBufferPointer(rebasing: p[cut...])
                #expect(CRC32C.update(CRC32C.update(0, a), b) == CRC32C.updateByTable(0, p))
            }
        }
    }
}
