// Platforms as a user names them (os/arch[/variant]), this machine's, and the choice of one
// manifest among an index's: by platform, a variant only when asked for.
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension Platform: CustomStringConvertible {
    /// `os/architecture[/variant]`, such as `linux/amd64` or `linux/arm/v7`.
    public init(parsing text: String) throws {
        let p = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(p.count), !p.contains(where: \.isEmpty) else { throw ImageError.invalidPlatform(text) }
        self.init(os: p[0], architecture: p[1], variant: p.count == 3 ? p[2] : nil)
    }

    /// This machine's, in the names images use (uname's x86_64 is amd64, aarch64 arm64).
    public static var host: Platform {
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let arch = ["x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm", "ppc64le": "ppc64le",
                    "s390x": "s390x", "riscv64": "riscv64"][machine] ?? machine
        return Platform(os: "linux", architecture: arch, variant: machine == "armv7l" ? "v7" : nil)
    }

    /// `os/architecture[/variant]`.
    public var description: String { "\(os)/\(architecture)" + (variant.map { "/" + $0 } ?? "") }

    /// Whether a manifest for `other` runs here: the same os and architecture, and the same
    /// variant when this platform names one.
    public func accepts(_ other: Platform) -> Bool {
        other.architecture == architecture && other.os == os && (variant == nil || other.variant == variant)
    }

    /// The first of `manifests` whose platform this one accepts; `layout` is what an error names.
    public func choose(_ manifests: [Descriptor], in layout: String) throws -> Descriptor {
        guard let first = manifests.first(where: { $0.platform.map(accepts) ?? false }) else {
            throw ImageError.noPlatform(layout: layout, platform: self, available: manifests.compactMap(\.platform))
        }
        return first
    }
}
