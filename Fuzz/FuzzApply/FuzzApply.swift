// libFuzzer target: arbitrary bytes applied into a scratch root, with plain and then overlay
// whiteouts, beside a sentinel directory and with a symlink to it in the root (a "lower layer"
// one); the sentinel must stay as it was and nothing may appear beside the root (a breakout traps).
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

let base = "/tmp/diffkit-fuzz-\(getpid())"
let sentinel = base + "/victim/hello"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    for overlay in [false, true] {
        try? removeTree(AT_FDCWD, Bytes.of(base))
        mkdir(base, 0o755)
        mkdir(base + "/root", 0o755)
        mkdir(base + "/victim", 0o755)
        let s = open(sentinel, O_WRONLY | O_CREAT, 0o644)
        _ = write(s, "hello\n", 6)
        close(s)
        symlink(base + "/victim", base + "/root/lower")
        guard let fd = try? Sys.memoryFile(UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
        var options = ApplyOptions(whiteouts: overlay ? .overlay(xattrPrefix: "trusted.") : .plain)
        options.maxBytes = 64 << 20
        options.logger.logLevel = .critical
        _ = try? Layers.apply(root: Bytes.of(base + "/root"), from: fd, name: "fuzz", options: options)
        close(fd)
        var st = stat()
        if lstat(sentinel, &st) != 0 || st.st_size != 6 || st.st_nlink != 1 || st.st_mode != S_IFREG | 0o644 {
            fatalError("breakout: \(sentinel) changed")
        }
        if entries(base) != ["root", "victim"] || entries(base + "/victim") != ["hello"] {
            fatalError("breakout: something appeared beside the root")
        }
    }
    return 0
}

func entries(_ path: String) -> [String] {
    guard let fd = try? Sys.open(Bytes.of(path), O_RDONLY | O_DIRECTORY) else { return [] }
    defer { close(fd) }
    return ((try? Sys.readDirectory(fd, shown: Bytes.of(path))) ?? []).map { Bytes.string($0.name) }.sorted()
}
