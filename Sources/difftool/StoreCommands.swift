// Commands on a driver's store of layers.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import EngineStores
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create an empty layer ID on PARENT.")
    @Argument var id: String
    @Option(help: "The parent layer.") var parent: String?
    @Flag(name: .customLong("rw"), help: "A read-write (container) layer.") var readWrite = false
    @Option(help: "Make the layer with the content of layer TEMPLATE (its parent stays --parent).") var template: String?
    @OptionGroup var store: StoreOptions

    func run() throws {
        let (s, layerOptions) = try store.open()
        try s.create(id: id, parent: parent, options: layerOptions, readWrite: readWrite, template: template)
    }
}

struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "Bytes and inodes used by layer ID's writable part.")
    @Argument var id: String
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        let u = try store.open().0.usage(id: id)
        try json ? writeJSON(UsageJSON(size: u.size, inodes: u.inodes)) : writeStdout("size: \(u.size)\ninodes: \(u.inodes)\n")
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Create layer ID on PARENT and apply a layer tar to it; prints the applied size.")
    @Argument var id: String
    @Option(help: "The parent layer.") var parent: String?
    @Option(name: .short, help: "Read the tar from FILE (default: stdin).") var input: String?
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var limits: LimitOptions
    @OptionGroup var progress: ProgressOption
    @OptionGroup var store: StoreOptions
    @Flag(help: "JSON output (with the layer's diffID).") var json = false

    func run() throws {
        let map = try ids.map()
        let (s, layerOptions) = try store.open(idMap: map)
        var options = ApplyOptions(idMap: map)
        limits.apply(to: &options)
        options.logger = .init(label: "difftool")
        options.onProgress = progress.reporter(verb: "importing")
        let made = try withInput(input) { fd, name in
            try s.importLayer(id: id, parent: parent, from: fd, name: name, options: options, createOptions: layerOptions)
        }
        progress.done()
        try json ? writeJSON(ImportJSON(id: id, size: made.size, diffID: made.diffID)) : writeStdout("\(made.size)\n")
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Layer ID's changes against its parent as a tar; prints its digests on stderr (or --json).",
        discussion: """
            An imported layer whose files are unchanged gives back the imported tar byte for byte (same diffID); \
            --regenerate makes a fresh one. --reproducible gives the canonical form: the same content gives the \
            same digest on every driver and every run.
            """)
    @Argument var id: String
    @Option(name: .short, help: "Write the tar to FILE (default: stdout).") var output: String?
    @Flag(help: "Compare the mounted layer with its mounted parent even where the driver has a native diff.")
    var naive = false
    @Flag(help: "Make a fresh tar even where the imported one could be given back byte for byte.")
    var regenerate = false
    @OptionGroup var layerOutput: LayerOutputOptions
    @OptionGroup var profile: ProfileOption
    @OptionGroup var store: StoreOptions

    func run() throws {
        let adopted = try store.adopted()
        let s = adopted == nil ? try store.open().0 : nil
        var options = profile.exportOptions()
        try layerOutput.apply(to: &options)
        var source = ExportSource.regenerated(reason: nil)
        let compression = layerOutput.compress.compression
        var digests: LayerDigests? = nil
        try FileOutput.with(output) { fd, name in
            let fd = FileDescriptor(rawValue: fd)
            if layerOutput.noDigest && compression == .none {
                source = try adopted?.export(id: id, to: fd, name: name, options: options, naive: naive, regenerate: regenerate)
                    ?? s!.export(id: id, to: fd, name: name, options: options, naive: naive, regenerate: regenerate)
                return
            }
            let progress = layerOutput.progress.reporter(verb: "exporting")
            let made = try adopted?.export(id: id, to: fd, name: name, compression: compression, options: options, naive: naive,
                                           regenerate: regenerate, progress: progress)
                ?? s!.export(id: id, to: fd, name: name, compression: compression, options: options, naive: naive,
                             regenerate: regenerate, progress: progress)
            layerOutput.progress.done()
            (source, digests) = (made.source, made.digests)
        }
        if case let .regenerated(reason?) = source {
            let recorded = adopted == nil ? "the imported one" : "the engine's"
            writeStderr("difftool: warning: layer \(id): \(reason); the tar was regenerated (its diffID differs from \(recorded))\n")
        }
        try layerOutput.report(digests, source: source, toStdout: output != nil)
    }
}

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount", abstract: "Print layer ID's directory (mounting it if the driver mounts).",
        discussion: """
            With --uid-map/--gid-map: a view of the layer in which every file appears owned through the map, made \
            with ID-mapped mounts (nothing rewritten); where they are impossible, a copy with its owners rewritten, \
            with a warning (--no-chown-fallback: an error instead).
            """)
    @Argument var id: String
    @OptionGroup var ids: IDMapOptions
    @Flag(name: .customLong("no-chown-fallback"), help: "Fail where an ID-mapped mount cannot be made, instead of copying with owners rewritten.")
    var noChownFallback = false
    @Flag(help: "JSON output: the path (with a map: whether the view is ID-mapped, and why not).") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        if let a = try store.adopted() {
            guard try ids.map().isIdentity else { throw CLIError(message: "mount: --uid-map/--gid-map are not available with --adopt") }
            let path = try a.mount(id: id).string
            return try json ? writeJSON(MountJSON(path: path)) : writeStdout(path + "\n")
        }
        let (s, _) = try store.open()
        let map = try ids.map()
        let view = try s.mount(id: id, idMap: map,
                               options: MappedViewOptions(allowChownFallback: !noChownFallback, logger: .init(label: "difftool")))
        let path = Bytes.string(view.path)
        // Without a map there is no view to describe: the path alone.
        try json ? writeJSON(MountJSON(path: path, idmapped: map.isIdentity ? nil : view.isIDMapped, fallback: view.fallbackReason))
            : writeStdout(path + "\n")
    }
}

/// `mount --json`: `{"path": …}`; with a map also `idmapped` and, for a chowned copy, `fallback`
/// (why no ID-mapped mount could be made).
struct MountJSON: Encodable {
    var path: String
    var idmapped: Bool?
    var fallback: String?
}

struct UmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount", abstract: "Release layer ID's directory (with --uid-map/--gid-map: its view through that map).")
    @Argument var id: String
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var store: StoreOptions

    func run() throws {
        if let a = try store.adopted() { return try a.unmount(id: id) }
        try store.open().0.unmount(id: id, idMap: try ids.map())
    }
}

struct RmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove layer ID.")
    @Argument var id: String
    @OptionGroup var store: StoreOptions

    func run() throws { try store.open().0.remove(id: id) }
}

struct LsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the store's layers: ID and parent.")
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        if let a = try store.adopted() { return try AdoptOptions.list(a, json: json) }
        let layers = try store.open().0.list().sorted { $0.id < $1.id }
        if json {
            try writeJSON(layers.map { LayerJSON(id: $0.id, parent: $0.parent, size: $0.appliedSize) })
        } else {
            try writeStdout(layers.map { "\($0.id)\t\($0.parent ?? "-")\n" }.joined())
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "The driver's status.")
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        let s = try store.open().0
        try printPairs([("Driver", s.driver.name), ("Home", Bytes.string(s.driver.home))] + s.driver.status(), json: json)
    }
}

struct MetadataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metadata", abstract: "The driver's metadata of layer ID.")
    @Argument var id: String
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        let s = try store.open().0
        let r = try s.record(id)
        let pairs = try s.driver.metadata(id: id).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try printPairs([("ID", id), ("Parent", r.parent ?? "")] + pairs, json: json)
    }
}

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy every layer of one store into another driver's store (parents first; resumable; the source is only read).")
    @Option(help: "Source driver.") var from: DriverChoice?
    @Option(name: .customLong("from-home"), help: "Source home: a difftool store, or for aufs also a bare aufs directory such as /var/lib/docker/aufs.")
    var fromHome: String?
    @Option(name: .customLong("from-adopt"), help: ArgumentHelp(
        "Source: an engine's own store, read in place: docker:PATH or containers:PATH (instead of --from/--from-home).", valueName: "engine:path"))
    var fromAdopt: String?
    @Option(name: .customLong("from-adopt-driver"), help: ArgumentHelp("With --from-adopt: the driver whose layers to copy, where the store has several.", valueName: "driver"))
    var fromAdoptDriver: String?
    @Option(help: "Target driver.") var to: DriverChoice
    @Option(name: .customLong("to-home"), help: "Target difftool store.") var toHome: String
    @OptionGroup var ids: IDMapOptions
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        // The source's map (its files are host IDs under it) is the target's: the export maps
        // them to container IDs, the import back, and the target's new roots and implicit
        // parents get its root pair.
        let map = try ids.map()
        if let fromAdopt {
            guard from == nil && fromHome == nil else { throw ValidationError("--from-adopt replaces --from and --from-home") }
            guard map.isIdentity else { throw ValidationError("--uid-map/--gid-map are not available with --from-adopt") }
            let target = try LayerStore(driverName: to.rawValue, home: Bytes.of(toHome), idMap: map)
            let r = try AdoptOptions.open(fromAdopt, driver: fromAdoptDriver, home: toHome).migrate(into: target, logger: Logger(label: "difftool"))
            return try json ? writeJSON(MigrateJSON(copied: r.copied.count, skipped: r.skipped.count))
                : writeStdout("copied \(r.copied.count) layers, skipped \(r.skipped.count) already in the target\n")
        }
        guard let from, let fromHome else { throw ValidationError("give --from and --from-home, or --from-adopt") }
        try AdoptOptions.checkSource(driver: from.rawValue, home: fromHome)
        let source: Driver
        let layers: [Migration.Layer]
        if from == .aufs {
            let bare = (try? Sys.fstatat(AT_FDCWD, Bytes.of(fromHome + "/diff"))) != nil
                && (try? Sys.fstatat(AT_FDCWD, Bytes.of(fromHome + "/aufs"))) == nil
            try map.validate()
            let d = try AufsDriver(home: Bytes.of(bare ? fromHome : fromHome + "/aufs"), idMap: map)
            (source, layers) = (d, try d.layers())
        } else {
            let s = try LayerStore(driverName: from.rawValue, home: Bytes.of(fromHome), idMap: map)
            (source, layers) = (s.driver, try s.list().map { ($0.id, $0.parent) })
        }
        let target = try LayerStore(driverName: to.rawValue, home: Bytes.of(toHome), idMap: map)
        let r = try Migration.run(source: source, layers: layers, into: target, logger: Logger(label: "difftool"))
        try json ? writeJSON(MigrateJSON(copied: r.copied.count, skipped: r.skipped.count))
            : writeStdout("copied \(r.copied.count) layers, skipped \(r.skipped.count) already in the target\n")
    }
}
