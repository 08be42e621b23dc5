// A chain of new layers imported at once (an image's layers, each on the one below), all or
// nothing: every layer is created first, in order; the tars are applied — several at a time
// where the driver writes a fresh layer into a directory of its own (overlay2's diff dir, an
// aufs branch), one after the other where a child starts as a copy or a snapshot of its
// parent's content (vfs, btrfs); the records are written in order at the end. A failure in any
// job stops the others and removes every layer of the chain, so the store is as it was.
//
// What a layer's own directory may take from the layers below: the attributes of a directory
// its tar leaves implicit (an entry whose parent has no entry of its own) come from the nearest
// lower that has it (ApplyOptions.parentTemplates). A tar applied while a layer below was still
// being written could read a lower that is not complete yet; so each tar's entry names are noted
// as it streams, and a layer that left a directory implicit (or whited out one of its own
// entries) and was started before all its lowers were complete is applied again, alone, once
// they are. Tars written by image builders name every directory, so this is the rare case.
import DiffKit
import DiffKitArchive
import DiffKitSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One new layer of a chain for ``LayerStore/importChain(_:on:jobs:createOptions:)``.
package struct ChainLayer: Sendable {
    /// The new layer's id.
    package var id: String
    /// What messages call its tar.
    package var name: String
    /// Options of its apply (progress, logger, limits; cancellation is added).
    package var options: ApplyOptions
    /// Opens the layer's tar and calls `apply` with it (once, or twice for a layer applied again);
    /// may check what it read afterwards (a blob digest, the diffID) and throw.
    package var read: @Sendable (_ apply: (LayerSource) throws -> LayerImport) throws -> LayerImport

    /// A layer `id` whose tar `read` provides.
    package init(id: String, name: String, options: ApplyOptions = ApplyOptions(),
                 read: @escaping @Sendable (_ apply: (LayerSource) throws -> LayerImport) throws -> LayerImport) {
        self.id = id
        self.name = name
        self.options = options
        self.read = read
    }
}

/// What ``LayerStore/importChain(_:on:jobs:createOptions:)`` did.
package struct ChainImport: Sendable {
    /// Each layer's import, in chain order.
    package var layers: [LayerImport]
    /// Whether the driver let the tars be applied at once (each new layer has a directory of its
    /// own that does not start from its parent's content).
    package var concurrent: Bool
    /// How many tars were applied at once at most (1: one after the other).
    package var mostAtOnce: Int
    /// The layers applied a second time (see the file's header).
    package var appliedAgain: [String]
}

extension LayerStore {
    /// Import `layers` as a chain on `parent` (nil: the first is a base layer): layer k's parent is
    /// layer k-1. Up to `jobs` tars are applied at once where the driver allows it (it writes each
    /// fresh layer into a directory of its own: overlay2, aufs; not vfs or btrfs); the records
    /// are written in order once every tar is in.
    /// All or nothing: on any failure (of a job, or thrown by a layer's `read`) the other jobs
    /// stop before their next entry, every layer of the chain is removed, and the first failure is
    /// thrown. The new layers are locked for the whole import and the parent locked shared, as
    /// for ``importLayer(id:parent:from:name:options:createOptions:)``.
    package func importChain(_ layers: [ChainLayer], on parent: String?, jobs: Int,
                             createOptions: [String: String] = [:]) throws -> ChainImport {
        guard !layers.isEmpty else { return ChainImport(layers: [], concurrent: false, mostAtOnce: 0, appliedAgain: []) }
        var locks: [Int32] = []
        defer { locks.forEach(Sys.close) }
        var marked: [String] = []
        do {
            try withLock {
                var seen = Set<String>()
                for l in layers {
                    try validate(id: l.id)
                    guard seen.insert(l.id).inserted else { throw DriverError.layerExists(l.id) }
                    if try Sys.exists(incompletePath(l.id)) && !removeIfAbandoned(l.id) {
                        throw DriverError.busy(id: l.id, reason: "another process is creating it")
                    }
                    if driver.exists(id: l.id) || (try? record(l.id)) != nil { throw DriverError.layerExists(l.id) }
                }
                if let parent {
                    try validate(id: parent)
                    guard (try? record(parent)) != nil, driver.exists(id: parent) else {
                        throw DriverError.parentNotFound(id: layers[0].id, parent: parent)
                    }
                    guard let p = try lockLayerSoon(parent, exclusive: false) else {
                        throw DriverError.busy(id: parent, reason: "another process is removing it")
                    }
                    locks.append(p)
                }
                var below = parent
                for l in layers {
                    guard let own = try lockLayerSoon(l.id, exclusive: true) else {
                        throw DriverError.busy(id: l.id, reason: "another process is creating it")
                    }
                    locks.append(own)
                    try writeFileAtomically(incompletePath(l.id), Bytes.of(below.map { "parent=\($0)\n" } ?? ""))
                    marked.append(l.id)
                    below = l.id
                }
            }
            // Where the driver takes a fresh layer's tar into a directory of its own (not a copy
            // or snapshot of its parent's content), every layer is created now and the tars go
            // in at once; otherwise each layer is created on its parent once that is complete.
            try driver.create(id: layers[0].id, parent: parent, options: createOptions)
            var createdAll = layers.count == 1
            var concurrent = false
            if jobs > 1 && layers.count > 1 && !driver.layersAreSnapshots, try driver.applyDirectory(id: layers[0].id) != nil {
                for k in layers.indices.dropFirst() {
                    try driver.create(id: layers[k].id, parent: layers[k - 1].id, options: createOptions)
                }
                createdAll = true
                concurrent = try layers.allSatisfy { try driver.applyDirectory(id: $0.id) != nil }
            }
            let run = ChainRun(layers, parent: parent, createOptions: createdAll ? nil : createOptions)
            let workers = concurrent ? max(1, min(jobs, layers.count)) : 1
            let active = Condition(0)
            for _ in 1..<workers {
                // A thread that cannot be had leaves its share to the others.
                guard let t = try? SystemThread(shown: Bytes.of(layers[0].name), {
                    self.work(run)
                    active.withLock { $0 -= 1 }
                    active.broadcast()
                }) else { break }
                active.withLock { $0 += 1 }
                t.detach()
            }
            work(run)
            active.wait(until: { $0 == 0 }, then: { _ in })
            var outcome = run.state.withLock { $0 }
            if let failure = outcome.failure { throw failure }
            // A layer that read a lower before it was complete is applied again, in order; so is
            // one that read a lower which is applied again.
            var again: [String] = []
            for k in layers.indices where outcome.dependsOnLowers[k] && (!outcome.startedAfterLowers[k] || !again.isEmpty) {
                try clearOwnDirectory(layers[k].id)
                let (record, made, _) = try applyOne(layers[k], parent: k == 0 ? parent : layers[k - 1].id, cancelled: nil)
                outcome.records[k] = record
                outcome.imports[k] = made
                again.append(layers[k].id)
            }
            try withLock {
                for k in layers.indices {
                    try self.write(outcome.records[k]!)
                    try? Sys.unlink(incompletePath(layers[k].id))
                }
            }
            return ChainImport(layers: outcome.imports.map { $0! }, concurrent: concurrent, mostAtOnce: outcome.mostAtOnce,
                               appliedAgain: again)
        } catch {
            try? withLock {
                for id in marked.reversed() {
                    if driver.exists(id: id) { try? driver.remove(id: id) }
                    forgetFiles(id)
                }
            }
            throw error
        }
    }

    /// One worker: takes the next layer in chain order until none is left or one failed.
    private func work(_ run: ChainRun) {
        let layers = run.layers
        while true {
            let next: Int? = run.state.withLock { s in
                guard s.failure == nil, s.next < layers.count else { return nil }
                let k = s.next
                s.next += 1
                s.startedAfterLowers[k] = s.done[..<k].allSatisfy { $0 }
                s.running += 1
                s.mostAtOnce = max(s.mostAtOnce, s.running)
                return k
            }
            guard let k = next else { return }
            do {
                if k > 0, let createOptions = run.createOptions {
                    try driver.create(id: layers[k].id, parent: layers[k - 1].id, options: createOptions)
                }
                let (record, made, dependsOnLowers) = try applyOne(layers[k], parent: k == 0 ? run.parent : layers[k - 1].id,
                                                                   cancelled: { run.state.withLock { $0.failure != nil } })
                run.state.withLock { s in
                    s.running -= 1
                    s.done[k] = true
                    s.records[k] = record
                    s.imports[k] = made
                    s.dependsOnLowers[k] = dependsOnLowers
                }
            } catch {
                // The first failure is the one reported; the others' stops follow from it.
                run.state.withLock { s in
                    s.running -= 1
                    if s.failure == nil { s.failure = error }
                }
                return
            }
        }
    }

    /// Apply layer `l`'s tar to its (created, empty) layer: the diffID, the tar-split record and
    /// the tree stamp, as ``importLayer(id:parent:from:name:options:createOptions:)`` keeps them;
    /// the record is returned, not written. Also: whether the tar leaves a directory implicit.
    private func applyOne(_ l: ChainLayer, parent: String?, cancelled: (@Sendable () -> Bool)?)
        throws -> (LayerRecord, LayerImport, Bool) {
        var options = l.options
        if let cancelled {
            let own = options.isCancelled
            options.isCancelled = { cancelled() || own?() == true }
        }
        var result: (LayerRecord, Bool)? = nil
        let made = try l.read { source in
            var names: EntryNames? = nil
            let record = try applyRecorded(id: l.id, parent: parent, from: source, name: l.name, options: options) { split in
                let watched = EntryNames(forwardingTo: split)
                names = watched
                return watched
            }
            result = (record, names?.leavesDirectoriesImplicit ?? false)
            return LayerImport(id: l.id, size: record.appliedSize ?? 0, diffID: record.diffID!)
        }
        guard let result else {
            throw DriverError.invalidOption(driver: driver.name, key: l.id, reason: "the layer's tar was never applied")
        }
        return (result.0, made, result.1)
    }

    /// Empty a layer's own directory (its branch) so its tar can be applied again.
    private func clearOwnDirectory(_ id: String) throws {
        try? Sys.unlink(tarSplitPath(id))
        guard let dir = try driver.branch(id: id).map({ Bytes.of($0.directory) }) else {
            throw DriverError.notSupported(driver: driver.name, reason: "layer \(id) has no directory of its own to apply again")
        }
        let fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Sys.close(fd) }
        for e in try Sys.readDirectory(fd, shown: dir) { try removeTree(fd, e.name) }
    }
}

/// The shared state of one chain import's workers.
private final class ChainRun: Sendable {
    struct State {
        var next = 0
        var running = 0
        var mostAtOnce = 0
        var done: [Bool]
        var startedAfterLowers: [Bool]
        var dependsOnLowers: [Bool]
        var records: [LayerRecord?]
        var imports: [LayerImport?]
        var failure: (any Error)?
    }

    let layers: [ChainLayer]
    let parent: String?
    /// The options to create each layer but the first with, just before its apply; nil when
    /// every layer was created before.
    let createOptions: [String: String]?
    let state: Locked<State>

    init(_ layers: [ChainLayer], parent: String?, createOptions: [String: String]?) {
        self.layers = layers
        self.parent = parent
        self.createOptions = createOptions
        let n = layers.count
        state = Locked(State(done: .init(repeating: false, count: n), startedAfterLowers: .init(repeating: false, count: n),
                             dependsOnLowers: .init(repeating: false, count: n), records: .init(repeating: nil, count: n),
                             imports: .init(repeating: nil, count: n)))
    }
}

/// A recorder in front of the tar-split writer that notes every entry's name, to tell whether
/// the tar leaves a directory implicit: an entry whose parent directory has no entry of its own,
/// or a whiteout of one of the layer's own entries (after which a later entry could recreate it
/// implicitly). Names are compared as paths (`./a/b/` is `a/b`).
final class EntryNames: TarStreamRecorder {
    private let next: any TarStreamRecorder
    private var names = Set<[UInt8]>()
    private var whiteouts: [[UInt8]] = []
    private var unusual = false

    init(forwardingTo next: any TarStreamRecorder) { self.next = next }

    func raw(_ bytes: UnsafeRawBufferPointer) throws { try next.raw(bytes) }
    func beginFile(name: [UInt8], size: Int64) throws { try next.beginFile(name: name, size: size) }
    func endFile(crc: UInt32) throws { try next.endFile(crc: crc) }
    func invalidate(_ reason: String) { next.invalidate(reason) }

    func entry(name: [UInt8]) {
        next.entry(name: name)
        let parts = name.split(separator: UInt8(ascii: "/")).filter { $0 != [UInt8(ascii: ".")] }
        if parts.contains(where: { $0.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) }) { unusual = true }
        guard let last = parts.last else { return }
        let path = Array(parts.joined(separator: [UInt8(ascii: "/")]))
        let wh = Bytes.of(".wh.")
        if last.starts(with: wh) && !last.starts(with: wh + wh) {
            whiteouts.append(Array((parts.dropLast().map(Array.init) + [Array(last.dropFirst(wh.count))]).joined(separator: [UInt8(ascii: "/")])))
        }
        names.insert(path)
    }

    /// Whether some directory of the layer takes its attributes from the layers below.
    var leavesDirectoriesImplicit: Bool {
        if unusual { return true }
        for name in names {
            var parent = name
            while let slash = parent.lastIndex(of: UInt8(ascii: "/")) {
                parent = Array(parent[..<slash])
                if !names.contains(parent) { return true }
            }
        }
        return whiteouts.contains(where: names.contains)
    }
}
