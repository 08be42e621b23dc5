// Overlay2's probes: whether the filesystem under home reports entry types, and whether the
// running kernel's overlay keeps a layer's diff dir a faithful change set (moby's native-diff
// check, with metacopy and redirect_dir), cached per boot in home.
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

extension Overlay2Driver {
    // MARK: probes

    /// getdents reports entry types on the filesystem of `dir` (overlay needs d_type).
    static func supportsDType(_ dir: [UInt8]) -> Bool {
        let probe = Bytes.of(".d_type-check-\(getpid())")
        guard let fd = try? Sys.open(dir, O_RDONLY | O_DIRECTORY) else { return false }
        defer { Sys.close(fd) }
        guard let f = try? Sys.openat(fd, probe, O_CREAT | O_WRONLY | O_CLOEXEC, mode: 0o600) else { return false }
        Sys.close(f)
        defer { try? Sys.unlinkat(fd, probe) }
        return (try? Sys.readDirectory(fd, shown: dir))?.first(where: { $0.name == probe })?.type == 8 /* DT_REG */
    }

    /// The probe's answer is kept in `home/.native-diff` for the running kernel (boot id, release
    /// and mount options), as containers/storage keeps it in its run root: a command-line tool
    /// would otherwise pay for a test mount on every start.
    static func cachedProbe(home: [UInt8], mountOptions: [String]) throws -> (usable: Bool, reason: String, features: [String]) {
        let bootID = (try? Sys.readFile(Bytes.of("/proc/sys/kernel/random/boot_id"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let key = bootID.trimmingCharacters(in: ["\n"]) + " " + Sys.kernelVersion().map(String.init).joined(separator: ".") + " " + mountOptions.joined(separator: ",")
        let file = home + Bytes.of("/.native-diff")
        if let text = try? Sys.readFile(file) {
            let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            if lines.count >= 2, lines[0] == key {
                let features = lines.count > 3 ? lines[3].split(separator: ",").map(String.init) : []
                return (lines[1] == "true", lines.count > 2 ? String(lines[2]) : "", features)
            }
        }
        let result = try probeNativeDiff(home: home, mountOptions: mountOptions, xattrPrefix: "trusted.")
        try? writeFileAtomically(file, Bytes.of("\(key)\n\(result.usable)\n\(result.reason)\n\(result.features.joined(separator: ","))\n"), mode: 0o644)
        return result
    }

    /// moby's native-diff check, on a real mount in a scratch dir of home: a copy-up into an
    /// opaque directory must not mark the upper copy opaque (kernels before 4.8). Beyond moby, a
    /// chmod that copies up metadata only (`metacopy`) and a rename that leaves a redirect
    /// (`redirect_dir`) keep the native diff, as features it reads through the mounts. Throws
    /// when overlay cannot be mounted at all.
    static func probeNativeDiff(home: [UInt8], mountOptions: [String], xattrPrefix: String) throws -> (usable: Bool, reason: String, features: [String]) {
        let td = Bytes.string(try Sys.makeTemporaryDirectory(home + Bytes.of("/native-diff-check-XXXXXX")))
        defer { try? removeTree(AT_FDCWD, Bytes.of(td)) }
        for d in ["l1", "l1/d", "l2", "l2/d", "l3", "work", "merged"] { try? Sys.mkdir(Bytes.of(td + "/" + d), mode: 0o755) }
        let lowerFile = Bytes.of(td + "/l1/f")
        if let f = try? Sys.open(lowerFile, O_CREAT | O_WRONLY | O_CLOEXEC, mode: 0o644) {
            try? Bytes.of("lower").withUnsafeBytes { try Sys.writeAll(f, $0, shown: td + "/l1/f") }
            Sys.close(f)
        }
        let opaque = Bytes.of(xattrPrefix + "overlay.opaque")
        let r = Sys.setXattr(path: Bytes.of(td + "/l2/d"), name: opaque, value: [UInt8(ascii: "y")])
        if r != 0 { throw SystemError("setxattr \(xattrPrefix)overlay.opaque", Bytes.of(td + "/l2/d"), errno: r) }
        let merged = Bytes.of(td + "/merged")
        do {
            try Sys.mountOverlay(target: merged, data: (mountOptions + ["lowerdir=\(td)/l2:\(td)/l1", "upperdir=\(td)/l3", "workdir=\(td)/work"]).joined(separator: ","))
        } catch {
            throw DriverError.notSupportedBecause(driver: "overlay2", reason: "overlay cannot be mounted on \(Bytes.string(home))", underlying: error)
        }
        defer { try? Sys.unmount(merged) }

        if let nf = try? Sys.open(Bytes.of(td + "/merged/d/f"), O_CREAT | O_WRONLY | O_CLOEXEC, mode: 0o644) { Sys.close(nf) }
        if try Sys.getXattr(path: Bytes.of(td + "/l3/d"), name: opaque) == [UInt8(ascii: "y")] {
            return (false, "opaque flag erroneously copied up, consider update to kernel 4.8 or later", [])
        }
        try? Sys.chmod(Bytes.of(td + "/merged/f"), mode: 0o600)
        let up = try? Sys.fstatat(AT_FDCWD, Bytes.of(td + "/l3/f"))
        let metacopy = try Sys.getXattr(path: Bytes.of(td + "/l3/f"), name: Bytes.of(xattrPrefix + "overlay.metacopy"))
        var features: [String] = []
        if up?.st_size != 5 { return (false, "a chmod copied up a file of the wrong size", []) }
        if metacopy != nil { features.append("metacopy") }
        let renamed = Sys.tryRename(Bytes.of(td + "/merged/d"), Bytes.of(td + "/merged/d2"))
        if renamed != 0 {
            if renamed == EXDEV { return (true, "", features) }
            return (false, "rename in the merged directory failed: \(renamed)", [])
        }

        if try Sys.getXattr(path: Bytes.of(td + "/l3/d2"), name: Bytes.of(xattrPrefix + "overlay.redirect")) != nil {
            features.insert("redirect_dir", at: 0)
        }
        return (true, "", features)
    }
}
