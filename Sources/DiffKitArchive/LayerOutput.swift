// Layer output: a tar stream on its way out, compressed (gzip or zstd, through libarchive's
// filters) and digested while it streams (SHA-256 through the system's libcrypto): the
// uncompressed digest is the layer's diffID, the compressed one its blob digest. The tar is
// produced on the calling thread into buffers handed by reference (OutputChannel) to a second
// thread that hashes, compresses and writes, so the two cores share the work and memory stays
// bounded.
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

    /// Digests known otherwise (a byte-exact export takes its diffID from the layer's record).
    public init(diffID: String, digest: String, size: Int64, uncompressedSize: Int64, mediaType: String) {
        self.diffID = diffID
        self.digest = digest
        self.size = size
        self.uncompressedSize = uncompressedSize
        self.mediaType = mediaType
    }
}

/// Writes a tar stream compressed as asked while computing its diffID and blob digest.
public enum LayerOutput {
    /// Run `produce` with a descriptor to write an uncompressed tar to; what it writes reaches
    /// `fd` compressed as asked, and the digests are returned. Memory is bounded: eight 1 MiB
    /// buffers and the pipe.
    ///
    /// A ``TarWriter`` made on that descriptor hands its buffers over by reference (no copy
    /// through the pipe); anything else written there goes through the pipe. `diffID`, when the
    /// caller already knows it, is taken as the uncompressed digest instead of hashing the tar.
    public static func write(to fd: Int32, name: String, compression: Compression, diffID: String? = nil,
                             progress: (@Sendable (Int64, Int) -> Void)? = nil,
                             _ produce: (Int32) throws -> Void) throws -> LayerDigests {
        let ends = try Sys.pipe(shown: Bytes.of(name))
        Sys.growPipe(ends.write)
        // Uncompressed, the producer writes each buffer to `fd` itself and the other core hashes
        // it: the producer's reads and the write's copy on one side, SHA-256 on the other.
        let channel = OutputChannel(output: fd, writerWrites: compression == .none)
        let consumer = Consumer(channel: channel, name: name, compression: compression, hashTar: diffID == nil)
        consumer.progress = progress
        // The threads are the output's own, read here only after their joins. Not a dispatch
        // pool's: `produce` may queue blocking jobs of its own there (the naive diff's), and on
        // 2 cores a third blocked job waited about a second for the pool to grow.
        let hashing: SystemThread
        do {
            hashing = try SystemThread(shown: Bytes.of(name)) { consumer.run() }
        } catch {
            Sys.close(ends.read)
            Sys.close(ends.write)
            throw error
        }
        let reading: SystemThread
        do {
            reading = try SystemThread(shown: Bytes.of(name)) { PipeReader.run(ends.read, channel, name) }
        } catch {
            channel.end(.pipe)
            channel.end(.writer)
            hashing.join()
            Sys.close(ends.read)
            Sys.close(ends.write)
            throw error
        }
        channel.attach(to: ends.write)
        var produced: Error? = nil
        do { try produce(ends.write) } catch { produced = error }
        channel.detach(from: ends.write)
        channel.end(.writer)
        Sys.close(ends.write)
        reading.join()
        hashing.join()
        Sys.close(ends.read)
        if let produced { throw produced }
        if let e = consumer.failure { throw e }
        return consumer.digests(compression, diffID: diffID)
    }

    /// Reads what reached the pipe into the channel's buffers, until the pipe's end.
    private enum PipeReader {
        static func run(_ input: Int32, _ channel: OutputChannel, _ name: String) {
            defer { channel.end(.pipe) }
            while true {
                let buf = channel.take()
                guard let n = try? Sys.read(input, buf, channel.bufferSize, shown: Bytes.of(name)), n > 0 else {
                    channel.giveBack(buf)
                    return
                }
                // After a failure, keep reading (and dropping) so the producer is never left
                // blocked on the pipe; the failure is reported when it is done.
                try? channel.submit(buf, count: n, written: false, from: .pipe)
            }
        }
    }

    private final class Consumer {
        let channel: OutputChannel
        let name: String
        let compression: Compression
        let tarHash: SHA256?
        let blobHash = SHA256()
        var tarBytes: Int64 = 0
        var blobBytes: Int64 = 0
        var failure: Error?
        var progress: (@Sendable (Int64, Int) -> Void)?

        init(channel: OutputChannel, name: String, compression: Compression, hashTar: Bool) {
            self.channel = channel
            self.name = name
            self.compression = compression
            tarHash = hashTar ? SHA256() : nil
        }

        func run() {
            let output = channel.output
            do {
                // Uncompressed, the blob is the tar: its digest is the diffID, hashed once.
                let hashBlob = compression != .none
                let emit: (UnsafeRawBufferPointer) throws -> Void = { [self] p in
                    if hashBlob { blobHash.update(p) }
                    blobBytes += Int64(p.count)
                    try Sys.writeAll(output, p, shown: name)
                }
                let compressor = compression == .none ? nil : try Compressor(compression, name: name, sink: emit)
                while let f = channel.next() {
                    defer { channel.consumed(f) }
                    let chunk = UnsafeRawBufferPointer(start: f.base, count: f.count)
                    tarHash?.update(chunk)
                    tarBytes += Int64(f.count)
                    progress?(tarBytes, 0)
                    if let compressor {
                        try compressor.write(chunk)
                    } else if f.written {
                        blobBytes += Int64(f.count)
                    } else {
                        try emit(chunk)
                    }
                }
                try compressor?.finish()
            } catch {
                failure = error
                channel.fail(error)
                while let f = channel.next() { channel.consumed(f) }
            }
        }

        func digests(_ compression: Compression, diffID known: String?) -> LayerDigests {
            let diffID = known ?? tarHash!.finish()
            let blob = compression == .none ? diffID : blobHash.finish()
            return LayerDigests(diffID: diffID, digest: blob, size: blobBytes, uncompressedSize: tarBytes, mediaType: compression.mediaType)
        }
    }
}
