// swift-tools-version:6.0
// DiffKit: container-image layers to tar streams and back.
import PackageDescription

let package = Package(
    name: "DiffKit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DiffKit", targets: ["DiffKit"]),
        .library(name: "Drivers", targets: ["Drivers"]),
        .executable(name: "difftool", targets: ["difftool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // libarchive, found through pkg-config (Debian: libarchive-dev).
        .systemLibrary(
            name: "CArchive", path: "Sources/ArchiveBridge/CArchive",
            pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // libselinux (Debian: libselinux1-dev), for relabelling layers where SELinux is enabled.
        .systemLibrary(
            name: "CSELinux", path: "Sources/ArchiveBridge/CSELinux",
            pkgConfig: "libselinux", providers: [.apt(["libselinux1-dev"])]),
        // The system's libcrypto (Debian: libssl-dev) for SHA-256 digests: its assembly (SHA-NI
        // where the CPU has it) costs nothing to build, where swift-crypto takes minutes.
        .systemLibrary(
            name: "CCrypto", path: "Sources/ArchiveBridge/CCrypto",
            pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // The few syscalls Swift cannot call (variadics, macros, missing glibc wrappers).
        .target(name: "CDiffKitShim", path: "Sources/ArchiveBridge/CShim"),
        .target(
            name: "ArchiveBridge",
            dependencies: [
                "CArchive", "CDiffKitShim", "CSELinux", "CCrypto",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Sources/ArchiveBridge/Swift"),
        .target(
            name: "DiffKit",
            dependencies: ["ArchiveBridge", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Drivers", dependencies: ["DiffKit", "ArchiveBridge"]),
        .executableTarget(
            name: "difftool",
            dependencies: [
                "DiffKit", "Drivers",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "TestSupport", dependencies: ["DiffKit", "ArchiveBridge"], path: "Tests/TestSupport"),
        .testTarget(name: "DiffKitTests", dependencies: ["DiffKit", "ArchiveBridge", "TestSupport"]),
        .testTarget(name: "DriverTests", dependencies: ["Drivers", "DiffKit", "TestSupport"]),
    ]
)

// libFuzzer targets (scripts/fuzz.sh): only with DIFFKIT_FUZZ=1, built with `--sanitize fuzzer`,
// which links libFuzzer's main (they have none of their own, so a normal build leaves them out).
if Context.environment["DIFFKIT_FUZZ"] == "1" {
    for name in ["FuzzTarReader", "FuzzApply"] {
        package.targets.append(.executableTarget(
            name: name, dependencies: ["DiffKit", "ArchiveBridge"], path: "Fuzz/" + name,
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
