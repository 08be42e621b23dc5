// Commands on plain directories: diff, changes, size, apply, tar. `changes` and `size` also take
// a single layer id, for the store.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import EngineStores

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Naive diff of two directories as a layer tar.")
    @Argument(help: "The parent tree.") var base: String
    @Argument(help: "The layer's tree.") var layer: String
    @Option(name: .short, help: "Write the tar to FILE (default: stdout).") var output: String?
    @OptionGroup var profile: ProfileOption

    func run() throws {
        let options = profile.exportOptions()
        try FileOutput.with(output) { fd, name in
            try Layers.diff(base: Bytes.of(base), layer: Bytes.of(layer), to: fd, name: name, options: options)
        }
    }
}

/// `BASE LAYER` (two directories) or `ID` (a store layer, against its parent).
struct TreesOrLayer: ParsableArguments {
    @Argument(help: "BASE LAYER (two directories), or ID (a store layer).") var paths: [String]
    @OptionGroup var store: StoreOptions

    func validate() throws {
        guard (1...2).contains(paths.count) else { throw ValidationError("expected BASE LAYER or ID") }
    }

    func pick<R>(trees: ([UInt8], [UInt8]) throws -> R, layer: (LayerStore, String) throws -> R,
                 adopted: (AdoptedStore, String) throws -> R) throws -> R {
        if paths.count == 2 { return try trees(Bytes.of(paths[0]), Bytes.of(paths[1])) }
        if let a = try store.adopted() { return try adopted(a, paths[0]) }
        return try layer(try store.open().0, paths[0])
    }
}

struct ChangesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changes", abstract: "Changes of LAYER against BASE (or of store layer ID against its parent), sorted by path.")
    @OptionGroup var target: TreesOrLayer
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        if target.paths.count == 2 && !json {
            // Printed as the walk finds them: the list is never held.
            var out = ChangeLines()
            try TreeDiff.forEachChange(base: Bytes.of(target.paths[0]), layer: Bytes.of(target.paths[1])) { try out.add($0) }
            try out.flush()
            return
        }
        let changes = try target.pick(trees: { try TreeDiff.changes(base: $0, layer: $1) }, layer: { try $0.changes(id: $1) },
                                         adopted: { try $0.changes(id: $1) })
        try printChanges(changes, json: json)
    }
}

struct SizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "size", abstract: "DiffSize in bytes: of LAYER against BASE, or of store layer ID against its parent.")
    @OptionGroup var target: TreesOrLayer
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        let size = try target.pick(trees: { try Layers.diffSize(base: $0, layer: $1) }, layer: { try $0.size(id: $1) },
                                      adopted: { try $0.size(id: $1) })
        try json ? writeJSON(SizeJSON(size: size)) : writeStdout("\(size)\n")
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Apply a layer tar (any compression) onto ROOT; prints the applied size.")
    @Argument(help: "The directory to apply onto.") var root: String
    @Option(name: .short, help: "Read the tar from FILE (default: stdin).") var input: String?
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var whiteouts: WhiteoutOption
    @OptionGroup var limits: LimitOptions
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        var options = ApplyOptions(idMap: try ids.map(), whiteouts: whiteouts.form)
        limits.apply(to: &options)
        options.logger = .init(label: "difftool")
        let size = try withInput(input) { fd, name in try Layers.apply(root: Bytes.of(root), from: fd, name: name, options: options) }
        try json ? writeJSON(SizeJSON(size: size)) : writeStdout("\(size)\n")
    }
}

struct TarCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tar", abstract: "All of DIR as a tar.")
    @Argument(help: "The directory.") var dir: String
    @Option(name: .short, help: "Write the tar to FILE (default: stdout).") var output: String?
    @OptionGroup var whiteouts: WhiteoutOption
    @OptionGroup var profile: ProfileOption

    func run() throws {
        let options = profile.exportOptions()
        let form = whiteouts.form
        try FileOutput.with(output) { fd, name in
            try Layers.export(directory: Bytes.of(dir), to: fd, name: name, options: options, whiteouts: form)
        }
    }
}
