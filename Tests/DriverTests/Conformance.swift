// The graphtest scenarios (moby's and containers/storage's graphtest), written once and run on every driver.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Makes a driver in a fresh home; each driver that lands adds itself here.
struct DriverUnderTest: Sendable, CustomStringConvertible {
    var name: String
    var make: @Sendable (String) throws -> Driver
    /// Chain depths DeepLayerRead reads through.
    var deepLayers: @Sendable (Driver) -> [Int] = { _ in [32] }
    /// The home must be on a filesystem of its own: the mkfs command for a loop image made per test.
    var mkfs: String? = nil
    /// Whether a layer with parents can be viewed (aufs without its module cannot: the tests that
    /// do are `.requires(.aufsModule)` in `Conformance.Aufs`, a skip Tests/ALLOWED_SKIPS allows).
    var childViews: @Sendable (Driver) -> Bool = { _ in true }
    var description: String { name }
}

let driversUnderTest: [DriverUnderTest] = [
    DriverUnderTest(name: "vfs", make: { try VFSDriver(home: Bytes.of($0)) }),
    // 128 lowers need moby's relative-path mount (the absolute data passes a page); beyond 128,
    // up to overlay's own limit, the new mount API where the kernel has `lowerdir+`.
    DriverUnderTest(name: "overlay2", make: { try Overlay2Driver(home: Bytes.of($0)) },
                    deepLayers: { d in [128] + ((d as! Overlay2Driver).maxLowers > 128 ? [(d as! Overlay2Driver).maxLowers] : []) }),
    DriverUnderTest(name: "btrfs", make: { try BtrfsDriver(home: Bytes.of($0)) }, mkfs: "mkfs.btrfs -q -f"),
    DriverUnderTest(name: "aufs", make: { try AufsDriver(home: Bytes.of($0)) },
                    childViews: { ($0 as! AufsDriver).moduleLoaded }),
]

/// graphtest helpers.
enum Graph {
    static func randomContent(_ size: Int, seed: Int) -> [UInt8] {
        var x = UInt64(truncatingIfNeeded: seed) &* 0x9E3779B97F4A7C15 | 1
        return (0..<size).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static func addManyFiles(_ root: String, count: Int, seed: Int) throws {
        var ops: [Op] = []
        for i in stride(from: 0, to: count, by: 100) {
            ops.append(.dir("directory-\(i)"))
            for j in 0..<100 where i + j < count {
                ops.append(.bytes("directory-\(i)/file-\(i + j)", randomContent(64, seed: seed + i + j), mode: 0o755))
            }
        }
        try Fixture.apply(root, ops)
    }

    /// Returns the expected changes.
    static func changeManyFiles(_ root: String, count: Int, seed: Int) throws -> [String] {
        var expected: [String] = []
        var ops: [Op] = []
        for i in stride(from: 0, to: count, by: 100) {
            expected.append("C /directory-\(i)")
            for j in 0..<100 where i + j < count {
                switch j % 3 {
                case 0:
                    ops.append(.bytes("directory-\(i)/file-\(i + j)", randomContent(64, seed: seed + i + j), mode: 0o755))
                    ops.append(.time("directory-\(i)/file-\(i + j)", 1_700_000_000 + j, 1))
                    expected.append("C /directory-\(i)/file-\(i + j)")
                case 1:
                    ops.append(.bytes("directory-\(i)/file-\(seed)-\(i + j)", randomContent(64, seed: seed + i + j), mode: 0o755))
                    expected.append("A /directory-\(i)/file-\(seed)-\(i + j)")
                default:
                    ops.append(.remove("directory-\(i)/file-\(i + j)"))
                    expected.append("D /directory-\(i)/file-\(i + j)")
                }
            }
        }
        try Fixture.apply(root, ops)
        return expected.sorted()
    }

    static func checkManyFiles(_ root: String, count: Int, seed: Int) throws -> Bool {
        for i in stride(from: 0, to: count, by: 100) {
            for j in 0..<100 where i + j < count {
                let data = try Pipe.read(root + "/directory-\(i)/file-\(i + j)")
                if data != randomContent(64, seed: seed + i + j) { return false }
            }
        }
        return true
    }

    static func createBase(_ d: Driver, _ id: String) throws {
        try d.createReadWrite(id: id, parent: nil, options: [:])
        let root = Bytes.string(try d.getBytes(id: id))
        defer { try? d.put(id: id) }
        try Fixture.apply(root, [.dir("a subdir", mode: 0o1705, uid: 1, gid: 2), .file("a file", "Some data", mode: 0o4222)])
    }

    static func verifyBase(_ d: Driver, _ id: String) throws {
        let root = Bytes.string(try d.getBytes(id: id))
        defer { try? d.put(id: id) }
        let m = try Manifest.of(root, mtimes: false).map { $0.replacingOccurrences(" sum=", with: " ") }
        #expect(m.count == 2)
        #expect(m.contains { $0.hasPrefix("a file regular 4222 0:0 size=9") })
        #expect(m.contains("a subdir directory 1705 1:2"))
    }
}

extension String {
    func replacingOccurrences(_ a: String, with b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

/// The scenarios, each run by the suite of every driver below (`Conformance.VFS`, …).
@Suite(.serialized) struct Conformance {
    func withDriver(_ dut: DriverUnderTest, viewsChildren: Bool = false, _ body: (Driver) throws -> Void) throws {
        var fs: LoopFilesystem? = nil
        defer { fs?.close() }
        let home: String
        if let mkfs = dut.mkfs {
            fs = try LoopFilesystem(mkfs: mkfs, megabytes: 1024)
            home = fs!.mountPoint + "/home"
        } else {
            home = try Fixture.tempDir("home-\(dut.name)")
        }
        defer { if fs == nil { Fixture.cleanup(home) } }
        let d = try dut.make(home)
        defer { try? d.cleanup() }
        if viewsChildren && !dut.childViews(d) { throw TestError("\(dut.name) cannot view a layer with parents here") }
        try body(d)
    }

    func createEmpty(_ dut: DriverUnderTest) throws {
        try withDriver(dut) { d in
            try d.create(id: "empty", parent: nil, options: [:])
            #expect(d.exists(id: "empty"))
            let root = try d.getBytes(id: "empty")
            let st = try Sys.fstatat(AT_FDCWD, root)
            #expect(st.st_mode & 0o7777 == 0o755 && st.st_uid == 0 && st.st_gid == 0)
            #expect(try Manifest.of(Bytes.string(root)).isEmpty)
            try d.put(id: "empty")
            try d.remove(id: "empty")
            #expect(!d.exists(id: "empty"))
        }
    }

    func createBaseAndSnap(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            try Graph.createBase(d, "Base")
            try Graph.verifyBase(d, "Base")
            try d.create(id: "Snap", parent: "Base", options: [:])
            try Graph.verifyBase(d, "Snap")
            try d.remove(id: "Snap")
            try d.remove(id: "Base")
        }
    }

    func deepLayerRead(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            for n in dut.deepLayers(d) { try deepLayerRead(d, n) }
        }
    }

    func deepLayerRead(_ d: Driver, _ n: Int) throws {
        try d.create(id: "base\(n)", parent: nil, options: [:])
        try Fixture.apply(Bytes.string(try d.getBytes(id: "base\(n)")), [.file("testfile.txt", "test content")])
        try d.put(id: "base\(n)")
        var parent = "base\(n)"
        for i in 1...n {
            let id = "layer\(i)-\(n)"
            try d.create(id: id, parent: parent, options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: id)), [
                .file("top-id", id), .file("layer-\(i)/layer-id", id), .file("layer-\(i)/parent-id", parent),
            ])
            try d.put(id: id)
            parent = id
            }
            let top = Bytes.string(try d.getBytes(id: parent))
            defer { try? d.put(id: parent) }
            #expect(String(decoding: try Pipe.read(top + "/top-id"), as: UTF8.self) == parent)
            var expect = parent
            for i in stride(from: n, through: 1, by: -1) {
                #expect(String(decoding: try Pipe.read(top + "/layer-\(i)/layer-id"), as: UTF8.self) == expect)
                expect = String(decoding: try Pipe.read(top + "/layer-\(i)/parent-id"), as: UTF8.self)
            }
            #expect(String(decoding: try Pipe.read(top + "/testfile.txt"), as: UTF8.self) == "test content")
    }

    func diffApply(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            let count = 10
            try d.create(id: "base", parent: nil, options: [:])
            let base = Bytes.string(try d.getBytes(id: "base"))
            try Graph.addManyFiles(base, count: count, seed: 3)
            try Fixture.apply(base, [.file("file-remove.txt", "This file should get removed in upper!"), .dir("var/lib")])
            try d.create(id: "upper", parent: "base", options: [:])
            let upper = Bytes.string(try d.getBytes(id: "upper"))
            try Graph.addManyFiles(upper, count: count, seed: 6)
            for i in 0..<count { try Fixture.apply(upper, [.time("directory-0/file-\(i)", 1_700_000_000, 7)]) }
            try Fixture.apply(upper, [.remove("file-remove.txt"), .remove("var/lib")])
            let diffSize = try d.diffSize(id: "upper", parent: nil)

            try d.create(id: "diff", parent: "base", options: [:])
            let diff = Bytes.string(try d.getBytes(id: "diff"))
            #expect(try Graph.checkManyFiles(diff, count: count, seed: 3))
            let tar = try Pipe.tarFile { fd in try d.diff(id: "upper", parent: "base", to: fd, name: "upper", options: ExportOptions()) }
            defer { Fixture.cleanup(String(tar.dropLast(8))) }
            let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
            defer { close(fd) }
            // Released before the apply, so a driver may write its layer directly (overlay2's native apply).
            try d.put(id: "diff")
            let applied = try d.applyDiff(id: "diff", from: TarReader(fd: fd, name: tar), name: tar, options: ApplyOptions())
            #expect(try d.getBytes(id: "diff") == Bytes.of(diff))
            #expect(applied == diffSize)
            #expect(diffSize == 640)
            #expect(try Graph.checkManyFiles(diff, count: count, seed: 6))
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(diff + "/file-remove.txt")) == nil)
            #expect(try Sys.lstatIfExists(AT_FDCWD, Bytes.of(diff + "/var/lib")) == nil)
        }
    }

    func changes(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            try d.create(id: "base", parent: nil, options: [:])
            try Graph.addManyFiles(Bytes.string(try d.getBytes(id: "base")), count: 20, seed: 3)
            try d.create(id: "upper", parent: "base", options: [:])
            let expected = try Graph.changeManyFiles(Bytes.string(try d.getBytes(id: "upper")), count: 20, seed: 6)
            let got = try d.changes(id: "upper", parent: "base").filter { !$0.isLinkPeer }.map(\.line).sorted()
            #expect(got.count == 21)
            #expect(got == expected)
        }
    }

    /// containers/storage's Echo: delete at depth d, recreate below.
    func echo(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            let paths = (1...9).map { n in (1...n).map { "subdir\($0)" }.joined(separator: "/") }
            for depth in 0..<9 {
                let (b, s, t) = ("base\(depth)", "second\(depth)", "third\(depth)")
                try d.create(id: b, parent: nil, options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: b)), paths.map { .dir($0, mode: 0o700) } + [.file(paths[8] + "/file", String(repeating: "x", count: 128), mode: 0o600)])
                #expect(try d.changes(id: b, parent: nil).map(\.line) == paths.map { "A /" + $0 } + ["A /" + paths[8] + "/file"])
                try d.create(id: s, parent: b, options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: s)), [.remove(paths[depth])])
                #expect(try d.changes(id: s, parent: b).map(\.line) == paths[0..<depth].map { "C /" + $0 } + ["D /" + paths[depth]])
                try d.create(id: t, parent: s, options: [:])
                try Fixture.apply(Bytes.string(try d.getBytes(id: t)), paths[depth...].map { .dir($0, mode: 0o700) } + [.file(paths[8] + "/file", String(repeating: "y", count: 128), mode: 0o600)])
                #expect(try d.changes(id: t, parent: s).map(\.line)
                    == paths[0..<depth].map { "C /" + $0 } + paths[depth...].map { "A /" + $0 } + ["A /" + paths[8] + "/file"])
            }
        }
    }

    /// containers/storage's CreateFromTemplate: a layer with the template's content and the
    /// template's parent shows no changes against the template and the template's against the
    /// parent; its writable part's usage is measured.
    func createFromTemplate(_ dut: DriverUnderTest) throws {
        try withDriver(dut, viewsChildren: true) { d in
            try Graph.createBase(d, "Base3")
            try d.create(id: "Snap3", parent: "Base3", options: [:])
            try Fixture.apply(Bytes.string(try d.getBytes(id: "Snap3")), [.file("testfile.txt", "test content")])
            try d.put(id: "Snap3")
            try d.createFromTemplate(id: "FromTemplate", template: "Snap3", parent: "Base3", readWrite: true, options: [:])
            try d.createFromTemplate(id: "ROFromTemplate", template: "Snap3", parent: "Base3", readWrite: false, options: [:])
            for id in ["FromTemplate", "ROFromTemplate"] {
                #expect(try d.changes(id: id, parent: "Snap3").isEmpty)
                #expect(try Pipe.read(Bytes.string(try d.getBytes(id: id)) + "/testfile.txt") == Bytes.of("test content"))
                try d.put(id: id)
            }
            for id in ["Snap3", "FromTemplate", "ROFromTemplate"] {
                #expect(try d.changes(id: id, parent: "Base3").map(\.line) == ["A /testfile.txt"])
            }
            try Graph.verifyBase(d, "Base3")
            let u = try d.readWriteDiskUsage(id: "Base3")
            #expect(u.size == 9 && u.inodes == 3)
        }
    }

    func errorCases(_ dut: DriverUnderTest) throws {
        try withDriver(dut) { d in
            #expect(throws: (any Error).self) { try d.create(id: "x", parent: "missing-parent", options: [:]) }
            #expect(throws: (any Error).self) { _ = try d.getBytes(id: "missing") }
            #expect(throws: (any Error).self) { try d.create(id: "../escape", parent: nil, options: [:]) }
            // A size on a read-only layer: refused, except by btrfs, whose qgroups limit any subvolume.
            if d.name != "btrfs" {
                #expect(throws: (any Error).self) { try d.create(id: "ro", parent: nil, options: ["size": "10M"]) }
            }
            #expect(throws: (any Error).self) { try d.create(id: "bogus", parent: nil, options: ["nonsense": "1"]) }
            #expect(!d.exists(id: "bogus"))
        }
    }
}


/// One suite per driver, so that what a driver needs is a trait of its suite and a skip is reported
/// per driver and test (a case of a parameterized test cannot be skipped visibly). On aufs, the
/// scenarios that view a layer with parents also need the module.
extension Conformance {
    @Suite(.requires(.root)) struct VFS {
        let dut = driversUnderTest.first { $0.name == "vfs" }!
        @Test func createEmpty() throws { try Conformance().createEmpty(dut) }
        @Test func createBaseAndSnap() throws { try Conformance().createBaseAndSnap(dut) }
        @Test func deepLayerRead() throws { try Conformance().deepLayerRead(dut) }
        @Test func diffApply() throws { try Conformance().diffApply(dut) }
        @Test func changes() throws { try Conformance().changes(dut) }
        @Test func echo() throws { try Conformance().echo(dut) }
        @Test func createFromTemplate() throws { try Conformance().createFromTemplate(dut) }
        @Test func errorCases() throws { try Conformance().errorCases(dut) }
    }

    @Suite(.requires(.root, .filesystem("overlay"))) struct Overlay2 {
        let dut = driversUnderTest.first { $0.name == "overlay2" }!
        @Test func createEmpty() throws { try Conformance().createEmpty(dut) }
        @Test func createBaseAndSnap() throws { try Conformance().createBaseAndSnap(dut) }
        @Test func deepLayerRead() throws { try Conformance().deepLayerRead(dut) }
        @Test func diffApply() throws { try Conformance().diffApply(dut) }
        @Test func changes() throws { try Conformance().changes(dut) }
        @Test func echo() throws { try Conformance().echo(dut) }
        @Test func createFromTemplate() throws { try Conformance().createFromTemplate(dut) }
        @Test func errorCases() throws { try Conformance().errorCases(dut) }
    }

    @Suite(.requires(.root, .filesystem("btrfs"))) struct Btrfs {
        let dut = driversUnderTest.first { $0.name == "btrfs" }!
        @Test func createEmpty() throws { try Conformance().createEmpty(dut) }
        @Test func createBaseAndSnap() throws { try Conformance().createBaseAndSnap(dut) }
        @Test func deepLayerRead() throws { try Conformance().deepLayerRead(dut) }
        @Test func diffApply() throws { try Conformance().diffApply(dut) }
        @Test func changes() throws { try Conformance().changes(dut) }
        @Test func echo() throws { try Conformance().echo(dut) }
        @Test func createFromTemplate() throws { try Conformance().createFromTemplate(dut) }
        @Test func errorCases() throws { try Conformance().errorCases(dut) }
    }

    @Suite(.requires(.root)) struct Aufs {
        let dut = driversUnderTest.first { $0.name == "aufs" }!
        @Test func createEmpty() throws { try Conformance().createEmpty(dut) }
        @Test(.requires(.aufsModule)) func createBaseAndSnap() throws { try Conformance().createBaseAndSnap(dut) }
        @Test(.requires(.aufsModule)) func deepLayerRead() throws { try Conformance().deepLayerRead(dut) }
        @Test(.requires(.aufsModule)) func diffApply() throws { try Conformance().diffApply(dut) }
        @Test(.requires(.aufsModule)) func changes() throws { try Conformance().changes(dut) }
        @Test(.requires(.aufsModule)) func echo() throws { try Conformance().echo(dut) }
        @Test(.requires(.aufsModule)) func createFromTemplate() throws { try Conformance().createFromTemplate(dut) }
        @Test func errorCases() throws { try Conformance().errorCases(dut) }
    }
}

@Suite(.serialized) struct VFSOptionsTests {
    @Test func unknownOptionsAreRejected() throws {
        let home = try Fixture.tempDir("vfsopt")
        defer { Fixture.cleanup(home) }
        #expect(throws: DriverError.self) { _ = try VFSDriver(home: Bytes.of(home), options: ["vfs.bogus": "1"]) }
        #expect(throws: DriverError.self) { _ = try VFSDriver(home: Bytes.of(home), options: ["vfs.ignore_chown_errors": "maybe"]) }
        _ = try VFSDriver(home: Bytes.of(home), options: ["vfs.ignore_chown_errors": "true"])
    }
}
