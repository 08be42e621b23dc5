// LayerStore's imports: a new layer created on its parent and a tar applied to it, all or
// nothing (the incomplete marker and the layer's lock make a failed or killed import leave no
// layer behind), with the tar-split record kept for a byte-exact export later.
import DiffKitArchive
import DiffKitSystem
import SystemPackage
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

extension LayerStore {
    /// Create an empty layer on `parent`; with `template`, a layer with the template's content
    /// (containers/storage's CreateFromTemplate).
    public func create(id: String, parent: String?, options: [String: String] = [:], readWrite: Bool = false,
                       template: String? = nil) throws {
        try withLock {
            try checkNew(id, parent)
            if let template {
                try validate(id: template)
                guard (try? record(template)) != nil else { throw DriverError.layerNotFound(template) }
            }
            try writeFileAtomically(incompletePath(id), [])
            if let template {
                try driver.createFromTemplate(id: id, template: template, parent: parent, readWrite: readWrite, options: options)
            } else if readWrite {
                try driver.createReadWrite(id: id, parent: parent, options: options)
            } else {
                try driver.create(id: id, parent: parent, options: options)
            }
            try write(LayerRecord(id: id, parent: parent, template: template))
            try? Sys.unlink(incompletePath(id))
        }
    }

    private func checkNew(_ id: String, _ parent: String?) throws {
        try validate(id: id)
        if try Sys.exists(incompletePath(id)) && !removeIfAbandoned(id) {
            throw DriverError.busy(id: id, reason: "another process is creating it")
        }
        if driver.exists(id: id) || (try? record(id)) != nil { throw DriverError.layerExists(id) }
        if let parent {
            try validate(id: parent)
            guard (try? record(parent)) != nil, driver.exists(id: parent) else {
                throw DriverError.parentNotFound(id: id, parent: parent)
            }
        }
    }

    /// Create layer `id` on `parent` and apply the tar from `fd` to it (see the `LayerSource` form).
    package func importLayer(id: String, parent: String?, from fd: Int32, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> LayerImport {
        try importLayer(id: id, parent: parent, from: .descriptor(FileDescriptor(rawValue: fd)), name: name, options: options, createOptions: createOptions)
    }

    /// Create layer `id` on `parent` and apply the tar from `source` to it. All or nothing: on any
    /// failure the layer is removed, and an import killed midway is removed at the next open
    /// (its lock, held for the whole import, dies with it). The parent stays locked shared
    /// meanwhile, so no other process can remove it.
    public func importLayer(id: String, parent: String?, from source: LayerSource, name: String,
                            options: ApplyOptions = ApplyOptions(), createOptions: [String: String] = [:]) throws -> LayerImport {
        var locks: [Int32] = []
        defer { locks.forEach(Sys.close) }
        try withLock {
            try checkNew(id, parent)
            guard let own = try lockLayerSoon(id, exclusive: true) else {
                throw DriverError.busy(id: id, reason: "another process is creating it")
            }
            locks.append(own)
            if let parent {
                guard let p = try lockLayerSoon(parent, exclusive: false) else {
                    throw DriverError.busy(id: parent, reason: "another process is removing it")
                }
                locks.append(p)
            }
            try writeFileAtomically(incompletePath(id), Bytes.of(parent.map { "parent=\($0)\n" } ?? ""))
        }
        do {
            try driver.create(id: id, parent: parent, options: createOptions)
            let record = try applyRecorded(id: id, parent: parent, from: source, name: name, options: options)
            try withLock {
                try write(record)
                try? Sys.unlink(incompletePath(id))
            }
            return LayerImport(id: id, size: record.appliedSize ?? 0, diffID: record.diffID!)
        } catch {
            try? withLock {
                if driver.exists(id: id) { try? driver.remove(id: id) }
                forgetFiles(id)
            }
            throw error
        }
    }

    /// Apply the tar of `source` to the created, empty layer `id`, keeping what a later byte-exact
    /// export needs: the diffID, the tar-split record (renamed into place) and the tree stamp.
    /// The record is returned, not written. `recorder` may wrap the tar-split writer to watch the
    /// entries as they pass.
    func applyRecorded(id: String, parent: String?, from source: LayerSource, name: String, options: ApplyOptions,
                       recorder: (TarSplitWriter) -> any TarStreamRecorder = { $0 }) throws -> LayerRecord {
        let splitTmp = tarSplitPath(id) + Bytes.of(".tmp")
        let stream = try TarStream(source: source, name: name)
        let digest = SHA256()
        stream.digest = digest
        let splitFd = try Sys.open(splitTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { Sys.close(splitFd) }
        let split = try TarSplitWriter(fd: splitFd, name: Bytes.string(splitTmp))
        stream.recorder = recorder(split)
        let reader = try TarReader(stream: stream, name: name)
        let size = try driver.applyDiff(id: id, from: reader, name: name, options: options)
        try split.finish()
        var record = LayerRecord(id: id, parent: parent, appliedSize: size, diffID: digest.finish())
        if let reason = split.invalidReason {
            options.logger.warning("\(name): the layer cannot be exported byte for byte later: \(reason)")
            try? Sys.unlink(splitTmp)
        } else {
            try? Sys.fsync(splitFd, shown: splitTmp)
            record.stamp = try stamp(id)
            try Sys.rename(splitTmp, tarSplitPath(id))
        }
        return record
    }

    /// The TreeStamp of the layer's own files: its branch (union drivers) or its directory.
    func stamp(_ id: String) throws -> String {
        if let b = try driver.branch(id: id) { return try TreeStamp.of(b.directoryBytes) }
        let dir = try driver.getBytes(id: id)
        defer { try? driver.put(id: id) }
        return try TreeStamp.of(dir)
    }
}

/// What an import made: the layer, the bytes its files take (the applied size) and the diffID
/// (SHA-256 of the uncompressed tar).
public struct LayerImport: Sendable, Equatable {
    /// The new layer's id.
    public var id: String
    /// The applied size in bytes (see ``Driver/applyDiff(id:from:name:options:)``).
    public var size: Int64
    /// `sha256:<hex>` of the uncompressed tar that was imported.
    public var diffID: String
}
