// What an image argument names: a path (a layout directory or an archive) and which image in it.
import DiffKitSystem
import SystemPackage

/// `PATH[:REF]`, `oci:PATH[:REF]`, `docker-archive:PATH[:REF]` (as skopeo writes them): what is
/// read, and which image of it.
///
/// REF is an OCI layout's tag (its index's `org.opencontainers.image.ref.name`) or a `docker
/// save` archive's repository tag (`NAME:TAG`, or `TAG` alone). A path may itself hold colons:
/// the whole argument is the path when it exists, else the longest prefix before a colon that does.
public struct ImageReference: Sendable, Equatable {
    /// The layout directory or archive.
    public var path: FilePath
    /// The image's tag, if one is named.
    public var reference: String?

    /// A path and, optionally, the tag of one of its images.
    public init(path: FilePath, reference: String? = nil) {
        self.path = path
        self.reference = reference
    }

    /// Split an argument as described above; throws ``ImageError/emptyReference(_:)`` for
    /// `PATH:` with nothing after the colon.
    public init(parsing argument: String) throws {
        var rest = Substring(argument)
        for transport in ["oci:", "oci-archive:", "docker-archive:"] where rest.hasPrefix(transport) {
            rest = rest.dropFirst(transport.count)
        }
        if Sys.exists(Bytes.of(String(rest))) {
            self.init(path: FilePath(String(rest)))
            return
        }
        for colon in rest.indices.reversed() where rest[colon] == ":" && Sys.exists(Bytes.of(String(rest[..<colon]))) {
            let reference = String(rest[rest.index(after: colon)...])
            guard !reference.isEmpty else { throw ImageError.emptyReference(argument) }
            self.init(path: FilePath(String(rest[..<colon])), reference: reference)
            return
        }
        self.init(path: FilePath(String(rest)))
    }
}
