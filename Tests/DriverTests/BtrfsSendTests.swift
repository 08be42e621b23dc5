// btrfs diffs from send streams: the stream parser on a real stream (made by btrfs-progs), the
// paths it yields through renames, and the driver's send diffs against the naive diff — chosen
// cases (ownership, xattrs, hardlinks, type changes, same-data rewrites, renames) and random
// trees — on btrfs images on loop devices made in each test.
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

    /// The names in directory `dir`, sorted.
    static func entries(_ dir: String) throws -> [String] {
        let fd = try Sys.open(Bytes.of(dir), O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        return try Sys.readDirectory(fd, shown: Bytes.of(dir)).map { Bytes.string($0.name) }.sorted()
    }

    /// The subvolume id of `.send/NAME` (nil when there is none).
    static func keptID(_ home: String, _ name: String) -> UInt64? {
        guard let fd = try? Sys.open(Bytes.of(home + "/.send/" + name), O_RDONLY | O_DIRECTORY) else { return nil }
        defer { Sys.close(fd) }
        return try? Btrfs.subvolumeID(fd, shown: [])
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

            // Protocol 2 with the data: WRITE's DATA has no length there and runs to the end of
            // its command (a file bigger than one command's worth of data, and a small one).
            try Shell.check("btrfs -q subvolume snapshot \(m)/c \(m)/w && head -c 300000 /dev/urandom > \(m)/w/big && echo small > \(m)/w/small && btrfs -q property set \(m)/w ro true")
            try Shell.check("btrfs -q send --proto 2 -p \(m)/c -f \(m)/stream2 \(m)/w")
            let v2 = try Self.parse(try Pipe.read(m + "/stream2"), chunk: 4096)
            #expect(v2.filter { $0.kind == .write }.count >= 3, "\(v2.map(\.description))")
            #expect(v2.contains { $0.kind == .rename && $0.target == Bytes.of("big") })
            #expect(v2.last?.kind == .end)

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

    /// Paths are kept as the stream gives them, a rename's ends with everything below them: a
    /// file written inside a directory that is then renamed (from an orphan name, as send does
    /// before a rename's target is free) is covered at its final path.
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

    /// Send diffs of `child` on `parent`: they must be used (not the naive fallback) and equal the
    /// naive diff — the change list (links marked the same) and the exported tar byte for byte.
    static func expectSameAsNaive(_ d: BtrfsDriver, _ child: String, _ parent: String, _ what: String) throws {
        let naive = try d.naiveChanges(id: child, parent: parent)
        let sent = try d.withFilesystemChanges(id: child, parent: parent) { c, _ in c }
        #expect(sent != nil, "\(what): send diff not used: \(d.sendState.state.withLock { $0.lastFallback } ?? "")")
        guard let sent else { return }
        #expect(sent.map { "\($0.line)\($0.isLinkPeer ? " (link)" : "")" } == naive.map { "\($0.line)\($0.isLinkPeer ? " (link)" : "")" }, "\(what)")
        #expect(try d.changes(id: child, parent: parent).map(\.line) == naive.map(\.line), "\(what)")
        #expect(try d.diffSize(id: child, parent: parent) == Sizes.changesSize(naive), "\(what)")
        // One options value for both: whiteouts are dated by it (the time it was made).
        let options = ExportOptions()
        let a = try Pipe.tarFile { try d.diff(id: child, parent: parent, to: $0, name: "send", options: options) }
        let b = try Pipe.tarFile { try d.naiveDiff(id: child, parent: parent, to: $0, name: "naive", options: options) }
        defer { Fixture.cleanup(tarDir(a)); Fixture.cleanup(tarDir(b)) }
        #expect(try Pipe.read(a) == Pipe.read(b), "\(what): tars differ")
    }

    /// What the stream reports that is no change, and what the naive rules report that is not a
    /// data change, judged as the naive diff judges it: each case a child of one base.
    @Test(.requires(.root, .filesystem("btrfs"))) func casesMatchTheNaiveDiff() throws {
        try withBtrfs { fs in
            let d = try BtrfsDriver(home: Bytes.of(fs.mountPoint + "/home"))
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, [
                .file("owned", "o"), .file("x", "x"), .file("same", "same data"), .time("same", 1_600_000_000, 500),
                .dir("dir/sub"), .file("dir/sub/f", "f"), .file("dir/g", "g"), .file("hl", "h"), .hardlink("sub2/hl2", to: "hl"),
                .hardlink("hl3", to: "hl"), .file("tofile/inner", "i"), .file("todir", "t"), .symlink("ln", to: "x"),
                .file("deep/a/b/c", "c"), .file("swap1/f", "1"), .file("swap2/f", "22"), .fifo("fifo"),
            ])
            let cases: [(String, [Op])] = [
                ("nothing", []),
                ("ownership only", [.chown("owned", 5, 6)]),
                ("xattr", [.xattr("x", "user.k", "v")]),
                ("same data rewritten, times kept", [.file("same", "same data"), .time("same", 1_600_000_000, 500)]),
                ("a parent's times only", [.time("dir", 1_000_000_000, 7)]),
                ("hardlink data change", [.file("hl", "changed")]),
                ("new hardlink", [.hardlink("dir/hl4", to: "hl")]),
                ("hardlink removed", [.remove("hl3")]),
                ("dir to file", [.remove("tofile"), .file("tofile", "now a file")]),
                ("file to dir", [.remove("todir"), .file("todir/in", "now a dir")]),
                ("symlink retargeted", [.remove("ln"), .symlink("ln", to: "elsewhere")]),
                ("dir renamed", [.rename("dir", "moved")]),
                ("dir renamed over another", [.remove("deep/a/b/c"), .rename("dir/sub", "deep/a/b/sub")]),
                // (The files differ in size: files written in one clock tick have equal mtimes.)
                ("dirs swapped", [.rename("swap1", "tmp"), .rename("swap2", "swap1"), .rename("tmp", "swap2")]),
                ("dir replaced by a renamed one", [.remove("swap1"), .rename("swap2", "swap1")]),
                ("deep delete", [.remove("deep")]),
                ("fifo to file", [.remove("fifo"), .file("fifo", "file")]),
                ("mode", [.chmod("dir/sub", 0o700)]),
            ]
            for (i, (what, ops)) in cases.enumerated() {
                try d.create(id: "c\(i)", parent: "base", options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: "c\(i)")), ops)
                try Self.expectSameAsNaive(d, "c\(i)", "base", what)
            }
            // Only the layers' kept snapshots stay in the snapshot directory.
            #expect(try Self.entries(fs.mountPoint + "/home/.send") == (["base"] + cases.indices.map { "c\($0)" }).sorted())
        }
    }

    /// btrfs layers stay writable: a parent changed after its child was snapshotted is still the
    /// child's origin, and the stream between the two as they are now gives the naive diff.
    @Test(.requires(.root, .filesystem("btrfs"))) func parentChangedAfterTheSnapshot() throws {
        try withBtrfs { fs in
            let d = try BtrfsDriver(home: Bytes.of(fs.mountPoint + "/home"))
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, [.file("kept", "k"), .file("later", "l"), .dir("d"), .file("d/f", "f")])
            try d.create(id: "child", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "child")), [.file("mine", "m"), .chown("d/f", 3, 3)])
            try Fixture.apply(base, [.file("later", "changed in the parent"), .remove("d/f"), .file("new-in-parent", "p")])
            try Self.expectSameAsNaive(d, "child", "base", "parent changed")
        }
    }

    /// Random trees and random mutations (the property the other diff sources are held to).
    @Test(.requires(.root, .filesystem("btrfs"))) func randomTreesMatchTheNaiveDiff() throws {
        try withBtrfs { fs in
            let d = try BtrfsDriver(home: Bytes.of(fs.mountPoint + "/home"))
            for seed in UInt64(1)...12 {
                var rng = SplitMix(seed: seed)
                try d.create(id: "b\(seed)", parent: nil, options: [:])
                let base = Bytes.string(try d.getBytes(id: "b\(seed)"))
                try Fixture.apply(base, RandomTree.ops(&rng, count: 60))
                try d.create(id: "c\(seed)", parent: "b\(seed)", options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: "c\(seed)")), RandomTree.mutations(&rng, in: try Manifest.of(base), count: 25))
                try Self.expectSameAsNaive(d, "c\(seed)", "b\(seed)", "seed \(seed)")
                // A grandchild changed again, against its own parent.
                try d.create(id: "g\(seed)", parent: "c\(seed)", options: [:])
                let child = Bytes.string(try d.getBytes(id: "c\(seed)"))
                try Fixture.apply(Bytes.string(try d.getBytes(id: "g\(seed)")), RandomTree.mutations(&rng, in: try Manifest.of(child), count: 10))
                try Self.expectSameAsNaive(d, "g\(seed)", "c\(seed)", "seed \(seed), grandchild")
            }
        }
    }

    /// Where send cannot be used — a layer made from a template is no snapshot of its parent — the
    /// naive diff is used and `status` says why; a probe shows whether the kernel sends at all;
    /// snapshots a killed process left are removed.
    @Test(.requires(.root, .filesystem("btrfs"))) func fallbackAndStatus() throws {
        try withBtrfs { fs in
            let home = fs.mountPoint + "/home"
            let d = try BtrfsDriver(home: Bytes.of(home))
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "base")), [.file("a", "a"), .file("b", "b")])
            try d.create(id: "other", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "other")), [.file("c", "c")])
            try d.createFromTemplate(id: "templated", template: "other", parent: "base", readWrite: false, options: [:])
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Send Diffs"] == "true")
            #expect(try d.withFilesystemChanges(id: "templated", parent: "base") { c, _ in c } == nil)
            #expect(try d.changes(id: "templated", parent: "base").map(\.line) == ["A /c"])
            let status = Dictionary(uniqueKeysWithValues: d.status())
            #expect(status["Send Diff Fallback"] == "layer templated: not a snapshot of its parent base")

            // Leftovers of a process that is gone (a shell that has exited), as this version and
            // an earlier one name them.
            let gone = try Shell.run("echo $$").output.split(separator: "\n")[0]
            try Shell.check("btrfs -q subvolume snapshot -r \(home)/subvolumes/base \(home)/.send/send-\(gone)-1-layer")
            try Shell.check("btrfs -q subvolume snapshot -r \(home)/subvolumes/base \(home)/.send/@\(gone)-2")
            let fresh = try BtrfsDriver(home: Bytes.of(home))
            try Self.expectSameAsNaive(fresh, "other", "base", "after a leftover")
            #expect(try Self.entries(home + "/.send") == ["base", "other"])
        }
    }

    /// The read-only snapshots are kept between diffs: reused while their layer is unchanged, made
    /// again when it changed — data appended and not yet flushed, an owner, a file added, the
    /// parent changed — and every diff equals the naive one.
    @Test(.requires(.root, .filesystem("btrfs"))) func keptSnapshotsFollowTheirLayers() throws {
        try withBtrfs { fs in
            let home = fs.mountPoint + "/home"
            let d = try BtrfsDriver(home: Bytes.of(home))
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, [.file("f", "data"), .file("g", "g"), .dir("d")])
            try d.create(id: "child", parent: "base", options: [:])
            let child = Bytes.string(try d.getBytes(id: "child"))
            try Fixture.apply(child, [.file("new", "n")])
            try Self.expectSameAsNaive(d, "child", "base", "first")
            #expect(try Self.entries(home + "/.send") == ["base", "child"])
            // (The naive diff's first read of a file moves its atime, so its layer's ctransid:
            // one more send diff settles that.)
            _ = try d.withFilesystemChanges(id: "child", parent: "base") { c, _ in c }
            let first = (Self.keptID(home, "child"), Self.keptID(home, "base"))

            // Unchanged: the same snapshots (another driver: another process's view).
            let other = try BtrfsDriver(home: Bytes.of(home))
            try Self.expectSameAsNaive(other, "child", "base", "unchanged")
            #expect(Self.keptID(home, "child") == first.0 && Self.keptID(home, "base") == first.1)

            // Appended with write(2) and not synced: found all the same.
            let fd = open(child + "/f", O_WRONLY | O_APPEND | O_CLOEXEC)
            #expect(fd >= 0 && write(fd, "more", 4) == 4)
            close(fd)
            #expect(try d.withFilesystemChanges(id: "child", parent: "base") { c, _ in c.map(\.line) } == ["C /f", "A /new"])
            #expect(Self.keptID(home, "child") != first.0 && Self.keptID(home, "base") == first.1)
            try Self.expectSameAsNaive(d, "child", "base", "appended")

            for (what, ops) in [("owner", [Op.chown("g", 4, 4)]), ("added", [.file("d/x", "x")])] {
                let before = Self.keptID(home, "child")
                try Fixture.apply(child, ops)
                try Self.expectSameAsNaive(d, "child", "base", what)
                #expect(Self.keptID(home, "child") != before, "\(what)")
            }
            // The parent changed: its snapshot is made again, the child's kept.
            _ = try d.withFilesystemChanges(id: "child", parent: "base") { c, _ in c }
            let kept = Self.keptID(home, "child")
            try Fixture.apply(base, [.file("g", "changed in the parent")])
            try Self.expectSameAsNaive(d, "child", "base", "parent changed")
            #expect(Self.keptID(home, "child") == kept && Self.keptID(home, "base") != first.1)
            #expect(try Self.entries(home + "/.send") == ["base", "child"])
        }
    }

    /// A snapshot another process is reading is neither replaced nor removed: a diff of a changed
    /// layer then reads a snapshot of its own, removed after; once unused, the kept one is replaced.
    /// `remove` takes the layer's kept snapshot, or when that one is in use, leaves it to the next
    /// `remove`; a layer made again under the same id does not take it for its own.
    @Test(.requires(.root, .filesystem("btrfs"))) func snapshotsInUseAndRemove() throws {
        try withBtrfs { fs in
            let home = fs.mountPoint + "/home"
            let d = try BtrfsDriver(home: Bytes.of(home))
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, [.file("a", "a")])
            for c in ["c1", "c2"] {
                try d.create(id: c, parent: "base", options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: c)), [.file(c, c)])
            }
            try Self.expectSameAsNaive(d, "c1", "base", "c1")
            let kept = Self.keptID(home, "base")

            // Another reader (its own open: flock treats it as another process) holds base's.
            let reader = open(home + "/.send/base", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(reader >= 0 && flock(reader, LOCK_SH) == 0)
            try Fixture.apply(base, [.file("a", "changed")])
            try Self.expectSameAsNaive(d, "c2", "base", "held")
            #expect(Self.keptID(home, "base") == kept)
            #expect(try Self.entries(home + "/.send") == ["base", "c1", "c2"])
            close(reader)
            try Self.expectSameAsNaive(d, "c2", "base", "released")
            #expect(Self.keptID(home, "base") != kept)

            // c2 removed while its kept snapshot is read: that one is left, and taken by the next
            // remove.
            let held = open(home + "/.send/c2", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(held >= 0 && flock(held, LOCK_SH) == 0)
            try d.remove(id: "c2")
            #expect(try Self.entries(home + "/.send") == ["base", "c1", "c2"])
            close(held)
            try d.remove(id: "c1")
            #expect(try Self.entries(home + "/.send") == ["base"])

            // A layer made again under the id of a snapshot left so is another subvolume: that
            // snapshot is not its (made unchanged from base, its ctransid is base's).
            try d.create(id: "c3", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "c3")), [.file("c3", "c3")])
            try Self.expectSameAsNaive(d, "c3", "base", "c3")
            let held3 = open(home + "/.send/c3", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(held3 >= 0 && flock(held3, LOCK_SH) == 0)
            try d.remove(id: "c3")
            try d.create(id: "c3", parent: "base", options: [:])
            try Self.expectSameAsNaive(d, "c3", "base", "made again")
            close(held3)
            try d.remove(id: "c3")
            try d.remove(id: "base")
            #expect(try Self.entries(home + "/.send").isEmpty)
            #expect(try Shell.run("btrfs subvolume list \(fs.mountPoint)").output.isEmpty)
        }
    }

    /// Two processes export one layer over and over while a third keeps moving its ctransid (atime
    /// only: no change in the tar), so kept snapshots are replaced under them: every export
    /// succeeds with the same bytes, and only the kept snapshots are left.
    @Test(.requires(.root, .filesystem("btrfs"))) func twoProcessesShareKeptSnapshots() throws {
        try withBtrfs { fs in
            let dir = fs.mountPoint
            let cli = "\(CLI.binary) --driver btrfs --home \(dir)/store"
            try Shell.check("\(cli) create base")
            let base = try Shell.run("\(cli) mount base").output.split(separator: "\n")[0]
            try Shell.check("mkdir \(base)/d && echo a > \(base)/d/a && echo b > \(base)/b && \(cli) create child --parent base")
            let child = try Shell.run("\(cli) mount child").output.split(separator: "\n")[0]
            try Shell.check("echo c > \(child)/d/c && echo bb > \(child)/b")  // (no deletion: a whiteout is dated by its export)
            try Shell.check("\(cli) export child -q -o \(dir)/reference.tar")
            let worker = { (name: String) in
                "for i in $(seq 1 12); do \(cli) export child -q -o \(dir)/\(name).tar || exit 1; cmp -s \(dir)/\(name).tar \(dir)/reference.tar || exit 2; done"
            }
            let toucher = "for i in $(seq 1 60); do touch -a -d @$((1600000000 + i)) \(child)/d/c \(base)/d/a || exit 1; sleep 0.02; done"
            for (name, script) in [("a", worker("a")), ("b", worker("b")), ("t", toucher)] {
                try Shell.check("(sh -c '\(script)' > \(dir)/\(name).log 2>&1; echo $? > \(dir)/\(name).rc) &")
            }
            for _ in 0..<6000 where ["a", "b", "t"].contains(where: { access(dir + "/\($0).rc", R_OK) != 0 }) { usleep(20_000) }
            usleep(50_000)
            let rc = try ["a", "b", "t"].map { String(decoding: try Pipe.read(dir + "/\($0).rc"), as: UTF8.self) }
            let logs = try ["a", "b"].map { String(decoding: try Pipe.read(dir + "/\($0).log"), as: UTF8.self) }
            #expect(rc == ["0\n", "0\n", "0\n"], "\(logs)")
            #expect(try Self.entries(dir + "/store/btrfs/.send") == ["base", "child"])
        }
    }
}
