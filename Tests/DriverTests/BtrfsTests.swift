// btrfs beyond the conformance suite, on a btrfs image on a loop device made in each test:
// nested subvolume delete, qgroup quotas and min_space, options, init off btrfs, and the
// snapshot shortcut of the naive diff.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct BtrfsTests {
    func withBtrfs(_ body: (LoopFilesystem) throws -> Void) throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 1024)
        defer { fs.close() }
        try body(fs)
    }

    func subvolumes(_ fs: LoopFilesystem) throws -> [String] {
        try Shell.run("btrfs subvolume list \(fs.mountPoint)").output.split(separator: "\n").compactMap { line in
            line.split(separator: " ").last.map(String.init)
        }
    }

    /// moby's TestBtrfsSubvolDelete: subvolumes made inside a layer go with it.
    @Test(.requires(.root, .filesystem("btrfs"))) func nestedSubvolumesAreDeleted() throws {
        try withBtrfs { fs in
            let d = try BtrfsDriver(home: Bytes.of(fs.mountPoint + "/home"))
            try d.create(id: "test", parent: nil, options: [:])
            let dir = Bytes.string(try d.getBytes(id: "test"))
            try Shell.check("btrfs subvolume create \(dir)/subvoltest1 && mkdir \(dir)/d && btrfs subvolume create \(dir)/d/subvoltest2 && btrfs subvolume create \(dir)/subvoltest1/deeper")
            #expect(try subvolumes(fs).count == 4)
            try d.remove(id: "test")
            #expect(!d.exists(id: "test"))
            #expect(try subvolumes(fs).isEmpty)
        }
    }

    /// graphtest's SetQuota: a 50 MiB limit takes 25 MiB and refuses a further 50 MiB; the limit
    /// is stored and applied again by get; min_space refuses a smaller size, and 0 is refused.
    @Test(.requires(.root, .filesystem("btrfs"))) func quota() throws {
        try withBtrfs { fs in
            let home = fs.mountPoint + "/home"
            let d = try BtrfsDriver(home: Bytes.of(home))
            try Graph.createBase(d, "Base")
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Quota"] == "false")
            try d.createReadWrite(id: "btrfsTest", parent: "Base", options: ["size": "50M"])
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Quota"] == "true")
            #expect(try Pipe.read(home + "/quotas/btrfsTest") == Bytes.of(String(50 << 20)))
            let root = Bytes.string(try d.getBytes(id: "btrfsTest"))
            #expect(try QuotaWrite.write(root + "/25M", megabytes: 25) == 0)
            let e = try QuotaWrite.write(root + "/50M", megabytes: 50)
            #expect(e == EDQUOT || e == ENOSPC)
            #expect(try Shell.run("btrfs qgroup show -re \(fs.mountPoint)").output.contains("50.00MiB"))
            try d.remove(id: "btrfsTest")
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(home + "/quotas/btrfsTest")) == nil)

            #expect(throws: DriverError.self) { try d.createReadWrite(id: "zero", parent: "Base", options: ["size": "0"]) }
            let strict = try BtrfsDriver(home: Bytes.of(home), options: ["btrfs.min_space": "100M"])
            #expect { try strict.createReadWrite(id: "small", parent: "Base", options: ["size": "50M"]) } throws: { e in
                "\(e)".contains("storage size cannot be less than")
            }
            #expect(!strict.exists(id: "small"))
            try strict.createReadWrite(id: "big", parent: "Base", options: ["size": "200M"])
            #expect(try strict.metadata(id: "big")["QuotaSize"] == String(200 << 20))
        }
    }

    @Test(.requires(.root)) func optionsAndHome() throws {
        let ext = try Fixture.tempDir("notbtrfs")
        defer { Fixture.cleanup(ext) }
        #expect { _ = try BtrfsDriver(home: Bytes.of(ext + "/home")) } throws: { e in
            "\(e)".contains("\(ext)/home is on") && "\(e)".contains("not btrfs")
        }
        try withBtrfs { fs in
            let home = Bytes.of(fs.mountPoint + "/home")
            #expect(throws: DriverError.self) { _ = try BtrfsDriver(home: home, options: ["btrfs.mountopt": "compress"]) }
            #expect(throws: DriverError.self) { _ = try BtrfsDriver(home: home, options: ["btrfs.bogus": "1"]) }
            #expect(throws: DriverError.self) { _ = try BtrfsDriver(home: home, options: ["btrfs.min_space": "lots"]) }
            let d = try BtrfsDriver(home: home)
            let status = Dictionary(uniqueKeysWithValues: d.status())
            #expect(status["Build Version"]?.hasPrefix("Btrfs v") == true && status["Library Version"] != nil)
            // SELinux is disabled here: a label is accepted and changes nothing.
            try d.create(id: "labelled", parent: nil, options: ["label": "system_u:object_r:container_file_t:s0"])
            #expect(d.exists(id: "labelled"))
        }
    }

    /// A child is a snapshot: unchanged files keep their inodes and are skipped unread, while an
    /// edit that keeps size and mtime (only ctime moves) is still found.
    @Test(.requires(.root, .filesystem("btrfs"))) func snapshotDiff() throws {
        try withBtrfs { fs in
            let d = try BtrfsDriver(home: Bytes.of(fs.mountPoint + "/home"))
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Fixture.apply(base, [.file("same", "s"), .file("trap", "multi on"), .time("trap", 1_155_000_000), .file("d/x", "x"), .file("hl", "h"), .hardlink("hl2", to: "hl")])
            try d.create(id: "child", parent: "base", options: [:])
            let child = Bytes.string(try d.getBytes(id: "child"))
            let a = try Sys.fstatat(AT_FDCWD, Bytes.of(base + "/same")), b = try Sys.fstatat(AT_FDCWD, Bytes.of(child + "/same"))
            #expect(a.st_ino == b.st_ino && a.st_dev != b.st_dev)
            try Fixture.apply(child, [.file("trap", "multi no"), .time("trap", 1_155_000_000), .file("d/y", "y")])
            #expect(try d.changes(id: "child", parent: "base").filter { !$0.isLinkPeer }.map(\.line) == ["C /d", "A /d/y", "C /trap"])
            #expect(try d.changes(id: "child", parent: "base").map(\.line) == (try TreeDiff.changes(base: Bytes.of(base), layer: Bytes.of(child)).map(\.line)))
        }
    }
}

enum QuotaWrite {
    /// Write `megabytes` MiB to a new file; 0 or the errno of the first failed write (or fsync).
    static func write(_ path: String, megabytes: Int) throws -> Int32 {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        for _ in 0..<megabytes {
            let n = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 { return errno }
        }
        return fsync(fd) == 0 ? 0 : errno
    }
}
