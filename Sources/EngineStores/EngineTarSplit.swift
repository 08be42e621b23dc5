// The engines' tar-split records (vbatts/tar-split's storage format, which docker keeps as
// `layerdb/sha256/<chainID>/tar-split.json.gz` and containers/storage as
// `<driver>-layers/<id>.tar-split.gz`): gzip'd JSON, one object a line —
//   {"type":2,"payload":"<base64 raw bytes>","position":0}          a segment: bytes verbatim
//   {"type":1,"name":"etc/x","size":6,"payload":"<base64 CRC-64>","position":1}   a file's content
// `name_raw` (base64) stands for `name` when the name is not UTF-8. Each line goes through
// DiffKitJSON; only the fields reassembly needs are read.
import DiffKitArchive
import DiffKitJSON
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
            let fields: JSONValue
            do { fields = try JSONValue.parse(Array(l)) } catch let e as JSONError { throw corrupt(e.description) }
            guard case .object = fields else { throw corrupt("not a JSON object") }
            guard case let .number(t)? = fields["type"], let type = Int(t) else { throw corrupt("no type") }
            let payload: [UInt8]?
            switch fields["payload"] {
            case let .string(s)?:
                guard let d = Base64.decode(s) else { throw corrupt("payload is not base64") }
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
                    guard let d = Base64.decode(raw) else { throw corrupt("name_raw is not base64") }
                    name = d
                } else if case let .string(n)? = fields["name"] {
                    name = Array(n.utf8)
                } else {
                    throw corrupt("a file entry without a name")
                }
                var size: Int64 = 0
                if case let .number(n)? = fields["size"] {
                    guard let v = Int64(n) else { throw corrupt("a size that is not an integer") }
                    size = v
                }
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
