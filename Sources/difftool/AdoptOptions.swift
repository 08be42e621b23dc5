// `--adopt docker:PATH|containers:PATH`: an engine's own store opened in place, read-only, for
// ls, changes, size, export, mount and umount; and `migrate --from-adopt`. The mounts go below
// DiffKit's own home (`<home>/adopted`), never into the engine's directory.
import ArgumentParser
import DiffKitSystem
import Drivers
import EngineStores

extension StoreOptions {
    /// The adopted store, when `--adopt` was given.
    func adopted() throws -> AdoptedStore? {
        guard let adopt else { return nil }
        return try AdoptOptions.open(adopt, driver: adoptDriver, home: homePath)
    }
}

enum AdoptOptions {
    /// Open `specification` (`docker:PATH`, `containers:PATH`) with its mounts below `home/adopted`.
    static func open(_ specification: String, driver: String?, home: String) throws -> AdoptedStore {
        let (engine, root) = try AdoptedStore.parse(specification)
        return try AdoptedStore(engine: engine, root: root, driver: driver, stateDirectory: FilePath(home + "/adopted"))
    }

    /// The error of a command that needs a DiffKit store of its own.
    static func notAvailable(_ specification: String) -> CLIError {
        CLIError(message: "--adopt \(specification): this command needs a DiffKit store; an adopted store is read-only and takes ls, changes, size, export, mount and umount (and migrate --from-adopt)")
    }

    /// `ls` of an adopted store: id, parent and diffID (`-` where none), or JSON.
    static func list(_ store: AdoptedStore, json: Bool) throws {
        let layers = store.layers.sorted { $0.id < $1.id }
        if json {
            try writeJSON(layers.map { AdoptedLayerJSON(id: $0.id, parent: $0.parent, diffID: $0.diffID, size: $0.size, container: $0.isContainer) })
        } else {
            try writeStdout(layers.map { "\($0.id)\t\($0.parent ?? "-")\t\($0.diffID ?? "-")\n" }.joined())
        }
    }

    /// A migration's source given as `--from-home` must be a DiffKit store of that driver (or,
    /// for aufs, a bare aufs directory): anything else is an error naming what was expected,
    /// and what the directory looks like (an engine's store: use --from-adopt).
    static func checkSource(driver: String, home: String) throws {
        do {
            try Migration.checkSource(driver: driver, home: FilePath(home))
        } catch let e as DriverError {
            guard let hint = AdoptedStore.describe(FilePath(home)) else { throw e }
            let adopt = hint.replacing("use docker:PATH", with: "use --from-adopt docker:PATH")
                .replacing("use containers:PATH", with: "use --from-adopt containers:PATH")
                .replacing("give the data root that holds it", with: "give the data root that holds it to --from-adopt docker:PATH or containers:PATH")
            throw CLIError(message: "\(e); \(adopt)")
        }
    }
}

/// `ls --json` of an adopted store: `parent` and `diffID` are null where there is none.
struct AdoptedLayerJSON: Encodable {
    var id: String
    var parent: String?
    var diffID: String?
    var size: Int64?
    var container: Bool

    enum CodingKeys: String, CodingKey { case id, parent, diffID, size, container }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(parent, forKey: .parent)
        try c.encode(diffID, forKey: .diffID)
        try c.encodeIfPresent(size, forKey: .size)
        try c.encode(container, forKey: .container)
    }
}
