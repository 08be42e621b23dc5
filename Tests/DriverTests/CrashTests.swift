// Nothing lost on failure: `kill -9` of an import at many points, two processes importing and
// mounting in one store, threads taking and dropping one layer's mount.
import DiffKitArchive
import DiffKitSystem
import Dispatch
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum Crash {
    /// A base tar and a layer tar on it: 300 small files, 4 of 2 MiB, whiteouts of base files
    /// and an opaque directory, so an import spends time in every kind of entry.
    static func tars(_ dir: String) throws -> (base: String, layer: String) {
        try Shell.check("""
            set -e; cd \(dir); mkdir -p b/etc b/opq l/etc l/opq l/many
            for i in $(seq 1 50); do echo base$i > b/etc/f$i; echo o$i > b/opq/o$i; done
            tar -cf base.tar -C b .
            for i in $(seq 1 300); do echo layer$i > l/many/m$i; done
            for i in 1 2 3 4; do head -c 2097152 /dev/urandom > l/big$i; done
            for i in $(seq 1 20); do : > l/etc/.wh.f$i; done
            : > l/opq/.wh..wh..opq; echo new > l/opq/new
            tar -cf layer.tar -C l .
            """)
        return (dir + "/base.tar", dir + "/layer.tar")
    }

    static func pidAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        // A zombie (reparented, not yet reaped) has closed its files and dropped its locks --
        // once its other threads are gone too: a killed leader is a zombie while a thread of it
        // (a read-ahead blocked on the fifo) is still exiting and holds the files.
        let status = (try? Pipe.read("/proc/\(pid)/status")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return !status.contains("State:\tZ") || !status.contains("Threads:\t1\n")
    }

    static func waitGone(_ pid: Int32) {
        for _ in 0..<500 where pidAlive(pid) { usleep(10_000) }
    }
}

@Suite(.serialized) struct CrashTests {
    /// The import is killed after a growing prefix of the layer has been fed to it (through a fifo,
    /// so it is blocked mid-stream), and at random moments of a full-speed import; each time the
    /// reopened store has no trace of the layer, the parent is as it was, and a re-import works.
    @Test(.requires(.root), arguments: ["vfs", "overlay2"])
    func killDuringImport(driver: String) throws {
        let dir = try Fixture.tempDir("crash")
        defer { Fixture.cleanup(dir) }
        let (baseTar, layerTar) = try Crash.tars(dir)
        let home = dir + "/home"
        let cli = "\(CLI.binary) --driver \(driver) --home \(home)"
        try Shell.check("\(cli) import base -i \(baseTar) >/dev/null")
        let baseView = { () throws -> [String] in
            let store = try LayerStore(driverName: driver, home: Bytes.of(home))
            defer { try? store.driver.cleanup() }
            let path = try store.mount(id: "base")
            defer { try? store.unmount(id: "base") }
            return try Manifest.of(Bytes.string(path))
        }
        let parentBefore = try baseView()
        let layerSize = try Sys.fstatat(AT_FDCWD, Bytes.of(layerTar)).st_size
        var trials: [String] = []

        func check(_ label: String) throws {
            let store = try LayerStore(driverName: driver, home: Bytes.of(home))
            #expect(try store.list().map(\.id) == ["base"], "\(label)")
            #expect(!store.driver.exists(id: "top"), "\(label)")
            let (_, leftovers) = try Shell.run("ls -a \(home)/layers | grep -v '^\\.\\.\\?$' | grep -v '^\\.lock' | grep -v '^\\.mounts$' | grep -v '^base$' | grep -v '^base.tar-split$'")
            #expect(leftovers.isEmpty, "\(label): \(leftovers)")
            #expect(try baseView() == parentBefore, "\(label): the parent changed")
            trials.append(label)
        }

        // Blocked mid-stream after a prefix of the tar, at 12 points through it.
        for k in 1...12 {
            let cut = Int(layerSize) * k / 13 + (k * 97) % 512
            let fifo = dir + "/fifo"
            unlink(fifo)
            mkfifo(fifo, 0o600)
            try Shell.check("\(cli) import top --parent base <\(fifo) >/dev/null 2>&1 & echo $! > \(dir)/pid")
            let w = open(fifo, O_WRONLY)
            let data = try Pipe.read(layerTar)
            _ = data.withUnsafeBytes { write(w, $0.baseAddress, cut) }
            let pid = Int32(String(decoding: try Pipe.read(dir + "/pid"), as: UTF8.self).filter(\.isNumber))!
            usleep(150_000)
            kill(pid, SIGKILL)
            close(w)
            Crash.waitGone(pid)
            try check("killed after \(cut) of \(layerSize) bytes")
        }
        // Full speed, killed after a random delay.
        var rng = SplitMix(seed: 42)
        for _ in 1...8 {
            let delay = UInt32(rng.next() % 60_000)
            try Shell.check("\(cli) import top --parent base -i \(layerTar) >/dev/null 2>&1 & echo $! > \(dir)/pid")
            let pid = Int32(String(decoding: try Pipe.read(dir + "/pid"), as: UTF8.self).filter(\.isNumber))!
            usleep(delay)
            kill(pid, SIGKILL)
            Crash.waitGone(pid)
            let (_, ls) = try Shell.run("\(cli) ls")
            if ls.contains("top") {
                // It finished before the kill: a complete layer; remove it for the next trial.
                try Shell.check("\(cli) rm top")
            }
            try check("killed after \(delay) µs")
        }
        #expect(trials.count == 20)
        // A re-import succeeds and gives the layer's tree.
        try Shell.check("\(cli) import top --parent base -i \(layerTar) >/dev/null")
        let store = try LayerStore(driverName: driver, home: Bytes.of(home))
        defer { try? store.driver.cleanup() }
        let top = Bytes.string(try store.mount(id: "top"))
        defer { try? store.unmount(id: "top") }
        let m = try Manifest.of(top)
        #expect(m.contains { $0.hasPrefix("many/m300 ") } && m.contains { $0.hasPrefix("opq/new ") })
        #expect(!m.contains { $0.hasPrefix("etc/f1 ") } && m.contains { $0.hasPrefix("etc/f21 ") } && !m.contains { $0.hasPrefix("opq/o1 ") })
    }

    /// Two processes import (separate chains on one shared base) and mount/umount the base in one
    /// overlay2 store at the same time: every layer lands whole, mounts balance, nothing stays mounted.
    @Test(.requires(.root)) func twoProcessesImportAndMount() throws {
        let dir = try Fixture.tempDir("stress")
        defer { Fixture.cleanup(dir) }
        let (baseTar, layerTar) = try Crash.tars(dir)
        let cli = "\(CLI.binary) --driver overlay2 --home \(dir)/home"
        try Shell.check("\(cli) import base -i \(baseTar) >/dev/null")
        let worker = { (name: String) in
            """
            p=base; for i in $(seq 1 8); do
              \(cli) import \(name)$i --parent $p -i \(layerTar) >/dev/null || exit 1
              \(cli) mount base >/dev/null || exit 2
              \(cli) mount \(name)$i >/dev/null || exit 3
              \(cli) umount \(name)$i || exit 4
              \(cli) umount base || exit 5
              p=\(name)$i
            done
            """
        }
        try writeFile(dir + "/a.sh", worker("a"))
        try writeFile(dir + "/b.sh", worker("b"))
        // Each in the background, its status in a file (the shell's `wait` is not reliable
        // under the test runner's signal set-up).
        try Shell.check("(sh \(dir)/a.sh > \(dir)/a.log 2>&1; echo $? > \(dir)/a.rc) & (sh \(dir)/b.sh > \(dir)/b.log 2>&1; echo $? > \(dir)/b.rc) &")
        for _ in 0..<6000 where access(dir + "/a.rc", R_OK) != 0 || access(dir + "/b.rc", R_OK) != 0 { usleep(20_000) }
        usleep(50_000)
        let rc = try ["a", "b"].map { String(decoding: try Pipe.read(dir + "/\($0).rc"), as: UTF8.self) }
        let logs = try ["a", "b"].map { String(decoding: try Pipe.read(dir + "/\($0).log"), as: UTF8.self) }
        #expect(rc == ["0\n", "0\n"], "\(logs)")
        let store = try LayerStore(driverName: "overlay2", home: Bytes.of(dir + "/home"))
        defer { try? store.driver.cleanup() }
        #expect(try store.list().map(\.id).sorted() == ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "base"])
        for id in ["a8", "b8", "base"] { #expect(!store.driver.isMounted(id: id) || id == "base") }
        let (_, mounts) = try Shell.run("grep -c \(dir)/home /proc/self/mountinfo || true")
        #expect(mounts == "0\n", "still mounted: \(mounts)")
        let a8 = Bytes.string(try store.mount(id: "a8"))
        let b8 = Bytes.string(try store.mount(id: "b8"))
        #expect(try Manifest.of(a8) == Manifest.of(b8))
        try store.unmount(id: "a8")
        try store.unmount(id: "b8")
    }

    /// Mount counts across processes: mounted twice, it stays mounted after one umount.
    @Test(.requires(.root)) func mountCountsAcrossProcesses() throws {
        let dir = try Fixture.tempDir("counts")
        defer { Fixture.cleanup(dir) }
        let (baseTar, layerTar) = try Crash.tars(dir)
        let cli = "\(CLI.binary) --driver overlay2 --home \(dir)/home"
        try Shell.check("\(cli) import base -i \(baseTar) >/dev/null && \(cli) import top --parent base -i \(layerTar) >/dev/null")
        try Shell.check("\(cli) mount top >/dev/null && \(cli) mount top >/dev/null && \(cli) umount top")
        #expect(try Shell.run("grep -c \(dir)/home/overlay2 /proc/self/mountinfo").output == "1\n")
        try Shell.check("\(cli) umount top")
        #expect(try Shell.run("grep -c \(dir)/home/overlay2 /proc/self/mountinfo").output == "0\n")
    }

    /// Threads taking and dropping one layer's mount: it is mounted whenever one holds it, and
    /// unmounted at the end.
    @Test(.requires(.root)) func threadsGetAndPutOneLayer() throws {
        let dir = try Fixture.tempDir("threads")
        defer { Fixture.cleanup(dir) }
        let driver = try Overlay2Driver(home: Bytes.of(dir + "/o"), options: [:], idMap: .identity)
        defer { try? driver.cleanup() }
        try driver.create(id: "base", parent: nil, options: [:])
        try Fixture.apply(Bytes.string(try driver.getBytes(id: "base")), [.file("seen", "yes")])
        try driver.put(id: "base")
        try driver.create(id: "top", parent: "base", options: [:])
        let errors = Counter()
        let shared = driver
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<40 {
                do {
                    let path = try shared.getBytes(id: "top")
                    if access(Bytes.string(path) + "/seen", R_OK) != 0 { errors.add("not visible while held: errno \(errno)") }
                    try shared.put(id: "top")
                } catch { errors.add("\(error)") }
            }
        }
        #expect(errors.value == 0, "\(errors.messages)")
        #expect(!driver.isMounted(id: "top"))
    }
}

func writeFile(_ path: String, _ text: String) throws {
    let fd = try Sys.open(Bytes.of(path), O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
    defer { close(fd) }
    try Array(text.utf8).withUnsafeBytes { try Sys.writeAll(fd, $0, shown: path) }
}

/// Errors counted across threads, the first five kept.
final class Counter: Sendable {
    private let state = Locked((n: 0, seen: [String]()))
    func add(_ message: String) {
        state.withLock { s in
            s.n += 1
            if s.seen.count < 5 { s.seen.append(message) }
        }
    }
    var value: Int { state.withLock { $0.n } }
    var messages: [String] { state.withLock { $0.seen } }
}
