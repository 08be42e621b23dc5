// swift-tools-version:6.0
// A package that builds on DiffKit as any other would: by path, through its public API only.
// Run it (as root: layers keep owners) with scripts/examples.sh from the repository's root.
import PackageDescription

// A path dependency is known by its directory's name, whatever the checkout is called.
let diffkit = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "DiffKit")

let package = Package(
    name: "DiffKitExamples",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "diffkit-examples",
            dependencies: [
                .product(name: "DiffKit", package: diffkit),
                .product(name: "Drivers", package: diffkit),
            ]),
    ]
)
