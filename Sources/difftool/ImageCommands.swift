// import-image: an OCI image layout directory, or a `docker save` archive (either format),
// imported as a chain of layers by the Images library (LayerStore.importImage): this is its
// command line, flags and output only.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import Images

#if canImport(Glibc)
import Glibc
#endif

struct ImportImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-image",
        abstract: "Import an image's layers (OCI layout directory or docker save archive) as a chain; prints the top layer's id.")
    @Argument(help: ArgumentHelp(
        "An OCI image layout directory, or a tar made by docker save; PATH:REF names one image of several.",
        discussion: "REF is an OCI layout's tag (its index's org.opencontainers.image.ref.name) or a docker save archive's repository tag (NAME:TAG, or TAG alone); `oci:PATH[:REF]` and `docker-archive:PATH[:REF]` are accepted as skopeo writes them."))
    var path: String
    @Option(help: "The platform to take from a multi-platform index: os/arch[/variant] (default: this machine's).")
    var platform: String?
    @Option(help: ArgumentHelp(
        "Layers decompressed, checked and applied at once (default: the number of online cores).",
        discussion: "Only where the driver writes each new layer into a directory of its own (overlay2, aufs); on vfs and btrfs a child starts as a copy or snapshot of its parent's content, so layers are applied one after the other whatever N is. The chain is linked in order at the end.",
        valueName: "n"))
    var jobs: Int?
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var progress: ProgressOption
    @OptionGroup var store: StoreOptions
    @Flag(help: "JSON output (every layer's id and diffID).") var json = false

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs: at least 1") }
    }

    func run() throws {
        let map = try ids.map()
        let argument = try ImageReference(parsing: path)
        let wanted: Platform
        do {
            wanted = try platform.map(Platform.init(parsing:)) ?? Platform.host
        } catch let e as ImageError {
            throw ValidationError("--platform: \(e)")
        }
        let (s, layerOptions) = try store.open(idMap: map)
        let imported = try ImageLayout.withLayout(at: argument.path, shown: argument.path.string) { layout in
            let image = try layout.image(reference: argument.reference, platform: wanted)
            var apply = ApplyOptions(idMap: map)
            apply.logger = .init(label: "difftool")
            let count = image.layers.count
            let reporters = (0..<count).map { progress.reporter(verb: "importing layer \($0 + 1)/\(count)") }
            let options = ImageImportOptions(apply: apply, createOptions: layerOptions, jobs: jobs ?? ImageImportOptions.onlineCores,
                                             progress: { layer, bytes, entries in
                reporters[layer]?(bytes, entries)
            })
            defer { progress.done() }
            return try s.importImage(image, options: options)
        }
        if json {
            try writeJSON(ImageJSON(top: imported.top, layers: imported.layers.map { ImageJSON.Layer(id: $0.id, diffID: $0.diffID) }))
        } else {
            try writeStdout((imported.top ?? "") + "\n")
        }
    }
}

struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the driver conformance suite against DRIVER in a fresh store under HOME; exit 1 if any scenario fails.")
    @OptionGroup var store: StoreOptions
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        let (driverOptions, _) = try store.split()
        let home = store.homePath + "/conformance-\(getpid())"
        if Sys.exists(Bytes.of(home)) { throw CLIError(message: "\(home) exists") }
        defer { try? removeTree(AT_FDCWD, Bytes.of(home)) }
        let results = try ConformanceSuite.run(driver: store.driver.rawValue, home: Bytes.of(home), options: driverOptions)
        let failed = results.filter { $0.failure != nil }.count
        if json {
            try writeJSON(ConformanceJSON(
                driver: store.driver.rawValue, passed: results.count - failed, failed: failed,
                scenarios: results.map { .init(name: $0.name, failure: $0.failure) }))
        } else {
            var out = "conformance of \(store.driver.rawValue):\n"
            for r in results { out += (r.failure == nil ? "  PASS " : "  FAIL ") + r.name + (r.failure.map { "\n       " + $0 } ?? "") + "\n" }
            out += "\(results.count - failed) passed, \(failed) failed\n"
            try writeStdout(out)
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
