// Option values from a fixed set: ArgumentParser parses them, refuses anything else as a bad
// command line (exit 64) and lists the choices in --help.
import ArgumentParser
import DiffKit
import DiffKitArchive
import Drivers

/// `--driver`, `migrate --from/--to`. `overlay` is taken as `overlay2`, as the store takes it.
enum DriverChoice: String, CaseIterable, ExpressibleByArgument {
    case vfs, overlay2, btrfs, aufs

    init?(argument: String) {
        self.init(rawValue: argument == "overlay" ? "overlay2" : argument)
    }
}

/// `--whiteouts`: the form deletions take in a directory.
enum WhiteoutChoice: String, CaseIterable, ExpressibleByArgument {
    case plain, overlay, aufs

    func form(userxattr: Bool) -> WhiteoutForm {
        switch self {
        case .plain: return .plain
        case .overlay: return .overlay(xattrPrefix: userxattr ? "user." : "trusted.")
        case .aufs: return .aufs
        }
    }
}

/// `--profile`: which headers an exported tar has.
enum ProfileChoice: String, CaseIterable, ExpressibleByArgument {
    case moby, containerd

    var profile: HeaderProfile {
        switch self {
        case .moby: return .moby
        case .containerd: return .containerd
        }
    }
}

/// `--compress KIND[:LEVEL]`: none, gzip (levels 1-9), zstd (levels 1-22).
struct CompressionChoice: ExpressibleByArgument {
    var compression: Compression

    init(_ compression: Compression) { self.compression = compression }

    init?(argument: String) {
        guard let c = Compression(parsing: argument) else { return nil }
        compression = c
    }

    static var allValueStrings: [String] { ["none", "gzip", "zstd"] }
    static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
    var defaultValueDescription: String {
        switch compression {
        case .none: return "none"
        case let .gzip(level): return "gzip:\(level)"
        case let .zstd(level): return "zstd:\(level)"
        }
    }
}

/// `--max-bytes SIZE`: a byte count with an optional unit (`20G`, `512M`).
struct ByteCount: ExpressibleByArgument {
    var bytes: Int64

    init?(argument: String) {
        guard let n = parseSize(argument) else { return nil }
        bytes = Int64(clamping: n)
    }
}
