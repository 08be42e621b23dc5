// Options shared by several commands, and output plumbing.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers

#if canImport(Glibc)
import Glibc
#endif

struct StoreOptions: ParsableArguments {
    @Option(help: "Storage driver.")
    var driver: DriverChoice = .vfs

    @Option(help: "Store directory (default: $XDG_DATA_HOME/difftool, else ~/.local/share/difftool).")
    var home: String?

    @Option(name: .customLong("storage-opt"), help: "K=V: a driver option (vfs.*, …) or a layer option (size).")
    var storageOpt: [String] = []

    @Option(help: ArgumentHelp(
        "Open an engine's own store in place, read-only: docker:PATH (a docker data root) or containers:PATH (a containers/storage root). Mounts go below --home.",
        valueName: "engine:path"))
    var adopt: String?

    @Option(name: .customLong("adopt-driver"), help: ArgumentHelp("With --adopt: the driver whose layers to read, where the store has several.", valueName: "driver"))
    var adoptDriver: String?

    var homePath: String {
        if let home { return home }
        if let x = getenv("XDG_DATA_HOME").map({ String(cString: $0) }), !x.isEmpty { return x + "/difftool" }
        return (getenv("HOME").map { String(cString: $0) } ?? "/root") + "/.local/share/difftool"
    }

    /// (driver options, layer options), split by whether the key names a driver.
    func split() throws -> ([String: String], [String: String]) {
        var d: [String: String] = [:], l: [String: String] = [:]
        for o in storageOpt {
            guard let eq = o.firstIndex(of: "=") else { throw CLIError(message: "--storage-opt '\(o)': expected KEY=VALUE") }
            let k = String(o[..<eq]), v = String(o[o.index(after: eq)...])
            if k.contains(".") { d[k] = v } else { l[k] = v }
        }
        return (d, l)
    }

    func open(idMap: IDMap = .identity) throws -> (LayerStore, [String: String]) {
        if let adopt { throw AdoptOptions.notAvailable(adopt) }
        let (d, l) = try split()
        return (try LayerStore(driverName: driver.rawValue, home: Bytes.of(homePath), driverOptions: d, idMap: idMap), l)
    }
}

struct IDMapOptions: ParsableArguments {
    @Option(name: .customLong("uid-map"), help: "CONTAINER:HOST:SIZE (repeatable).")
    var uidMap: [String] = []
    @Option(name: .customLong("gid-map"), help: "CONTAINER:HOST:SIZE (repeatable).")
    var gidMap: [String] = []

    func map() throws -> IDMap {
        let map = IDMap(uids: try uidMap.map(IDRange.init(parsing:)), gids: try gidMap.map(IDRange.init(parsing:)))
        try map.validate()
        return map
    }
}

/// How deletions look in the directory: `--whiteouts plain|overlay|aufs`.
struct WhiteoutOption: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Whiteout form of the directory: plain (deletions are absent files), overlay (an overlay upper: 0/0 devices and the opaque xattr), aufs (.wh. files kept).",
        valueName: "form"))
    var whiteouts: WhiteoutChoice = .plain
    @Flag(help: "Same as --whiteouts overlay.") var overlay = false
    @Flag(help: "With overlay: the upper uses user.overlay.* xattrs (userxattr) instead of trusted.overlay.*.")
    var userxattr = false

    var form: WhiteoutForm { (overlay ? .overlay : whiteouts).form(userxattr: userxattr) }
}

struct ProfileOption: ParsableArguments {
    @Option(help: "Header profile: moby (type bits in mode, user/group names) or containerd.")
    var profile: ProfileChoice = .moby

    func exportOptions(idMap: IDMap = .identity) -> ExportOptions {
        ExportOptions(idMap: idMap, profile: profile.profile)
    }
}

/// `-o FILE` is written to a temporary name beside it and renamed at the end, so a failed
/// export leaves nothing behind; a device or fifo is written in place; without `-o`, stdout.
enum FileOutput {
    /// The temporary file being written, removed when the command fails.
    static let pending = Locked<[UInt8]?>(nil)

    static func with(_ path: String?, _ body: (Int32, String) throws -> Void) throws {
        guard let path else {
            try body(1, "stdout")
            return
        }
        // A device or a fifo (-o /dev/null, a pipe) is written in place, never replaced.
        if let st = try Sys.lstatIfExists(AT_FDCWD, Bytes.of(path)), st.st_mode & S_IFMT != S_IFREG {
            let fd = try Sys.open(Bytes.of(path), O_WRONLY)
            defer { Sys.close(fd) }
            try body(fd, path)
            return
        }
        let tmp = Bytes.of(path + ".difftool-\(getpid()).tmp")
        let fd = try Sys.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        pending.withLock { $0 = tmp }
        do {
            try body(fd, path)
            if fsync(fd) != 0 && errno != EINVAL { throw SystemError("fsync", tmp, errno: errno) }
        } catch {
            Sys.close(fd)
            cleanupPending()
            throw error
        }
        Sys.close(fd)
        if Sys.withCString(tmp, { t in Sys.withCString(Bytes.of(path)) { rename(t, $0) } }) != 0 {
            let e = errno
            cleanupPending()
            throw SystemError("rename", Bytes.of(path), errno: e)
        }
        pending.withLock { $0 = nil }
    }

    static func cleanupPending() {
        pending.withLock { p in
            if let p { _ = Sys.withCString(p) { unlink($0) } }
            p = nil
        }
    }
}

func withInput<R>(_ path: String?, _ body: (Int32, String) throws -> R) throws -> R {
    let name = path ?? "stdin"
    let fd = try path.map { try Sys.open(Bytes.of($0), O_RDONLY) } ?? 0
    defer { if path != nil { Sys.close(fd) } }
    do {
        return try body(fd, name)
    } catch let e as DiffKitError {
        // Archive errors name the file already; an entry's refusal is said of this input too.
        if case .applyFailed = e { throw e }
        throw CLIError(message: "\(name): \(e.description)")
    }
}

/// `--max-bytes SIZE`: the most file data an apply may write.
struct LimitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Refuse a layer whose file data exceeds SIZE (e.g. 20G; default: no limit).", valueName: "size"))
    var maxBytes: ByteCount?

    func apply(to options: inout ApplyOptions) {
        if let maxBytes { options.maxBytes = maxBytes.bytes }
    }
}

func printChanges(_ changes: [Change], json asJSON: Bool) throws {
    if asJSON {
        try writeJSON(changes.filter { !$0.isLinkPeer }.map { c in
            ChangeJSON(kind: c.kind == .add ? "A" : c.kind == .modify ? "C" : "D", path: "/" + Bytes.string(c.path))
        })
        return
    }
    var out = ChangeLines()
    for c in changes { try out.add(c) }
    try out.flush()
}

/// `A /path` lines on stdout, written in 64 KiB pieces as they are made (a copy of the list or
/// the whole text next to it would grow the peak memory with the change count). Link peers are
/// not changes to report.
struct ChangeLines {
    private var out: [UInt8] = []

    init() { out.reserveCapacity(1 << 16) }

    mutating func add(_ c: Change) throws {
        guard !c.isLinkPeer else { return }
        out.append(contentsOf: c.line.utf8)
        out.append(UInt8(ascii: "\n"))
        if out.count >= 1 << 16 { try flush() }
    }

    mutating func flush() throws {
        try out.withUnsafeBytes { try Sys.writeAll(1, $0, shown: "stdout") }
        out.removeAll(keepingCapacity: true)
    }
}

/// `Key: value` lines, or one JSON object (a later key wins over an earlier one).
func printPairs(_ pairs: [(String, String)], json asJSON: Bool) throws {
    if asJSON {
        try writeJSON(Dictionary(pairs, uniquingKeysWith: { _, later in later }))
    } else {
        try writeStdout(pairs.map { "\($0.0): \($0.1)\n" }.joined())
    }
}

/// How an exported layer leaves: compression, reproducibility, digests, progress.
struct LayerOutputOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Compression, with a level for gzip (1-9) or zstd (1-22).", valueName: "kind[:level]"))
    var compress = CompressionChoice(.none)
    @Flag(help: "Reproducible output: the trees compared, mtimes clamped to --source-date-epoch (or SOURCE_DATE_EPOCH, or 0), no user/group names.")
    var reproducible = false
    @Option(help: ArgumentHelp("The time --reproducible clamps mtimes to.", valueName: "seconds"))
    var sourceDateEpoch: Int64?
    @Flag(help: "Do not compute digests (an uncompressed tar is then written directly).") var noDigest = false
    @Flag(help: "Print the digests as an OCI descriptor (JSON).") var json = false
    @OptionGroup var progress: ProgressOption

    func apply(to options: inout ExportOptions) throws {
        guard reproducible else { return }
        let env = getenv("SOURCE_DATE_EPOCH").flatMap { Int64(String(cString: $0)) }
        options.reproducibleTime = sourceDateEpoch ?? env ?? 0
    }

    /// The digests: a line on stderr, or the OCI descriptor (on stdout when the tar went to a file).
    func report(_ d: LayerDigests?, source: ExportSource, toStdout: Bool) throws {
        guard let d else { return }
        if json {
            let text = try JSONOutput.encode(DescriptorJSON(
                mediaType: d.mediaType, digest: d.digest, size: d.size,
                annotations: .init(diffID: d.diffID, uncompressedSize: "\(d.uncompressedSize)", source: source == .original ? "original" : "regenerated")))
            if toStdout { try writeStdout(text) } else { writeStderr(text) }
        } else if !progress.quiet {
            writeStderr("diffID \(d.diffID)\n" + (d.digest != d.diffID ? "digest \(d.digest) size \(d.size)\n" : "size \(d.size)\n"))
        }
    }
}

/// A progress line on a terminal (stderr) for long imports and exports; `--quiet` silences it
/// and the digest line.
struct ProgressOption: ParsableArguments {
    @Flag(name: .shortAndLong, help: "No progress line and no digest line.") var quiet = false

    func reporter(verb: String) -> (@Sendable (Int64, Int) -> Void)? {
        guard !quiet, isatty(2) != 0 else { return nil }
        let start = Progress.now()
        let last = Progress.Clock(start)
        return { bytes, entries in
            let now = Progress.now()
            let due = last.withLock { t in
                guard now - t >= 0.2 else { return false }
                t = now
                return true
            }
            guard due else { return }
            let t = now - start
            let mib = Double(bytes) / 1_048_576
            let line = "\r\(verb): \(Progress.fixed(mib)) MiB" + (entries > 0 ? ", \(entries) entries" : "") +
                ", \(Progress.fixed(t > 0 ? mib / t : 0)) MiB/s, \(Progress.fixed(t)) s  "
            writeStderr(line)
        }
    }

    func done() {
        if !quiet && isatty(2) != 0 { writeStderr("\r\u{1B}[K") }
    }
}

enum Progress {
    /// The time of the last redraw.
    typealias Clock = Locked<Double>

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    static func fixed(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? "\(Int(r)).0" : "\(r)"
    }
}
