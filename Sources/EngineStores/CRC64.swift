// CRC-64 with the ISO polynomial, reflected, as Go's hash/crc64 computes it: the checksum the
// engines' tar-split records keep for each file's content (8 bytes, big-endian).

/// CRC-64/ISO as Go's `crc64.New(crc64.MakeTable(crc64.ISO))` computes it.
struct CRC64 {
    /// Eight tables for slicing-by-8 (the first is the byte-at-a-time table).
    static let tables: [[UInt64]] = {
        let poly: UInt64 = 0xD800_0000_0000_0000
        var t = [[UInt64]](repeating: [UInt64](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var crc = UInt64(i)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ poly : crc >> 1 }
            t[0][i] = crc
        }
        for i in 0..<256 {
            var crc = t[0][i]
            for j in 1..<8 {
                crc = t[0][Int(crc & 0xFF)] ^ (crc >> 8)
                t[j][i] = crc
            }
        }
        return t
    }()

    private(set) var value: UInt64 = 0

    /// Add `bytes` to the checksum.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var crc = ~value
        let tables = Self.tables
        tables.withUnsafeBufferPointer { t in
            t[0].withUnsafeBufferPointer { t0 in
            t[1].withUnsafeBufferPointer { t1 in
            t[2].withUnsafeBufferPointer { t2 in
            t[3].withUnsafeBufferPointer { t3 in
            t[4].withUnsafeBufferPointer { t4 in
            t[5].withUnsafeBufferPointer { t5 in
            t[6].withUnsafeBufferPointer { t6 in
            t[7].withUnsafeBufferPointer { t7 in
                var i = 0
                let n = bytes.count
                while n - i >= 8 {
                    crc ^= UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    crc = t7[Int(crc & 0xFF)] ^ t6[Int((crc >> 8) & 0xFF)] ^ t5[Int((crc >> 16) & 0xFF)]
                        ^ t4[Int((crc >> 24) & 0xFF)] ^ t3[Int((crc >> 32) & 0xFF)] ^ t2[Int((crc >> 40) & 0xFF)]
                        ^ t1[Int((crc >> 48) & 0xFF)] ^ t0[Int(crc >> 56)]
                    i += 8
                }
                while i < n {
                    crc = t0[Int(UInt8(truncatingIfNeeded: crc) ^ bytes[i])] ^ (crc >> 8)
                    i += 1
                }
            }}}}}}}}
        }
        value = ~crc
    }

    /// The checksum as Go's `Sum(nil)` gives it: 8 bytes, big-endian.
    var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) } }
}
