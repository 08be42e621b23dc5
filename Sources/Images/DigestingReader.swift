// A blob read for an import and hashed on the way: its digest is checked once the import has
// read it, instead of in a read of its own before.
import DiffKitArchive
import DiffKitSystem
import SystemPackage

/// Reads a descriptor to its end, hashing every byte; `finish` reads what the consumer left
/// (bytes after the tar's end) and gives the digest.
final class DigestingReader: LayerReader {
    // @unchecked: the hash and buffer are only touched inside `state.withLock`.
    private struct State: @unchecked Sendable {
        let hash = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    }
    private let fd: FileDescriptor
    private let shown: [UInt8]
    // Called from one thread at a time, not always the same one: behind a lock all the same.
    private let state = Locked(State())

    init(_ fd: FileDescriptor, shown: [UInt8]) {
        self.fd = fd
        self.shown = shown
    }

    deinit { state.withLock { $0.buffer.deallocate() } }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try state.withLock { s in
            let n = try Sys.read(fd.rawValue, buffer.baseAddress!, buffer.count, shown: shown)
            s.hash.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            return n
        }
    }

    /// The rest read and hashed; `sha256:<hex>` of the whole blob.
    func finish() throws -> String {
        try state.withLock { s in
            while true {
                let n = try Sys.read(fd.rawValue, s.buffer.baseAddress!, s.buffer.count, shown: shown)
                if n == 0 { return s.hash.finish() }
                s.hash.update(UnsafeRawBufferPointer(rebasing: s.buffer[..<n]))
            }
        }
    }
}
