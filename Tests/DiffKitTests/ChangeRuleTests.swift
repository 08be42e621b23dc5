// The change rules one field at a time — moby's naive rules (TreeDiff), the branch rules of
// overlay upper and aufs diff dirs (BranchChanges), which xattrs are layer content — and the
// sizes computed from them: each case changes one thing a rule looks at, and nothing else.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let t0 = 1_600_000_000

struct RuleCase: Sendable, CustomStringConvertible {
    var name: String
    var base: [Op]
    var change: [Op]
    var expected: [String]
    var description: String { name }
}

/// Naive cases: `change` applied to a copy of `base`; the reported (non-peer) lines.
private let naiveCases: [RuleCase] = [
    RuleCase(name: "group alone changed", base: [.file("f", "x"), .time("f", t0, 5)], change: [.chown("f", 0, 5)],
               expected: ["C /f"]),
    RuleCase(name: "owner alone changed", base: [.file("f", "x"), .time("f", t0, 5)], change: [.chown("f", 5, 0)],
               expected: ["C /f"]),
    RuleCase(name: "group alone changed on a directory", base: [.dir("d")], change: [.chown("d", 0, 7)],
               expected: ["C /d"]),
    // Same mtime, nanoseconds kept: only the size tells.
    RuleCase(name: "size alone changed", base: [.file("f", "aaaa"), .time("f", t0, 5)],
               change: [.file("f", "aa"), .time("f", t0, 5)], expected: ["C /f"]),
    // Truncated mtimes (content compare): a shorter file whose bytes are the old file's prefix.
    RuleCase(name: "shrunk to a prefix with truncated mtime", base: [.file("f", "aaaa"), .time("f", t0, 0)],
               change: [.file("f", "aa"), .time("f", t0, 0)], expected: ["C /f"]),
]

@Suite(.serialized) struct ChangeRuleTests {
    @Test(.requires(.root), arguments: naiveCases)
    func naiveRule(_ c: RuleCase) throws {
        let base = try Fixture.make(c.base)
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, c.change)
        let got = try TreeDiff.changes(base: Bytes.of(base), layer: Bytes.of(layer)).filter { !$0.isLinkPeer }.map(\.line)
        #expect(got == c.expected)
    }

    /// A new link to an unchanged file: the link is the change; the old name travels with it as
    /// a link peer (so the group stays a group in the tar), not as a reported change.
    @Test(.requires(.root)) func unchangedMemberOfAChangedGroupIsAPeer() throws {
        let base = try Fixture.make([.file("f", "data"), .time("f", t0, 5)])
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.copy(base)
        defer { Fixture.cleanup(layer) }
        try Fixture.apply(layer, [.hardlink("g", to: "f")])
        let changes = try TreeDiff.changes(base: Bytes.of(base), layer: Bytes.of(layer))
        #expect(changes.filter { !$0.isLinkPeer }.map(\.line) == ["A /g"])
        #expect(changes.filter(\.isLinkPeer).map(\.line) == ["C /f"])
        // The size counts the group's inode once, the peer not again.
        #expect(Sizes.changesSize(changes) == 4)
    }

    /// overlayfs's own attributes under userxattr are not layer content; other user.* are.
    @Test func exportedXattrs() {
        #expect(LayerXattrs.isExported(Bytes.of("security.capability")))
        #expect(LayerXattrs.isExported(Bytes.of("user.k")))
        #expect(!LayerXattrs.isExported(Bytes.of("user.overlay.opaque")))
        #expect(!LayerXattrs.isExported(Bytes.of("user.overlay.redirect")))
        #expect(!LayerXattrs.isExported(Bytes.of("trusted.overlay.opaque")))
        #expect(!LayerXattrs.isExported(Bytes.of("security.selinux")))
    }

    /// directory.Size counts each inode once: a file and its hardlink are its size once.
    @Test func directorySizeCountsHardlinksOnce() throws {
        let dir = try Fixture.make([.file("f", "four"), .hardlink("g", to: "f"), .file("d/h", "xy")])
        defer { Fixture.cleanup(dir) }
        #expect(try Sizes.directorySize(Bytes.of(dir)) == 6)
        // root, f (= g), d, d/h
        #expect(try Sizes.directoryUsage(Bytes.of(dir)).inodes == 4)
    }

    // MARK: branch rules (an upper or diff dir over its lowers; no mount needed)

    /// Two dirs `d` with equal size, mode and mtime, differing in `change` only.
    private func branchPair(lowerOps: [Op], upperOps: [Op]) throws -> (upper: String, lower: String) {
        let lower = try Fixture.make(lowerOps, tag: "lower")
        let upper = try Fixture.make(upperOps, tag: "upper")
        return (upper, lower)
    }

    /// A copied-up directory is a change when any of size, mode, owner, group or mtime differs.
    @Test(.requires(.root), arguments: [("group", Op.chown("d", 0, 9)), ("owner", Op.chown("d", 9, 0)), ("mode", Op.chmod("d", 0o700))])
    func branchDirectoryMetadata(_ what: String, _ op: Op) throws {
        let (upper, lower) = try branchPair(lowerOps: [.dir("d"), .time("d", t0, 5)], upperOps: [.dir("d"), op, .time("d", t0, 5)])
        defer { Fixture.cleanup(upper); Fixture.cleanup(lower) }
        for form in [WhiteoutForm.overlay(xattrPrefix: "trusted."), .aufs] {
            let got = try BranchChanges.changes(upper: Bytes.of(upper), lowers: [Bytes.of(lower)], form: form).map(\.line)
            #expect(got == ["C /d"], "\(what), \(form)")
        }
        // Nothing differs: the copy-up alone is no change.
        let (same, lower2) = try branchPair(lowerOps: [.dir("d"), .time("d", t0, 5)], upperOps: [.dir("d"), .time("d", t0, 5)])
        defer { Fixture.cleanup(same); Fixture.cleanup(lower2) }
        #expect(try BranchChanges.changes(upper: Bytes.of(same), lowers: [Bytes.of(lower2)], form: .aufs).isEmpty)
    }

    /// An opaque directory in the nearest lower hides the lowers below it: a file under it in the
    /// upper is an addition, even where a deeper lower has that name.
    @Test(.requires(.root)) func opaqueLowerHidesDeeperLowers() throws {
        let deep = try Fixture.make([.dir("d"), .file("d/x", "old"), .time("d", t0, 5)], tag: "deep")
        defer { Fixture.cleanup(deep) }
        for form in [WhiteoutForm.overlay(xattrPrefix: "trusted."), .aufs] {
            let marker: Op = form == .aufs ? .file("d/.wh..wh..opq", "") : .xattr("d", "trusted.overlay.opaque", "y")
            let near = try Fixture.make([.dir("d"), marker, .time("d", t0, 5)], tag: "near")
            defer { Fixture.cleanup(near) }
            let upper = try Fixture.make([.dir("d"), .file("d/x", "new"), .time("d", t0, 5)], tag: "upper")
            defer { Fixture.cleanup(upper) }
            // The upper's d differs from the near lower's in size (one entry more): a modification either way.
            let got = try BranchChanges.changes(upper: Bytes.of(upper), lowers: [Bytes.of(near), Bytes.of(deep)], form: form)
            #expect(got.map(\.line) == ["C /d", "A /d/x"], "\(form)")
        }
    }

    /// aufs: a `.wh.NAME` in a lower hides NAME of the lowers below it; the upper's NAME is new.
    @Test(.requires(.root)) func aufsLowerWhiteoutHidesDeeperLowers() throws {
        let deep = try Fixture.make([.file("x", "old")], tag: "deep")
        defer { Fixture.cleanup(deep) }
        let near = try Fixture.make([.file(".wh.x", "")], tag: "near")
        defer { Fixture.cleanup(near) }
        let upper = try Fixture.make([.file("x", "new")], tag: "upper")
        defer { Fixture.cleanup(upper) }
        let got = try BranchChanges.changes(upper: Bytes.of(upper), lowers: [Bytes.of(near), Bytes.of(deep)], form: .aufs)
        #expect(got.map(\.line) == ["A /x"])
        // Without the whiteout the same file is a modification.
        let got2 = try BranchChanges.changes(upper: Bytes.of(upper), lowers: [Bytes.of(deep)], form: .aufs)
        #expect(got2.map(\.line) == ["C /x"])
    }
}
