// libFuzzer target: arbitrary bytes through TarStream and libarchive, every entry's data read.
// Any crash, hang or unbounded allocation is a bug; errors are the expected outcome.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let fd = try? Sys.memoryFile(UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    defer { close(fd) }
    guard let reader = try? TarReader(fd: fd, name: "fuzz") else { return 0 }
    do {
        while let h = try reader.next() {
            _ = h.displayName
            try reader.readData { _, _ in }
        }
    } catch {}
    return 0
}
