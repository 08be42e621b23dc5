// ID maps (moby's pkg/idtools IdentityMapping): container↔host ranges for user namespaces. Import maps
// container→host, export maps host→container.

public struct IDRange: Sendable, Equatable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32
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
}

public struct IDMap: Sendable, Equatable {
    public var uids: [IDRange]
    public var gids: [IDRange]

    public static let identity = IDMap(uids: [], gids: [])

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

    /// The host IDs of container root (0:0 without maps).
    public var rootPair: (uid: UInt32, gid: UInt32) {
        (Self.map(0, uids, toHost: true) ?? 0, Self.map(0, gids, toHost: true) ?? 0)
    }

    /// Container → host. moby's root-pair shortcut is kept: an ID equal to the remapped root's
    /// host ID passes unchanged.
    public func toHost(uid: UInt32, gid: UInt32) -> (uid: UInt32, gid: UInt32)? {
        if isIdentity { return (uid, gid) }
        let root = rootPair
        let u = (uid == root.uid && !uids.isEmpty) ? uid : Self.map(uid, uids, toHost: true)
        let g = (gid == root.gid && !gids.isEmpty) ? gid : Self.map(gid, gids, toHost: true)
        guard let u, let g else { return nil }
        return (u, g)
    }

    /// Host → container.
    public func toContainer(uid: UInt32, gid: UInt32) -> (uid: UInt32, gid: UInt32)? {
        if isIdentity { return (uid, gid) }
        guard let u = Self.map(uid, uids, toHost: false), let g = Self.map(gid, gids, toHost: false) else { return nil }
        return (u, g)
    }
}
