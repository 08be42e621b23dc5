// overlay2 size limits enforced by xfs project quotas, checked the way they are used: a store
// opened again (each difftool command is a new process) must keep every layer's limit, for a
// layer's own `size` as for `overlay2.size`. Each limited layer takes a 20 MiB write and must stop
// at its limit. Runs where xfs has quota support (a kernel with CONFIG_XFS_QUOTA); elsewhere it is
// reported as skipped (allowed in Tests/ALLOWED_SKIPS), and DIFFKIT_REQUIRE_QUOTA=1 makes that a failure.
// scripts/kernel-matrix.sh runs it under a kernel that has xfs quotas.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum XFSQuota {
    /// Write up to `megabytes` MiB to a new file: the bytes write(2) took and the errno that
    /// stopped it (0 when all were written and fsync succeeded).
    static func fill(_ path: String, megabytes: Int) -> (bytes: Int, errno: Int32) {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return (0, errno) }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        var total = 0
        while total < megabytes << 20 {
            let n = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 { return (total, errno) }
            if n == 0 { return (total, ENOSPC) }
            total += n
        }
        return (total, fsync(fd) == 0 ? 0 : errno)
    }

    /// Fill `dir` with 20 MiB and check that a `limit` stopped it; prints the figure.
    static func expectStopped(_ dir: String, limit: Int, _ what: String) {
        let (bytes, e) = fill(dir + "/20M", megabytes: 20)
        print("diffkit-quota-figure: \(what): limit \(limit) bytes, a 20 MiB write got \(bytes) bytes (\(e == 0 ? "no error" : String(cString: strerror(e))))")
        #expect(e == EDQUOT || e == ENOSPC, "\(what): the 20 MiB write was not stopped")
        #expect(bytes <= limit && bytes >= limit - (1 << 20), "\(what): \(bytes) bytes written against a limit of \(limit)")
    }
}

@Suite(.serialized) struct XFSQuotaTests {
    /// graphtest's SetQuota through the library, with the store opened again before the writes:
    /// a layer's own `size`, `overlay2.size` for a read-write layer without one, and a layer's
    /// `size` above `overlay2.size`.
    @Test(.requires(.root, .filesystem("overlay"), .filesystem("xfs"), .xfsQuota))
    func limitsHoldWhenTheStoreIsOpenedAgain() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.xfs -q -f", megabytes: 320, options: "pquota")
        defer { fs.close() }
        let home = Bytes.of(fs.mountPoint + "/home")
        let options = ["overlay2.size": "10M"]
        do {
            let d = try Overlay2Driver(home: home, options: options)
            #expect(Dictionary(uniqueKeysWithValues: d.status())["Project Quota"] == "true")
            // A read-only base: "sized" is the first layer given a project ID of this store.
            try d.create(id: "base", parent: nil, options: [:])
            try d.createReadWrite(id: "sized", parent: "base", options: ["size": "10M"])
            try d.createReadWrite(id: "default", parent: "base", options: [:])
            try d.createReadWrite(id: "larger", parent: "base", options: ["size": "15M"])
        }
        let d = try Overlay2Driver(home: home, options: options)
        defer { try? d.cleanup() }
        for (id, limit) in [("sized", 10 << 20), ("default", 10 << 20), ("larger", 15 << 20)] {
            #expect(try d.metadata(id: id)["QuotaLimit"] == String(limit), "\(id)")
            XFSQuota.expectStopped(Bytes.string(try d.getBytes(id: id)), limit: limit, "library, layer \(id)")
            try d.put(id: id)
        }
    }

    /// The same through difftool, one process per command, as issue 14 found it under Linux 6.1:
    /// `create c --rw --storage-opt size=10M` in a store opened with `overlay2.size=10M`.
    @Test(.requires(.root, .filesystem("overlay"), .filesystem("xfs"), .xfsQuota))
    func limitsThroughTheCommand() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.xfs -q -f", megabytes: 320, options: "pquota")
        defer { fs.close() }
        let h = "--driver overlay2 --home \(fs.mountPoint)/store --storage-opt overlay2.size=10M"
        #expect(try CLI.run("\(h) create base").0 == 0)
        #expect(try CLI.run("\(h) create c --parent base --rw --storage-opt size=10M").0 == 0)
        #expect(try CLI.run("\(h) create d --parent base --rw").0 == 0)
        #expect(try CLI.run("\(h) status").1.contains("Project Quota: true"))
        for layer in ["c", "d"] {
            #expect(try CLI.run("\(h) metadata \(layer)").1.contains("QuotaLimit: \(10 << 20)\n"), "\(layer)")
            let (status, out, err) = try CLI.run("\(h) mount \(layer)")
            #expect(status == 0, "\(err)")
            guard status == 0 else { continue }
            let option = layer == "c" ? "create --rw --storage-opt size=10M" : "create --rw with overlay2.size=10M"
            XFSQuota.expectStopped(String(out.split(separator: "\n").first ?? ""), limit: 10 << 20, "difftool \(option)")
            #expect(try CLI.run("\(h) umount \(layer)").0 == 0)
        }
    }
}
