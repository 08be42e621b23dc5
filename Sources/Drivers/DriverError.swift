// The errors of drivers and the layer store.
import DiffKitSystem
import DiffKit

/// The errors of drivers and the layer store; each names the layer, driver or option.
public enum DriverError: Error, CustomStringConvertible {
    /// A driver name that is not one of ``LayerStore/drivers``.
    case unknownDriver(String)
    /// An option the driver does not know or a value it refuses.
    case invalidOption(driver: String, key: String, reason: String)
    /// No layer of that id.
    case layerNotFound(String)
    /// A layer of that id exists already.
    case layerExists(String)
    /// An id that cannot be a directory name (letters, digits, `.`, `_` and `-` only).
    case invalidID(String)
    /// The parent named for a new layer does not exist.
    case parentNotFound(id: String, parent: String)
    /// A layer's parent chain leads back to it.
    case parentLoop(String)
    /// The driver cannot work here (wrong filesystem, missing kernel module, …).
    case notSupported(driver: String, reason: String)
    /// Not supported, found by trying: what was tried (`reason`) and the error it met.
    case notSupportedBecause(driver: String, reason: String, underlying: any Error)
    /// A layer would have more lower layers than the driver can mount.
    case maxDepthExceeded(id: String, limit: Int)
    /// The mount data of a layer does not fit the kernel's limit.
    case mountDataTooLarge(id: String, length: Int)
    /// A removal was asked with an empty id.
    case emptyID
    /// Another process holds the layer (an import, an export, a removal in flight).
    case busy(id: String, reason: String)
    /// A byte-exact export found a file whose content is no longer the imported one.
    case changedSinceImport(id: String, path: String)
    /// A directory given as a store is not one: what was expected there.
    case notAStore(path: String, expected: String)

    /// One line naming the layer, driver or option and the reason.
    public var description: String {
        switch self {
        case let .unknownDriver(n): return "unknown driver '\(n)' (known: \(LayerStore.drivers.joined(separator: ", ")))"
        case let .invalidOption(d, k, r): return "\(d): option '\(k)': \(r)"
        case let .layerNotFound(id): return "layer \(id): not found"
        case let .layerExists(id): return "layer \(id): already exists"
        case let .invalidID(id): return "invalid layer id '\(id)': use letters, digits, '.', '_' or '-'"
        case let .parentNotFound(id, p): return "layer \(id): parent \(p) not found"
        case let .parentLoop(id): return "layer \(id): its parent chain loops back to it"
        case let .notSupported(d, r): return "\(d) is not supported here: \(r)"
        case let .notSupportedBecause(d, r, u): return "\(d) is not supported here: \(r): \(u)"
        case let .maxDepthExceeded(id, n): return "layer \(id): max depth exceeded (at most \(n) lower layers)"
        case let .mountDataTooLarge(id, n): return "layer \(id): cannot mount layer, mount label too large \(n)"
        case .emptyID: return "refusing to remove the directories: id is empty"
        case let .busy(id, r): return "layer \(id): busy: \(r)"
        case let .notAStore(path, expected): return "\(path): not \(expected)"
        case let .changedSinceImport(id, p):
            return "layer \(id): \(p) changed since the import (its content no longer matches the recorded checksum); export with --regenerate"
        }
    }

    /// The error this one wraps, if it wraps one.
    public var underlying: (any Error)? {
        if case let .notSupportedBecause(_, _, u) = self { return u }
        return nil
    }
}
