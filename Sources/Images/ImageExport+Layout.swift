// The OCI image layout of an image: each layer streamed into a blob file once (compressed and
// digested on the way) and named by its digest when done; then the config, the manifest, the
// index naming it (with the tag) and `oci-layout`.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import Drivers

extension LayerStore {
    func writeLayout(_ chain: [LayerRecord], to output: StagedOutput, options: ImageExportOptions) throws -> ImageExport {
        try output.makeDirectory("blobs")
        try output.makeDirectory("blobs/sha256")
        let shown = Bytes.string(output.destination)
        var layers: [ExportedLayer] = []
        for (i, r) in chain.enumerated() {
            let partial = "blobs/sha256/.layer-\(i).tmp"
            let fd = try output.create(partial)
            let layer: ExportedLayer
            do {
                layer = try exportImageLayer(r, index: i, count: chain.count, to: fd,
                                             name: "\(shown) (layer \(i + 1)/\(chain.count))", options: options)
            } catch {
                Sys.close(fd)
                throw error
            }
            try output.finish(fd, partial)
            try output.move(partial, to: "blobs/sha256/" + LayerStore.hex(layer.digests.digest))
            layers.append(layer)
        }
        let documents = ExportDocuments(layers: layers, options: options)
        let config = try blob(documents.config(), mediaType: MediaType.ociConfig, in: output)
        let manifest = try blob(documents.manifest(config: config), mediaType: MediaType.ociManifest, in: output)
        try output.write("index.json", documents.index(manifest: manifest))
        try output.write("oci-layout", documents.layoutFile())
        return ImageExport(format: .oci, path: FilePath(shown), manifest: manifest, config: config, layers: layers)
    }

    /// `bytes` as a blob of the layout, named by its digest.
    private func blob(_ bytes: [UInt8], mediaType: String, in output: StagedOutput) throws -> ImageBlob {
        let digest = SHA256.hex(bytes)
        let name = "blobs/sha256/" + LayerStore.hex(digest)
        if !Sys.exists(output.path(name)) { try output.write(name, bytes) }
        return ImageBlob(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
    }
}
