// swift-tools-version:6.0
// DiffKit: container-image layers to tar streams and back.
import PackageDescription

let package = Package(
    name: "DiffKit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DiffKit", targets: ["DiffKit", "DiffKitArchive", "DiffKitSystem"]),
        .library(name: "Drivers", targets: ["Drivers"]),
        .library(name: "DiffKitJSON", targets: ["DiffKitJSON"]),
        .library(name: "Images", targets: ["Images"]),
        .library(name: "EngineStores", targets: ["EngineStores"]),
        .executable(name: "difftool", targets: ["difftool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        // `swift package generate-documentation` (scripts/docs.sh); a plugin only, nothing links it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // The system: descriptors, *at calls, xattrs, directory reads, in-root path resolution,
        // the shared-state primitives; the C calls Swift cannot make in CDiffKitSystem.
        .target(name: "CDiffKitSystem"),
        .target(
            name: "DiffKitSystem",
            dependencies: ["CDiffKitSystem", .product(name: "SystemPackage", package: "swift-system")]),
        // Tar streams: reading (libarchive, any compression), the Go-format writer, tar-split
        // records, compression and digests (libcrypto's SHA-256, a CRC-32C in CDiffKitArchive), gzip
        // input through ISA-L.
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // The system's libcrypto (Debian: libssl-dev) for SHA-256 digests: its assembly (SHA-NI
        // where the CPU has it) costs nothing to build, where swift-crypto takes minutes.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // ISA-L's inflate (Debian: libisal-dev) for gzip input, about twice zlib's speed; libarchive
        // keeps every other compression and the tar parsing.
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        // JSON documents (image configs, manifests, an engine's layer records) without Foundation:
        // a value type, a strict parser, a writer with sorted keys, Codable on top; base64 and
        // RFC 3339 times as the documents carry them.
        .target(name: "DiffKitJSON"),
        .target(name: "CDiffKitArchive"),
        .target(name: "DiffKitArchive", dependencies: ["DiffKitSystem", "CArchive", "CCrypto", "CISAL", "CDiffKitArchive"]),
        // Layers: walks, changes, the layer writer, the applier, ID maps, sizes, tree copies.
        .target(
            name: "DiffKit",
            dependencies: ["DiffKitSystem", "DiffKitArchive", .product(name: "Logging", package: "swift-log")]),
        // Storage drivers and the layer store; mounts, project quotas, btrfs ioctls and SELinux
        // labels (libselinux, Debian: libselinux1-dev) are theirs alone.
        .systemLibrary(name: "CSELinux", pkgConfig: "libselinux", providers: [.apt(["libselinux1-dev"])]),
        .target(name: "CDriverSystem"),
        .target(name: "Drivers", dependencies: ["DiffKit", "DiffKitSystem", "DiffKitArchive", "CDriverSystem", "CSELinux"]),
        // Images: the image documents (OCI and docker save), reading an image out of a layout, and
        // importing it into a store as a chain; the documents' JSON through DiffKitJSON.
        .target(
            name: "Images",
            dependencies: ["Drivers", "DiffKit", "DiffKitArchive", "DiffKitSystem", "DiffKitJSON",
                           .product(name: "SystemPackage", package: "swift-system")]),
        // Engines' own stores opened in place, read-only (docker's data root, containers/storage's
        // root); containers/storage's layers.json through DiffKitJSON.
        .target(
            name: "EngineStores",
            dependencies: ["Drivers", "DiffKit", "DiffKitSystem", "DiffKitArchive", "DiffKitJSON",
                           .product(name: "Logging", package: "swift-log")]),
        // Released with the Swift runtime and libraries linked in (-static-stdlib): resolving
        // their symbols at every start cost about 3 ms of a 10 ms export.
        .executableTarget(
            name: "difftool",
            dependencies: [
                "DiffKit", "Drivers", "Images", "EngineStores", "DiffKitSystem", "DiffKitArchive",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))],
            linkerSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))]),
        .target(name: "TestSupport", dependencies: ["DiffKit", "DiffKitSystem", "DiffKitArchive"], path: "Tests/TestSupport"),
        .testTarget(name: "DiffKitTests", dependencies: ["DiffKit", "DiffKitSystem", "DiffKitArchive", "DiffKitJSON", "TestSupport"]),
        .testTarget(name: "DriverTests", dependencies: ["Drivers", "Images", "EngineStores", "DiffKitJSON", "DiffKit", "DiffKitSystem", "DiffKitArchive", "TestSupport",
                                                    .product(name: "Logging", package: "swift-log")]),
    ]
)

// libFuzzer targets (scripts/fuzz.sh): only with DIFFKIT_FUZZ=1, built with `--sanitize fuzzer`,
// which links libFuzzer's main (they have none of their own, so a normal build leaves them out).
if Context.environment["DIFFKIT_FUZZ"] == "1" {
    for name in ["FuzzTarReader", "FuzzApply"] {
        package.targets.append(.executableTarget(
            name: name, dependencies: ["DiffKit", "DiffKitArchive", "DiffKitSystem"], path: "Fuzz/" + name,
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
