// btrfs send streams: the parser on a real stream (made by btrfs-progs) and the paths it
// yields through renames.
import DiffKitArchive
import DiffKitSystem
import DiffKit
@testable import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct BtrfsSendTests {
    func withBtrfs(_ body: (LoopFilesystem) throws -> Void) throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 1024)
        defer { fs.close() }
        try body(fs)
    }

    static func parse(_ bytes: [UInt8], chunk: Int) throws -> [BtrfsSendCommand] {
        var parser = BtrfsSendStreamParser()
        var out: [BtrfsSendCommand] = []
        var at = 0
        while at < bytes.count {
            let end = min(bytes.count, at + chunk)
            out += try bytes[at..<end].withUnsafeBytes { try parser.feed($0) }
            at = end
        }
        try parser.finish()
        return out
    }

    /// A stream written by `btrfs send --no-data` (btrfs-progs, not this library's ioctl call)
    /// reads as the commands the edits imply, whatever the size of the pieces it comes in; a
    /// changed byte fails the CRC, a cut stream is refused.
    @Test(.requires(.root, .filesystem("btrfs"), .command("btrfs"))) func parsesARealStream() throws {
        try withBtrfs { fs in
            let m = fs.mountPoint
            try Shell.check("btrfs -q subvolume create \(m)/p && mkdir \(m)/p/d && echo one > \(m)/p/d/f && echo two > \(m)/p/g && echo three > \(m)/p/gone")
            try Shell.check("btrfs -q subvolume snapshot \(m)/p \(m)/c && echo more >> \(m)/c/d/f && chown 7:8 \(m)/c/g && mv \(m)/c/d \(m)/c/e && rm \(m)/c/gone && ln -s target \(m)/c/s && mkfifo \(m)/c/fifo")
            try Shell.check("btrfs -q property set \(m)/p ro true && btrfs -q property set \(m)/c ro true")
            try Shell.check("btrfs -q send --no-data -p \(m)/p -f \(m)/stream \(m)/c")
            let bytes = try Pipe.read(m + "/stream")
            let commands = try Self.parse(bytes, chunk: 1 << 16)
            #expect(try Self.parse(bytes, chunk: 1) == commands)
            #expect(commands.first?.kind == .snapshot && commands.last?.kind == .end)
            let lines = commands.map(\.description)
            // New entries are made under an orphan name (o<inode>-<generation>-0), then renamed.
            for expected in ["rename d -> e", "updateExtent e/f", "chown g", "unlink gone", "symlink o", "mkfifo o", "utimes e"] {
                #expect(lines.contains { $0.hasPrefix(expected) }, "\(expected) in \(lines)")
            }
            #expect(lines.contains { $0.hasPrefix("rename o") && $0.hasSuffix(" -> s") })
            #expect(commands.filter { $0.kind == .write }.isEmpty)
            #expect(commands.first { $0.kind == .symlink }?.inode != nil)

            var paths = BtrfsSendPaths()
            commands.forEach { paths.add($0) }
            let set = paths.result()
            for p in ["d", "e", "e/f", "g", "gone", "s", "fifo"] { #expect(set.covers(Bytes.of(p)), "\(p)") }
            #expect(!set.covers(Bytes.of("other")))

            var broken = bytes
            broken[40] ^= 0x20
            #expect { _ = try Self.parse(broken, chunk: 4096) } throws: { "\($0)".contains("CRC mismatch") }
            #expect { _ = try Self.parse(Array(bytes.dropLast(3)), chunk: 4096) } throws: { "\($0)".contains("inside a command") }
            #expect { _ = try Self.parse(Array(bytes.prefix(bytes.count - 10)), chunk: 4096) } throws: { "\($0)".contains("without the END") }
            #expect { _ = try Self.parse(Array(Bytes.of("not-a-stream-at-all")), chunk: 4096) } throws: { "\($0)".contains("magic") }
        }
    }

    /// Paths are kept as the stream gives them and where later renames take them: a file written
    /// inside a directory that is then renamed (from an orphan name, as send does before a
    /// rename's target is free) is named at its final path.
    @Test func pathsFollowRenames() {
        var paths = BtrfsSendPaths()
        for c in [BtrfsSendCommand(.rename, Bytes.of("a"), target: Bytes.of("o257-7-0")),
                  BtrfsSendCommand(.updateExtent, Bytes.of("o257-7-0/x/f")),
                  BtrfsSendCommand(.chown, Bytes.of("o257-7-0/y")),
                  BtrfsSendCommand(.rename, Bytes.of("o257-7-0"), target: Bytes.of("b/c")),
                  BtrfsSendCommand(.utimes, Bytes.of("")),
                  BtrfsSendCommand(.unlink, Bytes.of("k/l"))] {
            paths.add(c)
        }
        let set = paths.result()
        for p in ["a", "a/anything", "b/c", "b/c/x/f", "b/c/y", "k/l", "b"] { #expect(set.covers(Bytes.of(p)), "\(p)") }
        for p in ["k/m", "z", "b/d"] { #expect(!set.covers(Bytes.of(p)), "\(p)") }
    }
}
