// TEMPORARY stand-in for the shared Platform (moved into Images by the import-image work).
#if canImport(Glibc)
import Glibc
#endif

/// os/arch[/variant] of an image.
public struct Platform: Equatable, Sendable {
    /// os
    public var os: String
    /// arch
    public var architecture: String
    /// variant
    public var variant: String?
    /// A platform.
    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }
    /// This machine's.
    public static var host: Platform { Platform(os: "linux", architecture: "amd64") }
}
