// Small reads of an engine's metadata files, the driver choice, and what a directory that is
// not the expected store looks like instead (for the error).
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

enum EngineFiles {
    static func isDirectory(_ path: [UInt8]) -> Bool {
        guard let st = try? Sys.fstatat(AT_FDCWD, path) else { return false }
        return st.st_mode & S_IFMT == S_IFDIR
    }

    /// The names in directory `dir` (none when it is missing and `missingOK`).
    static func names(_ dir: [UInt8], missingOK: Bool = false) throws -> [String] {
        let fd: Int32
        do {
            fd = try Sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        } catch let e as SystemError where missingOK && e.errno == .noSuchFileOrDirectory {
            return []
        }
        defer { Sys.close(fd) }
        return try Sys.readDirectory(fd, shown: dir).map { Bytes.string($0.name) }
    }

    /// A small text file's content without surrounding white space.
    static func text(_ path: [UInt8]) throws -> String {
        guard let t = try optionalText(path) else {
            throw EngineStoreError.badRecord(path: Bytes.string(path), reason: "missing")
        }
        return t
    }

    /// `text`, or nil where the file does not exist.
    static func optionalText(_ path: [UInt8]) throws -> String? {
        guard Sys.exists(path) else { return nil }
        return String(decoding: try Sys.readFile(path), as: UTF8.self).strippingSpace()
    }

    /// 64 lower-case hex digits.
    static func isDigestHex(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// A driver id read from the engine's metadata becomes part of a path: letters, digits, `-`, `_`, `.` only.
    static func checkName(_ id: String, in file: [UInt8]) throws {
        guard !id.isEmpty, id != ".", id != "..", id.utf8.count <= 255, id.utf8.allSatisfy({
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
                || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
        }) else {
            throw EngineStoreError.badRecord(path: Bytes.string(file), reason: "'\(id)' is not a layer id")
        }
    }

    /// The driver to read among those `found`: the one requested, else the only one.
    static func choose(_ found: [String], requested: String?, supported: [String], path: String, what: String,
                       hint: String? = nil) throws -> String {
        if let requested {
            guard supported.contains(requested) else {
                throw EngineStoreError.unsupportedDriver(path: path, driver: requested, supported: supported)
            }
            guard found.contains(requested) else {
                throw EngineStoreError.notAStore(path: path, expected: what.replacingDriver(requested),
                                                 hint: found.isEmpty ? hint : "it has layers of \(found.joined(separator: ", "))")
            }
            return requested
        }
        guard !found.isEmpty else { throw EngineStoreError.notAStore(path: path, expected: what, hint: hint) }
        let known = found.filter { supported.contains($0) }
        if known.isEmpty { throw EngineStoreError.unsupportedDriver(path: path, driver: found[0], supported: supported) }
        if known.count > 1 { throw EngineStoreError.severalDrivers(path: path, found: known) }
        return known[0]
    }

    /// What `dir` looks like, when it is not the store asked for.
    static func guess(_ dir: [UInt8]) -> String? {
        guard isDirectory(dir) else { return Sys.exists(dir) ? "it is not a directory" : "it does not exist" }
        let names = Set((try? Self.names(dir)) ?? [])
        func has(_ p: String) -> Bool { Sys.exists(dir + Bytes.of("/" + p)) }
        if names.contains("image") && isDirectory(dir + Bytes.of("/image")) { return "it looks like a docker data root: use docker:PATH" }
        if names.contains(where: { $0.hasSuffix("-layers") && has($0 + "/layers.json") }) {
            return "it looks like a containers/storage root: use containers:PATH"
        }
        if has("layers/.lock") { return "it looks like a DiffKit store: open it with --home" }
        if has("l") && names.contains(where: { has($0 + "/diff") && has($0 + "/link") }) {
            return "it looks like an overlay driver's own directory: give the data root that holds it"
        }
        if has("dir") && isDirectory(dir + Bytes.of("/dir")) { return "it looks like a vfs driver's own directory: give the data root that holds it" }
        if has("subvolumes") { return "it looks like a btrfs driver's own directory: give the data root that holds it" }
        if has("diff") && has("layers") && has("mnt") { return "it looks like an aufs directory: use migrate --from aufs --from-home" }
        if names.isEmpty { return "it is empty" }
        return nil
    }
}

extension String {
    fileprivate func replacingDriver(_ driver: String) -> String { replacing("<driver>", with: driver) }

    /// The string without leading and trailing white space.
    func strippingSpace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
