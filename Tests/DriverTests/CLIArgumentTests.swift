// The command line's own rules: choice options refused by the parser (exit 64, the choices in
// --help), JSON output that is stable and parses, and errors reported in one form.
import DiffKitSystem
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CLIArgumentTests {
    /// A value outside an option's fixed set is a bad command line: exit 64, the value and the
    /// choices named; --help lists the choices; `overlay` is still taken for `overlay2`.
    @Test(.requires(.root)) func choiceOptions() throws {
        let dir = try Fixture.tempDir("cliargs")
        defer { Fixture.cleanup(dir) }
        for (args, choices) in [
            ("--driver nope --home \(dir)/h ls", "'vfs', 'overlay2', 'btrfs' or 'aufs'"),
            ("tar \(dir) --whiteouts nope", "'plain', 'overlay' or 'aufs'"),
            ("diff \(dir) \(dir) --profile nope", "'moby' and 'containerd'"),
            ("--home \(dir)/h export x --compress nope", "'none', 'gzip' or 'zstd'"),
            ("migrate --from nope --from-home \(dir)/a --to vfs --to-home \(dir)/b", "'vfs', 'overlay2', 'btrfs' or 'aufs'"),
        ] {
            let (s, out, err) = try CLI.run(args)
            #expect(s == 64 && out.isEmpty && err.contains("'nope'") && err.contains(choices), "\(args): \(s) \(err)")
        }
        #expect(try CLI.run("--home \(dir)/h export x --compress zstd:23").0 == 64)
        #expect(try CLI.run("apply \(dir) --max-bytes lots").0 == 64)
        let (s, help, _) = try CLI.run("export --help")
        #expect(s == 0 && help.contains("values: vfs, overlay2, btrfs, aufs") && help.contains("values: moby, containerd"), "\(help)")
        #expect(try CLI.run("--driver overlay --home \(dir)/h ls").0 == 0)
    }

    /// --json output: one line, the same bytes on every run (sorted keys, slashes as they are),
    /// strings escaped; errors are one `difftool: error:` line and exit 1.
    @Test(.requires(.root)) func jsonOutputAndErrors() throws {
        // `a` gets one mtime in both trees: made a second apart, it would differ by its time.
        let base = try Fixture.make([.file("a", "1"), .time("a", 1_600_000_000)])
        defer { Fixture.cleanup(base) }
        let layer = try Fixture.make([.file("a", "1"), .time("a", 1_600_000_000), .file("q\"uo\\te", "x")])
        defer { Fixture.cleanup(layer) }
        let (s, changes, _) = try CLI.run("changes --json \(base) \(layer)")
        #expect(s == 0 && changes == "[{\"kind\":\"A\",\"path\":\"/q\\\"uo\\\\te\"}]\n", "\(changes)")
        #expect(try CLI.run("size --json \(base) \(layer)").1 == "{\"size\":1}\n")

        let dir = try Fixture.tempDir("clijson")
        defer { Fixture.cleanup(dir) }
        let h = "--home \(dir)/h"
        #expect(system("\(CLI.binary) tar \(layer) -o \(dir)/l.tar") == 0)
        let (s1, imported, e1) = try CLI.run("\(h) import L -i \(dir)/l.tar --json")
        #expect(s1 == 0 && imported.hasPrefix("{\"diffID\":\"sha256:") && imported.hasSuffix(",\"id\":\"L\",\"size\":2}\n"), "\(imported) \(e1)")
        #expect(try CLI.run("\(h) ls --json").1 == "[{\"id\":\"L\",\"parent\":null,\"size\":2}]\n")
        let status = try CLI.run("\(h) status --json").1
        #expect(status == (try CLI.run("\(h) status --json").1) && status.contains("\"Home\":\"\(dir)/h/vfs\""), "\(status)")
        let (s2, descriptor, _) = try CLI.run("\(h) export L --reproducible --json -o \(dir)/r.tar")
        #expect(s2 == 0 && descriptor.hasPrefix("{\"annotations\":{\"io.diffkit.diffID\":\"sha256:"), "\(descriptor)")
        #expect(descriptor.contains("\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\""), "\(descriptor)")
        #expect(descriptor == (try CLI.run("\(h) export L --reproducible --json -o \(dir)/r.tar").1))

        // A malformed image document: its file named, exit 1, nothing imported.
        try Shell.check("mkdir -p \(dir)/img && echo '{\"manifests\": [' > \(dir)/img/index.json")
        let (s3, _, e3) = try CLI.run("\(h) import-image \(dir)/img")
        #expect(s3 == 1 && e3.hasPrefix("difftool: error: \(dir)/img/index.json: ") && e3.split(separator: "\n").count == 1, "\(e3)")
        try Shell.check("echo '{\"manifests\": [{\"digest\": 7}]}' > \(dir)/img/index.json")
        let (s4, _, e4) = try CLI.run("\(h) import-image \(dir)/img")
        #expect(s4 == 1 && e4.contains("index.json: at .manifests[0].digest: "), "\(e4)")
        // A failed -o export leaves no file, and the error is the handler's one line.
        let (s5, _, e5) = try CLI.run("\(h) export nothere -o \(dir)/x.tar")
        #expect(s5 == 1 && e5.hasPrefix("difftool: error: ") && e5.contains("nothere") && e5.split(separator: "\n").count == 1 && access(dir + "/x.tar", F_OK) != 0, "\(e5)")
    }
}
