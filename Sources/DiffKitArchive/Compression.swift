// The compressions a layer blob may have, with their OCI media types.

/// The compression of a layer blob: none, gzip or zstd, each with its level.
public enum Compression: Sendable, Equatable {
    /// The plain tar.
    case none
    /// gzip at `level` 1–9 (6 by default), without a timestamp in its header.
    case gzip(level: Int)
    /// zstd at `level` 1–22 (3 by default).
    case zstd(level: Int)

    /// `none`, `gzip`, `gzip:9`, `zstd`, `zstd:19`.
    public init?(parsing s: String) {
        let parts = s.split(separator: ":", maxSplits: 1)
        let level = parts.count == 2 ? Int(parts[1]) : nil
        if parts.count == 2 && level == nil { return nil }
        switch parts.first.map(String.init) ?? "" {
        case "none" where level == nil: self = .none
        case "gzip": guard (1...9).contains(level ?? 6) else { return nil }; self = .gzip(level: level ?? 6)
        case "zstd": guard (1...22).contains(level ?? 3) else { return nil }; self = .zstd(level: level ?? 3)
        default: return nil
        }
    }

    /// The OCI media type of a layer blob in this compression.
    public var mediaType: String {
        switch self {
        case .none: return "application/vnd.oci.image.layer.v1.tar"
        case .gzip: return "application/vnd.oci.image.layer.v1.tar+gzip"
        case .zstd: return "application/vnd.oci.image.layer.v1.tar+zstd"
        }
    }
}
