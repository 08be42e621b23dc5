// The public boundary's system types (swift-system): FilePath for host paths, FileDescriptor for
// descriptors, Errno for the errors of the system. Inside, paths stay bytes and descriptors Int32;
// these convert once, where a public declaration meets the internals.
@_exported import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Bytes {
    /// The bytes of a host path, as the kernel gets them (never decoded as UTF-8).
    package static func of(_ path: FilePath) -> [UInt8] {
        path.withPlatformString { p in
            UnsafeRawBufferPointer(start: p, count: strlen(p)).map { $0 }
        }
    }
    /// A printable form of a host path for messages (invalid UTF-8 is replaced).
    package static func string(_ path: FilePath) -> String { path.string }
    /// The bytes of each host path.
    package static func of(_ paths: [FilePath]) -> [[UInt8]] { paths.map { Bytes.of($0) } }
}

extension FilePath {
    /// A host path from its bytes (no UTF-8 assumed; a NUL byte ends it, as for the kernel).
    package init(bytes: [UInt8]) {
        var terminated = bytes.map { CInterop.PlatformChar(bitPattern: $0) }
        terminated.append(0)
        self = terminated.withUnsafeBufferPointer { FilePath(platformString: $0.baseAddress!) }
    }
}
