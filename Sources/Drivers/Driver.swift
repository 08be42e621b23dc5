// The driver contract (BEHAVIOUR.md §7.1). A driver is "where the layer directories are";
// the diff operations come from one shared implementation (NaiveDiff) on top of get/put.
import ArchiveBridge
import DiffKit

public protocol Driver: AnyObject {
    /// `vfs`, `overlay2`, `btrfs`, `aufs`.
    var name: String { get }
    var home: [UInt8] { get }
    /// How this driver stores deletions on disk.
    var whiteoutForm: WhiteoutForm { get }
    /// Owner of layer roots (the ID map's root pair).
    var idMap: IDMap { get }

    func create(id: String, parent: String?, options: [String: String]) throws
    func createReadWrite(id: String, parent: String?, options: [String: String]) throws
    func remove(id: String) throws
    /// The layer's root directory, ready to read (mounted if needed); reference counted.
    func get(id: String) throws -> [UInt8]
    func put(id: String) throws
    func exists(id: String) -> Bool
    func status() -> [(String, String)]
    func metadata(id: String) throws -> [String: String]
    func cleanup() throws
}

public enum DriverError: Error, CustomStringConvertible {
    case unknownDriver(String)
    case invalidOption(driver: String, key: String, reason: String)
    case layerNotFound(String)
    case layerExists(String)
    case invalidID(String)
    case parentNotFound(id: String, parent: String)
    case inUse(String)

    public var description: String {
        switch self {
        case let .unknownDriver(n): return "unknown driver '\(n)' (known: vfs)"
        case let .invalidOption(d, k, r): return "\(d): option '\(k)': \(r)"
        case let .layerNotFound(id): return "layer \(id): not found"
        case let .layerExists(id): return "layer \(id): already exists"
        case let .invalidID(id): return "invalid layer id '\(id)': use letters, digits, '.', '_' or '-'"
        case let .parentNotFound(id, p): return "layer \(id): parent \(p) not found"
        case let .inUse(id): return "layer \(id): in use"
        }
    }
}

/// Layer ids become directory names: no separators, no dot-only names.
func validate(id: String) throws {
    guard !id.isEmpty, id != ".", id != "..", id.count <= 255,
          id.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
              || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") })
    else { throw DriverError.invalidID(id) }
}

/// Per-id reference counts for get/put (DRV-RC-1), safe across threads.
public final class RefCounter: @unchecked Sendable {
    private var counts: [String: Int] = [:]
    private let lock = NSLockish()

    public init() {}

    /// Returns the new count.
    public func increment(_ id: String) -> Int { lock.withLock { counts[id, default: 0] += 1; return counts[id]! } }

    /// Returns the new count (never below 0).
    public func decrement(_ id: String) -> Int {
        lock.withLock {
            let n = max(0, counts[id, default: 0] - 1)
            if n == 0 { counts[id] = nil } else { counts[id] = n }
            return n
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex (no Foundation in the library).
final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
