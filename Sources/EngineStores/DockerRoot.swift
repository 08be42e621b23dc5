// A docker data root, read as docker 20.10–28 (graph drivers, not the containerd image store)
// leaves it:
//   image/<driver>/layerdb/sha256/<chainID>/{cache-id,diff,parent,size,tar-split.json.gz}
//   image/<driver>/layerdb/mounts/<containerID>/{mount-id,init-id,parent}
//   <driver>/…   (overlay2/<cache-id>/{diff,link,lower}, overlay2/l/; vfs/dir/<cache-id>;
//                 btrfs/subvolumes/<cache-id>)
// Docker writes a layer's metadata in `layerdb/tmp` and renames it into place, and keeps no lock
// on the data root: reading while dockerd runs sees whole layers only, and takes no lock.
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// Reads the layers of a docker data root.
enum DockerRoot {
    static let drivers = ["overlay2", "vfs", "btrfs"]

    /// The driver and layer records of the data root `root`; `driver` chooses among several.
    static func read(root: [UInt8], driver requested: String?) throws -> (driver: String, records: [EngineLayerRecord]) {
        let shown = Bytes.string(root)
        let image = root + Bytes.of("/image")
        guard EngineFiles.isDirectory(image) else {
            throw EngineStoreError.notAStore(path: shown, expected: "a docker data root (expected image/<driver>/layerdb below it)",
                                             hint: EngineFiles.guess(root))
        }
        let found = try EngineFiles.names(image).filter { EngineFiles.isDirectory(image + Bytes.of("/\($0)/layerdb")) }.sorted()
        let driver = try EngineFiles.choose(found, requested: requested, supported: drivers, path: shown,
                                            what: "a docker data root with layers (image/<driver>/layerdb is missing)")
        let home = root + Bytes.of("/" + driver)
        guard EngineFiles.isDirectory(home) else {
            throw EngineStoreError.notAStore(path: shown, expected: "a docker data root with its \(driver) directory (\(driver)/ is missing)", hint: nil)
        }
        let db = image + Bytes.of("/\(driver)/layerdb")
        var records: [EngineLayerRecord] = []
        var cacheIDs: [String: String] = [:]
        let sha = db + Bytes.of("/sha256")
        for hex in try EngineFiles.names(sha, missingOK: true).sorted() where EngineFiles.isDigestHex(hex) {
            let dir = sha + Bytes.of("/" + hex)
            let cacheID = try EngineFiles.text(dir + Bytes.of("/cache-id"))
            try EngineFiles.checkName(cacheID, in: dir + Bytes.of("/cache-id"))
            let diff = try EngineFiles.text(dir + Bytes.of("/diff"))
            let parent = try EngineFiles.optionalText(dir + Bytes.of("/parent"))
            let size = try EngineFiles.optionalText(dir + Bytes.of("/size")).flatMap { Int64($0) }
            let split = dir + Bytes.of("/tar-split.json.gz")
            cacheIDs["sha256:" + hex] = cacheID
            records.append(EngineLayerRecord(
                layer: AdoptedLayer(id: "sha256:" + hex, parent: parent?.isEmpty == false ? parent : nil, diffID: diff, size: size,
                                    isContainer: false, driverID: cacheID),
                tarSplit: Sys.exists(split) ? split : nil, diffBase: nil))
        }
        for i in records.indices {
            guard let p = records[i].layer.parent else { continue }
            guard let base = cacheIDs[p] else {
                throw EngineStoreError.badRecord(path: Bytes.string(sha) + "/" + records[i].layer.storeID,
                                                 reason: "its parent \(p) is not in the layer database")
            }
            records[i].diffBase = base
        }
        // Containers' writable layers: changes against the init layer (what `docker diff` shows).
        let mounts = db + Bytes.of("/mounts")
        for container in try EngineFiles.names(mounts, missingOK: true).sorted() {
            let dir = mounts + Bytes.of("/" + container)
            guard EngineFiles.isDirectory(dir), let mountID = try EngineFiles.optionalText(dir + Bytes.of("/mount-id")) else { continue }
            try EngineFiles.checkName(mountID, in: dir + Bytes.of("/mount-id"))
            let initID = try EngineFiles.optionalText(dir + Bytes.of("/init-id")).flatMap { $0.isEmpty ? nil : $0 }
            if let initID { try EngineFiles.checkName(initID, in: dir + Bytes.of("/init-id")) }
            let parent = try EngineFiles.optionalText(dir + Bytes.of("/parent")).flatMap { $0.isEmpty ? nil : $0 }
            if let parent, cacheIDs[parent] == nil {
                throw EngineStoreError.badRecord(path: Bytes.string(dir), reason: "its parent \(parent) is not in the layer database")
            }
            records.append(EngineLayerRecord(
                layer: AdoptedLayer(id: container, parent: parent, diffID: nil, size: nil, isContainer: true, driverID: mountID),
                tarSplit: nil, diffBase: initID ?? parent.flatMap { cacheIDs[$0] }))
        }
        return (driver, records)
    }
}
