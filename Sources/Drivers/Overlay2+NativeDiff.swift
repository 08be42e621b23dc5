// overlay2's native diff beyond moby's: `overlay2.mountopt` (containers/storage's option for
// extra layer mount options), and uppers holding redirected directories and metadata-only
// copy-ups (`redirect_dir=on`, `metacopy=on`), read through the layer's mounted view where the
// upper alone does not hold the content. A layer whose upper cannot be read so is diffed
// naively, with the reason logged.
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Logging

extension Overlay2Driver {
    /// Options the layer mounts take from `overlay2.mountopt`: a comma-separated list; the
    /// directories and `userxattr` are the driver's own and refused.
    static func parseMountOptions(_ value: String, key: String) throws -> [String] {
        let list = value.split(separator: ",").map { String($0).trimmingCharacters(in: [" "]) }.filter { !$0.isEmpty }
        for o in list {
            let name = o.split(separator: "=", maxSplits: 1).first.map(String.init) ?? o
            if ["lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+", "userxattr"].contains(name) {
                throw DriverError.invalidOption(driver: "overlay2", key: key, reason: "\(name) is set by the driver")
            }
        }
        return list
    }

    /// The native diff reads renamed directories and metadata-only copy-ups through the mounts.
    var readsThroughViews: Bool { !upperFeatures.isEmpty }

    /// Why the upper of layer `id`, as `scan` found it, cannot be read natively; nil when it can.
    func nativeProblem(_ scan: OverlayUpperScan) -> String? {
        if let p = scan.problem { return p }
        if scan.needsView && !readsThroughViews {
            return "the upper holds renamed directories or metadata-only copy-ups, and this store's mounts make neither (see overlay2.mountopt)"
        }
        return nil
    }

    /// Log that layer `id` is diffed by comparing the mounted trees, and why.
    func warnNaive(_ message: String) {
        Logger(label: "diffkit").warning("overlay2: \(message)")
    }

    /// The native export of layer `id` from its upper `d`: the upper is scanned first, and read
    /// through the mounted view where it holds redirects or metacopy files; an upper that cannot
    /// be read so is exported naively, with a warning.
    func exportUpper(id: String, parent: String?, _ d: LayerDiffDirectory, to fd: Int32, name: String, options: ExportOptions) throws {
        let scan = try OverlayUpperScan.of(upper: d.directoryBytes, xattrPrefix: xattrPrefix)
        if let why = nativeProblem(scan) {
            options.logger.warning("overlay2: layer \(id): native diff not in use: \(why); comparing the mounted trees")
            return try naiveDiff(id: id, parent: parent, to: fd, name: name, options: options)
        }
        var options = options
        options.idMap = idMap
        var view: [UInt8]? = nil
        defer { if view != nil { try? put(id: id) } }
        let writer = LayerWriter(tar: TarWriter(fd: fd, name: name), root: d.directoryBytes, options: options)
        try writer.writeOverlayUpper(d.directoryBytes, prefix: xattrPrefix, scan: scan) {
            if let view { return view }
            let v = try self.getBytes(id: id)
            view = v
            return v
        }
    }

    /// Changes of layer `id` from its upper `d` when the mounts make redirects or metacopy
    /// files: entries are looked up in the parent's mounted view and redirected directories
    /// compared through both views.
    func upperChanges(id: String, parent: String?, _ d: LayerDiffDirectory) throws -> [Change] {
        try withLayers(id, parent) { layer, parentView in
            try BranchChanges.changes(upper: d.directoryBytes, xattrPrefix: xattrPrefix, parentView: parentView, layerView: layer)
        }
    }
}
