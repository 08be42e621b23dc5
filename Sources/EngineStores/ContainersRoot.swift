// A containers/storage root (podman, buildah, CRI-O), read as containers/storage 1.4x leaves it:
//   <driver>-layers/layers.json           the layers: id, parent, diff-digest, diff-size, flags
//   <driver>-layers/volatile-layers.json  layers kept only until reboot (same form)
//   <driver>-layers/<id>.tar-split.gz     the tar-split record of an applied layer
//   <driver>-layers/layers.lock           its lock (fcntl record locks)
//   <driver>/…   (overlay/<id>/{diff,link,lower}, overlay/l/; vfs/dir/<id>; btrfs/subvolumes/<id>)
// The layer list is read under a shared record lock on layers.lock — the lock its own readers
// take, compatible with other readers — held only while the JSON files are read: a writer waits
// for at most that long. A writer holding it is waited for 5 seconds, then adoption is refused.
import DiffKitJSON
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Reads the layers of a containers/storage root.
enum ContainersRoot {
    static let drivers = ["overlay", "vfs", "btrfs"]

    /// One entry of layers.json (fields containers/storage writes that DiffKit does not need are skipped).
    struct Entry: Decodable {
        var id: String
        var parent: String?
        var diffDigest: String?
        var diffSize: Int64?
        var flags: Flags?

        struct Flags: Decodable {
            var incomplete: Bool?
        }

        enum CodingKeys: String, CodingKey {
            case id, parent, flags
            case diffDigest = "diff-digest"
            case diffSize = "diff-size"
        }
    }

    /// How long a writer's lock is waited for.
    static let lockWait = 50

    /// The driver and layer records of the containers/storage root `root`; `driver` chooses among several.
    static func read(root: [UInt8], driver requested: String?) throws -> (driver: String, records: [EngineLayerRecord]) {
        let shown = Bytes.string(root)
        let found = try EngineFiles.names(root, missingOK: false).filter {
            $0.hasSuffix("-layers") && Sys.exists(root + Bytes.of("/\($0)/layers.json"))
        }.map { String($0.dropLast("-layers".count)) }.sorted()
        let driver = try EngineFiles.choose(found, requested: requested, supported: drivers, path: shown,
                                            what: "a containers/storage root (expected <driver>-layers/layers.json below it)",
                                            hint: EngineFiles.guess(root))
        let home = root + Bytes.of("/" + driver)
        guard EngineFiles.isDirectory(home) else {
            throw EngineStoreError.notAStore(path: shown, expected: "a containers/storage root with its \(driver) directory (\(driver)/ is missing)", hint: nil)
        }
        let layersDir = root + Bytes.of("/\(driver)-layers")
        let entries = try withReadLock(layersDir + Bytes.of("/layers.lock")) {
            try decode(layersDir + Bytes.of("/layers.json")) + (try decodeIfPresent(layersDir + Bytes.of("/volatile-layers.json")))
        }
        var records: [EngineLayerRecord] = []
        let known = Set(entries.map(\.id))
        for e in entries where e.flags?.incomplete != true {
            try EngineFiles.checkName(e.id, in: layersDir + Bytes.of("/layers.json"))
            let parent = e.parent.flatMap { $0.isEmpty ? nil : $0 }
            if let parent, !known.contains(parent) {
                throw EngineStoreError.badRecord(path: Bytes.string(layersDir) + "/layers.json", reason: "layer \(e.id): its parent \(parent) is not listed")
            }
            let split = layersDir + Bytes.of("/\(e.id).tar-split.gz")
            let digest = e.diffDigest.flatMap { $0.isEmpty ? nil : $0 }
            records.append(EngineLayerRecord(
                layer: AdoptedLayer(id: e.id, parent: parent, diffID: digest, size: digest == nil ? nil : e.diffSize,
                                    isContainer: digest == nil, driverID: e.id),
                tarSplit: digest != nil && Sys.exists(split) ? split : nil, diffBase: parent))
        }
        return (driver, records.sorted { $0.layer.id < $1.layer.id })
    }

    static func decode(_ path: [UInt8]) throws -> [Entry] {
        let data = try Sys.readFile(path)
        do {
            return try JSONDocument.decode([Entry].self, from: data)
        } catch {
            throw EngineStoreError.badRecord(path: Bytes.string(path), reason: "not a containers/storage layer list: \(error)")
        }
    }

    static func decodeIfPresent(_ path: [UInt8]) throws -> [Entry] {
        Sys.exists(path) ? try decode(path) : []
    }

    /// Run `body` holding a shared fcntl lock on `lockPath` (opened read-only, never created):
    /// what containers/storage's readers hold; a writer's exclusive lock is waited for a while.
    static func withReadLock<R>(_ lockPath: [UInt8], _ body: () throws -> R) throws -> R {
        guard Sys.exists(lockPath) else { return try body() }
        let fd = try Sys.open(lockPath, O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        for attempt in 0... {
            let e = Sys.tryRecordLock(fd, type: Int32(F_RDLCK))
            if e == 0 { break }
            guard e == EAGAIN || e == EACCES else { throw SystemError("fcntl F_SETLK (read lock)", lockPath, errno: e) }
            if attempt >= lockWait { throw EngineStoreError.locked(path: Bytes.string(lockPath)) }
            usleep(100_000)
        }
        defer { _ = Sys.tryRecordLock(fd, type: Int32(F_UNLCK)) }
        return try body()
    }
}
