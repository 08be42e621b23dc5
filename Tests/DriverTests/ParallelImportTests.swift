// Parallel pulls of images that share a base: many processes import children of one parent
// at the same moment, on every driver. Each must succeed, and each child must hold its layer.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ParallelImportTests {
    static let processes = 8

    /// A base, then `processes` children imported together by as many `difftool import`s
    /// (started at once behind a barrier file); all succeed, each child shows the base's files
    /// plus its own, and the store lists exactly the base and the children.
    @Test(.requires(.root, .filesystem("overlay"), .filesystem("btrfs")), arguments: ["vfs", "overlay2", "btrfs", "aufs"])
    func childrenOfOneParentAtOnce(driver: String) throws {
        let dir = try Fixture.tempDir("parallel")
        defer { Fixture.cleanup(dir) }
        var loop: LoopFilesystem? = nil
        defer { loop?.close() }
        var home = dir + "/home"
        if driver == "btrfs" {
            loop = try LoopFilesystem(mkfs: "mkfs.btrfs -q -f", megabytes: 512)
            home = loop!.mountPoint + "/home"
        }
        let cli = "\(CLI.binary) --driver \(driver) --home \(home)"
        try Shell.check("""
            set -e; cd \(dir); mkdir -p b/etc
            for i in $(seq 1 40); do echo base$i > b/etc/f$i; done
            tar -cf base.tar -C b .
            for n in $(seq 1 \(Self.processes)); do
                mkdir -p l$n/c$n l$n/etc; echo child$n > l$n/c$n/own; : > l$n/etc/.wh.f$n
                tar -cf c$n.tar -C l$n .
            done
            \(cli) import base -i base.tar >/dev/null
            """)
        // Every importer waits for the barrier, so they all start within a few milliseconds.
        let script = """
            cd \(dir); pids=""
            for n in $(seq 1 \(Self.processes)); do
                ( while [ ! -e go ]; do sleep 0.01; done
                  \(cli) import c$n --parent base -i c$n.tar >out$n 2>err$n; echo $? >status$n ) &
                pids="$pids $!"
            done
            sleep 0.3; : > go; wait $pids
            """
        try Shell.check(script)
        for n in 1...Self.processes {
            let status = String(decoding: try Pipe.read("\(dir)/status\(n)"), as: UTF8.self)
            let err = String(decoding: try Pipe.read("\(dir)/err\(n)"), as: UTF8.self)
            #expect(status == "0\n", "\(driver): import c\(n) failed: \(err)")
        }
        let store = try LayerStore(driverName: driver, home: Bytes.of(home))
        defer { try? store.driver.cleanup() }
        #expect(try store.list().map(\.id).sorted() == (["base"] + (1...Self.processes).map { "c\($0)" }).sorted())
        for n in 1...Self.processes {
            // The union view (or the copy) of each child: the base's files but its own deletion.
            let view = try Shell.run("\(cli) mount c\(n)")
            guard view.status == 0 else {
                // aufs without its module cannot show a union: the branch must hold the change.
                #expect(driver == "aufs", "\(driver): mount c\(n): \(view.output)")
                let branch = home + "/aufs/diff/c\(n)"
                #expect(access(branch + "/c\(n)/own", F_OK) == 0)
                #expect(access(branch + "/etc/.wh.f\(n)", F_OK) == 0)
                continue
            }
            let root = view.output.trimmingCharacters(in: ["\n"])
            let own = String(decoding: try Pipe.read(root + "/c\(n)/own"), as: UTF8.self)
            #expect(own == "child\(n)\n")
            #expect(access(root + "/etc/f\(n)", F_OK) != 0, "\(driver): c\(n) still has etc/f\(n)")
            let other = n % Self.processes + 1
            #expect(access(root + "/etc/f\(other)", F_OK) == 0, "\(driver): c\(n) lost etc/f\(other)")
            #expect(access(root + "/c\(other)", F_OK) != 0, "\(driver): c\(n) shows c\(other)'s files")
            try Shell.check("\(cli) umount c\(n)")
        }
        // The parent is untouched.
        let changes = try Shell.run("\(cli) changes base")
        #expect(changes.status == 0 && changes.output.split(separator: "\n").count == 41, "\(changes.output)")
    }
}
