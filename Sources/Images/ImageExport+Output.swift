// An image export's output, whole or not at all: a directory (OCI layout) or a file (docker
// archive) written under a temporary name beside the destination, every file synced as it is
// finished, the directories and the rename synced at the end. A failure removes the temporary
// output, so nothing half-written is ever at the destination.
import DiffKit
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// The temporary output of one image export and its commit.
final class StagedOutput {
    /// Where the output goes.
    let destination: [UInt8]
    /// Where it is written meanwhile: `DESTINATION.difftool-PID.tmp`, beside it (same filesystem,
    /// so the rename is atomic).
    let temporary: [UInt8]
    let isDirectory: Bool
    /// The archive being written (file output only).
    private(set) var file: Int32 = -1
    /// Directories made below the temporary one, synced at the commit.
    private var directories: [String] = []

    /// Check `destination` and make the temporary output: a directory, or a file open for writing.
    init(destination: [UInt8], directory: Bool) throws {
        self.destination = destination
        self.isDirectory = directory
        temporary = destination + Bytes.of(".difftool-\(getpid()).tmp")
        let shown = Bytes.string(destination)
        if let st = try Sys.lstatIfExists(AT_FDCWD, destination) {
            let kind = st.st_mode & S_IFMT
            if directory {
                guard kind == S_IFDIR else {
                    throw ImageExportError.destinationInUse(path: shown, reason: "exists and is not a directory (an OCI layout is written as a new directory)")
                }
                let fd = try Sys.open(destination, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                defer { Sys.close(fd) }
                guard try Sys.readDirectory(fd, shown: destination).isEmpty else {
                    throw ImageExportError.destinationInUse(path: shown, reason: "exists and is not empty (an OCI layout is written as a new directory)")
                }
            } else if kind != S_IFREG {
                throw ImageExportError.destinationInUse(path: shown, reason: kind == S_IFDIR
                    ? "is a directory (a docker archive is a file)"
                    : "is not a regular file (a docker archive is written to a file and renamed into place)")
            }
        }
        // A temporary output of this name is a killed run's (same pid, earlier boot or namespace).
        try removeTree(AT_FDCWD, temporary)
        if directory {
            try Sys.mkdir(temporary, mode: 0o755)
        } else {
            file = try Sys.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o644)
        }
    }

    deinit { if file >= 0 { Sys.close(file) } }

    /// `temporary/relative`.
    func path(_ relative: String) -> [UInt8] { temporary + Bytes.of("/" + relative) }

    /// Make directory `relative` in the temporary output.
    func makeDirectory(_ relative: String) throws {
        try Sys.mkdir(path(relative), mode: 0o755)
        directories.append(relative)
    }

    /// Create file `relative` (it must not exist) for writing; finish it with `finish(_:_:)`.
    func create(_ relative: String) throws -> Int32 {
        try Sys.open(path(relative), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o644)
    }

    /// Sync and close a file made by `create`; it is closed even when the sync fails.
    func finish(_ fd: Int32, _ relative: String) throws {
        defer { Sys.close(fd) }
        try Sys.fsync(fd, shown: path(relative))
    }

    /// Write file `relative` with `bytes`, synced.
    func write(_ relative: String, _ bytes: [UInt8]) throws {
        let fd = try create(relative)
        do {
            try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, shown: Bytes.string(path(relative))) }
        } catch {
            Sys.close(fd)
            throw error
        }
        try finish(fd, relative)
    }

    /// Rename `from` to `to` within the temporary output (over a blob of the same digest that
    /// two layers of the image share).
    func move(_ from: String, to: String) throws {
        try Sys.rename(path(from), path(to))
    }

    /// Put the output in place: sync what is not synced yet, rename it to the destination, sync
    /// the destination's directory.
    func commit() throws {
        if isDirectory {
            for d in directories.reversed() { try syncDirectory(path(d)) }
            try syncDirectory(temporary)
        } else {
            try Sys.fsync(file, shown: temporary)
            Sys.close(file)
            file = -1
        }
        try Sys.rename(temporary, destination)
        let parent = LayerPath.split(destination).0
        try syncDirectory(!parent.isEmpty ? parent : Bytes.of(destination.first == LayerPath.slash ? "/" : "."))
    }

    /// Remove the temporary output (after a failure); nothing is left of it.
    func discard() {
        if file >= 0 {
            Sys.close(file)
            file = -1
        }
        try? removeTree(AT_FDCWD, temporary)
    }

    private func syncDirectory(_ dir: [UInt8]) throws {
        let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Sys.close(fd) }
        try Sys.fsync(fd, shown: dir)
    }
}
