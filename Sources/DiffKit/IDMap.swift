// ID maps (moby's pkg/idtools IdentityMapping): container↔host ranges for user namespaces. Import maps
// container→host, export maps host→container.
//
// The ownership rule: under a (non-identity) map, every inode an apply, a store import, a layer
// create or a migration makes or changes is owned by host IDs inside the map. Entries with an
// owner the map cannot take are refused; inodes without an owner of their own in the stream
// (implicit parent directories, a layer's root) get the mapped root pair, or copy a lower
// directory's owner only where that owner is inside the map. `validate()` refuses the maps
// under which that cannot hold.

/// One range of an ID map: `size` IDs from `containerID` in the container are `hostID`… on the host.
public struct IDRange: Sendable, Equatable {
    /// The first ID of the range inside the container.
    public var containerID: UInt32
    /// The host ID that `containerID` maps to.
    public var hostID: UInt32
    /// Number of IDs in the range (at least 1).
    public var size: UInt32
    /// A range of `size` IDs from `containerID` (container) to `hostID` (host).
    public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
        self.containerID = containerID
        self.hostID = hostID
        self.size = size
    }

    /// Parse `C:H:N`.
    public init(parsing s: String) throws {
        let f = s.split(separator: ":", omittingEmptySubsequences: false)
        guard f.count == 3, let c = UInt32(f[0]), let h = UInt32(f[1]), let n = UInt32(f[2]), n > 0,
              UInt64(c) + UInt64(n) - 1 <= UInt64(UInt32.max), UInt64(h) + UInt64(n) - 1 <= UInt64(UInt32.max)
        else { throw DiffKitError.invalidIDMap(s) }
        self.init(containerID: c, hostID: h, size: n)
    }

    /// The last host ID of the range.
    var lastHostID: UInt64 { UInt64(hostID) + UInt64(size) - 1 }
}

/// Container ↔ host ID maps for user namespaces: applies map container → host, exports
/// host → container. Without ranges (``identity``) IDs pass unchanged.
public struct IDMap: Sendable, Equatable {
    /// The uid ranges (empty: uids are not mapped).
    public var uids: [IDRange]
    /// The gid ranges (empty: gids are not mapped).
    public var gids: [IDRange]

    /// No map: every ID is its own host ID.
    public static let identity = IDMap(uids: [], gids: [])

    /// A map of these uid and gid ranges; check it with ``validate()`` before use.
    public init(uids: [IDRange] = [], gids: [IDRange] = []) {
        self.uids = uids
        self.gids = gids
    }

    /// Empty maps are the identity (moby's "empty non-nil map = nothing maps" is not kept).
    public var isIdentity: Bool { uids.isEmpty && gids.isEmpty }

    private static func map(_ id: UInt32, _ ranges: [IDRange], toHost: Bool) -> UInt32? {
        if ranges.isEmpty { return id }
        for r in ranges {
            let from = toHost ? r.containerID : r.hostID
            let to = toHost ? r.hostID : r.containerID
            if id >= from && UInt64(id) <= UInt64(from) + UInt64(r.size) - 1 { return to + (id - from) }
        }
        return nil
    }

    /// Refuse a map under which the ownership rule cannot hold: a map of one kind of ID without
    /// the other (the other would stay host IDs), a map that does not map container root (there
    /// would be no owner for implicit parents and layer roots), a range reaching host ID
    /// 4294967295 (that is chown's "leave unchanged", not an owner).
    public func validate() throws {
        if isIdentity { return }
        if uids.isEmpty || gids.isEmpty {
            throw DiffKitError.unusableIDMap(reason: "a uid map needs a gid map and a gid map a uid map")
        }
        for (kind, ranges) in [("uid", uids), ("gid", gids)] {
            if Self.map(0, ranges, toHost: true) == nil {
                throw DiffKitError.unusableIDMap(reason: "the \(kind) map does not map container root (0)")
            }
            if let r = ranges.first(where: { $0.lastHostID >= UInt64(UInt32.max) }) {
                throw DiffKitError.unusableIDMap(reason: "the \(kind) range \(r.containerID):\(r.hostID):\(r.size) reaches host ID 4294967295, which is no owner")
            }
        }
    }

    /// Whether a host ID is inside the map (every ID is, without a map).
    public func containsHost(uid: UInt32) -> Bool { isIdentity || Self.map(uid, uids, toHost: false) != nil }
    /// Whether a host gid is inside the map (every gid is, without a map).
    public func containsHost(gid: UInt32) -> Bool { isIdentity || Self.map(gid, gids, toHost: false) != nil }

    /// A host owner kept where it is inside the map; an ID outside it becomes the mapped root's
    /// (for directories that copy a lower's attributes: implicit parents, a layer's root).
    public func insideOwner(uid: UInt32, gid: UInt32) -> (uid: UInt32, gid: UInt32) {
        let root = rootPair
        return (containsHost(uid: uid) ? uid : root.uid, containsHost(gid: gid) ? gid : root.gid)
    }

    /// The host IDs of container root (0:0 without maps; `validate()` makes sure a map has them).
    public var rootPair: (uid: UInt32, gid: UInt32) {
        (Self.map(0, uids, toHost: true) ?? 0, Self.map(0, gids, toHost: true) ?? 0)
    }

    /// Container → host. moby's root-pair shortcut is kept: an ID equal to the remapped root's
    /// host ID passes unchanged.
    public func toHost(uid: UInt32, gid: UInt32) -> (uid: UInt32, gid: UInt32)? {
        // (uid_t)-1 is chown's "leave unchanged": never an owner.
        if uid == UInt32.max || gid == UInt32.max { return nil }
        if isIdentity { return (uid, gid) }
        let root = rootPair
        let u = (uid == root.uid && !uids.isEmpty) ? uid : Self.map(uid, uids, toHost: true)
        let g = (gid == root.gid && !gids.isEmpty) ? gid : Self.map(gid, gids, toHost: true)
        guard let u, let g, u != UInt32.max, g != UInt32.max else { return nil }
        return (u, g)
    }

    /// Host → container.
    public func toContainer(uid: UInt32, gid: UInt32) -> (uid: UInt32, gid: UInt32)? {
        if isIdentity { return (uid, gid) }
        guard let u = Self.map(uid, uids, toHost: false), let g = Self.map(gid, gids, toHost: false) else { return nil }
        return (u, g)
    }
}
