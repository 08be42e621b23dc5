// ID-mapped layer views (LayerStore.mount(id:idMap:), `difftool mount --uid-map`): owners shown
// through the map while the files on disk keep theirs, writes through a view of a read-write
// layer stored (and exported) with container IDs, views with different maps at once, counts and
// cleanup, and the chown fallback on a filesystem without ID-mapped mounts (ramfs).
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct IDMappedMountTests {
    static let map = IDMap(uids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)],
                           gids: [IDRange(containerID: 0, hostID: 100_000, size: 65536)])
    static let other = IDMap(uids: [IDRange(containerID: 0, hostID: 200_000, size: 65536)],
                             gids: [IDRange(containerID: 0, hostID: 200_000, size: 65536)])

    /// A small rootfs: /etc/passwd and /etc/shadow owned by root (shadow's group 42), a user's home.
    static let rootfs: [Op] = [
        .dir("etc"), .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n"),
        .file("etc/shadow", "root:*:19000::::::\n", mode: 0o640, gid: 42),
        .dir("home/u", mode: 0o700, uid: 1000, gid: 1000), .file("home/u/notes", "n", mode: 0o600, uid: 1000, gid: 1000),
        .file("bin/sh", "#!", mode: 0o755),
    ]

    /// A store on `driver` at `home` with `base` imported from the rootfs and `top`, a read-write
    /// layer on it.
    func store(_ driver: String, _ home: String) throws -> LayerStore {
        let s = try LayerStore(driverName: driver, home: Bytes.of(home))
        let src = try Fixture.make(Self.rootfs)
        defer { Fixture.cleanup(src) }
        let tar = try Pipe.tarFile { fd in try Layers.export(directory: Bytes.of(src), to: fd, name: "rootfs") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let fd = try Sys.open(Bytes.of(tar), O_RDONLY)
        defer { close(fd) }
        _ = try s.importLayer(id: "base", parent: nil, from: fd, name: tar)
        try s.create(id: "top", parent: "base", readWrite: true)
        return s
    }

    func owner(_ path: String) throws -> String {
        let st = try Sys.fstatat(AT_FDCWD, Bytes.of(path))
        return "\(st.st_uid):\(st.st_gid)"
    }

    /// Mounts below `dir` (the store's views, its overlays).
    func mounts(under dir: String) throws -> [String] {
        let text = String(decoding: try Sys.readFile(Bytes.of("/proc/self/mountinfo")), as: UTF8.self)
        return text.split(separator: "\n").compactMap { l in
            let f = l.split(separator: " ")
            return f.count > 4 && f[4].hasPrefix(dir + "/") ? String(f[4]) : nil
        }
    }

    /// Unmount whatever a failing test left mounted below `dir` (deepest first), before its files
    /// are removed.
    func unmountAll(under dir: String) {
        _ = try? Shell.run("grep -o ' \(dir)/[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l")
    }

    func check(_ driver: String, home: String) throws {
        let s = try store(driver, home)
        for id in ["base", "top"] {
            let view = try s.mount(id: id, idMap: Self.map)
            #expect(view.isIDMapped, "\(driver) \(id): \(view.fallbackReason ?? "")")
            let p = Bytes.string(view.path)
            #expect(try owner(p + "/etc/passwd") == "100000:100000", "\(driver) \(id)")
            #expect(try owner(p + "/etc/shadow") == "100000:100042", "\(driver) \(id)")
            #expect(try owner(p + "/home/u/notes") == "101000:101000", "\(driver) \(id)")
            #expect(try Pipe.read(p + "/etc/passwd").starts(with: Bytes.of("root:x:0:0")))
            // The layer's own files keep their IDs: nothing was rewritten.
            let plain = Bytes.string(try s.mount(id: id))
            #expect(try owner(plain + "/etc/passwd") == "0:0", "\(driver) \(id)")
            #expect(try owner(plain + "/home/u/notes") == "1000:1000", "\(driver) \(id)")
            try s.unmount(id: id)
            try s.unmount(id: id, idMap: Self.map)
            #expect(!s.isMounted(id: id, idMap: Self.map))
        }
        #expect(try mounts(under: home + "/views").isEmpty)
    }

    @Test(.requires(.root, .filesystem("overlay")), arguments: ["vfs", "overlay2", "aufs"])
    func viewShowsMappedOwnersWhileTheDiskKeepsThem(driver: String) throws {
        let home = try Fixture.tempDir("idmap")
        defer { Fixture.cleanup(home) }
        defer { unmountAll(under: home) }
        if driver == "aufs" {
            // Without the module only a base layer can be viewed; its view is its branch, ID-mapped.
            let s = try store(driver, home)
            let view = try s.mount(id: "base", idMap: Self.map)
            #expect(view.isIDMapped)
            #expect(try owner(Bytes.string(view.path) + "/etc/passwd") == "100000:100000")
            #expect(try owner(home + "/aufs/diff/base/etc/passwd") == "0:0")
            try s.unmount(id: "base", idMap: Self.map)
            return
        }
        try check(driver, home: home)
    }

    @Test(.requires(.root, .filesystem("btrfs"))) func btrfsViewShowsMappedOwners() throws {
        let fs = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 256)
        defer { fs.close() }
        try check("btrfs", home: fs.mountPoint + "/home")
    }

    /// A file made through a mapped view by mapped root is stored as 0:0 and exported as 0:0, as
    /// without a map; an edit of a lower file (a copy-up on overlay2) too. Host root, outside the
    /// map, cannot create files there (EOVERFLOW): the mount stores only mapped IDs.
    @Test(.requires(.root, .filesystem("overlay"), .command("setpriv")), arguments: ["vfs", "overlay2"])
    func writesThroughAViewAreStoredWithContainerIDs(driver: String) throws {
        let home = try Fixture.tempDir("idmap")
        defer { Fixture.cleanup(home) }
        defer { unmountAll(under: home) }
        #expect(chmod(home, 0o755) == 0)  // the mapped IDs reach the view through it
        let s = try store(driver, home)
        let p = Bytes.string(try s.mount(id: "top", idMap: Self.map).path)
        try Shell.check("setpriv --reuid=100000 --regid=100000 --clear-groups sh -c 'echo made > \(p)/made && mkdir \(p)/d && echo 2 >> \(p)/etc/passwd'")
        try Shell.check("setpriv --reuid=101000 --regid=101000 --clear-groups sh -c 'echo u > \(p)/home/u/more'")
        #expect(try owner(p + "/made") == "100000:100000")
        #expect(creat(p + "/by-host-root", 0o644) == -1 && errno == EOVERFLOW)
        try s.unmount(id: "top", idMap: Self.map)
        #expect(!s.isMounted(id: "top", idMap: Self.map))

        let plain = Bytes.string(try s.mount(id: "top"))
        defer { try? s.unmount(id: "top") }
        #expect(try owner(plain + "/made") == "0:0")
        #expect(try owner(plain + "/d") == "0:0")
        #expect(try owner(plain + "/etc/passwd") == "0:0")
        #expect(try owner(plain + "/home/u/more") == "1000:1000")
        #expect(try Pipe.read(plain + "/etc/passwd").suffix(2) == Bytes.of("2\n"))
        let tar = try Pipe.tarFile { fd in _ = try s.export(id: "top", to: fd, name: "top") }
        defer { Fixture.cleanup(tarDir(tar)) }
        let listing = try Shell.run("tar --numeric-owner -tvf \(tar)").output
        let owners = Dictionary(uniqueKeysWithValues: listing.split(separator: "\n").map { l in
            let f = l.split(separator: " ", omittingEmptySubsequences: true)
            return (String(f.last!), String(f[1]))
        })
        #expect(owners["made"] == "0/0", "\(listing)")
        #expect(owners["d/"] == "0/0", "\(listing)")
        #expect(owners["etc/passwd"] == "0/0", "\(listing)")
        #expect(owners["home/u/more"] == "1000/1000", "\(listing)")
    }

    /// Two maps of one layer at once, each counted on its own (across the store's on-disk counts);
    /// the last umount of each leaves nothing mounted and no directory; removing a layer drops its
    /// views.
    @Test(.requires(.root, .filesystem("overlay"), .command("setpriv")), arguments: ["vfs", "overlay2"])
    func twoMapsAtOnceAndCounts(driver: String) throws {
        let home = try Fixture.tempDir("idmap")
        defer { Fixture.cleanup(home) }
        defer { unmountAll(under: home) }
        let s = try store(driver, home)
        let a = try s.mount(id: "top", idMap: Self.map)
        let a2 = try s.mount(id: "top", idMap: Self.map)
        let b = try s.mount(id: "top", idMap: Self.other)
        #expect(a == a2)
        #expect(a.path != b.path)
        #expect(try owner(Bytes.string(a.path) + "/etc/passwd") == "100000:100000")
        #expect(try owner(Bytes.string(b.path) + "/etc/passwd") == "200000:200000")
        // Both write (a copy-up each on overlay2, which needs each view's own work dir).
        #expect(chmod(home, 0o755) == 0)
        try Shell.check("setpriv --reuid=100000 --regid=100000 --clear-groups sh -c 'echo a >> \(Bytes.string(a.path))/etc/passwd'")
        try Shell.check("setpriv --reuid=200000 --regid=200000 --clear-groups sh -c 'echo b >> \(Bytes.string(b.path))/bin/sh'")
        // (Two overlays over one upper do not see each other's copy-ups once they have looked a
        // file up: overlayfs leaves changes to a mounted layer undefined.)
        if driver == "vfs" { #expect(try Pipe.read(Bytes.string(b.path) + "/etc/passwd").suffix(2) == Bytes.of("a\n")) }
        // Another process's view of the count: the same store opened again.
        let again = try LayerStore(driverName: driver, home: Bytes.of(home))
        try again.unmount(id: "top", idMap: Self.map)
        #expect(s.isMounted(id: "top", idMap: Self.map))
        #expect(try owner(Bytes.string(a.path) + "/etc/passwd") == "100000:100000")
        try s.unmount(id: "top", idMap: Self.map)
        #expect(!s.isMounted(id: "top", idMap: Self.map))
        #expect(s.isMounted(id: "top", idMap: Self.other))
        #expect(try owner(Bytes.string(b.path) + "/etc/passwd") == "200000:200000")
        try s.unmount(id: "top", idMap: Self.other)
        #expect(try mounts(under: home).isEmpty)
        if driver == "overlay2" {  // the views' work dirs in the layer went with them
            #expect(try Shell.run("ls -A \(home)/overlay2/top").output.split(separator: "\n").sorted() == ["diff", "link", "lower", "work"])
        }
        #expect(try Shell.run("ls -A \(home)/views").output.isEmpty)
        #expect(try Shell.run("ls -A \(home)/layers/.mounts").output.isEmpty)

        // A layer removed with views mounted: they go first.
        _ = try s.mount(id: "top", idMap: Self.map)
        _ = try s.mount(id: "top", idMap: Self.other)
        try s.remove(id: "top")
        #expect(try mounts(under: home).isEmpty)
        #expect(try Shell.run("ls -A \(home)/views").output.isEmpty)
    }

    /// ramfs has no ID-mapped mounts: the view falls back to a chowned copy (with the reason),
    /// or, when no fallback is allowed, the mount fails naming the filesystem; the CLI warns.
    @Test(.requires(.root, .filesystem("ramfs"))) func fallbackWhereTheFilesystemCannot() throws {
        let dir = try Fixture.tempDir("idmap-ramfs")
        defer { Fixture.cleanup(dir) }
        try Shell.check("mount -t ramfs none \(dir)")
        defer { _ = try? Shell.run("umount -l \(dir)") }
        let home = dir + "/store"
        let s = try store("vfs", home)
        let refused = #expect(throws: DriverError.self) {
            _ = try s.mount(id: "base", idMap: Self.map, options: MappedViewOptions(allowChownFallback: false))
        }
        #expect(refused?.description.contains("ramfs at \(home)/vfs/dir/base does not support ID-mapped mounts") == true)
        #expect(try mounts(under: home).isEmpty)
        #expect(try Shell.run("ls -A \(home)/views").output.isEmpty)

        let view = try s.mount(id: "base", idMap: Self.map)
        #expect(!view.isIDMapped)
        #expect(view.fallbackReason?.contains("ramfs") == true)
        let p = Bytes.string(view.path)
        #expect(try owner(p + "/etc/passwd") == "100000:100000")
        #expect(try owner(p + "/home/u/notes") == "101000:101000")
        #expect(try owner(p) == "100000:100000")
        #expect(try owner(home + "/vfs/dir/base/etc/passwd") == "0:0")
        #expect(try s.mount(id: "base", idMap: Self.map) == view)
        try s.unmount(id: "base", idMap: Self.map)
        try s.unmount(id: "base", idMap: Self.map)
        #expect(try mounts(under: home).isEmpty)

        let (status, out, err) = try CLI.run("--home \(home) mount base --uid-map 0:100000:65536 --gid-map 0:100000:65536 --json")
        #expect(status == 0)
        #expect(out.hasPrefix("{\"fallback\":\"ramfs at") && out.contains("\"idmapped\":false,\"path\":\"\(home)/views/base@"))
        #expect(err.contains("warning: layer base: no ID-mapped view: ramfs"))
        let (s2, _, err2) = try CLI.run("--home \(home) mount base --uid-map 0:300000:65536 --gid-map 0:300000:65536 --no-chown-fallback")
        #expect(s2 == 1)
        #expect(err2.contains("does not support ID-mapped mounts; no chown fallback was allowed"))
        #expect(try CLI.run("--home \(home) umount base --uid-map 0:100000:65536 --gid-map 0:100000:65536").0 == 0)
        #expect(try mounts(under: home).isEmpty)
    }

    /// The CLI on an ID-mapping filesystem: `mount --uid-map` prints the view, `umount` with the
    /// same map releases it.
    @Test(.requires(.root, .filesystem("overlay"))) func cliMountAndUmount() throws {
        let home = try Fixture.tempDir("idmap")
        defer { Fixture.cleanup(home) }
        defer { unmountAll(under: home) }
        _ = try store("overlay2", home)
        let args = "--driver overlay2 --home \(home)"
        let (status, out, err) = try CLI.run("\(args) mount top --uid-map 0:100000:65536 --gid-map 0:100000:65536")
        #expect(status == 0, "\(err)")
        let path = out.trimmingCharacters(in: ["\n"])
        #expect(path.hasPrefix(home + "/views/top@"))
        #expect(try owner(path + "/etc/passwd") == "100000:100000")
        let (_, json, _) = try CLI.run("\(args) mount top --uid-map 0:100000:65536 --gid-map 0:100000:65536 --json")
        #expect(json == "{\"idmapped\":true,\"path\":\"\(path)\"}\n")
        #expect(try CLI.run("\(args) mount base --json").1 == "{\"path\":\"\(home)/overlay2/base/diff\"}\n")
        for _ in 0..<2 { #expect(try CLI.run("\(args) umount top --uid-map 0:100000:65536 --gid-map 0:100000:65536").0 == 0) }
        #expect(try mounts(under: home).isEmpty)
    }

    /// A store whose layers were imported under a map (chowned, the map recorded) holds host IDs:
    /// a view through its own map is the plain mount, through another one is refused.
    @Test(.requires(.root)) func aStoreMadeUnderAMapIsNotMappedTwice() throws {
        let home = try Fixture.tempDir("idmap")
        defer { Fixture.cleanup(home) }
        defer { unmountAll(under: home) }
        let s = try LayerStore(driverName: "vfs", home: Bytes.of(home), idMap: Self.map)
        try s.create(id: "base", parent: nil)
        #expect(try s.mount(id: "base", idMap: Self.map).path == FilePath(home + "/vfs/dir/base"))
        let refused = #expect(throws: DriverError.self) { _ = try s.mount(id: "base", idMap: Self.other) }
        #expect(refused?.description.contains("made under another ID map") == true)
        #expect(try mounts(under: home).isEmpty)
    }
}
