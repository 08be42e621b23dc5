// overlay2 with `overlay2.mountopt=redirect_dir=on` and/or `metacopy=on` on real mounts: the
// native diff stays in use, and its export, changes and size agree with the naive diff's.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import Logging
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Log messages kept for a test to read.
final class CapturedLog: Sendable {
    let lines = Locked<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func logger() -> Logger { Logger(label: "test") { _ in Handler(log: self) } }

    struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            log.lines.withLock { $0.append("\(message)") }
        }
    }
}

@Suite(.serialized) struct Overlay2RedirectTests {
    static let configurations = ["redirect_dir=on", "metacopy=on", "redirect_dir=on,metacopy=on"]

    func withDriver(_ mountopt: String, _ body: (Overlay2Driver, String) throws -> Void) throws {
        let home = try Fixture.tempDir("ovl2redir")
        defer { Fixture.cleanup(home) }
        let d = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.mountopt": mountopt])
        defer { try? d.cleanup() }
        try body(d, home)
    }

    @Test(.requires(.root, .filesystem("overlay"))) func mountoptIsParsedAndShown() throws {
        try withDriver("redirect_dir=on,metacopy=on") { d, _ in
            let status = Dictionary(uniqueKeysWithValues: d.status())
            #expect(status["Mount Options"]?.hasSuffix("redirect_dir=on,metacopy=on") == true)
            #expect(status["Native Overlay Diff"]?.hasPrefix("true (redirect_dir, metacopy:") == true, "\(status)")
            #expect(d.upperFeatures == ["redirect_dir", "metacopy"])
        }
        try withDriver("redirect_dir=on") { d, _ in
            #expect(d.upperFeatures == ["redirect_dir"])
        }
        let home = try Fixture.tempDir("ovl2mo")
        defer { Fixture.cleanup(home) }
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.mountopt": "upperdir=/x"]) }
        #expect(throws: DriverError.self) { _ = try Overlay2Driver(home: Bytes.of(home), options: ["overlay2.mountopt": "bogus_option=1"]) }
        // Without the option, the default mounts here make neither (the kernel's defaults are off).
        #expect(try Overlay2Driver(home: Bytes.of(home)).status().first { $0.0 == "Native Overlay Diff" }?.1 == "true")
    }

    /// Random trees with renames of directories at several depths (also in the parent layer, so
    /// the lowers hold redirects too), renames into and out of opaque directories, nested
    /// redirects, chmod/chown-only copy-ups, deletions inside renamed directories, a directory
    /// renamed over one emptied in the same layer: the native
    /// export and the naive one, each applied onto a copy of the parent, give the merged view;
    /// native changes and size agree with the naive ones.
    @Test(.requires(.root, .filesystem("overlay")), arguments: configurations, [UInt64(1), 2, 3, 4])
    func nativeEqualsNaive(mountopt: String, seed: UInt64) throws {
        try withDriver(mountopt) { d, _ in
            var rng = SplitMix(seed: seed)
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            let fixed: [Op] = [
                .file("r1/a/b/c/f", "f"), .file("r1/a/b/g", "g"), .file("r1/x", "x"),
                .file("deep/l1/l2/l3/file", "deep"), .file("deep/l1/l2/other", "o"), .file("deep/l1/top", "t"),
                .file("o/keep", "k"), .file("o/sub/s", "s"), .file("into/t/f", "into"),
                .file("m/file1", "metadata only 1"), .file("m/file2", "metadata only 2"), .file("m/dir/f3", "three"),
                .file("del/a/x", "x"), .file("del/a/y", "y"), .file("n/p/q/r/f", "nested"), .file("n/p/keep", "k"),
                .file("re/d/old", "old"), .dir("emptydir"), .file("out/n/f", "out"),
                .file("rep/src/f", "src"), .file("rep/dst/old", "old"),
            ]
            try Fixture.apply(base, RandomTree.ops(&rng, count: 60) + fixed)
            let roots = ["r1", "deep", "o", "into", "m", "del", "n", "re", "emptydir", "out", "rep"]
            let others = try Manifest.of(base).filter { line in !roots.contains { line.hasPrefix($0 + " ") || line.hasPrefix($0 + "/") } }
            // The parent itself renames and copies up metadata only: its diff dir holds redirects.
            try d.create(id: "mid", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "mid")), [.rename("r1/a", "r1/a2"), .chmod("m/file2", 0o600), .rename("n/p/q", "n/p/q1")])
            try d.put(id: "mid")
            try d.create(id: "child", parent: "mid", options: [:])
            let merged = Bytes.string(try d.getBytes(id: "child"))
            try Fixture.apply(merged, RandomTree.mutations(&rng, in: others, count: 25) + [
                .rename("deep/l1/l2/l3", "deep/l3moved"), .rename("deep/l1", "deep/l1b"), .file("deep/l1b/l2/added", "a"),
                .rename("r1/a2/b", "topb"), .remove("topb/g"),
                .remove("o"), .dir("o"), .file("o/new", "n"), .rename("into/t", "o/t"),
                .remove("out"), .dir("out"), .dir("out/n2"), .file("out/n2/f", "f"), .rename("out/n2", "outn"),
                .chmod("m/file1", 0o600), .chown("m/dir/f3", 5, 6), .chown("m/dir", 7, 8), .xattr("m/file2", "user.k", "v"),
                .rename("del/a", "del/b"), .remove("del/b/x"),
                .rename("n/p/q1", "n/p/q2"), .rename("n/p", "n/p2"),
                .rename("re/d", "re/e"), .dir("re/d"), .file("re/d/new", "new"),
                .rename("emptydir", "emptydir2"), .rename("m/file1", "m/file1moved"),
                .remove("rep/dst/old"), .rename("rep/src", "rep/dst"),
            ])
            let expected = try Manifest.of(merged)
            try d.put(id: "child")
            let parentCopy = try Fixture.copy(Bytes.string(try d.getBytes(id: "mid")))
            defer { Fixture.cleanup(parentCopy) }
            try d.put(id: "mid")

            let log = CapturedLog()
            let native = try Pipe.tarFile { fd in try d.diff(id: "child", parent: "mid", to: fd, name: "native", options: ExportOptions(logger: log.logger())) }
            defer { Fixture.cleanup(tarDir(native)) }
            let naive = try Pipe.tarFile { fd in try d.naiveDiff(id: "child", parent: "mid", to: fd, name: "naive", options: ExportOptions()) }
            defer { Fixture.cleanup(tarDir(naive)) }
            #expect(log.all.isEmpty, "\(log.all)")
            // Read from the upper: the kernel's whiteout of a renamed directory's origin (mode 0600),
            // the renamed directory opaque with its whole content.
            let nh = try Pipe.headers(native).map { ($0.displayName, $0.mode) }
            #expect(nh.contains { $0.0 == "deep/.wh.l1" && $0.1 & 0o777 == 0o600 }, "\(nh.map(\.0))")
            #expect(nh.contains { $0.0 == "deep/l3moved/.wh..wh..opq" } && nh.contains { $0.0 == "deep/l3moved/file" })

            for tar in [native, naive] {
                let target = try Fixture.copy(parentCopy)
                defer { Fixture.cleanup(target) }
                _ = try Pipe.apply(tar, to: target)
                #expect(try Manifest.of(target) == expected, "\(tar == native ? "native" : "naive") export, \(mountopt), seed \(seed)")
            }

            let nativeChanges = try d.changes(id: "child", parent: "mid")
            let naiveChanges = try d.naiveChanges(id: "child", parent: "mid")
            try expectAgree(nativeChanges, naiveChanges, "\(mountopt), seed \(seed)")
            #expect(try d.diffSize(id: "child", parent: "mid") == d.naiveDiffSize(id: "child", parent: "mid"), "\(mountopt), seed \(seed)")
        }
    }

    /// The two change lists say the same: the same non-directories added or modified (but for
    /// hardlink peers), and every
    /// deletion of one is a deletion (of the path or an ancestor) in the other, except where
    /// the upper's form reports a recreated directory as deleted (its children then added).
    func expectAgree(_ native: [Change], _ naive: [Change], _ label: String) throws {
        func files(_ c: [Change]) -> Set<String> {
            Set(c.filter { $0.kind != .delete && $0.info?.isDirectory == false && !$0.isLinkPeer }.map(\.line))
        }
        // A file copied up because a hardlink to it was made is in the upper (a modification
        // there) but an unchanged peer of the new link for the comparison.
        let peers = Set(naive.filter(\.isLinkPeer).map { "C " + $0.line.dropFirst(2) })
        #expect(files(native).subtracting(peers) == files(naive), "\(label): native \(native.map(\.line)) naive \(naive.map(\.line))")
        let nativeDeleted = Set(native.filter { $0.kind == .delete }.map { Bytes.string($0.path) })
        for c in naive where c.kind == .delete {
            var p = Bytes.string(c.path)
            var covered = nativeDeleted.contains(p)
            while !covered, let slash = p.lastIndex(of: "/") {
                p = String(p[..<slash])
                covered = nativeDeleted.contains(p)
            }
            #expect(covered, "\(label): naive deletes \(c.line), native does not: \(native.map(\.line))")
        }
    }

    /// An upper made with redirects, read by a store whose mounts make none: the naive diff,
    /// with the reason logged — never silently.
    @Test(.requires(.root, .filesystem("overlay"))) func unreadableUpperFallsBackLoudly() throws {
        try withDriver("redirect_dir=on") { d, home in
            try d.create(id: "base", parent: nil, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "base")), [.file("a/f", "f"), .file("a/g", "g")])
            try d.create(id: "child", parent: "base", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "child")), [.rename("a", "b"), .remove("b/g")])
            try d.cleanup()

            let plain = try Overlay2Driver(home: Bytes.of(home))
            defer { try? plain.cleanup() }
            #expect(plain.upperFeatures.isEmpty)
            let log = CapturedLog()
            let tar = try Pipe.tarFile { fd in try plain.diff(id: "child", parent: "base", to: fd, name: "t", options: ExportOptions(logger: log.logger())) }
            defer { Fixture.cleanup(tarDir(tar)) }
            #expect(log.all.contains { $0.contains("layer child: native diff not in use") && $0.contains("renamed directories") }, "\(log.all)")
            // The naive form: whiteouts of mode 0, and b carried with its file.
            let names = try Pipe.headers(tar).map(\.displayName)
            #expect(names == [".wh.a", "b/", "b/f"], "\(names)")
        }
    }
}
