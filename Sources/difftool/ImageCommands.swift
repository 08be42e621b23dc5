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
    @Argument(help: ArgumentHelp(
        "An OCI image layout directory, or a tar made by docker save; PATH:REF names one image of several.",
        discussion: "REF is an OCI layout's tag (its index's org.opencontainers.image.ref.name) or a docker save archive's repository tag (NAME:TAG, or TAG alone); `oci:PATH[:REF]` and `docker-archive:PATH[:REF]` are accepted as skopeo writes them."))
    var path: String
    @Option(help: "The platform to take from a multi-platform index: os/arch[/variant] (default: this machine's).")
    var platform: String?
    @OptionGroup var ids: IDMapOptions
    @OptionGroup var progress: ProgressOption
    @OptionGroup var store: StoreOptions
    @Flag(help: "JSON output (every layer's id and diffID).") var json = false

    func run() throws {
        let map = try ids.map()
        let (source, reference) = try ImageReference.split(path)
        let wanted = try platform.map(Platform.init(parsing:)) ?? Platform.host
        let (s, layerOptions) = try store.open(idMap: map)
        var dir = source
        var scratch: String? = nil
        defer { if let scratch { try? removeTree(AT_FDCWD, Bytes.of(scratch)) } }
        if let st = try Sys.lstatIfExists(AT_FDCWD, Bytes.of(source)), st.st_mode & S_IFMT != S_IFDIR {
            // An archive: unpacked (safely, as any tar) into a scratch directory first.
            var template = Bytes.of("/var/tmp/difftool-image-XXXXXX") + [0]
            let made = template.withUnsafeMutableBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { mkdtemp($0) }
            }
            guard made != nil else { throw SystemError("mkdtemp", "/var/tmp", .init(rawValue: errno)) }
            dir = Bytes.string(template.dropLast())
            scratch = dir
            _ = try withInput(source) { fd, name in
                try Layers.apply(root: Bytes.of(dir), from: fd, name: name, options: ApplyOptions(idMap: .identity, whiteouts: .aufs))
            }
        }
        let image = try Image.read(dir, shown: source, reference: reference, platform: wanted)
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

    /// The image of the layout or archive in `dir` (`shown` in messages) named by `reference`, or
    /// the only one; for a multi-platform index, the manifest of `platform`.
    static func read(_ dir: String, shown: String, reference: String?, platform: Platform) throws -> Image {
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
            let all = try load("manifest.json", as: [DockerManifest].self)
            let m: DockerManifest
            if let reference {
                let named = all.filter { ($0.repoTags ?? []).contains { $0 == reference || $0.hasSuffix(":" + reference) } }
                guard named.count == 1 else {
                    throw CLIError(message: "\(shown): " + (named.isEmpty ? "no image tagged \(reference)" : "\(named.count) images tagged \(reference)")
                        + "; it holds: " + ImageReference.list(all.map { $0.repoTags ?? [] }))
                }
                m = named[0]
            } else {
                guard all.count <= 1 else {
                    throw CLIError(message: "\(shown) holds \(all.count) images; name one as PATH:REF: " + ImageReference.list(all.map { $0.repoTags ?? [] }))
                }
                guard let only = all.first else { throw CLIError(message: "\(dir)/manifest.json: no image") }
                m = only
            }
            guard let c = m.config, let ls = m.layers else {
                throw CLIError(message: "\(dir)/manifest.json: not a docker save manifest")
            }
            config = try load(c, as: ImageConfig.self)
            image.layers = ls.map { Layer(file: $0, digest: nil) }
        } else {
            // OCI layout: index.json → (index →) manifest → config + layers.
            let top = try load("index.json", as: OCIIndex.self).manifests ?? []
            guard !top.isEmpty else { throw CLIError(message: "\(dir)/index.json: no manifest") }
            // Several images, tagged differently (as umoci and skopeo leave a layout), are chosen
            // by reference, never guessed; several platforms of one image by platform.
            var candidates = top
            if let reference {
                candidates = top.filter { $0.refName == reference }
                guard !candidates.isEmpty else {
                    throw CLIError(message: "\(shown): no image tagged \(reference); it holds: "
                        + ImageReference.list(top.map { $0.refName.map { [$0] } ?? [] }))
                }
            } else if Set(top.map { $0.refName ?? "" }).count > 1 {
                throw CLIError(message: "\(shown) holds \(top.count) images; name one as PATH:REF: "
                    + ImageReference.list(top.map { $0.refName.map { [$0] } ?? [] }))
            }
            var desc = candidates.count == 1 ? candidates[0] : try platform.choose(candidates, in: shown)
            while let mt = desc.mediaType, mt.hasSuffix("image.index.v1+json") || mt.hasSuffix("manifest.list.v2+json") {
                desc = try platform.choose(try load(try blob(desc.digest ?? ""), as: OCIIndex.self).manifests ?? [], in: shown)
            }
            guard let md = desc.digest else { throw CLIError(message: "\(dir)/index.json: no manifest") }
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
    struct Platform: Decodable {
        var architecture: String?
        var os: String?
        var variant: String?
    }
    var mediaType: String?
    var digest: String?
    var platform: Platform?
    var annotations: [String: String]?
    /// The tag an index gives the image (`org.opencontainers.image.ref.name`).
    var refName: String? { annotations?["org.opencontainers.image.ref.name"] }
}

/// `PATH[:REF]`, `oci:PATH[:REF]`, `docker-archive:PATH[:REF]`: what is read, and which image.
enum ImageReference {
    static func split(_ argument: String) throws -> (path: String, reference: String?) {
        var rest = Substring(argument)
        for transport in ["oci:", "oci-archive:", "docker-archive:"] where rest.hasPrefix(transport) {
            rest = rest.dropFirst(transport.count)
        }
        // The path as given, if it exists; else the longest prefix before a colon that does.
        if Sys.exists(Bytes.of(String(rest))) { return (String(rest), nil) }
        for colon in rest.indices.reversed() where rest[colon] == ":" && Sys.exists(Bytes.of(String(rest[..<colon]))) {
            let reference = String(rest[rest.index(after: colon)...])
            guard !reference.isEmpty else { throw CLIError(message: "\(argument): an empty image reference") }
            return (String(rest[..<colon]), reference)
        }
        return (String(rest), nil)
    }

    /// `a, b, c` (an untagged image shown as such).
    static func list(_ tags: [[String]]) -> String {
        tags.map { $0.isEmpty ? "(untagged)" : $0.joined(separator: " ") }.joined(separator: ", ")
    }
}

/// os/arch[/variant] of an image in a multi-platform index.
struct Platform: Equatable {
    var os: String
    var architecture: String
    var variant: String?

    init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    init(parsing text: String) throws {
        let p = text.split(separator: "/").map(String.init)
        guard (2...3).contains(p.count), !p.contains(where: \.isEmpty) else {
            throw ValidationError("--platform: expected os/arch[/variant], such as linux/amd64 or linux/arm/v7")
        }
        self.init(os: p[0], architecture: p[1], variant: p.count == 3 ? p[2] : nil)
    }

    /// This machine's, in the names images use (uname's x86_64 is amd64, aarch64 arm64).
    static var host: Platform {
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let arch = ["x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm", "ppc64le": "ppc64le",
                    "s390x": "s390x", "riscv64": "riscv64"][machine] ?? machine
        return Platform(os: "linux", architecture: arch, variant: machine == "armv7l" ? "v7" : nil)
    }

    var description: String { "\(os)/\(architecture)" + (variant.map { "/" + $0 } ?? "") }

    /// The one descriptor of `manifests` for this platform (a variant must match when asked for).
    func choose(_ manifests: [OCIDescriptor], in shown: String) throws -> OCIDescriptor {
        let matching = manifests.filter { d in
            guard let p = d.platform else { return false }
            return p.architecture == architecture && (p.os ?? "linux") == os && (variant == nil || p.variant == variant)
        }
        guard let first = matching.first else {
            let have = manifests.compactMap { $0.platform }.map { "\($0.os ?? "?")/\($0.architecture ?? "?")" + ($0.variant.map { "/" + $0 } ?? "") }
            throw CLIError(message: "\(shown): no image for \(description); the index has: \(have.isEmpty ? "none with a platform" : have.joined(separator: ", "))")
        }
        return first
    }
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
    var repoTags: [String]?
    var layers: [String]?
    enum CodingKeys: String, CodingKey { case config = "Config", repoTags = "RepoTags", layers = "Layers" }
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
