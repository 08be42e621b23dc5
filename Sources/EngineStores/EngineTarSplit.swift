// The engines' tar-split records (vbatts/tar-split's storage format, which docker keeps as
// `layerdb/sha256/<chainID>/tar-split.json.gz` and containers/storage as
// `<driver>-layers/<id>.tar-split.gz`): gzip'd JSON, one object a line —
//   {"type":2,"payload":"<base64 raw bytes>","position":0}          a segment: bytes verbatim
//   {"type":1,"name":"etc/x","size":6,"payload":"<base64 CRC-64>","position":1}   a file's content
// `name_raw` (base64) stands for `name` when the name is not UTF-8. Only what reassembly needs is
// parsed here, by hand: the fields are few and fixed, and a layer may have 100,000 lines.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// One entry of an engine's tar-split record.
enum EngineTarSplitEntry: Equatable {
    /// Bytes of the tar that are not file content, verbatim.
    case segment([UInt8])
    /// A file's content: its name as stored, its size and its CRC-64/ISO (8 bytes, big-endian; nil for size 0).
    case file(name: [UInt8], size: Int64, crc: [UInt8]?)
}

/// Reads an engine's tar-split record (any compression libarchive detects, gzip in practice), entry by entry.
final class EngineTarSplitReader {
    private let fd: Int32
    private let input: RawInput
    private let name: String
    private var pending: [UInt8] = []
    private var start = 0
    private var done = false
    private var line = 0

    /// Open the record at `path`; `name` is what errors call it.
    init(path: [UInt8]) throws {
        fd = try Sys.open(path, O_RDONLY | O_CLOEXEC)
        name = Bytes.string(path)
        do {
            input = try RawInput(fd: fd, name: name)
        } catch {
            Sys.close(fd)
            throw error
        }
    }

    deinit { Sys.close(fd) }

    private func corrupt(_ why: String) -> EngineStoreError {
        .badRecord(path: name, reason: "line \(line): \(why)")
    }

    /// The next line without its newline, or nil at the end.
    private func nextLine() throws -> ArraySlice<UInt8>? {
        while true {
            if let nl = pending[start...].firstIndex(of: 0x0A) {
                let l = pending[start..<nl]
                start = nl + 1
                return l
            }
            if done {
                if start < pending.count {
                    let l = pending[start...]
                    start = pending.count
                    return l
                }
                return nil
            }
            if start > 0 {
                pending.removeFirst(start)
                start = 0
            }
            if let chunk = try input.next() { pending.append(contentsOf: chunk) } else { done = true }
        }
    }

    /// The next entry, or nil at the end of the record.
    func next() throws -> EngineTarSplitEntry? {
        while let l = try nextLine() {
            line += 1
            if l.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            var p = JSONLine(bytes: l)
            let fields: [String: TarSplitValue]
            do { fields = try p.object() } catch let e as JSONError { throw corrupt(e.why) }
            guard case let .number(type)? = fields["type"] else { throw corrupt("no type") }
            let payload: [UInt8]?
            switch fields["payload"] {
            case let .string(s)?:
                guard let d = Base64Bytes.decode(s) else { throw corrupt("payload is not base64") }
                payload = d
            case .null?, nil: payload = nil
            default: throw corrupt("payload is not a string")
            }
            switch type {
            case 2:
                return .segment(payload ?? [])
            case 1:
                var name: [UInt8]
                if case let .string(raw)? = fields["name_raw"], !raw.isEmpty {
                    guard let d = Base64Bytes.decode(raw) else { throw corrupt("name_raw is not base64") }
                    name = d
                } else if case let .string(n)? = fields["name"] {
                    name = n
                } else {
                    throw corrupt("a file entry without a name")
                }
                var size: Int64 = 0
                if case let .number(s)? = fields["size"] { size = s }
                guard size >= 0 else { throw corrupt("a negative size") }
                if size > 0 && payload?.count != 8 { throw corrupt("a file entry without its CRC-64") }
                return .file(name: name, size: size, crc: size > 0 ? payload : nil)
            default:
                throw corrupt("unknown entry type \(type)")
            }
        }
        return nil
    }
}

/// The values a tar-split line holds.
enum TarSplitValue: Equatable {
    case string([UInt8])
    case number(Int64)
    case null
    case bool(Bool)
}

/// Why a tar-split line is not the JSON expected.
struct JSONError: Error {
    var why: String
    init(_ why: String) { self.why = why }
}

/// A one-object JSON parser for tar-split lines: string, integer, null and boolean values (a
/// nested value is an error); strings come back as UTF-8 bytes, escapes resolved.
struct JSONLine {
    let bytes: ArraySlice<UInt8>
    var i: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        i = bytes.startIndex
    }

    private mutating func skipSpace() {
        while i < bytes.endIndex, [0x20, 0x09, 0x0D, 0x0A].contains(bytes[i]) { i += 1 }
    }

    private mutating func expect(_ c: UInt8) -> Bool {
        skipSpace()
        guard i < bytes.endIndex, bytes[i] == c else { return false }
        i += 1
        return true
    }

    mutating func object() throws -> [String: TarSplitValue] {
        var out: [String: TarSplitValue] = [:]
        guard expect(UInt8(ascii: "{")) else { throw JSONError("not a JSON object") }
        if expect(UInt8(ascii: "}")) { return out }
        while true {
            skipSpace()
            let key = try string()
            guard expect(UInt8(ascii: ":")) else { throw JSONError("no ':' after a key") }
            skipSpace()
            out[String(decoding: key, as: UTF8.self)] = try value()
            if expect(UInt8(ascii: ",")) { continue }
            if expect(UInt8(ascii: "}")) { break }
            throw JSONError("expected ',' or '}'")
        }
        skipSpace()
        guard i == bytes.endIndex else { throw JSONError("text after the object") }
        return out
    }

    private mutating func value() throws -> TarSplitValue {
        guard i < bytes.endIndex else { throw JSONError("a value is missing") }
        switch bytes[i] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw JSONError("an unexpected value")
        }
    }

    private mutating func literal(_ word: String, _ v: TarSplitValue) throws -> TarSplitValue {
        let w = Array(word.utf8)
        guard bytes.endIndex - i >= w.count, Array(bytes[i..<(i + w.count)]) == w else { throw JSONError("a bad literal") }
        i += w.count
        return v
    }

    private mutating func number() throws -> TarSplitValue {
        var negative = false
        if bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var v: Int64 = 0
        var digits = 0
        while i < bytes.endIndex, bytes[i] >= 0x30, bytes[i] <= 0x39 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(bytes[i] - 0x30))
            if o1 || o2 { throw JSONError("a number out of range") }
            v = a
            digits += 1
            i += 1
        }
        if digits == 0 { throw JSONError("a bad number") }
        if i < bytes.endIndex, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) {
            throw JSONError("a number that is not an integer")
        }
        return .number(negative ? -v : v)
    }

    private func hex(_ at: Int) -> UInt32? {
        guard bytes.endIndex - at >= 4 else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = bytes[at + k]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }

    private mutating func string() throws -> [UInt8] {
        guard i < bytes.endIndex, bytes[i] == UInt8(ascii: "\"") else { throw JSONError("expected a string") }
        i += 1
        var out: [UInt8] = []
        while i < bytes.endIndex {
            let c = bytes[i]
            i += 1
            switch c {
            case UInt8(ascii: "\""):
                return out
            case UInt8(ascii: "\\"):
                guard i < bytes.endIndex else { throw JSONError("an unfinished escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var u = hex(i) else { throw JSONError("a bad \\u escape") }
                    i += 4
                    if (0xD800..<0xDC00).contains(u), bytes.endIndex - i >= 6, bytes[i] == UInt8(ascii: "\\"),
                       bytes[i + 1] == UInt8(ascii: "u"), let low = hex(i + 2), (0xDC00..<0xE000).contains(low) {
                        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                    // A lone surrogate is what Go writes for bytes it replaced: U+FFFD.
                    let scalar = Unicode.Scalar(u) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw JSONError("an unknown escape")
                }
            default:
                out.append(c)
            }
        }
        throw JSONError("an unterminated string")
    }
}

/// Standard base64 (with padding), as Go's encoding/json writes []byte.
enum Base64Bytes {
    private static let values: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (n, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = Int8(n) }
        return t
    }()

    /// The bytes `text` encodes, or nil when it is not base64.
    static func decode(_ text: [UInt8]) -> [UInt8]? {
        var body = text[...]
        var pad = 0
        while body.last == UInt8(ascii: "=") && pad < 2 { body.removeLast(); pad += 1 }
        guard (body.count + pad) % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(body.count * 3 / 4)
        var acc: UInt32 = 0, bits = 0
        for c in body {
            let v = values[Int(c)]
            if v < 0 { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }
}
