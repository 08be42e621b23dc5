// Real engines for the tests: Debian's dockerd and docker-registry, each started by the test on
// private paths (a socket in a temp dir, loopback only) and stopped by its PID, even on failure
// (call `stop()` in a `defer`).
import DiffKitSystem
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Paths of the engines' programs (Debian's packages; /usr/local/bin may hold another docker client).
public enum Engines {
    public static let dockerd = "/usr/sbin/dockerd"
    public static let docker = "/usr/bin/docker"
    public static let registry = "/usr/bin/docker-registry"

    /// Wait up to `seconds` for `ready` to hold; false if it never did.
    static func wait(seconds: Int, _ ready: () -> Bool) -> Bool {
        for _ in 0..<(seconds * 10) {
            if ready() { return true }
            usleep(100_000)
        }
        return ready()
    }

    /// Stop a process started in the background: SIGTERM, then SIGKILL after `grace` seconds.
    static func stop(pid: pid_t, grace: Int) {
        guard pid > 0, kill(pid, 0) == 0 else { return }
        kill(pid, SIGTERM)
        if !wait(seconds: grace, { kill(pid, 0) != 0 }) { kill(pid, SIGKILL) }
        _ = wait(seconds: 5) { kill(pid, 0) != 0 }
    }

    /// Whether `pid` is a live process whose command line mentions `text` (not another process
    /// that got the number since).
    static func isRunning(_ pid: pid_t, mentioning text: String) -> Bool {
        guard pid > 0, kill(pid, 0) == 0, let cmdline = try? Pipe.read("/proc/\(pid)/cmdline") else { return false }
        return String(decoding: cmdline.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(text)
    }

    /// Start `command` (a shell command line) in the background in a session of its own, its
    /// output in `log`, with no descriptor of the test process but stdin, stdout and stderr: a
    /// daemon lives for the whole test, so one it inherited (another test's file opened without
    /// close-on-exec, holding a flock) would stay open, and locked, as long. Its PID.
    static func startDetached(_ command: String, in dir: String, log: String) throws -> pid_t {
        try Fixture.apply(dir, [.file("launch", """
            #!/bin/bash
            for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
            exec setsid "$@"

            """, mode: 0o755)])
        try Shell.check("'\(dir)/launch' \(command) >'\(log)' 2>&1 </dev/null & echo $! >'\(dir)/shell.pid'")
        return readPID(dir + "/shell.pid")
    }

    /// Read a pid written by a daemon or by the shell's `echo $!`.
    static func readPID(_ path: String) -> pid_t {
        guard let bytes = try? Pipe.read(path) else { return 0 }
        return pid_t(String(decoding: bytes, as: UTF8.self).trimmingWhitespace()) ?? 0
    }

    /// A free TCP port on 127.0.0.1 (bound, read and released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw TestError("bind 127.0.0.1:0: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// A dockerd of the test's own: its socket, data root, exec root and pid file in one temp dir;
/// no bridge, no iptables, nothing on TCP. `docker(_:)` runs Debian's client against it.
public final class DockerDaemon {
    /// The temp dir holding everything of this daemon.
    public let dir: String
    /// The daemon's data root (`DIR/root`): `image/<driver>/layerdb`, `<driver>/`, …
    public var dataRoot: String { dir + "/root" }
    /// `unix://DIR/docker.sock`
    public var host: String { "unix://" + dir + "/docker.sock" }
    private var pid: pid_t = 0

    /// Start dockerd with `storageDriver` (vfs, overlay2, btrfs) and wait until it answers.
    /// `dataRoot` puts the data root elsewhere (on a btrfs loop image, say).
    public init(storageDriver: String, dataRoot: String? = nil) throws {
        dir = try Fixture.tempDir("dockerd")
        let root = dataRoot ?? dir + "/root"
        if dataRoot != nil { try Shell.check("ln -s '\(root)' '\(dir)/root'") }
        try Shell.check("mkdir -p '\(root)' '\(dir)/exec'")
        let command = "\(Engines.dockerd) --host \(host) --data-root '\(root)' --exec-root '\(dir)/exec'"
            + " --pidfile '\(dir)/dockerd.pid' --bridge none --iptables=false --ip6tables=false --ip-masq=false"
            + " --storage-driver \(storageDriver) --log-level warn"
        pid = try Engines.startDetached(command, in: dir, log: dir + "/dockerd.log")
        let ready = Engines.wait(seconds: 60) { (try? Shell.run("\(Engines.docker) -H \(host) version"))?.status == 0 }
        if !ready {
            let log = (try? Pipe.read(dir + "/dockerd.log")).map { String(decoding: $0, as: UTF8.self) } ?? ""
            stop()
            throw TestError("dockerd (\(storageDriver)) did not start: \(log)")
        }
    }

    /// Run `docker ARGS` against this daemon; throws with the output when it fails.
    @discardableResult
    public func docker(_ args: String) throws -> String {
        let (status, out) = try Shell.run("\(Engines.docker) -H \(host) \(args)")
        if status != 0 { throw TestError("docker \(args): exit \(status): \(out)") }
        return out
    }

    /// Stop the daemon by its PID (SIGTERM, then SIGKILL), then the containerd it started (its
    /// own session, so a daemon killed before it could stop containerd would leave it running),
    /// unmount what they left below the directory, and remove the directory.
    public func stop() {
        let containerd = Engines.readPID(dir + "/exec/containerd/containerd.pid")
        Engines.stop(pid: pid, grace: 20)
        pid = 0
        if Engines.isRunning(containerd, mentioning: dir) { Engines.stop(pid: containerd, grace: 10) }
        _ = try? Shell.run("grep -o ' \(dir)[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l")
        Fixture.cleanup(dir)
    }

    deinit { if pid != 0 { stop() } }
}

/// Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1 at a free port, with
/// its own storage dir; `address` is `127.0.0.1:PORT`.
public final class Registry {
    public let dir: String
    public let address: String
    private var pid: pid_t = 0

    public init() throws {
        dir = try Fixture.tempDir("registry")
        let port = try Engines.freePort()
        address = "127.0.0.1:\(port)"
        let config = """
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: \(dir)/data
              delete:
                enabled: true
            http:
              addr: \(address)
            """
        // Written directly: a here-document inside Shell.run's parentheses would not end.
        try Fixture.apply(dir, [.file("config.yml", config + "\n")])
        pid = try Engines.startDetached("\(Engines.registry) serve '\(dir)/config.yml'", in: dir, log: dir + "/registry.log")
        let ready = Engines.wait(seconds: 30) { (try? Shell.run("curl -sf http://\(address)/v2/"))?.status == 0 }
        if !ready {
            let log = (try? Pipe.read(dir + "/registry.log")).map { String(decoding: $0, as: UTF8.self) } ?? ""
            stop()
            throw TestError("docker-registry did not start on \(address): \(log)")
        }
    }

    /// Stop the registry by its PID and remove its directory.
    public func stop() {
        Engines.stop(pid: pid, grace: 10)
        pid = 0
        Fixture.cleanup(dir)
    }

    deinit { if pid != 0 { stop() } }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}
