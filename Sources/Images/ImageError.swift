// What goes wrong reading an image or importing it: each error names the layout (as the caller
// showed it) or the document, and the layer (1-based, base first) where there is one.
import DiffKit
import SystemPackage

/// A failure reading an image's documents or importing its layers.
public enum ImageError: Error, CustomStringConvertible, Sendable {
    /// A document that is not what it should be: `path`, and where and what (a decoding error's
    /// coding path and message).
    case invalidDocument(path: FilePath, reason: String)
    /// A digest other than `sha256:<64 hex>` in `layout`.
    case unsupportedDigest(layout: FilePath, digest: String)
    /// The index or `manifest.json` at `path` lists no image.
    case noImage(path: FilePath)
    /// `layout` (as shown) has no image tagged `reference` (or several); it holds those `tags`
    /// (one list per image, empty for an untagged one).
    case noSuchReference(layout: String, reference: String, matching: Int, tags: [[String]])
    /// `layout` holds several images and none was named; their `tags`.
    case ambiguous(layout: String, tags: [[String]])
    /// The index of `layout` has no manifest for `platform`; those it has.
    case noPlatform(layout: String, platform: Platform, available: [Platform])
    /// An image whose manifest lists `layers` blobs and its config `diffIDs` diffIDs.
    case layerCount(layout: FilePath, layers: Int, diffIDs: Int)
    /// Layer `layer`'s blob does not have the digest its manifest gives.
    case blobDigest(image: String, layer: Int, blob: FilePath, actual: String, expected: String)
    /// Layer `layer`'s tar does not have the diffID the image config gives.
    case diffID(image: String, layer: Int, actual: String, expected: String)
    /// Importing layer `layer` (blob `blob`) failed: `underlying` says why.
    case layer(image: String, layer: Int, blob: FilePath, underlying: any Error)
    /// A reference argument that names no image after its colon.
    case emptyReference(String)
    /// A platform that is not `os/arch[/variant]`.
    case invalidPlatform(String)

    /// One line, naming the file or the image and the layer.
    public var description: String {
        switch self {
        case let .invalidDocument(path, reason): return "\(path.string): \(reason)"
        case let .unsupportedDigest(layout, digest): return "\(layout.string): unsupported digest '\(digest)'"
        case let .noImage(path): return "\(path.string): no image"
        case let .noSuchReference(layout, reference, matching, tags):
            return "\(layout): " + (matching == 0 ? "no image tagged \(reference)" : "\(matching) images tagged \(reference)")
                + "; it holds: " + Self.list(tags)
        case let .ambiguous(layout, tags):
            return "\(layout) holds \(tags.count) images; name one as PATH:REF: " + Self.list(tags)
        case let .noPlatform(layout, platform, available):
            return "\(layout): no image for \(platform.description); the index has: "
                + (available.isEmpty ? "none with a platform" : available.map(\.description).joined(separator: ", "))
        case let .layerCount(layout, layers, diffIDs):
            return "\(layout.string): \(layers) layers but \(diffIDs) diff_ids in the config"
        case let .blobDigest(image, layer, blob, actual, expected):
            return "\(image): layer \(layer): blob \(blob.string) has digest \(actual), the manifest says \(expected)"
        case let .diffID(image, layer, actual, expected):
            return "\(image): layer \(layer): its tar has diffID \(actual), the image config says \(expected)"
        case let .layer(image, layer, blob, underlying):
            // An applier's refusal names the entry and the archive already.
            if let e = underlying as? DiffKitError, case .applyFailed = e { return "\(image): layer \(layer): \(e)" }
            let text = "\(underlying)"
            return "\(image): layer \(layer): " + (text.contains(blob.string) ? text : "\(blob.string): \(text)")
        case let .emptyReference(argument): return "\(argument): an empty image reference"
        case let .invalidPlatform(text):
            return "'\(text)': expected os/arch[/variant], such as linux/amd64 or linux/arm/v7"
        }
    }

    /// `a, b, c`, an untagged image shown as such.
    static func list(_ tags: [[String]]) -> String {
        tags.map { $0.isEmpty ? "(untagged)" : $0.joined(separator: " ") }.joined(separator: ", ")
    }
}
