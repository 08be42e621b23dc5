// Ownership under ID maps: after an apply under a map, nothing in the root is owned by a host ID
// outside the map — whatever the tar leaves out (implicit parents), whatever the lower
// directories an implicit parent copies are owned by, in every whiteout form. Plus the maps and
// the owners that are refused.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum OwnershipFixtures {
    /// A copy of a tar without its directory entries: every parent becomes implicit.
    static func withoutDirectories(_ tar: String) throws -> String {
        let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
        defer { close(fd) }
        let r = try TarReader(fd: fd, name: tar)
        return try Pipe.tarFile { out in
            let w = TarWriter(fd: out, name: "stripped")
            while let h = try r.next() {
                if h.kind == .directory { continue }
                try w.writeHeader(h)
                if h.kind == .regular && h.size > 0 { try r.readData { chunk, _ in try w.writeData(chunk) } }
            }
            try w.finish()
        }
    }

    /// Whiteouts and opaque markers in directories the tar does not carry, a whiteout and an
    /// opaque marker in directories of the lower, a fifo, a symlink and a hardlink in implicit
    /// parents; owners 0, 3 and 7 (all mappable by both maps).
    static func markerTar(lowerDirectory: String?) throws -> String {
        try Pipe.tarFile { fd in
            let w = TarWriter(fd: fd, name: "markers")
            func entry(_ name: String, _ kind: TarHeader.Kind, uid: Int = 0, gid: Int = 0, data: String = "", link: String = "") throws {
                var h = TarHeader(name: Bytes.of(name), kind: kind)
                h.mode = kind == .symlink ? 0o777 : kind == .directory ? 0o755 : 0o644
                h.uid = uid
                h.gid = gid
                h.size = kind == .regular ? Int64(data.utf8.count) : 0
                h.linkName = Bytes.of(link)
                h.mtime = 1_600_000_000
                try w.writeHeader(h)
                if !data.isEmpty { try Bytes.of(data).withUnsafeBytes { try w.writeData($0) } }
            }
            try entry("m/n/.wh.gone", .regular)
            try entry("o/p/.wh..wh..opq", .regular)
            try entry("o/p/q/file", .regular, uid: 3, gid: 7, data: "q")
            try entry("s/t/link", .symlink, uid: 3, gid: 3, link: "../../o/p/q/file")
            try entry("h/i/hard", .hardlink, link: "o/p/q/file")
            try entry("f/i/fifo", .fifo, uid: 7, gid: 0)
            if let d = lowerDirectory {
                try entry(d + "/.wh.anything", .regular)
                try entry(d + "/.wh..wh..opq", .regular)
                try entry(d + "/deeper/still/file", .regular, uid: 7, gid: 3, data: "d")
            }
            try w.finish()
        }
    }

    /// A directory of the tree (for markers aimed at a lower's directory).
    static func someDirectory(_ tree: String) throws -> String? {
        try Manifest.of(tree).first { $0.split(separator: " ")[1] == "directory" }.map { String($0.split(separator: " ")[0]) }
    }

    /// A fresh directory owned by the map's root pair (what a driver makes for a layer).
    static func layerRoot(_ map: IDMap, tag: String) throws -> String {
        let d = try Fixture.tempDir(tag)
        guard chown(d, map.rootPair.uid, map.rootPair.gid) == 0, chmod(d, 0o755) == 0 else { throw TestError("chown \(d)") }
        return d
    }
}

@Suite(.serialized) struct OwnershipTests {
    static let forms: [(String, WhiteoutForm)] = [("plain", .plain), ("overlay", .overlay(xattrPrefix: "trusted.")), ("aufs", .aufs)]

    /// The property over generated trees: full tars and diffs, each also without its directory
    /// entries, and a tar of markers in implicit parents; applied in the plain form onto a lower
    /// made under the map, and in the overlay and aufs forms into an empty upper whose implicit
    /// parents copy a lower — one made under the map and one with host IDs outside it.
    @Test(.requires(.root), arguments: [0, 1])
    func randomTreesStayInsideTheMap(mapIndex: Int) throws {
        let map = [Ownership.single, Ownership.multi][mapIndex]
        var failures: [String] = []
        var cleanup: [String] = []
        defer { cleanup.forEach(Fixture.cleanup) }
        for seed in 1...4 {
            var rng = SplitMix(seed: UInt64(seed) * 7919)
            let a = try Fixture.make(RandomTree.ops(&rng, count: 50))
            let b = try Fixture.copy(a)
            cleanup += [a, b]
            try Fixture.apply(b, RandomTree.mutations(&rng, in: try Manifest.of(a), count: 20))
            let full = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(a), to: fd, name: "full") }
            let diff = try Pipe.tarFile { fd in try Layers.diff(base: Bytes.of(a), layer: Bytes.of(b), to: fd, name: "diff") }
            let tars = [("full", full), ("diff", diff), ("full without dirs", try OwnershipFixtures.withoutDirectories(full)),
                        ("diff without dirs", try OwnershipFixtures.withoutDirectories(diff)),
                        ("markers", try OwnershipFixtures.markerTar(lowerDirectory: try OwnershipFixtures.someDirectory(a)))]
            cleanup += tars.map { tarDir($0.1) }
            // The lower as a store would hold it: `a` applied under the map.
            let mappedLower = try OwnershipFixtures.layerRoot(map, tag: "lower")
            cleanup.append(mappedLower)
            _ = try Pipe.apply(full, to: mappedLower, options: ApplyOptions(idMap: map))
            #expect(try Ownership.outside(mappedLower, map).isEmpty)
            for (formName, form) in Self.forms {
                let templateSets: [(String, [[UInt8]])] = form == .plain ? [("", [])]
                    : [(" copying a mapped lower", [Bytes.of(mappedLower)]), (" copying a lower outside the map", [Bytes.of(a)])]
                for (tarName, tar) in tars {
                    for (templateName, templates) in templateSets {
                        let root = try OwnershipFixtures.layerRoot(map, tag: "root")
                        defer { Fixture.cleanup(root) }
                        if form == .plain { _ = try Pipe.apply(full, to: root, options: ApplyOptions(idMap: map)) }
                        var options = ApplyOptions(idMap: map, whiteouts: form)
                        options.parentTemplates = templates.map { FilePath(bytes: $0) }
                        do {
                            _ = try Pipe.apply(tar, to: root, options: options)
                        } catch {
                            // Without its directory entries, a diff that turns a file into a
                            // directory has the file in the way of its children: refused. The
                            // walk still runs — what a failed apply made is inside the map too.
                            if !(tarName.hasSuffix("without dirs") && "\(error)".contains("Not a directory")) {
                                failures.append("seed \(seed) \(formName) \(tarName)\(templateName): \(error)")
                            }
                        }
                        let bad = try Ownership.outside(root, map)
                        if !bad.isEmpty { failures.append("seed \(seed) \(formName) \(tarName)\(templateName): \(bad.prefix(5))") }
                    }
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// Implicit parents get the root pair; with a template outside the map, each ID outside it
    /// is replaced by the root pair's (and one inside is kept); the template's mode is kept.
    @Test(.requires(.root)) func implicitParentsTakeTheRootPairOrAnOwnerInsideTheMap() throws {
        let map = Ownership.single
        let lower = try Fixture.make([.dir("a", mode: 0o750, uid: 5, gid: 100_007), .dir("a/b", mode: 0o711, uid: 100_009, gid: 0)])
        defer { Fixture.cleanup(lower) }
        let tar = try makeTar([.file("a/b/c/file", "x")])
        defer { Fixture.cleanup(tarDir(tar)) }
        let root = try OwnershipFixtures.layerRoot(map, tag: "upper")
        defer { Fixture.cleanup(root) }
        var options = ApplyOptions(idMap: map, whiteouts: .overlay(xattrPrefix: "trusted."))
        options.parentTemplates = [FilePath(lower)]
        _ = try Pipe.apply(tar, to: root, options: options)
        #expect(try Manifest.of(root).filter { $0.contains("directory") }.map { String($0.split(separator: " ").prefix(4).joined(separator: " ")) }
            == ["a directory 750 100000:100007", "a/b directory 711 100009:100000", "a/b/c directory 755 100000:100000"])
    }

    /// Owners the map cannot take are refused, naming the entry; so are IDs that are no owner
    /// at all (4294967295 is chown's "unchanged", larger ones would be cut down to it) — with
    /// and without a map.
    @Test(.requires(.root)) func unmappableOwnersAreRefused() throws {
        for (uid, map) in [(70_000, Ownership.single), (Int(UInt32.max), IDMap.identity), (Int(UInt32.max), Ownership.single),
                           (Int(UInt32.max) + 1 + 5, Ownership.single), (Int(UInt32.max) + 1 + 5, IDMap.identity)] {
            let root = try Fixture.tempDir()
            defer { Fixture.cleanup(root) }
            let tar = try makeTar([.file("ok", "x"), .file("p/q/f", "x")], uid: 0)
            let bad = try Pipe.tarFile { fd in
                let w = TarWriter(fd: fd, name: "bad")
                var h = TarHeader(name: Bytes.of("p/q/owned"), kind: .regular)
                h.uid = uid
                h.gid = 0
                h.mode = 0o644
                try w.writeHeader(h)
                try w.finish()
            }
            defer { Fixture.cleanup(tarDir(tar)); Fixture.cleanup(tarDir(bad)) }
            _ = try Pipe.apply(tar, to: root, options: ApplyOptions(idMap: map))
            do {
                _ = try Pipe.apply(bad, to: root, options: ApplyOptions(idMap: map))
                Issue.record("uid \(uid) under \(map.isIdentity ? "no map" : "a map") was applied")
            } catch let e as DiffKitError {
                #expect("\(e)".contains("entry p/q/owned") && "\(e)".contains("\(uid):0"), "\(e)")
            }
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(root + "/p/q/owned")) == nil)
        }
    }

    /// Maps under which the rule cannot hold are refused before anything is touched.
    @Test func unusableMapsAreRefused() throws {
        let r = { (s: String) in try IDRange(parsing: s) }
        let bad: [(IDMap, String)] = [
            (IDMap(uids: [try r("0:100000:65536")]), "gid map"),
            (IDMap(gids: [try r("0:100000:65536")]), "uid map"),
            (IDMap(uids: [try r("1:100000:65536")], gids: [try r("0:100000:65536")]), "container root"),
            (IDMap(uids: [try r("0:100000:65536")], gids: [try r("1000:100000:10"), try r("5:200000:1")]), "container root"),
            (IDMap(uids: [try r("0:4294901760:65536")], gids: [try r("0:100000:65536")]), "4294967295"),
        ]
        for (map, words) in bad {
            #expect(throws: DiffKitError.self) { try map.validate() }
            do { try map.validate() } catch { #expect("\(error)".contains(words), "\(error)") }
            #expect(throws: DiffKitError.self) { _ = try Applier(root: Bytes.of("/tmp"), options: ApplyOptions(idMap: map)) }
        }
        try Ownership.single.validate()
        try Ownership.multi.validate()
        try IDMap.identity.validate()
        #expect(Ownership.multi.insideOwner(uid: 0, gid: 600_000) == (200_000, 600_000))
        #expect(Ownership.multi.insideOwner(uid: 300_001, gid: 1) == (300_001, 500_000))
    }
}
