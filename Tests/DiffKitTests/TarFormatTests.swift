// The byte format of exports: what Go's archive/tar writes, field by field.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

func field(_ b: [UInt8], _ off: Int, _ len: Int) -> String {
    String(decoding: b[off..<(off + len)].prefix { $0 != 0 }, as: UTF8.self)
}

@Suite struct TarFormatTests {
    func encode(_ headers: [(TarHeader, [UInt8])], typeBits: Bool = true) throws -> [UInt8] {
        let path = try Pipe.tarFile { fd in
            let w = TarWriter(fd: fd, name: "test", typeBitsInMode: typeBits)
            for (h, data) in headers {
                try w.writeHeader(h)
                if !data.isEmpty { try data.withUnsafeBytes { try w.writeData($0) } }
            }
            try w.finish()
        }
        defer { Fixture.cleanup(String(path.dropLast("/out.tar".count))) }
        return try Pipe.read(path)
    }

    @Test func emptyLayerIs1024Zeros() throws {
        let bytes = try encode([])
        #expect(bytes == [UInt8](repeating: 0, count: 1024))
    }

    @Test func ustarRegularFileFields() throws {
        var h = TarHeader(name: Bytes.of("a/b/f"), kind: .regular)
        h.mode = 0o644
        h.size = 5
        h.mtime = 1_600_000_000
        h.userName = Bytes.of("root")
        let b = try encode([(h, Bytes.of("hello"))])
        #expect(b.count == 512 + 512 + 1024)
        #expect(field(b, 0, 100) == "a/b/f")
        #expect(Array(b[100..<108]) == Bytes.of("0100644\0"))
        #expect(Array(b[108..<116]) == Bytes.of("0000000\0"))
        #expect(Array(b[124..<136]) == Bytes.of("00000000005\0"))
        #expect(Array(b[257..<265]) == Bytes.of("ustar\u{0}00"))
        #expect(Array(b[329..<345]) == Bytes.of("0000000\u{0}0000000\u{0}"))
        #expect(b[154] == 0 && b[155] == 0x20)
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 32 : Int(b[i]) }
        #expect(field(b, 148, 7) == String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8))
        #expect(Array(b[512..<517]) == Bytes.of("hello"))
    }

    @Test func containerdProfileHasNoTypeBits() throws {
        var h = TarHeader(name: Bytes.of("d/"), kind: .directory)
        h.mode = 0o755
        let b = try encode([(h, [])], typeBits: false)
        #expect(Array(b[100..<108]) == Bytes.of("0000755\0"))
    }

    @Test func longNameSplitsIntoPrefix() throws {
        let dir = String(repeating: "d", count: 80)
        let name = dir + "/" + String(repeating: "f", count: 60)
        let b = try encode([(TarHeader(name: Bytes.of(name), kind: .regular), [])])
        #expect(b.count == 512 + 1024)
        #expect(field(b, 0, 100) == String(repeating: "f", count: 60))
        #expect(field(b, 345, 155) == dir)
    }

    @Test func unsplittableNameUsesPAX() throws {
        let name = String(repeating: "n", count: 120)
        let b = try encode([(TarHeader(name: Bytes.of(name), kind: .regular), [])])
        #expect(b[156] == UInt8(ascii: "x"))
        #expect(field(b, 0, 100) == "PaxHeaders.0/" + String(repeating: "n", count: 87))
        #expect(field(b, 512, 512) == "130 path=\(name)\n")
        #expect(b[1024 + 156] == UInt8(ascii: "0"))
        #expect(try Pipe.headers(try writeFile(b)).map(\.displayName) == [name])
    }

    @Test func xattrsAreSchilyRecordsSorted() throws {
        var h = TarHeader(name: Bytes.of("f"), kind: .regular)
        h.xattrs = [Xattr(name: Bytes.of("user.b"), value: Bytes.of("2")), Xattr(name: Bytes.of("security.capability"), value: [1, 2, 3, 4])]
        let b = try encode([(h, [])])
        let records = field(b, 512, 512)
        #expect(records.contains("SCHILY.xattr.security.capability="))
        #expect(!records.contains("LIBARCHIVE"))
        let keys = records.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1)[1].split(separator: "=")[0] }
        #expect(keys == ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.b"])
        let back = try Pipe.headers(try writeFile(b))
        #expect(Set(back[0].xattrs) == Set(h.xattrs))
    }

    @Test func paxRecordLengthCountsItself() {
        #expect(TarWriter.paxRecordForTests(Bytes.of("path"), Bytes.of("abc")) == Bytes.of("12 path=abc\n"))
        #expect(TarWriter.paxRecordForTests(Bytes.of("k"), Bytes.of("1234")) == Bytes.of("9 k=1234\n"))
        // 9 + one digit is 10, which needs two digits: the length is recomputed.
        #expect(TarWriter.paxRecordForTests(Bytes.of("k"), Bytes.of("12345")) == Bytes.of("11 k=12345\n"))
    }

    func writeFile(_ b: [UInt8]) throws -> String {
        try Pipe.tarFile { fd in try b.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: "t") } }
    }
}
