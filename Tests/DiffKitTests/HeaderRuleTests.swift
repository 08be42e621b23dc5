// The tar writer's byte rules where a wrong byte still reads back (padding, fields, PAX record
// lengths, mode type bits) and the layer writer's header rules (reproducible mtimes, hardlink
// groups of non-regular files, the aufs form's root entries), plus the ID map's edges.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct HeaderRuleTests {
    /// Data is padded to the next 512-byte boundary, and not at all when it ends on one.
    @Test func paddingOfDataEndingOnABlock() throws {
        let tar = try Pipe.tarFile { fd in
            let w = TarWriter(fd: fd, name: "pad")
            for (name, size) in [("block", 512), ("byte", 1), ("two-blocks", 1024)] {
                var h = TarHeader(name: Bytes.of(name), kind: .regular)
                h.mode = 0o644
                h.size = Int64(size)
                try w.writeHeader(h)
                try [UInt8](repeating: 0x61, count: size).withUnsafeBytes { try w.writeData($0) }
            }
            try w.finish()
        }
        defer { Fixture.cleanup(tarDir(tar)) }
        // 3 headers + 1 + 1 + 2 data blocks + the 1024-byte end.
        #expect(try Pipe.read(tar).count == 512 * 7 + 1024)
        #expect(try Pipe.headers(tar).map(\.displayName) == ["block", "byte", "two-blocks"])
    }

    /// uid and gid travel in their own fields.
    @Test func ownerFields() throws {
        let tar = try Pipe.tarFile { fd in
            let w = TarWriter(fd: fd, name: "owner")
            var h = TarHeader(name: Bytes.of("f"), kind: .regular)
            h.uid = 1001
            h.gid = 2002
            try w.writeHeader(h)
            try w.finish()
        }
        defer { Fixture.cleanup(tarDir(tar)) }
        let h = try #require(try Pipe.headers(tar).first)
        #expect(h.uid == 1001)
        #expect(h.gid == 2002)
        // Octal, 7 digits and a NUL, at 116 (gid) and 108 (uid).
        let bytes = try Pipe.read(tar)
        #expect(Array(bytes[116..<124]) == Bytes.of("0003722") + [0])
        #expect(Array(bytes[108..<116]) == Bytes.of("0001751") + [0])
    }

    /// A PAX record starts with its own length in decimal, the length's digits included: where
    /// adding them adds a digit (98 + 2 → 100 → 101), the longer length is the true one (Go).
    @Test func paxRecordLengthCountsItsOwnDigits() {
        let r = TarWriter.paxRecordForTests(Bytes.of("path"), [UInt8](repeating: 0x61, count: 91))
        #expect(r.count == 101)
        #expect(Array(r.prefix(4)) == Bytes.of("101 "))
        for n in 0..<1100 {
            let rec = TarWriter.paxRecordForTests(Bytes.of("path"), [UInt8](repeating: 0x61, count: n))
            let digits = rec.prefix { $0 != 0x20 }
            #expect(Int(Bytes.string(Array(digits))) == rec.count, "value of \(n) bytes")
        }
    }

    /// moby's mode field: the type bits of the file, for a hardlink those of the regular file it
    /// links to (0100644), for a symlink 0120777; without type bits (containerd) the permissions.
    @Test func typeBitsInTheModeField() throws {
        for typeBits in [true, false] {
            let tar = try Pipe.tarFile { fd in
                let w = TarWriter(fd: fd, name: "mode", typeBitsInMode: typeBits)
                var f = TarHeader(name: Bytes.of("f"), kind: .regular)
                f.mode = 0o644
                try w.writeHeader(f)
                var l = TarHeader(name: Bytes.of("l"), kind: .hardlink)
                l.mode = 0o644
                l.linkName = Bytes.of("f")
                try w.writeHeader(l)
                var s = TarHeader(name: Bytes.of("s"), kind: .symlink)
                s.mode = 0o777
                s.linkName = Bytes.of("f")
                try w.writeHeader(s)
                try w.finish()
            }
            defer { Fixture.cleanup(tarDir(tar)) }
            let bytes = try Pipe.read(tar)
            let modes = (0..<3).map { Bytes.string(Array(bytes[$0 * 512 + 100..<$0 * 512 + 107])) }
            #expect(modes == (typeBits ? ["0100644", "0100644", "0120777"] : ["0000644", "0000644", "0000777"]))
        }
    }

    /// Reproducible export clamps mtimes to the epoch: newer ones become it, older ones stay.
    @Test func reproducibleMtimesAreClamped() throws {
        let dir = try Fixture.make([.file("old", "o"), .time("old", 1_600_000_000, 5), .file("new", "n"), .time("new", 1_800_000_000)])
        defer { Fixture.cleanup(dir) }
        var options = ExportOptions()
        options.reproducibleTime = 1_700_000_000
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(dir), to: fd, name: "r", options: options) }
        defer { Fixture.cleanup(tarDir(tar)) }
        let times = Dictionary(uniqueKeysWithValues: try Pipe.headers(tar).map { ($0.displayName, $0.mtime) })
        #expect(times == ["new": 1_700_000_000, "old": 1_600_000_000])
    }

    /// Hardlinked fifos (and symlinks, devices) stay one group: the second name is a link entry.
    @Test func hardlinkedFifoIsALinkEntry() throws {
        let dir = try Fixture.make([.fifo("p"), .hardlink("q", to: "p")])
        defer { Fixture.cleanup(dir) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(dir), to: fd, name: "fifo") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let hs = try Pipe.headers(tar)
        #expect(hs.map(\.kind) == [.fifo, .hardlink])
        #expect(hs.last.map { Bytes.string($0.linkName) } == "p")
    }

    /// aufs form: the root's meta entries (`.wh..wh.plnk`, `.wh..wh.aufs`) are left out, its
    /// opaque marker kept, as opaque markers below it are.
    @Test func aufsFormKeepsTheRootOpaqueMarker() throws {
        let dir = try Fixture.make([
            .file(".wh..wh..opq", ""), .file(".wh..wh.aufs", ""), .file(".wh..wh.plnk/1.2", "x"),
            .file("a", "a"), .file("d/.wh..wh..opq", ""), .file("d/.wh.gone", ""),
        ])
        defer { Fixture.cleanup(dir) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(dir), to: fd, name: "aufs", whiteouts: .aufs) }
        defer { Fixture.cleanup(tarDir(tar)) }
        #expect(try Pipe.headers(tar).map(\.displayName) == [".wh..wh..opq", "a", "d/", "d/.wh..wh..opq", "d/.wh.gone"])
    }

    // MARK: ID maps

    static let map = IDMap(uids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)],
                           gids: [IDRange(containerID: 0, hostID: 200_000, size: 1000)])

    @Test func idMapDirections() {
        #expect(Self.map.toHost(uid: 5, gid: 7).map { [$0.uid, $0.gid] } == [100_005, 200_007])
        #expect(Self.map.toContainer(uid: 100_005, gid: 200_007).map { [$0.uid, $0.gid] } == [5, 7])
        // A host ID outside the ranges has no container ID.
        #expect(Self.map.toContainer(uid: 5, gid: 200_007) == nil)
        #expect(Self.map.toContainer(uid: 100_005, gid: 7) == nil)
    }

    /// The last ID of a range maps; the next one does not.
    @Test func idMapRangeEdges() {
        #expect(Self.map.toHost(uid: 65535, gid: 999).map { [$0.uid, $0.gid] } == [165_535, 200_999])
        #expect(Self.map.toHost(uid: 65536, gid: 0) == nil)
        #expect(Self.map.toHost(uid: 0, gid: 1000) == nil)
        #expect(Self.map.toContainer(uid: 165_535, gid: 200_999).map { [$0.uid, $0.gid] } == [65535, 999])
        #expect(Self.map.toContainer(uid: 165_536, gid: 200_000) == nil)
        #expect(Self.map.toContainer(uid: 100_000, gid: 201_000) == nil)
        #expect(Self.map.toContainer(uid: 99_999, gid: 200_000) == nil)
    }
}
