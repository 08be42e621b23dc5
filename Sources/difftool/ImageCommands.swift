// import-image: an OCI image layout directory, or a `docker save` archive (either format),
// imported as a chain of layers. Each layer's id is its chain ID (as docker's layer store names
// layers), so a layer already there is reused; every blob digest and every diffID is checked.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

struct ImportImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-image",
        abstract: "Import an image's layers (OCI layout directory or docker save archive) as a chain; prints the top layer's id.")
    @Argument(help: "An OCI image layout directory, or a tar made by docker save.") var path: String
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var progress: ProgressOption
    @OptionGroup var store: StoreOptions
    @Flag(help: "JSON output (every layer's id and diffID).") var json = false

    func run() throws {
        let map = try ids.map()
        let (s, layerOptions) = try store.open(idMap: map)
        var dir = path
        var scratch: String? = nil
        defer { if let scratch { try? removeTree(AT_FDCWD, Bytes.of(scratch)) } }
        if let st = try Sys.lstatIfExists(AT_FDCWD, Bytes.of(path)), st.st_mode & S_IFMT != S_IFDIR {
            // An archive: unpacked (safely, as any tar) into a scratch directory first.
            var template = Bytes.of("/var/tmp/difftool-image-XXXXXX") + [0]
            let made = template.withUnsafeMutableBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { mkdtemp($0) }
            }
            guard made != nil else { throw SystemError("mkdtemp", "/var/tmp", .init(rawValue: errno)) }
            dir = Bytes.string(template.dropLast())
            scratch = dir
            _ = try withInput(path) { fd, name in
                try Layers.apply(root: Bytes.of(dir), from: fd, name: name, options: ApplyOptions(idMap: .identity, whiteouts: .aufs))
            }
        }
        let image = try Image.read(dir)
        var chain: String? = nil
        var parent: String? = nil
        var done: [(String, String)] = []
        for (i, layer) in image.layers.enumerated() {
            let diffID = image.diffIDs[i]
            chain = chain.map { SHA256.hex(Bytes.of($0 + " " + diffID)) } ?? diffID
            let id = String(chain!.dropFirst("sha256:".count))
            if (try? s.record(id)) == nil {
                let blob = dir + "/" + layer.file
                // An OCI blob is named by its digest; a docker save layer is the plain tar, whose
                // digest is the diffID checked below.
                if let want = layer.digest {
                    let actual = try SHA256.ofFile(Bytes.of(blob))
                    guard actual == want else {
                        throw CLIError(message: "\(path): layer \(i + 1): blob \(layer.file) has digest \(actual), the manifest says \(want)")
                    }
                }
                var options = ApplyOptions(idMap: map)
                options.logger = .init(label: "difftool")
                options.onProgress = progress.reporter(verb: "importing layer \(i + 1)/\(image.layers.count)")
                let made = try withInput(blob) { fd, name in
                    try s.importLayer(id: id, parent: parent, from: fd, name: name, options: options, createOptions: layerOptions)
                }
                progress.done()
                guard made.diffID == diffID else {
                    try? s.remove(id: id)
                    throw CLIError(message: "\(path): layer \(i + 1): its tar has diffID \(made.diffID), the image config says \(diffID)")
                }
            }
            done.append((id, diffID))
            parent = id
        }
        if json {
            try writeJSON(ImageJSON(top: parent, layers: done.map { ImageJSON.Layer(id: $0.0, diffID: $0.1) }))
        } else {
            try writeStdout((parent ?? "") + "\n")
        }
    }
}

/// The parts of an image the import needs: its layer blobs in order and the config's diffIDs.
struct Image {
    /// A blob (relative path) and the digest it must have (nil: none is given, docker save).
    struct Layer { var file: String; var digest: String? }
    var layers: [Layer]
    var diffIDs: [String]

    static func read(_ dir: String) throws -> Image {
        func load<T: Decodable>(_ rel: String, as: T.Type) throws -> T {
            let bytes = try Sys.readFile(Bytes.of(dir + "/" + rel))
            do {
                return try JSONDecoder().decode(T.self, from: Data(bytes))
            } catch let e as DecodingError {
                throw CLIError(message: "\(dir)/\(rel): \(e.reason)")
            }
        }
        func blob(_ digest: String) throws -> String {
            let parts = digest.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0] == "sha256", parts[1].allSatisfy({ $0.isHexDigit }) else {
                throw CLIError(message: "\(dir): unsupported digest '\(digest)'")
            }
            return "blobs/sha256/\(parts[1])"
        }
        var image = Image(layers: [], diffIDs: [])
        let config: ImageConfig
        if Sys.exists(Bytes.of(dir + "/manifest.json")) {
            // docker save: [{"Config": "...", "Layers": ["<id>/layer.tar" | "blobs/sha256/..."]}]
            guard let m = try load("manifest.json", as: [DockerManifest].self).first, let c = m.config, let ls = m.layers else {
                throw CLIError(message: "\(dir)/manifest.json: not a docker save manifest")
            }
            config = try load(c, as: ImageConfig.self)
            image.layers = ls.map { Layer(file: $0, digest: nil) }
        } else {
            // OCI layout: index.json → (index →) manifest → config + layers.
            var desc = try load("index.json", as: OCIIndex.self).manifests?.first
            while let d = desc, let mt = d.mediaType, mt.hasSuffix("image.index.v1+json") || mt.hasSuffix("manifest.list.v2+json") {
                let sub = try load(try blob(d.digest ?? ""), as: OCIIndex.self).manifests ?? []
                desc = sub.first { $0.platform?.architecture == "amd64" } ?? sub.first
            }
            guard let d = desc, let md = d.digest else { throw CLIError(message: "\(dir)/index.json: no manifest") }
            let manifest = try load(try blob(md), as: OCIManifest.self)
            guard let cd = manifest.config?.digest, let ls = manifest.layers else {
                throw CLIError(message: "\(dir): manifest \(md) has no config or layers")
            }
            config = try load(try blob(cd), as: ImageConfig.self)
            for l in ls {
                guard let digest = l.digest else { throw CLIError(message: "\(dir): a layer without a digest") }
                image.layers.append(Layer(file: try blob(digest), digest: digest))
            }
        }
        image.diffIDs = config.rootfs?.diffIDs ?? []
        guard image.diffIDs.count == image.layers.count else {
            throw CLIError(message: "\(dir): \(image.layers.count) layers but \(image.diffIDs.count) diff_ids in the config")
        }
        return image
    }
}

// The parts of the image documents read, as their specifications name them; everything else in
// them is ignored, and what is here may be missing (the reader says what it needed).

/// An OCI descriptor (in an index or a manifest).
struct OCIDescriptor: Decodable {
    struct Platform: Decodable { var architecture: String? }
    var mediaType: String?
    var digest: String?
    var platform: Platform?
}

/// `index.json`, or an image index blob (a docker manifest list too).
struct OCIIndex: Decodable { var manifests: [OCIDescriptor]? }

/// An OCI image manifest.
struct OCIManifest: Decodable {
    var config: OCIDescriptor?
    var layers: [OCIDescriptor]?
}

/// One image of a `docker save` archive's `manifest.json`.
struct DockerManifest: Decodable {
    var config: String?
    var layers: [String]?
    enum CodingKeys: String, CodingKey { case config = "Config", layers = "Layers" }
}

/// The image configuration: its layers' diffIDs, in order.
struct ImageConfig: Decodable {
    struct RootFS: Decodable {
        var diffIDs: [String]?
        enum CodingKeys: String, CodingKey { case diffIDs = "diff_ids" }
    }
    var rootfs: RootFS?
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
