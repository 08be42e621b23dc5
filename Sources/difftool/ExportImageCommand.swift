// export-image: a layer's chain (base to TOP) written as an OCI image layout or a docker save
// archive; the work is the Images library's (LayerStore.exportImage), this is its command line.
import ArgumentParser
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers
import Images

#if canImport(Glibc)
import Glibc
#endif

struct ExportImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-image",
        abstract: "Write the image whose top layer is TOP (its chain from the base up) as an OCI layout or a docker save archive.",
        discussion: """
            Prints the manifest digest (oci) or the image ID, the config's digest (docker-archive). Each layer is \
            exported once and digested while it streams; an imported layer whose files are unchanged is written \
            byte for byte (its diffID kept). --reproducible writes every layer in the canonical form and dates the \
            config with --source-date-epoch (or SOURCE_DATE_EPOCH, or 0): the same content gives the same manifest \
            digest on every driver and every run. The output is written under a temporary name beside PATH and \
            renamed into place when complete: a failure leaves nothing at PATH. An OCI layout is a new directory \
            (PATH must not exist, or be empty); a docker archive replaces a file.
            """)
    @Argument(help: "The top layer's id.") var top: String
    @Option(name: .short, help: ArgumentHelp("Where to write: a new directory (oci) or a file (docker-archive).", valueName: "path"))
    var output: String
    @Option(help: "oci (an OCI image layout directory) or docker-archive (the tar docker save writes, for docker load).")
    var format: ImageFormatChoice = .oci
    @Option(help: ArgumentHelp("The image's NAME:TAG (NAME alone: NAME:latest): the OCI index's ref.name is TAG; a docker archive's RepoTags.",
                               valueName: "name:tag"))
    var tag: String?
    @Option(help: ArgumentHelp("Layer compression of an OCI layout, with a level for gzip (1-9) or zstd (1-22); a docker archive holds plain tars.",
                               valueName: "kind[:level]"))
    var compress = CompressionChoice(.none)
    @Flag(help: "Reproducible output: canonical layers, mtimes clamped and the config dated with --source-date-epoch (or SOURCE_DATE_EPOCH, or 0).")
    var reproducible = false
    @Option(help: ArgumentHelp("The time --reproducible uses (seconds since the epoch).", valueName: "seconds"))
    var sourceDateEpoch: Int64?
    @Option(help: "The platform the config names: os/arch[/variant] (default: this machine's).")
    var platform: String?
    @Flag(help: "JSON output: the manifest, config and every layer's id, diffID, digest, size and media type.") var json = false
    @OptionGroup var progress: ProgressOption
    @OptionGroup var store: StoreOptions

    func validate() throws {
        if format == .dockerArchive && compress.compression != .none {
            throw ValidationError("--compress: a docker archive holds plain layer tars, as docker save writes them; compression is for --format oci")
        }
        if sourceDateEpoch != nil && !reproducible {
            throw ValidationError("--source-date-epoch goes with --reproducible")
        }
        if let tag {
            do { _ = try ImageTag(parsing: tag) } catch { throw ValidationError("--tag: \(error)") }
        }
        if let platform {
            do { _ = try Platform(parsing: platform) } catch { throw ValidationError("--platform: \(error)") }
        }
    }

    func run() throws {
        let (s, _) = try store.open()
        var export = ExportOptions(logger: .init(label: "difftool"))
        if reproducible {
            let env = getenv("SOURCE_DATE_EPOCH").flatMap { Int64(String(cString: $0)) }
            export.reproducibleTime = sourceDateEpoch ?? env ?? 0
        }
        var options = ImageExportOptions(format: format.format, tag: try tag.map(ImageTag.init(parsing:)),
                                         compression: compress.compression, export: export,
                                         platform: try platform.map(Platform.init(parsing:)) ?? .host)
        let reporters = Locked<[Int: (@Sendable (Int64, Int) -> Void)]>([:])
        let progress = self.progress
        if !progress.quiet && isatty(2) != 0 {
            options.progress = { layer, layers, bytes in
                let report = reporters.withLock { r in
                    if let p = r[layer] { return p }
                    let p = progress.reporter(verb: "exporting layer \(layer + 1)/\(layers)")!
                    r[layer] = p
                    return p
                }
                report(bytes, 0)
            }
        }
        let made = try s.exportImage(top: top, to: FilePath(output), options: options)
        progress.done()
        for l in made.layers {
            if case let .regenerated(reason?) = l.source {
                writeStderr("difftool: warning: layer \(l.id): \(reason); its tar was regenerated (its diffID differs from the imported one)\n")
            }
        }
        if json {
            try writeJSON(ExportImageJSON(made))
        } else {
            try writeStdout((made.manifest ?? made.config).digest + "\n")
        }
    }
}

/// `export-image --format`.
enum ImageFormatChoice: String, CaseIterable, ExpressibleByArgument {
    case oci
    case dockerArchive = "docker-archive"

    var format: ImageFormat { self == .oci ? .oci : .dockerArchive }
}

/// `export-image --json`: where and what was written; `manifest` is null for a docker archive.
struct ExportImageJSON: Encodable {
    struct Blob: Encodable {
        var mediaType: String
        var digest: String
        var size: Int64
    }
    struct Layer: Encodable {
        var id: String
        var diffID: String
        var digest: String
        var size: Int64
        var mediaType: String
        /// `original` (the imported tar, byte for byte) or `regenerated`.
        var source: String
    }
    var format: String
    var path: String
    var manifest: Blob?
    var config: Blob
    var layers: [Layer]

    init(_ e: ImageExport) {
        format = e.format.rawValue
        path = e.path.string
        manifest = e.manifest.map { Blob(mediaType: $0.mediaType, digest: $0.digest, size: $0.size) }
        config = Blob(mediaType: e.config.mediaType, digest: e.config.digest, size: e.config.size)
        layers = e.layers.map { l in
            Layer(id: l.id, diffID: l.digests.diffID, digest: l.digests.digest, size: l.digests.size,
                  mediaType: l.digests.mediaType, source: l.source == .original ? "original" : "regenerated")
        }
    }

    enum CodingKeys: String, CodingKey { case format, path, manifest, config, layers }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(path, forKey: .path)
        try c.encode(manifest, forKey: .manifest)  // null, not left out
        try c.encode(config, forKey: .config)
        try c.encode(layers, forKey: .layers)
    }
}
