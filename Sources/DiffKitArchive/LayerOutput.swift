// Layer output: a tar stream on its way out, compressed (gzip or zstd, through libarchive's
// filters) and digested while it streams (SHA-256 through the system's libcrypto): the
// uncompressed digest is the layer's diffID, the compressed one its blob digest. The tar is
// produced on the calling thread into a pipe; a second thread hashes, compresses and writes,
// so the two cores share the work and memory stays bounded.
import DiffKitSystem
import CArchive
import CCrypto

#if canImport(Glibc)
import Glibc
#endif

/// What an export wrote.
public struct LayerDigests: Sendable, Equatable {
    /// SHA-256 of the uncompressed tar.
    public var diffID: String
    /// SHA-256 of the bytes written (equal to diffID when uncompressed).
    public var digest: String
    /// Bytes written.
    public var size: Int64
    /// Bytes of the uncompressed tar.
    public var uncompressedSize: Int64
    /// The OCI media type of what was written (see ``Compression/mediaType``).
    public var mediaType: String
}

/// Writes a tar stream compressed as asked while computing its diffID and blob digest.
public enum LayerOutput {
    /// Run `produce` with a descriptor to write an uncompressed tar to; what it writes reaches
    /// `fd` compressed as asked, and the digests are returned. Memory is bounded by the pipe.
    public static func write(to fd: Int32, name: String, compression: Compression,
                             progress: (@Sendable (Int64, Int) -> Void)? = nil,
                             _ produce: (Int32) throws -> Void) throws -> LayerDigests {
        let ends = try Sys.pipe(shown: Bytes.of(name))
        let pipefd = [ends.read, ends.write]
        Sys.growPipe(pipefd[1])
        let consumer = Consumer(input: pipefd[0], output: fd, name: name, compression: compression)
        consumer.progress = progress
        // The consumer runs on a thread of its own, read here only after the join. Not a dispatch
        // pool's: `produce` may queue blocking jobs of its own there (the naive diff's), and on
        // 2 cores a third blocked job waited about a second for the pool to grow.
        let thread: SystemThread
        do {
            thread = try SystemThread(shown: Bytes.of(name)) { consumer.run() }
        } catch {
            Sys.close(pipefd[0])
            Sys.close(pipefd[1])
            throw error
        }
        var produced: Error? = nil
        do { try produce(pipefd[1]) } catch { produced = error }
        Sys.close(pipefd[1])
        thread.join()
        Sys.close(pipefd[0])
        if let produced { throw produced }
        if let e = consumer.failure { throw e }
        return consumer.digests(compression)
    }

    private final class Consumer {
        let input: Int32
        let output: Int32
        let name: String
        let compression: Compression
        let tarHash = SHA256()
        let blobHash = SHA256()
        var tarBytes: Int64 = 0
        var blobBytes: Int64 = 0
        var failure: Error?
        var progress: (@Sendable (Int64, Int) -> Void)?

        init(input: Int32, output: Int32, name: String, compression: Compression) {
            self.input = input
            self.output = output
            self.name = name
            self.compression = compression
        }

        func run() {
            let size = 1 << 20
            let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
            defer { buf.deallocate() }
            do {
                // Uncompressed, the blob is the tar: its digest is the diffID, hashed once.
                let hashBlob = compression != .none
                let emit: (UnsafeRawBufferPointer) throws -> Void = { [self] p in
                    if hashBlob { blobHash.update(p) }
                    blobBytes += Int64(p.count)
                    try Sys.writeAll(output, p, shown: name)
                }
                let compressor = compression == .none ? nil : try Compressor(compression, name: name, sink: emit)
                while true {
                    let n = try Sys.read(input, buf, size, shown: Bytes.of(name))
                    if n == 0 { break }
                    let chunk = UnsafeRawBufferPointer(start: buf, count: n)
                    tarHash.update(chunk)
                    tarBytes += Int64(n)
                    progress?(tarBytes, 0)
                    if let compressor { try compressor.write(chunk) } else { try emit(chunk) }
                }
                try compressor?.finish()
            } catch {
                failure = error
                // Keep reading (and dropping) so the producer is never left blocked on the pipe;
                // the failure is reported when it is done.
                while (try? Sys.read(input, buf, size, shown: Bytes.of(name))).map({ $0 > 0 }) ?? false {}
            }
        }

        func digests(_ compression: Compression) -> LayerDigests {
            let diffID = tarHash.finish()
            let blob = compression == .none ? diffID : blobHash.finish()
            return LayerDigests(diffID: diffID, digest: blob, size: blobBytes, uncompressedSize: tarBytes, mediaType: compression.mediaType)
        }
    }
}
