// Change detection: moby's ChangesDirs vectors and continuity's content rule, as tables.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import SystemPackage
import Testing

/// moby's sample tree (pkg/archive/changes_test.go createSampleDir).
let sampleTree: [Op] = [
    .file("file1", "file1\n"), .file("file2", "file2\n", mode: 0o666), .file("file3", "file3\n", mode: 0o404),
    .file("file4", "file4\n", mode: 0o600), .file("file5", "file5\n"), .file("file6", "file6\n"), .file("file7", "file7\n"),
    .dir("dir1"), .file("dir1/file1-1", "file1-1\n"), .file("dir1/file1-2", "file1-2\n"),
    .dir("dir2"), .file("dir2/file2-1", "file2-1\n"),
    .dir("dir3"), .file("dir3/file3-1", "file3-1\n"), .dir("dir4"), .file("dir4/file4-1", "file4-1\n"),
    .symlink("symlink1", to: "target1"), .symlink("symlink2", to: "target2"),
    .symlink("symlink3", to: "/etc/passwd"), .symlink("symlink4", to: "../symlink4"), .symlink("dirSymlink", to: "dir1"),
    .time("file1", 1_600_000_000, 123), .time("file2", 1_600_000_000, 123), .time("file3", 1_600_000_000, 123),
    .time("file4", 1_600_000_000, 123), .time("file5", 1_600_000_000, 123),
]

struct ChangeCase: Sendable, CustomStringConvertible {
    var name: String
    var base: [Op]
    var change: [Op]
    var expected: [String]
    var description: String { name }
}

let changeCases: [ChangeCase] = [
    ChangeCase(name: "no changes", base: sampleTree, change: [], expected: []),
    // TestChangesDirsMutated: touched dir3 is absent, touched file4 is a change.
    ChangeCase(name: "moby ChangesDirsMutated", base: sampleTree, change: [
        .remove("dir1"), .remove("dir2"), .file("dir2", "was a dir\n"), .dir("dirnew"), .remove("file1"),
        .file("file2", "fileNN\n", mode: 0o666), .remove("file3"), .file("file3", "file3\n", mode: 0o404),
        .time("file4", 1_600_000_001, 0), .remove("file5"), .dir("file5"), .file("filenew", "new\n"),
        .remove("symlink1"), .remove("symlink2"), .symlink("symlink2", to: "target2changed"),
        .symlink("symlinknew", to: "target"), .time("dir3", 1_700_000_000),
    ], expected: [
        "D /dir1", "C /dir2", "A /dirnew", "D /file1", "C /file2", "C /file3", "C /file4", "C /file5",
        "A /filenew", "D /symlink1", "C /symlink2", "A /symlinknew",
    ]),
    ChangeCase(name: "ancestors of a deep add are modified", base: [.dir("a/b/c")], change: [.file("a/b/c/new", "x")],
               expected: ["C /a", "C /a/b", "C /a/b/c", "A /a/b/c/new"]),
    ChangeCase(name: "a deleted subtree is one delete", base: [.file("d/x/y/z", "1"), .file("d/k", "2")], change: [.remove("d/x")],
               expected: ["C /d", "D /d/x"]),
    ChangeCase(name: "chmod and chown of a directory", base: [.dir("d"), .dir("e")], change: [.chmod("d", 0o700), .chown("e", 1, 2)],
               expected: ["C /d", "C /e"]),
    ChangeCase(name: "file becomes directory with children", base: [.file("f", "x")], change: [.remove("f"), .file("f/child", "y")],
               expected: ["C /f", "A /f/child"]),
    ChangeCase(name: "byte order of paths: /a, /a-b, /a/b", base: [.dir("a")], change: [.file("a-b", "1"), .file("a/b", "2")],
               expected: ["C /a", "A /a-b", "A /a/b"]),
    // /a waits for its subtree to say whether it changed; /a-b sorts between /a and /a/.
    ChangeCase(name: "an unchanged /a does not hold back /a-b for good",
               base: [.file("a/x", "1")], change: [.file("a-b", "1")], expected: ["A /a-b"]),
    ChangeCase(name: "siblings between a directory and its subtree, nested",
               base: [.file("a/x", "1"), .file("a.d/k", "2"), .dir("a.d/k.d"), .dir("a0")],
               change: [.file("a.d/k.d/y", "2"), .file("a/z", "3"), .file("a.d/k-1", "4"), .remove("a0")],
               expected: ["C /a", "C /a.d", "A /a.d/k-1", "C /a.d/k.d", "A /a.d/k.d/y", "A /a/z", "D /a0"]),
    ChangeCase(name: "a deleted directory before a quiet sibling's subtree",
               base: [.file("a/x", "1"), .file("a-1/y", "2")], change: [.remove("a-1")], expected: ["D /a-1"]),
    // continuity's rule: both nanoseconds 0, same size and second → content decides.
    ChangeCase(name: "same-size edit with truncated mtime restored",
               base: [.file("f", "aaaa"), .time("f", 1_600_000_000, 0)],
               change: [.file("f", "bbbb"), .time("f", 1_600_000_000, 0)], expected: ["C /f"]),
    ChangeCase(name: "a deep content-only change reports its ancestors",
               base: [.file("a/b/f", "aaaa"), .file("a/g", "x"), .time("a/b/f", 1_600_000_000, 0)],
               change: [.file("a/b/f", "bbbb"), .time("a/b/f", 1_600_000_000, 0)], expected: ["C /a", "C /a/b", "C /a/b/f"]),
    ChangeCase(name: "identical content with truncated mtime is no change",
               base: [.file("f", "aaaa"), .time("f", 1_600_000_000, 0)],
               change: [.file("f", "aaaa"), .time("f", 1_600_000_000, 0)], expected: []),
    // moby's tolerance: one side truncated by tar is the same time.
    ChangeCase(name: "one side's nanoseconds truncated is no change",
               base: [.file("f", "aaaa"), .time("f", 1_600_000_000, 5)],
               change: [.time("f", 1_600_000_000, 0)], expected: []),
    ChangeCase(name: "user xattr change", base: [.file("f", "x")], change: [.xattr("f", "user.k", "v")], expected: ["C /f"]),
    ChangeCase(name: "capability change", base: [.file("f", "x")],
               change: [.xattr("f", "security.capability", "\u{1}\0\0\u{2}\0\u{20}\0\0\0\0\0\0\0\0\0\0\0\0\0\0")], expected: ["C /f"]),
]

@Suite(.serialized) struct ChangesTests {
    @Test(.requires(.root), arguments: changeCases)
    func changes(_ c: ChangeCase) throws {
        let base = try Fixture.make(c.base)
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, c.change)
        let got = try TreeDiff.changes(base: Bytes.of(base), layer: Bytes.of(layer)).filter { !$0.isLinkPeer }.map(\.line)
        #expect(got == c.expected)
        // The stream itself is in path order: nothing to sort.
        var streamed: [String] = []
        try TreeDiff.forEachChange(base: FilePath(base), layer: FilePath(layer)) { if !$0.isLinkPeer { streamed.append($0.line) } }
        #expect(streamed == c.expected)
    }

    /// Subtrees compared on the second thread report their ancestors as the one-thread walk
    /// does, whatever the timing: 30 chains of 6 nested directories, changes at the bottom of
    /// every third, compared 10 times.
    @Test(.requires(.root)) func ancestorsOfChangesFoundOnAnotherThread() throws {
        var ops: [Op] = []
        for c in 0..<30 {
            var dir = "c\(c)"
            for level in 0..<6 {
                ops += [.file("\(dir)/f\(level)", "content"), .file("\(dir)/g\(level)", "more")]
                dir += "/d\(level)"
            }
            ops.append(.dir(dir))
        }
        let base = try Fixture.make(ops)
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        var expected: Set<String> = []
        for c in stride(from: 0, to: 30, by: 3) {
            let deep = "c\(c)/d0/d1/d2/d3/d4"
            let change: (Op, String) = [(.file("\(deep)/f5", "changed content"), "C"), (.remove("\(deep)/g5"), "D"),
                                        (.file("\(deep)/new", "x"), "A")][c / 3 % 3]
            try Fixture.apply(layer, [change.0])
            let path: String
            switch change.0 {
            case let .file(p, _, _, _, _), let .remove(p): path = p
            default: path = ""
            }
            expected.insert("\(change.1) /\(path)")
            var parts = path.split(separator: "/").dropLast()
            while !parts.isEmpty {
                expected.insert("C /" + parts.joined(separator: "/"))
                parts = parts.dropLast()
            }
        }
        let want = expected.sorted { Array($0.utf8.dropFirst(2)).lexicographicallyPrecedes(Array($1.utf8.dropFirst(2))) }
        for _ in 0..<10 {
            #expect(try TreeDiff.changes(base: Bytes.of(base), layer: Bytes.of(layer)).map(\.line) == want)
        }
    }

    /// The stream is in path order but for link peers, which follow the change of their group
    /// when they came first (containerd's order); `changes` sorts them back.
    @Test(.requires(.root)) func linkPeersFollowTheirChange() throws {
        let base = try Fixture.make([.file("m/f", "x"), .file("b/g", "y")])
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, [.hardlink("z/l", to: "m/f"), .hardlink("a/l", to: "b/g")])
        var streamed: [String] = []
        try TreeDiff.forEachChange(base: FilePath(base), layer: FilePath(layer)) {
            streamed.append(($0.isLinkPeer ? "peer " : "") + $0.line)
        }
        #expect(streamed == ["A /a", "A /a/l", "peer C /b/g", "A /z", "A /z/l", "peer C /m/f"])
        let sorted = try TreeDiff.changes(base: FilePath(base), layer: FilePath(layer)).map { ($0.isLinkPeer ? "peer " : "") + $0.line }
        #expect(sorted == ["A /a", "A /a/l", "peer C /b/g", "peer C /m/f", "A /z", "A /z/l"])
    }

    /// More content compares than the ordering looks ahead (4,096 events): every seventh file
    /// differs in content only, and the changes still come in path order, each once.
    @Test(.requires(.root)) func manyContentCompares() throws {
        var ops: [Op] = []
        for d in 0..<10 {
            for f in 0..<600 {
                let p = "d\(d)/f\(f)"
                ops += [.file(p, "same size \(f % 10)"), .time(p, 1_600_000_000, 0)]
            }
        }
        let base = try Fixture.make(ops)
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        var edits: [Op] = []
        var want: [String] = []
        for d in 0..<10 {
            var dirChanged = false
            var lines: [String] = []
            for f in 0..<600 where (d * 600 + f) % 7 == 0 {
                let p = "d\(d)/f\(f)"
                edits += [.file(p, "same SIZE \(f % 10)"), .time(p, 1_600_000_000, 0)]
                lines.append("C /" + p)
                dirChanged = true
            }
            if dirChanged { want += ["C /d\(d)"] + lines.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) } }
        }
        try Fixture.apply(layer, edits)
        var got: [String] = []
        try TreeDiff.forEachChange(base: FilePath(base), layer: FilePath(layer)) { got.append($0.line) }
        #expect(got == want)
    }

    /// An error thrown by the caller ends the walk at once, the second thread's subtree with it,
    /// and nothing hangs: 40 runs over a tree of many subtrees, stopped at the 3rd change.
    @Test(.requires(.root)) func stoppingTheStreamEndsTheWalk() throws {
        var ops: [Op] = []
        for d in 0..<40 {
            for s in 0..<5 { ops.append(.file("d\(d)/s\(s)/f", "x")) }
        }
        let base = try Fixture.make(ops)
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, (0..<40).flatMap { d in (0..<5).map { s in Op.file("d\(d)/s\(s)/new", "y") } })
        struct Enough: Error {}
        for _ in 0..<40 {
            var seen = 0
            #expect(throws: Enough.self) {
                try TreeDiff.forEachChange(base: FilePath(base), layer: FilePath(layer)) { _ in
                    seen += 1
                    if seen == 3 { throw Enough() }
                }
            }
            #expect(seen == 3)
        }
    }

    @Test(.requires(.root)) func emptyBaseAddsEverything() throws {
        let layer = try Fixture.make([.file("a/b", "x"), .symlink("l", to: "a")])
        defer { Fixture.cleanup(layer) }
        #expect(try TreeDiff.changes(base: nil, layer: Bytes.of(layer)).map(\.line) == ["A /a", "A /a/b", "A /l"])
    }

    /// ChangesSize vectors (moby's ChangesSize rules).
    @Test(.requires(.root)) func changesSize() throws {
        let base = try Fixture.make([.file("modification", "abc"), .time("modification", 1_600_000_000, 5), .file("deleted", "gone")])
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, [.file("addition", "abc"), .file("modification", "xyz"), .remove("deleted")])
        #expect(try Layers.diffSize(base: Bytes.of(base), layer: Bytes.of(layer)) == 6)

        var ops: [Op] = []
        for i in 0..<100 { ops += [.file("file-\(i)", "data"), .hardlink("file-\(i)-link", to: "file-\(i)")] }
        let links = try Fixture.make(ops)
        defer { Fixture.cleanup(links) }
        let empty = try Fixture.tempDir()
        defer { Fixture.cleanup(empty) }
        #expect(try Layers.diffSize(base: Bytes.of(empty), layer: Bytes.of(links)) == 400)
        #expect(try Layers.diffSize(base: Bytes.of(links), layer: Bytes.of(links)) == 0)
    }
}
