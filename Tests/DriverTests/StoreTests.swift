// The layer store: atomic import, parents, incomplete layers cleaned at open.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct StoreTests {
    func tar(_ ops: [Op]) throws -> String {
        let src = try Fixture.make(ops)
        defer { Fixture.cleanup(src) }
        return try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "t") }
    }

    @Test(.requires(.root)) func failedImportLeavesNothingAndParentUntouched() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let good = try tar([.file("etc/hosts", "127.0.0.1"), .file("bin/sh", "#!")])
        let fd = try Sys.open(Bytes.of(good), O_RDONLY)
        _ = try store.importLayer(id: "base", parent: nil, from: fd, name: good)
        close(fd)
        let parentBefore = try Manifest.of(Bytes.string(try store.mount(id: "base")))

        // A layer whose second entry is damaged.
        let bad = try tar([.file("a", "1"), .file("b", String(repeating: "z", count: 4000))])
        #expect(truncate(bad, 512 * 4) == 0)
        let bfd = try Sys.open(Bytes.of(bad), O_RDONLY)
        defer { close(bfd) }
        #expect(throws: ArchiveError.self) { _ = try store.importLayer(id: "child", parent: "base", from: bfd, name: bad) }
        #expect(try store.list().map(\.id) == ["base"])
        #expect(!store.driver.exists(id: "child"))
        #expect(try Manifest.of(Bytes.string(try store.mount(id: "base"))) == parentBefore)
    }

    @Test(.requires(.root)) func interruptedImportIsRemovedAtOpen() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        do {
            let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
            try store.create(id: "base", parent: nil)
            try store.create(id: "half", parent: "base")
        }
        // What a kill -9 during import leaves: the layer and its incomplete marker.
        try Fixture.apply(home, [.file("layers/half.incomplete", "")])
        let reopened = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        #expect(try reopened.list().map(\.id) == ["base"])
        #expect(!reopened.driver.exists(id: "half"))
        #expect(reopened.driver.exists(id: "base"))
    }

    @Test(.requires(.root)) func exportOfImportedLayerAppliesBackToTheSameTree() throws {
        let home = try Fixture.tempDir("store")
        defer { Fixture.cleanup(home) }
        let store = try LayerStore(driverName: "vfs", home: Bytes.of(home))
        let base = try tar([.file("keep", "k"), .file("gone", "g"), .file("dir/x", "x")])
        let bfd = try Sys.open(Bytes.of(base), O_RDONLY)
        _ = try store.importLayer(id: "base", parent: nil, from: bfd, name: base)
        close(bfd)
        try store.create(id: "top", parent: "base")
        let top = Bytes.string(try store.mount(id: "top"))
        try Fixture.apply(top, [.remove("gone"), .file("dir/new", "n"), .remove("dir/x")])
        #expect(try store.changes(id: "top").map(\.line) == ["C /dir", "A /dir/new", "D /dir/x", "D /gone"])
        #expect(try store.size(id: "top") == 1)
        let out = try Pipe.tarFile { fd in try store.export(id: "top", to: fd, name: "top") }
        let copy = try Fixture.copy(Bytes.string(try store.mount(id: "base")))
        defer { Fixture.cleanup(copy) }
        _ = try Pipe.apply(out, to: copy)
        #expect(try Manifest.of(copy) == Manifest.of(top))
        #expect(throws: (any Error).self) { try store.remove(id: "base") }
        try store.remove(id: "top")
        try store.remove(id: "base")
        #expect(try store.list().isEmpty)
    }
}
