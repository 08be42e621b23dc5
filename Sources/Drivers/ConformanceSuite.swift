// The driver conformance suite as a library (`difftool conformance`): graphtest's scenarios
// (moby's daemon/graphdriver/graphtest and containers/storage's drivers/graphtest) run against a fresh store of a driver, each reported pass/fail.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

/// The driver conformance scenarios (create, snapshot, changes, sizes, diff and apply, deep
/// chains, errors, removal), run against a fresh store of a built-in driver.
public enum ConformanceSuite {
    /// The outcome of one scenario.
    public struct Result: Sendable {
        /// The scenario's title.
        public var name: String
        /// Why it failed; nil when it passed.
        public var failure: String?
        /// The error the scenario failed with (its description is `failure`).
        public var error: (any Error)? = nil
    }

    struct Failed: Error, CustomStringConvertible { var description: String }

    static func require(_ ok: Bool, _ what: @autoclosure () throws -> String) throws {
        if !ok { throw Failed(description: (try? what()) ?? "failed") }
    }

    /// Files under `root` as "path kind size" lines (sorted, as the walker goes).
    static func listing(_ root: [UInt8]) throws -> [String] {
        var out: [String] = []
        try Walker.walk(root: root, visit: { dir, name, info in
            out.append("\(Bytes.string(dir.child(name))) \(info.kind) \(info.isDirectory ? 0 : info.size)")
            return .descend
        })
        return out
    }

    static func write(_ root: [UInt8], _ path: String, _ text: String, mode: mode_t = 0o644) throws {
        let full = root + Bytes.of("/" + path)
        let (dir, _) = LayerPath.split(full)
        try? Sys.mkdir(dir, mode: 0o755)
        let fd = try Sys.open(full, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        defer { Sys.close(fd) }
        try Array(text.utf8).withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(full)) }
    }

    /// Run every scenario on a store of `driver` made in `home` (which must not exist yet).
    package static func run(driver name: String, home: [UInt8], options: [String: String] = [:]) throws -> [Result] {
        let store = try LayerStore(driverName: name, home: home, driverOptions: options)
        let d = store.driver
        defer { try? d.cleanup() }
        var results: [Result] = []
        func scenario(_ title: String, _ body: () throws -> Void) {
            do { try body(); results.append(Result(name: title, failure: nil)) } catch {
                results.append(Result(name: title, failure: "\(error)", error: error))
            }
        }
        scenario("CreateEmpty: a new layer is an empty directory, removable") {
            try d.create(id: "empty", parent: nil, options: [:])
            try require(d.exists(id: "empty"), "exists() is false after create")
            let root = try d.getBytes(id: "empty")
            defer { try? d.put(id: "empty") }
            try require(try listing(root).isEmpty, "not empty: \(try listing(root))")
        }
        scenario("CreateBase: files written into a base layer are read back") {
            try d.create(id: "base", parent: nil, options: [:])
            let root = try d.getBytes(id: "base")
            try write(root, "etc/hosts", "127.0.0.1 localhost\n")
            try write(root, "bin/sh", "#!/bin/true\n", mode: 0o755)
            try write(root, "gone/x", "x")
            try d.put(id: "base")
            let again = try d.getBytes(id: "base")
            defer { try? d.put(id: "base") }
            try require(try listing(again) == ["bin directory 0", "bin/sh regular 12", "etc directory 0", "etc/hosts regular 20",
                                               "gone directory 0", "gone/x regular 1"], "base reads back as \(try listing(again))")
        }
        scenario("CreateSnap: a child sees its parent; its writes do not reach the parent") {
            try d.create(id: "child", parent: "base", options: [:])
            let root = try d.getBytes(id: "child")
            defer { try? d.put(id: "child") }
            try require(try listing(root).contains("etc/hosts regular 20"), "the child does not see the parent's files")
            try write(root, "etc/hosts", "10.0.0.1 changed\n")
            try write(root, "new/file", "new")
            try removeTree(AT_FDCWD, root + Bytes.of("/gone"))
            let parent = try d.getBytes(id: "base")
            defer { try? d.put(id: "base") }
            try require(try listing(parent).contains("etc/hosts regular 20") && !(try listing(parent).contains { $0.hasPrefix("new") })
                        && (try listing(parent).contains("gone/x regular 1")), "the parent changed")
        }
        scenario("Changes: the child's changes against its parent") {
            // A union driver's own change list leaves out a parent changed only in mtime
            // (containers/storage's OverlayChanges); the naive comparison reports it.
            let lines = try d.changes(id: "child", parent: "base").filter { !$0.isLinkPeer }.map(\.line).filter { $0 != "C /etc" }
            try require(lines == ["C /etc/hosts", "D /gone", "A /new", "A /new/file"], "changes are \(lines)")
        }
        scenario("DiffSize: the bytes of added and changed files") {
            let size = try d.diffSize(id: "child", parent: "base")
            try require(size == 17 + 3, "DiffSize is \(size), expected 20")
        }
        scenario("DiffApply: the child's export applied on the parent gives the child's tree") {
            let tar = home + Bytes.of("/conformance.tar")
            let out = try Sys.open(tar, O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
            defer { Sys.close(out); try? Sys.unlink(tar) }
            try d.diff(id: "child", parent: "base", to: out, name: "child.tar", options: ExportOptions())
            try Sys.seek(out, to: 0, shown: tar)

            try d.create(id: "applied", parent: "base", options: [:])
            _ = try d.applyDiff(id: "applied", from: try TarReader(fd: out, name: "child.tar"), name: "child.tar", options: ApplyOptions())
            let a = try d.getBytes(id: "applied")
            defer { try? d.put(id: "applied") }
            let c = try d.getBytes(id: "child")
            defer { try? d.put(id: "child") }
            try require(try listing(a) == listing(c), "applied \(try listing(a)) != child \(try listing(c))")
        }
        scenario("DeepChain: 20 layers, each adding a file, the top sees all") {
            var parent = "base"
            for i in 1...20 {
                let id = "deep\(i)"
                try d.create(id: id, parent: parent, options: [:])
                let root = try d.getBytes(id: id)
                try write(root, "deep/f\(i)", "\(i)")
                try d.put(id: id)
                parent = id
            }
            let top = try d.getBytes(id: parent)
            defer { try? d.put(id: parent) }
            let files = try listing(top).filter { $0.hasPrefix("deep/f") }
            try require(files.count == 20, "the top sees \(files.count) of 20 files")
        }
        scenario("Errors: unknown layers and parents are refused") {
            try require((try? d.getBytes(id: "missing")) == nil, "get of a missing layer succeeded")
            try require((try? d.create(id: "orphan", parent: "missing", options: [:])) == nil, "create on a missing parent succeeded")
            try require(!d.exists(id: "orphan"), "a failed create left the layer behind")
        }
        scenario("Remove: layers go, children first") {
            for i in stride(from: 20, through: 1, by: -1) { try d.remove(id: "deep\(i)") }
            for id in ["applied", "child", "base", "empty"] { try d.remove(id: id) }
            try require(!d.exists(id: "base") && !d.exists(id: "empty"), "removed layers still exist")
        }
        return results
    }
}
