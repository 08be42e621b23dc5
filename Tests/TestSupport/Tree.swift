// Test support: a fixture DSL that builds trees from operations, and tree manifests that
// compare two trees by path, type, mode, owner, size, content, link target, rdev, xattrs and
// hardlink groups.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

public enum Op: Sendable {
    case dir(String, mode: UInt32 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0)
    case file(String, String, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0)
    case bytes(String, [UInt8], mode: UInt32 = 0o644)
    case symlink(String, to: String)
    case hardlink(String, to: String)
    case fifo(String)
    case charDevice(String, major: UInt32, minor: UInt32)
    case remove(String)
    case chmod(String, UInt32)
    case chown(String, UInt32, UInt32)
    case xattr(String, String, String)
    /// Set mtime (and atime) to seconds + nanoseconds, not following symlinks.
    case time(String, Int, Int = 0)
    /// rename(2); where the kernel answers EXDEV (a directory on overlay without redirect_dir),
    /// copy and delete as `mv` does.
    case rename(String, String)
}

public struct TestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public enum Fixture {
    /// A fresh directory under /tmp; removed by `cleanup`.
    public static func tempDir(_ tag: String = "t") throws -> String {
        var template = Array("/tmp/diffkit-\(tag)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestError("mkdtemp failed: \(errno)")
        }
        return String(cString: p)
    }

    public static func cleanup(_ path: String) {
        let (parent, base) = LayerPath.split(Bytes.of(path))
        let fd = open(String(decoding: parent, as: UTF8.self), O_RDONLY | O_DIRECTORY)
        if fd >= 0 {
            try? removeTree(fd, base)
            close(fd)
        }
    }

    /// Apply operations in order below `root` (parents are created as needed, 0755).
    public static func apply(_ root: String, _ ops: [Op]) throws {
        for op in ops { try perform(root, op) }
    }

    static func check(_ r: Int32, _ what: String) throws {
        if r != 0 { throw TestError("\(what): errno \(errno)") }
    }

    static func parents(_ root: String, _ rel: String) throws {
        var p = root
        for c in rel.split(separator: "/").dropLast() {
            p += "/" + c
            if mkdir(p, 0o755) != 0 && errno != EEXIST { throw TestError("mkdir \(p): \(errno)") }
        }
    }

    static func perform(_ root: String, _ op: Op) throws {
        switch op {
        case let .dir(p, mode, uid, gid):
            try parents(root, p)
            let path = root + "/" + p
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw TestError("mkdir \(path): \(errno)") }
            try check(lchown(path, uid, gid), "chown \(path)")
            try check(chmod(path, mode_t(mode)), "chmod \(path)")
        case let .file(p, content, mode, uid, gid):
            try write(root, p, Array(content.utf8), mode: mode)
            try check(lchown(root + "/" + p, uid, gid), "chown \(p)")
            try check(chmod(root + "/" + p, mode_t(mode)), "chmod \(p)")
        case let .bytes(p, data, mode):
            try write(root, p, data, mode: mode)
        case let .symlink(p, target):
            try parents(root, p)
            try check(symlink(target, root + "/" + p), "symlink \(p)")
        case let .hardlink(p, target):
            try parents(root, p)
            try check(link(root + "/" + target, root + "/" + p), "link \(p)")
        case let .fifo(p):
            try parents(root, p)
            try check(mkfifo(root + "/" + p, 0o644), "mkfifo \(p)")
        case let .charDevice(p, ma, mi):
            try parents(root, p)
            try check(mknod(root + "/" + p, S_IFCHR | 0o600, dev_t(Sys.makedev(ma, mi))), "mknod \(p)")
        case let .remove(p):
            cleanup(root + "/" + p)
        case let .chmod(p, mode):
            try check(chmod(root + "/" + p, mode_t(mode)), "chmod \(p)")
        case let .chown(p, u, g):
            try check(lchown(root + "/" + p, u, g), "chown \(p)")
        case let .xattr(p, name, value):
            let r = Sys.setXattr(path: Bytes.of(root + "/" + p), name: Bytes.of(name), value: Bytes.of(value))
            if r != 0 { throw TestError("setxattr \(p) \(name): \(r)") }
        case let .rename(from, to):
            try parents(root, to)
            if Glibc.rename(root + "/" + from, root + "/" + to) != 0 {
                guard errno == EXDEV else { throw TestError("rename \(from): \(errno)") }
                try Shell.check("mv '\(root)/\(from)' '\(root)/\(to)'")
            }
        case let .time(p, sec, nsec):
            var ts = [timespec(tv_sec: sec, tv_nsec: nsec), timespec(tv_sec: sec, tv_nsec: nsec)]
            try check(utimensat(AT_FDCWD, root + "/" + p, &ts, AT_SYMLINK_NOFOLLOW), "utimes \(p)")
        }
    }

    static func write(_ root: String, _ p: String, _ data: [UInt8], mode: UInt32) throws {
        try parents(root, p)
        let path = root + "/" + p
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
        if fd < 0 { throw TestError("create \(path): \(errno)") }
        defer { close(fd) }
        try data.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: path) }
    }

    /// A tree from operations in a new temp dir.
    public static func make(_ ops: [Op], tag: String = "tree") throws -> String {
        let d = try tempDir(tag)
        try apply(d, ops)
        return d
    }

    /// `cp -a` of a tree (through DiffKit's own copier).
    public static func copy(_ src: String) throws -> String {
        let d = try tempDir("copy")
        try TreeCopy.copy(from: Bytes.of(src), to: Bytes.of(d))
        return d
    }
}

/// One line per entry, comparable across trees: directory mtimes left out (extraction rewrites
/// them), file mtimes to the second (tar keeps seconds).
public enum Manifest {
    public static func of(_ root: String, mtimes: Bool = true) throws -> [String] {
        var lines: [String] = []
        var groups: [UInt64: String] = [:]
        try Walker.walk(root: Bytes.of(root), visit: { dir, name, info in
            let path = Bytes.string(dir.child(name))
            var line = "\(path) \(info.kind) \(String(info.permissions, radix: 8)) \(info.uid):\(info.gid)"
            switch info.kind {
            case .regular:
                line += " size=\(info.size) sum=\(try digest(dir.absoluteChild(name)))"
                if mtimes { line += " mtime=\(info.mtime)" }
            case .symlink:
                line += " -> " + Bytes.string(try Sys.readlinkat(dir.fd, name))
            case .characterDevice, .blockDevice:
                line += " rdev=\(Sys.major(info.rdev)),\(Sys.minor(info.rdev))"
            default: break
            }
            if info.links > 1 && !info.isDirectory {
                if let g = groups[info.inode] { line += " link=\(g)" } else { groups[info.inode] = path }
            }
            let x = try LayerXattrs.read(path: dir.absoluteChild(name))
            if !x.isEmpty { line += " xattrs=" + x.map { Bytes.string($0.name) + "=" + Bytes.string($0.value) }.joined(separator: ",") }
            lines.append(line)
            return .descend
        })
        return lines
    }

    /// FNV-1a 64 of a file's content.
    static func digest(_ path: [UInt8]) throws -> String {
        let fd = try Sys.open(path, O_RDONLY)
        defer { close(fd) }
        var h: UInt64 = 0xcbf29ce484222325
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = try Sys.read(fd, buf, 65536, shown: path)
            if n == 0 { break }
            let p = buf.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { h = (h ^ UInt64(p[i])) &* 0x100000001b3 }
        }
        return String(h, radix: 16)
    }
}

/// The paths of a tree, directories with a trailing `/` (a manifest without the metadata).
public func listing(_ root: String) throws -> [String] {
    try Manifest.of(root).map { line in
        let parts = line.split(separator: " ")
        return String(parts[0]) + (parts[1] == "directory" ? "/" : "")
    }
}

/// Probes behind `Need` (Requires.swift), and the old run-time gates, kept for test files
/// written against them: they no longer return false (a silent pass) but cancel the test, which
/// the runner reports — declare `.requires(…)` instead, so the skip is decided before the test.
public enum Capability {
    public static var isRoot: Bool { geteuid() == 0 }
    public static var required: Bool { Skips.required }

    @available(*, deprecated, message: "use @Test(.requires(.root))")
    public static func root() throws -> Bool {
        try gate([.root])
    }

    /// The kernel has `filesystem` (overlay, xfs, btrfs) in /proc/filesystems, loading its module if needed.
    public static func hasFilesystem(_ filesystem: String) -> Bool {
        func listed() -> Bool {
            guard let text = try? Sys.readFile(Bytes.of("/proc/filesystems")) else { return false }
            return String(decoding: text, as: UTF8.self).contains("\t\(filesystem)\n")
        }
        if listed() { return true }
        if isRoot { _ = try? Shell.run("modprobe \(filesystem) 2>/dev/null") }
        return listed()
    }

    @available(*, deprecated, message: "use @Test(.requires(.root, .filesystem(\"NAME\")))")
    public static func kernel(_ filesystem: String) throws -> Bool {
        try gate([.root, .filesystem(filesystem)])
    }

    /// True when every need is met; otherwise a failure (where a skip is not allowed) or a cancel.
    static func gate(_ needs: [Need]) throws -> Bool {
        guard let need = needs.first(where: { !$0.isMet }) else { return true }
        let key = Test.current.map(Skips.key) ?? "?"
        if !Skips.mayStaySkipped(key, need) { throw TestError(Skips.refusal(key, need)) }
        try Test.cancel(Comment(rawValue: Skips.reason(key, need)))
    }
}

/// Shell commands for test set-up (mkfs, mount, losetup).
public enum Shell {
    /// Run `command` with /bin/sh; returns the exit status and the output (stdout and stderr).
    @discardableResult
    public static func run(_ command: String) throws -> (status: Int32, output: String) {
        let dir = try Fixture.tempDir("sh")
        defer { Fixture.cleanup(dir) }
        let status = system("(\(command)) >\(dir)/out 2>&1")
        let out = String(decoding: try Pipe.read(dir + "/out"), as: UTF8.self)
        return (status == 0 ? 0 : max(1, (status >> 8) & 0xff), out)
    }

    /// Run `command`, throwing with its output when it fails.
    public static func check(_ command: String) throws {
        let (status, out) = try run(command)
        if status != 0 { throw TestError("\(command): exit \(status): \(out)") }
    }
}

/// The temp dir of a tar made by `Pipe.tarFile` (to clean up).
public func tarDir(_ tar: String) -> String { String(tar.dropLast("/out.tar".count)) }

/// Run a tar through DiffKit's writer into memory-backed files for tests.
public enum Pipe {
    /// Write a tar to a temp file with `body`, return its path.
    public static func tarFile(_ body: (Int32) throws -> Void) throws -> String {
        let dir = try Fixture.tempDir("tar")
        let path = dir + "/out.tar"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw TestError("create \(path)") }
        defer { close(fd) }
        try body(fd)
        return path
    }

    public static func read(_ path: String) throws -> [UInt8] {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buf.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, 65536, shown: Bytes.of(path)) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    /// Headers of every entry of a tar file.
    public static func headers(_ path: String) throws -> [TarHeader] {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY)
        defer { close(fd) }
        let r = try TarReader(fd: fd, name: path)
        var out: [TarHeader] = []
        while let h = try r.next() { out.append(h) }
        return out
    }

    /// Apply a tar file onto a directory.
    public static func apply(_ path: String, to root: String, options: ApplyOptions = ApplyOptions()) throws -> Int64 {
        let fd = try Sys.open(Bytes.of(path), O_RDONLY)
        defer { close(fd) }
        return try Layers.apply(root: Bytes.of(root), from: fd, name: path, options: options)
    }
}
