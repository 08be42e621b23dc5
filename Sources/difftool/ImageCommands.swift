// import-image: an OCI image layout directory, or a `docker save` archive (either format),
// imported as a chain of layers. Each layer's id is its chain ID (as docker's layer store names
// layers), so a layer already there is reused; every blob digest and every diffID is checked.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers

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
        func load(_ rel: String) throws -> JSON {
            let text = try Sys.readFile(Bytes.of(dir + "/" + rel))
            do { return try JSON.parse(text) } catch { throw CLIError(message: "\(dir)/\(rel): \(error)") }
        }
        func blob(_ digest: String) throws -> String {
            let parts = digest.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0] == "sha256", parts[1].allSatisfy({ $0.isHexDigit }) else {
                throw CLIError(message: "\(dir): unsupported digest '\(digest)'")
            }
            return "blobs/sha256/\(parts[1])"
        }
        var image = Image(layers: [], diffIDs: [])
        let config: JSON
        if Sys.exists(Bytes.of(dir + "/manifest.json")) {
            // docker save: [{"Config": "...", "Layers": ["<id>/layer.tar" | "blobs/sha256/..."]}]
            guard let m = try load("manifest.json")[0], let c = m["Config"]?.string, let ls = m["Layers"]?.array else {
                throw CLIError(message: "\(dir)/manifest.json: not a docker save manifest")
            }
            config = try load(c)
            for l in ls {
                guard let file = l.string else { throw CLIError(message: "\(dir)/manifest.json: bad layer entry") }
                image.layers.append(Layer(file: file, digest: nil))
            }
        } else {
            // OCI layout: index.json → (index →) manifest → config + layers.
            var desc = try load("index.json")["manifests"]?[0]
            while let d = desc, let mt = d["mediaType"]?.string, mt.hasSuffix("image.index.v1+json") || mt.hasSuffix("manifest.list.v2+json") {
                let sub = try load(try blob(d["digest"]?.string ?? ""))["manifests"]?.array ?? []
                desc = sub.first { $0["platform"]?["architecture"]?.string == "amd64" } ?? sub.first
            }
            guard let d = desc, let md = d["digest"]?.string else { throw CLIError(message: "\(dir)/index.json: no manifest") }
            let manifest = try load(try blob(md))
            guard let cd = manifest["config"]?["digest"]?.string, let ls = manifest["layers"]?.array else {
                throw CLIError(message: "\(dir): manifest \(md) has no config or layers")
            }
            config = try load(try blob(cd))
            for l in ls {
                guard let digest = l["digest"]?.string else { throw CLIError(message: "\(dir): a layer without a digest") }
                image.layers.append(Layer(file: try blob(digest), digest: digest))
            }
        }
        image.diffIDs = (config["rootfs"]?["diff_ids"]?.array ?? []).compactMap(\.string)
        guard image.diffIDs.count == image.layers.count else {
            throw CLIError(message: "\(dir): \(image.layers.count) layers but \(image.diffIDs.count) diff_ids in the config")
        }
        return image
    }
}

/// A small JSON reader (image metadata only; difftool does not link Foundation).
enum JSON: Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSON]), object([String: JSON])

    var string: String? { if case let .string(s) = self { return s } else { return nil } }
    var array: [JSON]? { if case let .array(a) = self { return a } else { return nil } }
    subscript(key: String) -> JSON? { if case let .object(o) = self { return o[key] } else { return nil } }
    subscript(index: Int) -> JSON? {
        if case let .array(a) = self, index < a.count { return a[index] } else { return nil }
    }

    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ bytes: [UInt8]) throws -> JSON {
        var i = 0
        let v = try value(bytes, &i)
        skip(bytes, &i)
        if i != bytes.count { throw ParseError(description: "trailing bytes at \(i)") }
        return v
    }

    private static func skip(_ b: [UInt8], _ i: inout Int) {
        while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 }
    }

    private static func value(_ b: [UInt8], _ i: inout Int) throws -> JSON {
        skip(b, &i)
        guard i < b.count else { throw ParseError(description: "unexpected end") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var o: [String: JSON] = [:]
            skip(b, &i)
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skip(b, &i)
                guard case let .string(k) = try value(b, &i) else { throw ParseError(description: "object key at \(i)") }
                skip(b, &i)
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw ParseError(description: "':' expected at \(i)") }
                i += 1
                o[k] = try value(b, &i)
                skip(b, &i)
                guard i < b.count else { throw ParseError(description: "unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                throw ParseError(description: "',' or '}' expected at \(i)")
            }
        case UInt8(ascii: "["):
            i += 1
            var a: [JSON] = []
            skip(b, &i)
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            while true {
                a.append(try value(b, &i))
                skip(b, &i)
                guard i < b.count else { throw ParseError(description: "unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                throw ParseError(description: "',' or ']' expected at \(i)")
            }
        case UInt8(ascii: "\""):
            i += 1
            var s: [UInt8] = []
            while i < b.count, b[i] != UInt8(ascii: "\"") {
                if b[i] == UInt8(ascii: "\\"), i + 1 < b.count {
                    i += 1
                    switch b[i] {
                    case UInt8(ascii: "n"): s.append(0x0A)
                    case UInt8(ascii: "t"): s.append(0x09)
                    case UInt8(ascii: "r"): s.append(0x0D)
                    case UInt8(ascii: "b"): s.append(0x08)
                    case UInt8(ascii: "f"): s.append(0x0C)
                    case UInt8(ascii: "u"):
                        guard i + 4 < b.count, let u = UInt32(String(decoding: b[(i + 1)...(i + 4)], as: UTF8.self), radix: 16) else {
                            throw ParseError(description: "bad \\u escape at \(i)")
                        }
                        s += Array(String(Unicode.Scalar(u).map(Character.init) ?? "?").utf8)
                        i += 4
                    default: s.append(b[i])
                    }
                } else {
                    s.append(b[i])
                }
                i += 1
            }
            guard i < b.count else { throw ParseError(description: "unterminated string") }
            i += 1
            return .string(String(decoding: s, as: UTF8.self))
        case UInt8(ascii: "t"): i += 4; return .bool(true)
        case UInt8(ascii: "f"): i += 5; return .bool(false)
        case UInt8(ascii: "n"): i += 4; return .null
        default:
            let start = i
            while i < b.count, b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: ".")
                    || b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") || (b[i] >= 0x30 && b[i] <= 0x39) { i += 1 }
            guard i > start, let d = Double(String(decoding: b[start..<i], as: UTF8.self)) else {
                throw ParseError(description: "unexpected byte at \(start)")
            }
            return .number(d)
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
        let results = try ConformanceSuite.run(driver: store.driver, home: Bytes.of(home), options: driverOptions)
        let failed = results.filter { $0.failure != nil }.count
        if json {
            try writeJSON(ConformanceJSON(
                driver: store.driver, passed: results.count - failed, failed: failed,
                scenarios: results.map { .init(name: $0.name, failure: $0.failure) }))
        } else {
            var out = "conformance of \(store.driver):\n"
            for r in results { out += (r.failure == nil ? "  PASS " : "  FAIL ") + r.name + (r.failure.map { "\n       " + $0 } ?? "") + "\n" }
            out += "\(results.count - failed) passed, \(failed) failed\n"
            try writeStdout(out)
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
