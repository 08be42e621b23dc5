// The errors of adopting an engine's store; each names the path, the layer or what was expected.

/// Why an engine's store cannot be adopted or read; each names the path or layer and what was expected.
public enum EngineStoreError: Error, CustomStringConvertible, Equatable {
    /// `--adopt` wants `docker:PATH` or `containers:PATH`.
    case badSpecification(String)
    /// The directory is not a store of that engine: what was expected there, and what it looks like instead.
    case notAStore(path: String, expected: String, hint: String?)
    /// The store keeps its layers on a driver DiffKit cannot read.
    case unsupportedDriver(path: String, driver: String, supported: [String])
    /// The store has layers of several drivers: one must be chosen.
    case severalDrivers(path: String, found: [String])
    /// A metadata file of the store could not be read or parsed.
    case badRecord(path: String, reason: String)
    /// No layer of that id in the store.
    case layerNotFound(String)
    /// The engine holds its store's lock for writing.
    case locked(path: String)
    /// An operation that would write into the engine's store.
    case readOnly(String)
    /// A directory DiffKit would write to lies inside the engine's store.
    case stateInsideStore(state: String, store: String)
    /// A file changed while a byte-exact export was being written.
    case changedDuringExport(id: String, path: String)

    /// One line naming the path or layer and what was expected.
    public var description: String {
        switch self {
        case let .badSpecification(s):
            return "--adopt '\(s)': expected docker:PATH (a docker data root such as /var/lib/docker) or containers:PATH (a containers/storage root such as /var/lib/containers/storage)"
        case let .notAStore(path, expected, hint):
            return "\(path): not \(expected)" + (hint.map { "; \($0)" } ?? "")
        case let .unsupportedDriver(path, driver, supported):
            return "\(path): layers on the '\(driver)' driver cannot be read (supported: \(supported.joined(separator: ", ")))"
        case let .severalDrivers(path, found):
            return "\(path): holds layers of several drivers (\(found.joined(separator: ", "))); choose one with --adopt-driver"
        case let .badRecord(path, reason):
            return "\(path): \(reason)"
        case let .layerNotFound(id):
            return "layer \(id): not found in the adopted store"
        case let .locked(path):
            return "\(path): the engine holds this lock for writing; try again when it is done"
        case let .readOnly(what):
            return "an adopted store is read-only: \(what) would write into the engine's store"
        case let .stateInsideStore(state, store):
            return "\(state): DiffKit's own directory (mounts) must not be inside the adopted store \(store)"
        case let .changedDuringExport(id, path):
            return "layer \(id): \(path) changed while it was exported; export again"
        }
    }
}
