// The difftool contract, through the built binary.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum CLI {
    /// The difftool binary built beside the test bundle.
    static var binary: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, 4095)
        let exe = String(decoding: buf[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var dir = Substring(exe)
        while let i = dir.lastIndex(of: "/") {
            dir = dir[..<i]
            if access(String(dir) + "/difftool", X_OK) == 0 { return String(dir) + "/difftool" }
        }
        return "difftool"
    }

    /// Run with a shell command line; returns (status, stdout, stderr).
    static func run(_ args: String, stdin: String? = nil) throws -> (Int32, String, String) {
        let dir = try Fixture.tempDir("cli")
        defer { Fixture.cleanup(dir) }
        let cmd = "\(binary) \(args) >\(dir)/out 2>\(dir)/err" + (stdin.map { " <\($0)" } ?? "")
        let status = system(cmd)
        let out = String(decoding: try Pipe.read(dir + "/out"), as: UTF8.self)
        let err = String(decoding: try Pipe.read(dir + "/err"), as: UTF8.self)
        return (status == 0 ? 0 : (status >> 8) & 0xff, out, err)
    }
}

@Suite(.serialized) struct CLITests {
    @Test(.requires(.root)) func directoryCommands() throws {
        let base = try Fixture.make([.file("a", "1"), .file("b/c", "2"), .time("a", 1_600_000_000)])
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, [.file("a", "11"), .remove("b/c"), .file("n", "new")])

        let (s1, changes, _) = try CLI.run("changes \(base) \(layer)")
        #expect(s1 == 0)
        #expect(changes == "C /a\nC /b\nD /b/c\nA /n\n")
        let (_, jsonOut, _) = try CLI.run("changes --json \(base) \(layer)")
        #expect(jsonOut.hasPrefix("[{\"kind\":\"C\",\"path\":\"/a\"}"))
        #expect(try CLI.run("size \(base) \(layer)").1 == "5\n")

        let work = try Fixture.tempDir("work")
        defer { Fixture.cleanup(work) }
        #expect(try CLI.run("diff \(base) \(layer) -o \(work)/layer.tar").0 == 0)
        let target = try Fixture.copy(base)
        defer { Fixture.cleanup(target) }
        let (s2, applied, _) = try CLI.run("apply \(target) -i \(work)/layer.tar")
        #expect(s2 == 0 && applied == "5\n")
        #expect(try Manifest.of(target) == Manifest.of(layer))

        // tar on stdout, apply from stdin, with compression detected from the bytes.
        #expect(system("\(CLI.binary) tar \(layer) | gzip > \(work)/full.tgz") == 0)
        let empty = try Fixture.tempDir("empty")
        defer { Fixture.cleanup(empty) }
        #expect(try CLI.run("apply \(empty)", stdin: "\(work)/full.tgz").0 == 0)
        #expect(try Manifest.of(empty) == Manifest.of(layer))

        // -o into a fifo (or a device such as /dev/null) writes through it, never replaces it.
        #expect(mkfifo(work + "/fifo", 0o600) == 0)
        #expect(system("cat \(work)/fifo > \(work)/via-fifo.tar & \(CLI.binary) tar \(layer) -o \(work)/fifo; wait") == 0)
        #expect(try Sys.fstatat(AT_FDCWD, Bytes.of(work + "/fifo")).st_mode & S_IFMT == S_IFIFO)
        #expect(try Pipe.headers(work + "/via-fifo.tar").map(\.displayName) == ["a", "b/", "n"])
    }

    @Test(.requires(.root)) func storeCommands() throws {
        let home = try Fixture.tempDir("clihome")
        defer { Fixture.cleanup(home) }
        let src = try Fixture.make([.file("etc/os-release", "ID=test"), .file("bin/tool", "x", mode: 0o755)])
        defer { Fixture.cleanup(src) }
        let work = try Fixture.tempDir("work")
        defer { Fixture.cleanup(work) }
        #expect(system("\(CLI.binary) tar \(src) -o \(work)/base.tar") == 0)
        let h = "--home \(home)"
        #expect(try CLI.run("\(h) import base -i \(work)/base.tar").0 == 0)
        #expect(try CLI.run("import child --parent base \(h) --driver vfs", stdin: "/dev/null").0 == 0)
        #expect(try CLI.run("ls \(h)").1 == "base\t-\nchild\tbase\n")
        let (_, mounted, _) = try CLI.run("mount child \(h)")
        #expect(try Manifest.of(String(mounted.dropLast())) == Manifest.of(src))
        #expect(try CLI.run("umount child \(h)").0 == 0)
        #expect(try CLI.run("changes child \(h)").1 == "")
        #expect(try CLI.run("size base \(h)").1 == "8\n")
        #expect(try CLI.run("export base \(h) -o \(work)/again.tar").0 == 0)
        #expect(try Pipe.headers(work + "/again.tar").map(\.displayName) == ["bin/", "bin/tool", "etc/", "etc/os-release"])
        #expect(try CLI.run("status \(h)").1.contains("Driver: vfs"))
        #expect(try CLI.run("metadata child --json \(h)").1.contains("\"Parent\":\"base\""))

        // Errors: one line naming the thing, non-zero exit, nothing left behind.
        let (s, _, err) = try CLI.run("import broken \(h) -i \(work)/missing.tar")
        #expect(s == 1 && err.contains("missing.tar"))
        #expect(try CLI.run("ls \(h)").1 == "base\t-\nchild\tbase\n")
        let (s3, _, err3) = try CLI.run("rm base \(h)")
        #expect(s3 == 1 && err3.contains("child"))
        #expect(try CLI.run("rm child \(h)").0 == 0)
        #expect(try CLI.run("--storage-opt vfs.nope=1 ls \(h)").0 == 1)
        let (s4, _, _) = try CLI.run("export nothere \(h) -o \(work)/x.tar")
        #expect(s4 == 1 && access(work + "/x.tar", F_OK) != 0)
    }

    /// The store commands with `--driver overlay2`, and the overlay whiteout form of tar/apply.
    @Test(.requires(.root, .filesystem("overlay"))) func overlay2Commands() throws {
        let home = try Fixture.tempDir("clihome")
        defer { Fixture.cleanup(home) }
        let src = try Fixture.make([.file("etc/os-release", "ID=test"), .file("etc/gone", "g"), .file("d/old", "o")])
        defer { Fixture.cleanup(src) }
        let work = try Fixture.tempDir("work")
        defer { Fixture.cleanup(work) }
        let layer = try Fixture.copy(src)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, [.remove("etc/gone"), .remove("d/old"), .file("d/new", "n")])
        #expect(system("\(CLI.binary) tar \(src) -o \(work)/base.tar && \(CLI.binary) diff \(src) \(layer) -o \(work)/layer.tar") == 0)

        let h = "--driver overlay2 --home \(home)"
        #expect(try CLI.run("\(h) import base -i \(work)/base.tar").0 == 0)
        #expect(try CLI.run("\(h) import child --parent base -i \(work)/layer.tar").0 == 0)
        let (_, mounted, _) = try CLI.run("\(h) mount child")
        let merged = String(mounted.dropLast())
        #expect(merged == home + "/overlay2/child/merged")
        #expect(try Manifest.of(merged) == Manifest.of(layer))
        #expect(try CLI.run("\(h) umount child").0 == 0)
        #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(merged)) == nil)
        // The export is read from the diff dir, in the order of its names (moby): the 0/0 devices
        // `old` and `gone` come back as .wh.old and .wh.gone.
        #expect(try CLI.run("\(h) export child -o \(work)/again.tar").0 == 0)
        #expect(try Pipe.headers(work + "/again.tar").map(\.displayName) == ["d/", "d/new", "d/.wh.old", "etc/", "etc/.wh.gone"])
        #expect(try CLI.run("\(h) changes child").1 == "C /d\nA /d/new\nD /d/old\nC /etc\nD /etc/gone\n")
        let status = try CLI.run("\(h) status").1
        #expect(status.contains("Driver: overlay2") && status.contains("Native Overlay Diff: true"))
        #expect(try CLI.run("\(h) metadata child").1.contains("LowerDir: \(home)/overlay2/base/diff"))
        #expect(try CLI.run("\(h) --storage-opt overlay2.bogus=1 ls").0 == 1)
        #expect(try CLI.run("\(h) rm child").0 == 0)
        #expect(try CLI.run("\(h) ls").1 == "base\t-\n")

        // apply --whiteouts overlay writes the kernel's form; tar --whiteouts overlay reads it back.
        let upper = try Fixture.tempDir("upper")
        defer { Fixture.cleanup(upper) }
        #expect(try CLI.run("apply \(upper) --whiteouts overlay -i \(work)/layer.tar").0 == 0)
        let dev = try Sys.fstatat(AT_FDCWD, Bytes.of(upper + "/etc/gone"))
        #expect(dev.st_mode & S_IFMT == S_IFCHR && dev.st_rdev == 0)
        #expect(try CLI.run("tar \(upper) --whiteouts overlay -o \(work)/upper.tar").0 == 0)
        #expect(try Pipe.headers(work + "/upper.tar").map(\.displayName) == ["d/", "d/new", "d/.wh.old", "etc/", "etc/.wh.gone"])
        #expect(try CLI.run("tar \(upper) --whiteouts bogus").0 != 0)
    }

    /// The store commands with `--driver btrfs` on a loop image, `--storage-opt size=` on create
    /// and import, `create --template`, `usage`.
    @Test(.requires(.root, .filesystem("btrfs"))) func btrfsCommands() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 1024)
        defer { fs.close() }
        let src = try Fixture.make([.file("etc/os-release", "ID=test"), .file("bin/tool", "xy", mode: 0o755)])
        defer { Fixture.cleanup(src) }
        let work = try Fixture.tempDir("work")
        defer { Fixture.cleanup(work) }
        #expect(system("\(CLI.binary) tar \(src) -o \(work)/base.tar") == 0)
        let h = "--driver btrfs --home \(fs.mountPoint)/store"
        #expect(try CLI.run("\(h) import base -i \(work)/base.tar --storage-opt size=64M").0 == 0)
        #expect(try CLI.run("\(h) create rw --parent base --rw --storage-opt size=32M").0 == 0)
        #expect(try CLI.run("\(h) metadata rw").1.contains("QuotaSize: \(32 << 20)"))
        #expect(try CLI.run("\(h) status").1.contains("Quota: true"))
        #expect(try CLI.run("\(h) create copy --template rw --parent base").0 == 0)
        #expect(try CLI.run("\(h) changes copy").1 == "")
        #expect(try CLI.run("\(h) usage base").1 == "size: 9\ninodes: 5\n")
        let (s1, _, e1) = try CLI.run("\(h) rm rw")
        #expect(s1 == 1 && e1.contains("copy"))
        #expect(try CLI.run("\(h) --storage-opt size=0 create zero --parent base").0 == 1)
        #expect(try CLI.run("\(h) --storage-opt btrfs.mountopt=compress ls").0 == 1)
        #expect(try Shell.run("btrfs subvolume list \(fs.mountPoint)").output.split(separator: "\n").count == 3)
        for id in ["copy", "rw", "base"] { #expect(try CLI.run("\(h) rm \(id)").0 == 0) }
        #expect(try Shell.run("btrfs subvolume list \(fs.mountPoint)").output.isEmpty)
    }

    /// `migrate --from aufs` on a bare aufs directory (as /var/lib/docker/aufs is) into overlay2.
    @Test(.requires(.root, .filesystem("overlay"))) func migrateCommand() throws {
        let aufs = try Fixture.tempDir("bareaufs")
        defer { Fixture.cleanup(aufs) }
        let d = try AufsDriver(home: Bytes.of(aufs))
        try d.create(id: "b", parent: nil, options: [:])
        try Fixture.apply(aufs + "/diff/b", [.file("f", "f"), .file("g", "g")])
        try d.create(id: "c", parent: "b", options: [:])
        try Fixture.apply(aufs + "/diff/c", [.file(".wh.g", ""), .file("h", "h")])
        let target = try Fixture.tempDir("clitarget")
        defer { Fixture.cleanup(target) }
        let (status, out, _) = try CLI.run("migrate --from aufs --from-home \(aufs) --to overlay2 --to-home \(target)")
        #expect(status == 0 && out == "copied 2 layers, skipped 0 already in the target\n")
        #expect(try CLI.run("migrate --from aufs --from-home \(aufs) --to overlay2 --to-home \(target)").1.contains("skipped 2"))
        let (_, mounted, _) = try CLI.run("--driver overlay2 --home \(target) mount c")
        #expect(try Manifest.of(String(mounted.dropLast()), mtimes: false).map { String($0.split(separator: " ")[0]) } == ["f", "h"])
        #expect(try CLI.run("--driver overlay2 --home \(target) umount c").0 == 0)
    }

    /// A migrate whose import fails mid-layer (the target's disk is full) while the export still
    /// writes: a clear error and exit 1, never death by SIGPIPE (exit 141 through the shell).
    @Test(.requires(.root)) func migrateIntoAFullTargetFailsCleanly() throws {
        let dir = try Fixture.tempDir("migrate-full")
        defer { Fixture.cleanup(dir) }
        try Shell.check("mkdir -p \(dir)/src \(dir)/full \(dir)/tree && head -c 16777216 /dev/urandom > \(dir)/tree/big")
        try Shell.check("tar -C \(dir)/tree -cf \(dir)/layer.tar .")
        let (s1, _, e1) = try CLI.run("--home \(dir)/src import base -i \(dir)/layer.tar")
        #expect(s1 == 0, "\(e1)")
        try Shell.check("mount -t tmpfs -o size=4m tmpfs \(dir)/full")
        defer { _ = try? Shell.run("umount \(dir)/full") }
        let (status, _, err) = try CLI.run("migrate --from vfs --from-home \(dir)/src --to vfs --to-home \(dir)/full/store")
        #expect(status == 1, "exit \(status): \(err)")
        #expect(err.contains("No space left on device") || err.contains("space"), "\(err)")
    }
}
