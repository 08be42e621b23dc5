// The docker save archive of an image: one pass over each layer, streamed straight into the
// archive. docker load (20.10 and later) reads `manifest.json` — the config's name, the tags,
// each layer tar's name in order — and checks each layer tar against the config's diff_ids.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers

extension LayerStore {
    /// `<chain-id hex>/layer.tar` per layer (named after its chain ID, as unique as its place in
    /// the chain), then the config `<hex>.json`, `manifest.json` and, for a tagged image,
    /// `repositories`.
    func writeArchive(_ chain: [LayerRecord], to output: StagedOutput, options: ImageExportOptions) throws -> ImageExport {
        let time = options.export.reproducibleTime ?? ExportDocuments.now()
        var archive = DockerArchiveWriter(fd: output.file, shown: output.temporary, mtime: time)
        let shown = Bytes.string(output.destination)
        var layers: [ExportedLayer] = []
        var names: [String] = []
        var diffIDs: [String] = []
        var chainID: String? = nil
        for (i, r) in chain.enumerated() {
            // The directory's and the file's header go before the data, filled in once its
            // size and digest are known.
            let slot = try archive.reserve(blocks: 2)
            let layer = try exportImageLayer(r, index: i, count: chain.count, to: output.file,
                                             name: "\(shown) (layer \(i + 1)/\(chain.count))", options: options)
            try archive.streamed(layer.digests.size)
            diffIDs.append(layer.digests.diffID)
            chainID = Image.chainIDs(diffIDs).last
            let dir = LayerStore.hex(chainID!)
            try archive.fill(slot, [
                DockerArchiveWriter.header(dir + "/", directory: true, size: 0, mtime: time),
                DockerArchiveWriter.header(dir + "/layer.tar", directory: false, size: layer.digests.size, mtime: time),
            ])
            names.append(dir + "/layer.tar")
            layers.append(layer)
        }
        let documents = ExportDocuments(layers: layers, options: options)
        let config = try documents.config()
        let configName = LayerStore.hex(SHA256.hex(config)) + ".json"
        try archive.add(configName, config)
        try archive.add("manifest.json", try documents.dockerManifest(config: configName, layers: names))
        if let repositories = try documents.dockerRepositories(top: chainID.map(LayerStore.hex)) {
            try archive.add("repositories", repositories)
        }
        try archive.finish()
        return ImageExport(format: .dockerArchive, path: FilePath(shown), manifest: nil,
                           config: ImageBlob(mediaType: MediaType.ociConfig, digest: SHA256.hex(config), size: Int64(config.count)),
                           layers: layers)
    }
}

/// The outer tar of a docker archive, written front to back. A layer's data is streamed into it
/// by another writer (LayerOutput) at the file's offset; its headers — whose name and size
/// depend on the layer's digest and length — go into blocks reserved before the data and are
/// filled in afterwards. So these headers are made here rather than by `TarWriter`, a buffered
/// stream that cannot go back: short ASCII names, USTAR, and a size beyond USTAR's 8 GiB in
/// base-256, which Go's reader (docker load's) takes in any header.
struct DockerArchiveWriter {
    let fd: Int32
    let shown: [UInt8]
    let mtime: Int64
    /// Bytes written so far; the file's own offset, since every write appends.
    private(set) var offset: Int64 = 0

    init(fd: Int32, shown: [UInt8], mtime: Int64) {
        self.fd = fd
        self.shown = shown
        self.mtime = mtime
    }

    /// Write `blocks` zero blocks for headers to be filled in later; their offset.
    mutating func reserve(blocks: Int) throws -> Int64 {
        let at = offset
        try zeros(512 * blocks)
        return at
    }

    /// `size` bytes of an entry's data were written at the end by someone else: count them and
    /// pad the entry to a block.
    mutating func streamed(_ size: Int64) throws {
        offset += size
        try zeros(Int((512 - size % 512) % 512))
    }

    /// Fill reserved blocks at `slot` with `headers` (a block each).
    func fill(_ slot: Int64, _ headers: [[UInt8]]) throws {
        let blocks = Array(headers.joined())
        try blocks.withUnsafeBytes { try Sys.pwriteAll(fd, $0, at: slot, shown: shown) }
    }

    /// A regular file `name` holding `bytes`.
    mutating func add(_ name: String, _ bytes: [UInt8]) throws {
        try append(Self.header(name, directory: false, size: Int64(bytes.count), mtime: mtime))
        try append(bytes)
        try zeros((512 - bytes.count % 512) % 512)
    }

    /// The end-of-archive marker: two zero blocks (as Go's writer, no padding to a record).
    mutating func finish() throws { try zeros(1024) }

    private mutating func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(shown)) }
        offset += Int64(bytes.count)
    }

    private mutating func zeros(_ count: Int) throws {
        if count > 0 { try append([UInt8](repeating: 0, count: count)) }
    }

    /// A USTAR header block for `name` (ASCII, at most 100 bytes): a directory (0755) or a
    /// regular file (0644) of `size` bytes, owned by 0:0, dated `mtime`.
    static func header(_ name: String, directory: Bool, size: Int64, mtime: Int64) -> [UInt8] {
        precondition(name.utf8.count <= 100 && name.utf8.allSatisfy { $0 < 0x80 }, "archive entry name \(name)")
        var b = [UInt8](repeating: 0, count: 512)
        func put(_ offset: Int, _ bytes: some Sequence<UInt8>) {
            for (i, c) in bytes.enumerated() { b[offset + i] = c }
        }
        func octal(_ offset: Int, _ width: Int, _ value: Int64) {
            let digits = String(value, radix: 8)
            put(offset, String(repeating: "0", count: max(0, width - 1 - digits.count)).utf8)
            put(offset + max(0, width - 1 - digits.count), digits.utf8)
        }
        put(0, name.utf8)
        octal(100, 8, directory ? 0o755 : 0o644)
        octal(108, 8, 0)
        octal(116, 8, 0)
        if size < 0o77777777777 {
            octal(124, 12, size)
        } else {
            // base-256: a set high bit, then the value big-endian in the field's other 11 bytes.
            b[124] = 0x80
            for i in 0..<8 { b[135 - i] = UInt8(truncatingIfNeeded: size >> (8 * Int64(i))) }
        }
        octal(136, 12, min(max(mtime, 0), 0o77777777777))
        b[156] = directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put(257, "ustar\0".utf8)
        put(263, "00".utf8)
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 0x20 : Int(b[i]) }
        octal(148, 7, Int64(sum))
        b[155] = 0x20
        return b
    }
}
