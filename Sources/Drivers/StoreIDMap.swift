// The ID map a store's layers were made under, kept in the store (`HOME/idmap`, one
// `uid C:H:N` or `gid C:H:N` line per range). The first open with a map records it; an open
// without one uses the recorded map (so `create`, `mount`, `export` … of a remapped store need
// not repeat it); an open with another map is refused — its layers would mix the owners of two
// maps, and roots and implicit parents would be outside one of them.
import DiffKitArchive
import DiffKitSystem
import DiffKit

#if canImport(Glibc)
import Glibc
#endif

enum StoreIDMap {
    static func path(_ home: [UInt8]) -> [UInt8] { home + Bytes.of("/idmap") }

    /// The map to open the store at `home` with, given the one asked for (validated).
    static func settle(home: [UInt8], requested: IDMap) throws -> IDMap {
        try requested.validate()
        let file = path(home)
        if let text = try? Sys.readFile(file) {
            let recorded = try parse(text, file)
            if requested.isIdentity || requested == recorded { return recorded }
            throw DiffKitError.unusableIDMap(reason: "the store at \(Bytes.string(home)) was made under the ID map \(describe(recorded)), not \(describe(requested))")
        }
        if !requested.isIdentity {
            try makeDirectory(home, mode: 0o755, uid: geteuid(), gid: getegid())
            try writeFileAtomically(file, Bytes.of(format(requested)), mode: 0o644)
        }
        return requested
    }

    static func format(_ map: IDMap) -> String {
        (map.uids.map { "uid \($0.containerID):\($0.hostID):\($0.size)\n" } + map.gids.map { "gid \($0.containerID):\($0.hostID):\($0.size)\n" }).joined()
    }

    static func describe(_ map: IDMap) -> String {
        map.isIdentity ? "(none)" : format(map).split(separator: "\n").joined(separator: " ")
    }

    static func parse(_ text: [UInt8], _ file: [UInt8]) throws -> IDMap {
        var map = IDMap()
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 2, f[0] == "uid" || f[0] == "gid" else {
                throw DiffKitError.unusableIDMap(reason: "\(Bytes.string(file)): unreadable line '\(line)'")
            }
            let r = try IDRange(parsing: String(f[1]))
            if f[0] == "uid" { map.uids.append(r) } else { map.gids.append(r) }
        }
        try map.validate()
        return map
    }
}
