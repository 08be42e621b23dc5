// Hostile input: the corpus in fixtures/hostile (made by its make.py) applied with the CLI in
// three modes; whatever a tar says, nothing outside the root changes, and the exit status is the
// documented one. Plus the byte limit.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Hostile {
    static let base = "/tmp/dkhostile"
    static let root = base + "/root"
    static let victim = base + "/victim"
    static let secret = "victim-secret-5f1c"

    static var fixtures: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/fixtures/hostile"
    }

    struct Case: CustomStringConvertible {
        var name: String
        var file: String
        var expected: [Int32]  // plain, overlay, idmap
        var why: String
        var description: String { name }
    }

    static func corpus() throws -> [Case] {
        let text = String(decoding: try Pipe.read(fixtures + "/EXPECTED"), as: UTF8.self)
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let f = line.split(separator: " ", maxSplits: 4)
            let name = String(f[0])
            let file = access(fixtures + "/\(name).tar", R_OK) == 0 ? "\(name).tar" : "\(name).tar.gz"
            return Case(name: name, file: fixtures + "/" + file, expected: f[1...3].map { Int32($0)! }, why: String(f[4]))
        }
    }

    /// The sentinels beside ROOT, and ROOT with what a lower layer may hold: symlinks out of it,
    /// a fifo, an /etc.
    static func prepare() throws {
        try Shell.check("""
            rm -rf \(base) && mkdir -p \(victim)/dir \(root)/etc && printf \(secret) > \(victim)/hello && chmod 0644 \(victim)/hello &&
            echo inner > \(victim)/dir/inner && ln -s hello \(victim)/link && mkfifo \(victim)/fifo &&
            ln -s \(victim) \(root)/lowerabs && ln -s ../victim \(root)/lowerrel && ln -s \(victim)/hello \(root)/lowerfile &&
            ln -s /etc \(root)/lowetc && echo root:x:0:0 > \(root)/etc/passwd && mkfifo \(root)/fifo && echo k > \(root)/keep
            """)
    }

    /// Everything outside ROOT that a breakout could touch, with ctimes (any change of content,
    /// mode, owner, links or xattrs moves them) and contents.
    static func snapshot() throws -> String {
        let (_, out) = try Shell.run("""
            find \(base) -path \(root) -prune -o -printf '%p %M %U:%G %s %T@ %C@ %n %l\\n' | sort;
            find \(base) -path \(root) -prune -o -type f -exec md5sum {} + | sort;
            stat -c '%n %Z %s' /etc/passwd /etc; ls -a /tmp | grep -i pwned; ls -a / | grep -i pwned; true
            """)
        return out
    }

    /// Run `body` holding a lock on the corpus's fixed directory: the tars name its path, so two
    /// test processes on one machine (a developer's runs beside CI's) must take turns.
    static func exclusively<R>(_ body: () throws -> R) throws -> R {
        let fd = open(base + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TestError("open \(base).lock: errno \(errno)") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        return try body()
    }

    static let modes: [(String, String)] = [
        ("plain", ""),
        ("overlay", "--whiteouts overlay"),
        ("idmap", "--uid-map 0:100000:65536 --gid-map 0:100000:65536"),
        // Plain again, resolving paths with the user-space walk kernels without openat2 get.
        ("plain, no openat2", ""),
    ]
}

@Suite(.serialized) struct HostileTests {
    @Test func corpusHasAtLeastFortyTars() throws {
        #expect(try Hostile.corpus().count >= 40)
    }

    @Test(.requires(.root), arguments: [0, 1, 2, 3])
    func corpusNeverLeavesTheRoot(mode: Int) throws {
        let (modeName, flags) = Hostile.modes[mode]
        if mode == 3 { setenv("DIFFKIT_NO_OPENAT2", "1", 1) }
        defer { unsetenv("DIFFKIT_NO_OPENAT2") }
        var failures: [String] = []
        try Hostile.exclusively {
            for c in try Hostile.corpus() {
                try Hostile.prepare()
                let before = try Hostile.snapshot()
                let (status, _, err) = try CLI.run("apply \(Hostile.root) -i \(c.file) \(flags)")
                let after = try Hostile.snapshot()
                if after != before { failures.append("\(c.name) [\(modeName)]: outside the root changed:\n\(before)\n---\n\(after)") }
                let expected = c.expected[mode == 3 ? 0 : mode]
                if status != expected {
                    failures.append("\(c.name) [\(modeName)]: exit \(status), documented \(expected) (\(c.why)); stderr: \(err)")
                }
                if status != 0 && !err.contains(c.file.split(separator: "/").last.map(String.init)!) {
                    failures.append("\(c.name) [\(modeName)]: the error does not name the input: \(err)")
                }
                // Nothing read into the root: no file under it has the victim's content (moby's check).
                let (_, leaked) = try Shell.run("grep -rl --devices=skip \(Hostile.secret) \(Hostile.root) || true")
                if !leaked.isEmpty { failures.append("\(c.name) [\(modeName)]: victim content read into the root: \(leaked)") }
            }
            try Shell.run("rm -rf \(Hostile.base)")
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// A layer whose file data exceeds --max-bytes fails, and through the store leaves nothing.
    @Test(.requires(.root)) func byteLimit() throws {
        let dir = try Fixture.tempDir("limit")
        defer { Fixture.cleanup(dir) }
        try Shell.check("head -c 3000000 /dev/zero > \(dir)/big && tar -C \(dir) -cf \(dir)/l.tar big && gzip -k \(dir)/l.tar")
        let (s1, _, e1) = try CLI.run("apply \(dir)/r1 -i \(dir)/l.tar.gz --max-bytes 1M")
        mkdir(dir + "/r1", 0o755)
        let (s2, _, e2) = try CLI.run("apply \(dir)/r1 -i \(dir)/l.tar.gz --max-bytes 1M")
        #expect(s1 != 0 && s2 == 1, "\(e1)")
        #expect(e2.contains("l.tar.gz") && e2.contains("entry big") && e2.contains("limit of 1048576 bytes"), "\(e2)")
        let (s3, _, e3) = try CLI.run("--home \(dir)/store import L -i \(dir)/l.tar.gz --max-bytes 1M")
        #expect(s3 == 1, "\(e3)")
        let (_, ls, _) = try CLI.run("--home \(dir)/store ls")
        #expect(ls.isEmpty)
        #expect(try Shell.run("ls \(dir)/store/vfs/dir").output.isEmpty)
        let (s4, out, _) = try CLI.run("apply \(dir)/r1 -i \(dir)/l.tar.gz --max-bytes 3M")
        #expect(s4 == 0 && out == "3000000\n")
    }
}
