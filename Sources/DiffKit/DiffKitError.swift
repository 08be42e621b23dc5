// The domain errors of DiffKit; system and archive errors keep their own types.
import DiffKitArchive
import DiffKitSystem

/// The errors of walking, diffing, applying and mapping owners; each names the entry or path.
public enum DiffKitError: Error, CustomStringConvertible, Sendable {
    /// An entry whose name or link would leave the target root.
    case breakout(entry: String, reason: String)
    /// A whiteout entry that is refused (`.wh.`, `.wh..`, `.wh...`, or one that names no valid path).
    case invalidWhiteout(entry: String, reason: String)
    /// An entry whose owner (container IDs) the ID map cannot take to host IDs.
    case unmappedID(entry: String, uid: Int, gid: Int)
    /// An entry that cannot be applied: a non-directory naming the root, a hardlink to itself, …
    case unsupportedEntry(entry: String, reason: String)
    /// An ID map range that is not `CONTAINER:HOST:SIZE`.
    case invalidIDMap(String)
    /// A map under which the ownership rule cannot hold (see `IDMap.validate`).
    case unusableIDMap(reason: String)
    /// A host owner outside the ID map, met where a copy would carry it into a layer.
    case ownerOutsideMap(path: String, uid: UInt32, gid: UInt32)
    /// A resource limit of the apply (bytes written) was reached.
    case limitExceeded(entry: String, reason: String)
    /// A failure while applying an entry: the entry, and the error that stopped it.
    case applyFailed(archive: String, entry: String, underlying: any Error)

    /// The error this one wraps, if it wraps one.
    public var underlying: (any Error)? {
        if case let .applyFailed(_, _, u) = self { return u }
        return nil
    }

    /// One line naming the entry or path and the reason.
    public var description: String {
        switch self {
        case let .breakout(e, r): return "entry \(e): refused, it would leave the root (\(r))"
        case let .invalidWhiteout(e, r): return "entry \(e): invalid whiteout (\(r))"
        case let .unmappedID(e, u, g): return "entry \(e): owner \(u):\(g) cannot be mapped to a host ID inside the ID map"
        case let .unsupportedEntry(e, r): return "entry \(e): \(r)"
        case let .limitExceeded(e, r): return "entry \(e): \(r)"
        case let .invalidIDMap(s): return "invalid ID map '\(s)': expected CONTAINER:HOST:SIZE"
        case let .unusableIDMap(r): return "unusable ID map: \(r)"
        case let .ownerOutsideMap(p, u, g): return "\(p): owner \(u):\(g) is outside the ID map"
        case let .applyFailed(a, e, u): return "\(a): entry \(e): \(u)"
        }
    }
}
