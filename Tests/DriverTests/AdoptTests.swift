// Engines' own stores opened in place (`--adopt`), against stores real engines made: a dockerd
// of the test's own (overlay2, vfs) after `docker load` of an archive made here and a container
// commit, and Debian's buildah (overlay, vfs) after images built from scratch. Every layer is
// listed under the engine's id; each image layer's export is the engine's own tar (its sha256 is
// the recorded diffID, and `docker save` / `buildah push` give the same bytes); nothing below the
// engine's root changes (paths, modes, sizes and ctimes before and after).
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
@testable import EngineStores
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum AdoptFixture {
    static func sha(_ path: String) throws -> String { try SHA256.ofFile(Bytes.of(path)) }

    /// docker's chain IDs of a list of diffIDs.
    static func chainIDs(_ diffIDs: [String]) -> [String] {
        var out: [String] = []
        for d in diffIDs { out.append(out.last.map { SHA256.hex(Bytes.of($0 + " " + d)) } ?? d) }
        return out
    }

    /// Every path below `paths` with its type, mode, owner, size, ctime and mtime (nanoseconds),
    /// and a symlink's target: any write, rename, chmod or new file shows.
    static func manifest(_ paths: [String]) throws -> String {
        let (status, out) = try Shell.run("find \(paths.map { "'\($0)'" }.joined(separator: " ")) -printf '%p %y %m %U:%G %s %C@ %T@ %l\\n' | LC_ALL=C sort")
        if status != 0 { throw TestError("find: \(out)") }
        return out
    }

    /// Two layer trees made with GNU tar: a base (files, a hardlink, a symlink, a directory to
    /// empty, a file to delete) and a child that changes a file, adds one, deletes one (a
    /// whiteout) and makes a directory opaque.
    static func layerTars(in dir: String) throws -> [String] {
        try Shell.check("""
            cd '\(dir)' && mkdir -p l1/etc l1/usr/share/doc l1/old/sub l1/keep && \
            printf 'hello\\n' >l1/etc/greeting && head -c 300000 /dev/urandom >l1/usr/share/doc/big && \
            printf 'gone\\n' >l1/keep/gone && printf 'x\\n' >l1/old/sub/f && ln l1/etc/greeting l1/etc/hard && \
            ln -s ../etc/greeting l1/usr/link && chmod 0750 l1/keep && \
            mkdir -p l2/etc l2/keep l2/old && printf 'changed\\n' >l2/etc/greeting && printf 'new\\n' >l2/etc/new && \
            : >l2/keep/.wh.gone && : >l2/old/.wh..wh..opq && printf 'fresh\\n' >l2/old/fresh && \
            touch -d @1700000000 l1/* l2/* && \
            tar -C l1 --numeric-owner --sort=name -cf layer1.tar . && tar -C l2 --numeric-owner --sort=name -cf layer2.tar .
            """)
        return [dir + "/layer1.tar", dir + "/layer2.tar"]
    }

    /// A docker-archive (what `docker load` reads) of `layers`, tagged `tag`.
    static func dockerArchive(in dir: String, layers: [String], tag: String) throws -> String {
        let diffIDs = try layers.map(sha)
        let stage = dir + "/archive"
        try Shell.check("mkdir -p '\(stage)'")
        var names: [String] = []
        for (i, l) in layers.enumerated() {
            try Shell.check("mkdir -p '\(stage)/l\(i)' && cp '\(l)' '\(stage)/l\(i)/layer.tar'")
            names.append("l\(i)/layer.tar")
        }
        let config = #"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":["#
            + diffIDs.map { "\"\($0)\"" }.joined(separator: ",") + "]}}"
        try Shell.check("printf '%s' '\(config)' >'\(stage)/config.json'")
        let manifest = #"[{"Config":"config.json","RepoTags":[""# + tag + #""],"Layers":["# + names.map { "\"\($0)\"" }.joined(separator: ",") + "]}]"
        try Shell.check("printf '%s' '\(manifest)' >'\(stage)/manifest.json'")
        try Shell.check("tar -C '\(stage)' -cf '\(dir)/image.tar' .")
        return dir + "/image.tar"
    }

    /// `difftool ARGS`, which must succeed; its stdout.
    @discardableResult
    static func difftool(_ args: String) throws -> String {
        let (status, out, err) = try CLI.run(args)
        if status != 0 { throw TestError("difftool \(args): exit \(status): \(err)") }
        return out
    }

    /// The layers `ls --json` lists: id → (parent, diffID, container).
    static func listed(_ store: String) throws -> [String: (parent: String?, diffID: String?, container: Bool)] {
        let out = try difftool("\(store) ls --json")
        // One object per layer; the fields are simple strings, null or booleans.
        var result: [String: (String?, String?, Bool)] = [:]
        for object in out.split(separator: "}") {
            func field(_ name: String) -> String? {
                guard let r = object.firstRange(of: "\"\(name)\":") else { return nil }
                let rest = object[r.upperBound...]
                if rest.hasPrefix("null") { return nil }
                if rest.hasPrefix("true") { return "true" }
                if rest.hasPrefix("false") { return "false" }
                guard rest.hasPrefix("\"") else { return nil }
                return String(rest.dropFirst().prefix { $0 != "\"" })
            }
            guard let id = field("id") else { continue }
            result[id] = (field("parent"), field("diffID"), field("container") == "true")
        }
        return result
    }
}

@Suite(.serialized) struct AdoptTests {
    // MARK: docker

    @Test(.requires(.root, .filesystem("overlay"), .command("dockerd"))) func dockerOverlay2() throws {
        try dockerChecks(driver: "overlay2")
    }

    @Test(.requires(.root, .command("dockerd"))) func dockerVFS() throws {
        try dockerChecks(driver: "vfs")
    }

    func dockerChecks(driver: String) throws {
        let dir = try Fixture.tempDir("adopt-docker")
        defer { Fixture.cleanup(dir) }
        let daemon = try DockerDaemon(storageDriver: driver)
        defer { daemon.stop() }
        let tars = try AdoptFixture.layerTars(in: dir)
        try daemon.docker("load -i '\(try AdoptFixture.dockerArchive(in: dir, layers: tars, tag: "adopt:1"))'")
        // A container's layer, committed: files copied into a created container.
        try Shell.check("mkdir -p '\(dir)/cp/srv' && printf 'copied\\n' >'\(dir)/cp/srv/file'")
        try daemon.docker("create --name c1 adopt:1")
        try daemon.docker("cp '\(dir)/cp/srv' c1:/srv")
        try daemon.docker("commit c1 adopt:2")
        try daemon.docker("create --name c2 adopt:2")  // a container whose layer stays a container's
        let diffIDs = try daemon.docker("inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' adopt:2")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        #expect(diffIDs.count == 3)
        let chain = AdoptFixture.chainIDs(diffIDs)
        let root = daemon.dataRoot
        let store = "--home '\(dir)/home' --adopt docker:'\(root)'"
        let watched = [root + "/image", root + "/" + driver]
        // What docker gives, taken before the store is watched (docker mounts to export).
        try daemon.docker("save -o '\(dir)/saved.tar' adopt:2")
        try Shell.check("mkdir -p '\(dir)/saved' && tar -C '\(dir)/saved' -xf '\(dir)/saved.tar'")
        try daemon.docker("export -o '\(dir)/exported.tar' c2")
        try Shell.check("mkdir -p '\(dir)/exported' && tar -C '\(dir)/exported' --numeric-owner -xpf '\(dir)/exported.tar'")
        let before = try AdoptFixture.manifest(watched)

        // ls: docker's chain IDs with their parents and diffIDs, and the two containers.
        let listed = try AdoptFixture.listed(store)
        for (i, id) in chain.enumerated() {
            #expect(listed[id]?.diffID == diffIDs[i], "layer \(id)")
            #expect(listed[id]?.parent == (i == 0 ? nil : chain[i - 1]), "layer \(id)")
        }
        #expect(listed.values.filter(\.container).count == 2)
        #expect(listed.count == chain.count + 2)

        // export: the engine's bytes; the same as the layer tars of `docker save`.
        let saved = Set(try Shell.run("find '\(dir)/saved' -name layer.tar").output.split(separator: "\n").map { try AdoptFixture.sha(String($0)) })
        for (i, id) in chain.enumerated() {
            let (status, _, err) = try CLI.run("\(store) export \(id) -o '\(dir)/out\(i).tar'")
            #expect(status == 0, "\(err)")
            #expect(!err.contains("warning"), "\(err)")
            let digest = try AdoptFixture.sha("\(dir)/out\(i).tar")
            #expect(digest == diffIDs[i], "layer \(id)")
            #expect(saved.contains(digest), "layer \(id): not among docker save's layers")
        }
        // changes and size answer for every layer, containers' too.
        let changes = try AdoptFixture.difftool("\(store) changes \(chain[1])")
        #expect(changes.contains("D /keep/gone") && changes.contains("A /etc/new") && changes.contains("C /etc/greeting"), "\(changes)")
        #expect(try AdoptFixture.difftool("\(store) changes \(chain[2])").contains("A /srv/file"))
        for id in listed.keys { _ = try AdoptFixture.difftool("\(store) size \(id)") }

        // The top layer's merged view is what `docker export` of a container of it holds,
        // the container's init files aside.
        let mounted = try AdoptFixture.difftool("\(store) mount \(chain[2])").stripped()
        #expect(mounted.hasPrefix(dir + "/home/adopted/"))
        let initFiles: Set<String> = [".dockerenv", "dev", "proc", "sys", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"]
        func view(_ root: String) throws -> [String] {
            try Manifest.of(root, mtimes: false).filter { line in
                let path = String(line.prefix { $0 != " " })
                return !initFiles.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) && !line.hasPrefix("etc directory")
                    && !line.hasPrefix("dev ")
            }
        }
        #expect(try view(mounted) == view(dir + "/exported"))
        try AdoptFixture.difftool("\(store) umount \(chain[2])")
        #expect(!Sys.isMountRoot(Bytes.of(mounted)))

        // migrate into a DiffKit store: the layers keep docker's diffIDs.
        let migrated = try AdoptFixture.difftool("migrate --from-adopt docker:'\(root)' --to vfs --to-home '\(dir)/target'")
        #expect(migrated.contains("copied 5 layers"), "\(migrated)")
        for (i, id) in chain.enumerated() {
            try AdoptFixture.difftool("--driver vfs --home '\(dir)/target' export \(id.dropFirst(7)) -o '\(dir)/m\(i).tar'")
            #expect(try AdoptFixture.sha("\(dir)/m\(i).tar") == diffIDs[i])
        }

        // Nothing below the data root changed.
        #expect(try AdoptFixture.manifest(watched) == before)

        // A layer whose files changed since is regenerated, with a warning.
        let cacheID = try AdoptedStore(engine: .docker, root: FilePath(root), stateDirectory: FilePath(dir + "/home")).layer(chain[0]).driverID
        let greeting = driver == "vfs" ? "\(root)/vfs/dir/\(cacheID)/etc/greeting" : "\(root)/overlay2/\(cacheID)/diff/etc/greeting"
        try Shell.check("printf 'HELLO\\n' >'\(greeting)'")
        let (status, _, err) = try CLI.run("\(store) export \(chain[0]) -o '\(dir)/changed.tar'")
        #expect(status == 0 && err.contains("warning") && err.contains("etc/greeting"), "\(err)")
        #expect(try AdoptFixture.sha("\(dir)/changed.tar") != diffIDs[0])
    }

    // MARK: containers/storage

    @Test(.requires(.root, .filesystem("overlay"), .command("buildah"))) func containersOverlay() throws {
        try buildahChecks(driver: "overlay")
    }

    @Test(.requires(.root, .command("buildah"))) func containersVFS() throws {
        try buildahChecks(driver: "vfs")
    }

    func buildahChecks(driver: String) throws {
        let dir = try Fixture.tempDir("adopt-buildah")
        defer { Fixture.cleanup(dir) }
        let buildah = try Buildah(storageDriver: driver)
        defer { buildah.stop() }
        _ = try AdoptFixture.layerTars(in: dir)
        let c1 = try buildah.run("from scratch")
        try buildah.run("copy \(c1) '\(dir)/l1' /")
        try buildah.run("commit -q \(c1) img1")
        let c2 = try buildah.run("from img1")
        // Changes made on the container's mounted tree: a change, an addition, a deletion.
        let m = try buildah.run("mount \(c2)")
        try Shell.check("printf 'changed\\n' >'\(m)/etc/greeting' && printf 'new\\n' >'\(m)/etc/new' && rm '\(m)/keep/gone'")
        try buildah.run("umount \(c2)")
        try buildah.run("commit -q \(c2) img2")
        try buildah.run("push --disable-compression img2 oci:'\(dir)/oci'")
        let root = buildah.root
        let store = "--home '\(dir)/home' --adopt containers:'\(root)'"
        let before = try AdoptFixture.manifest([root])

        let listed = try AdoptFixture.listed(store)
        // buildah may compress what it pushes: the blobs are compared decompressed.
        try Shell.check("cd '\(dir)' && mkdir -p blobs && for b in oci/blobs/sha256/*; do zcat -f \"$b\" >blobs/tmp && mv blobs/tmp blobs/$(sha256sum <blobs/tmp | cut -c1-64); done")
        let blobs = Set(try Shell.run("ls '\(dir)/blobs'").output.split(separator: "\n").map { "sha256:" + $0 })
        let images = listed.filter { $0.value.diffID != nil }
        #expect(images.count == 2)
        #expect(listed.values.filter(\.container).count == 2)  // the two working containers
        for (id, layer) in images {
            #expect(blobs.contains(layer.diffID!), "layer \(id): its diffID is not among buildah push's blobs")
            let (status, _, err) = try CLI.run("\(store) export \(id) -o '\(dir)/out.tar'")
            #expect(status == 0 && !err.contains("warning"), "\(err)")
            let digest = try AdoptFixture.sha(dir + "/out.tar")
            #expect(digest == layer.diffID, "layer \(id)")
            // The bytes of the pushed blob.
            try Shell.check("cmp '\(dir)/out.tar' '\(dir)/blobs/\(digest.dropFirst(7))'")
        }
        let top = try #require(images.first { $0.value.parent != nil })
        let changes = try AdoptFixture.difftool("\(store) changes \(top.key)")
        #expect(changes.contains("D /keep/gone") && changes.contains("A /etc/new") && changes.contains("C /etc/greeting"), "\(changes)")
        let mounted = try AdoptFixture.difftool("\(store) mount \(top.key)").stripped()
        #expect(String(decoding: try Pipe.read(mounted + "/etc/greeting"), as: UTF8.self) == "changed\n")
        #expect(!Sys.exists(Bytes.of(mounted + "/keep/gone")))
        try AdoptFixture.difftool("\(store) umount \(top.key)")
        for id in listed.keys { _ = try AdoptFixture.difftool("\(store) size \(id)") }

        let migrated = try AdoptFixture.difftool("migrate --from-adopt containers:'\(root)' --to vfs --to-home '\(dir)/target'")
        #expect(migrated.contains("copied 4 layers"), "\(migrated)")
        for (id, layer) in images {
            try AdoptFixture.difftool("--driver vfs --home '\(dir)/target' export \(id) -o '\(dir)/m.tar'")
            #expect(try AdoptFixture.sha(dir + "/m.tar") == layer.diffID)
        }
        #expect(try AdoptFixture.manifest([root]) == before)
    }

    /// A writer holding containers/storage's layers.lock: adoption waits, then refuses.
    @Test(.requires(.command("python3"))) func containersWriterLockRefuses() throws {
        let dir = try Fixture.tempDir("adopt-lock")
        defer { Fixture.cleanup(dir) }
        try Shell.check("mkdir -p '\(dir)/root/vfs-layers' '\(dir)/root/vfs/dir' && printf '[]' >'\(dir)/root/vfs-layers/layers.json' && : >'\(dir)/root/vfs-layers/layers.lock'")
        let store = "--home '\(dir)/home' --adopt containers:'\(dir)/root'"
        #expect(try AdoptFixture.difftool("\(store) ls") == "")
        try Shell.check("""
            setsid python3 -c 'import fcntl,time; f=open("\(dir)/root/vfs-layers/layers.lock","r+"); fcntl.lockf(f, fcntl.LOCK_EX); open("\(dir)/held","w").close(); time.sleep(60)' </dev/null >/dev/null 2>&1 & echo $! >'\(dir)/pid'
            """)
        let pid = pid_t(String(decoding: try Pipe.read(dir + "/pid"), as: UTF8.self).stripped()) ?? 0
        defer { if pid > 0 { kill(pid, SIGKILL) } }
        for _ in 0..<100 where !Sys.exists(Bytes.of(dir + "/held")) { usleep(50_000) }
        let (status, _, err) = try CLI.run("\(store) ls")
        #expect(status == 1 && err.contains("layers.lock") && err.contains("lock for writing"), "\(err)")
    }

    // MARK: what is not a store

    @Test func notAStoreIsAnError() throws {
        let dir = try Fixture.tempDir("adopt-none")
        defer { Fixture.cleanup(dir) }
        try Shell.check("mkdir -p '\(dir)/plain/etc' '\(dir)/ovl/l' '\(dir)/ovl/abc/diff' && : >'\(dir)/ovl/abc/link' && mkdir -p '\(dir)/zfs/image/zfs/layerdb'")
        let home = "--home '\(dir)/home'"
        let cases: [(String, [String])] = [
            ("\(home) --adopt docker:'\(dir)/plain' ls", ["not a docker data root", "image/<driver>/layerdb"]),
            ("\(home) --adopt containers:'\(dir)/plain' ls", ["not a containers/storage root", "layers.json"]),
            ("\(home) --adopt docker:'\(dir)/ovl' ls", ["overlay driver's own directory"]),
            ("\(home) --adopt docker:'\(dir)/zfs' ls", ["'zfs' driver", "overlay2, vfs, btrfs"]),
            ("\(home) --adopt docker:'\(dir)/missing' ls", ["does not exist"]),
            ("\(home) --adopt podman:'\(dir)/plain' ls", ["expected docker:PATH"]),
            ("\(home) --adopt docker:'\(dir)/zfs' rm x", ["needs a DiffKit store"]),
            ("migrate --from overlay2 --from-home '\(dir)/ovl' --to vfs --to-home '\(dir)/t'", ["not a DiffKit store of overlay2", "--from-adopt"]),
            ("migrate --from vfs --from-home '\(dir)/plain' --to vfs --to-home '\(dir)/t'", ["not a DiffKit store of vfs"]),
            ("migrate --from aufs --from-home '\(dir)/plain' --to vfs --to-home '\(dir)/t'", ["bare aufs directory"]),
        ]
        for (args, expected) in cases {
            let (status, out, err) = try CLI.run(args)
            #expect(status == 1 && out.isEmpty, "\(args): exit \(status)")
            for e in expected { #expect(err.contains(e), "\(args): \(err)") }
        }
        // Nothing was made in the directories given as sources.
        #expect(try listing(dir + "/plain") == ["etc/"])
    }

    // MARK: tar-split records

    @Test func crc64IsGosISO() {
        var c = CRC64()
        Array("123456789".utf8).withUnsafeBytes { c.update($0) }
        #expect(c.value == 0xB909_56C7_75A4_1001)
        // Slicing-by-8 and the byte loop agree on a buffer that is not a multiple of 8.
        let data = (0..<1003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var whole = CRC64(), pieces = CRC64()
        data.withUnsafeBytes { whole.update($0) }
        for i in stride(from: 0, to: data.count, by: 5) {
            Array(data[i..<min(i + 5, data.count)]).withUnsafeBytes { pieces.update($0) }
        }
        #expect(whole.value == pieces.value)
    }

    @Test func tarSplitLinesParse() throws {
        let dir = try Fixture.tempDir("adopt-ts")
        defer { Fixture.cleanup(dir) }
        let lines = #"""
            {"type":2,"payload":"YWJj","position":0}
            {"type":1,"name":"./etc/gr\u00e9eting\u003c","size":6,"payload":"AAECAwQFBgc=","position":1}
            {"type":1,"name_raw":"/w==","size":0,"payload":null,"position":2}
            {"type":2,"payload":"","position":3}
            """#
        try Shell.check("printf '%s\\n' '\(lines)' | gzip >'\(dir)/ts.gz'")
        let r = try EngineTarSplitReader(path: Bytes.of(dir + "/ts.gz"))
        #expect(try r.next() == .segment(Bytes.of("abc")))
        #expect(try r.next() == .file(name: Bytes.of("./etc/gréeting<"), size: 6, crc: [0, 1, 2, 3, 4, 5, 6, 7]))
        #expect(try r.next() == .file(name: [0xFF], size: 0, crc: nil))
        #expect(try r.next() == .segment([]))
        #expect(try r.next() == nil)
        try Shell.check("printf '{\"type\":1,\"name\":\"x\",\"size\":3,\"payload\":null}\\n' | gzip >'\(dir)/bad.gz'")
        let bad = try EngineTarSplitReader(path: Bytes.of(dir + "/bad.gz"))
        #expect(throws: EngineStoreError.self) { try bad.next() }
    }
}

extension String {
    fileprivate func stripped() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
