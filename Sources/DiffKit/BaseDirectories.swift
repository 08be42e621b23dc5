// The base side of a naive diff: each directory of the parent tree read whole (names, stats,
// layer xattrs) in the order the walk of the layer asks for them. With a second core a thread
// reads ahead, so the walk of the layer and the reads of the base overlap; the order of the
// changes is the walk's either way.
import DiffKitArchive
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

/// One directory of the base tree, as the comparison needs it.
struct BaseDirectory: Sendable {
    struct Entry: Sendable {
        let name: [UInt8]
        /// The inode number the directory listing gives.
        let ino: UInt64
        let info: FileInfo
        let xattrs: [Xattr]
        /// A symlink's target when its mtime has no nanoseconds (the content rule compares it).
        let linkTarget: [UInt8]?
    }

    /// The path below the root followed by `/` (empty for the root): directories come in the
    /// byte order of their keys, which is the order the walk visits them in.
    let key: [UInt8]
    /// The absolute path, for messages and content compares.
    let absolute: [UInt8]
    let entries: [Entry]

    /// The key of the directory at the relative `path`.
    static func key(_ path: [UInt8]) -> [UInt8] { path.isEmpty ? [] : path + [LayerPath.slash] }

    /// Read the directory open at `fd` whole; only the names `only` has, when given.
    static func read(_ fd: Int32, key: [UInt8], absolute: [UInt8], only: PathSet.Cursor?) throws -> BaseDirectory {
        let listing = try Sys.readDirectory(fd, shown: absolute)
        var entries: [Entry] = []
        entries.reserveCapacity(only == nil ? listing.count : 0)   // one directory can be the largest thing held
        for e in listing where only?.has(e.name) ?? true {
            let shown = absolute + [LayerPath.slash] + e.name
            let info = FileInfo(try Sys.fstatat(fd, e.name, shown: shown))
            let xattrs = try LayerXattrs.read(path: shown, dirfd: fd, name: e.name)
            let target = info.kind == .symlink && info.mtimeNanoseconds == 0 ? try Sys.readlinkat(fd, e.name, shown: shown) : nil
            entries.append(Entry(name: e.name, ino: e.ino, info: info, xattrs: xattrs, linkTarget: target))
        }
        return BaseDirectory(key: key, absolute: absolute, entries: entries)
    }
}

/// Where a walk gets the base tree's directories from, in the order of their keys.
protocol BaseDirectories: AnyObject {
    /// The directory with `key`; the walk asks in increasing key order and only for directories
    /// whose parent it asked for. `only`: the names to read (all when nil). `help`: work to do
    /// while waiting (false when there is none).
    func directory(_ key: [UInt8], only: PathSet.Cursor?, help: () -> Bool) throws -> BaseDirectory
    /// The walk will not ask for the directory with `key`, nor for anything below it.
    func skip(_ key: [UInt8])
}

/// The base tree read when asked: the directories along the walk's path stay open.
final class BaseOnDemand: BaseDirectories {
    private let root: [UInt8]
    private var open: [(key: [UInt8], fd: Int32)] = []

    init(root: [UInt8]) {
        self.root = root
    }

    deinit {
        for o in open { Sys.close(o.fd) }
    }

    func skip(_ key: [UInt8]) {}

    func directory(_ key: [UInt8], only: PathSet.Cursor?, help: () -> Bool) throws -> BaseDirectory {
        while let top = open.last, !(key.count > top.key.count && key.starts(with: top.key)) {
            Sys.close(top.fd)
            open.removeLast()
        }
        let absolute = key.isEmpty ? root : root + [LayerPath.slash] + key.dropLast()
        let fd: Int32
        if let parent = open.last {
            let name = Array(key[parent.key.count..<(key.count - 1)])
            fd = try Sys.openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: absolute)
        } else {
            precondition(key.isEmpty, "the base's directories are asked for from the root down")
            fd = try Walker.openRoot(root)
        }
        open.append((key, fd))
        return try BaseDirectory.read(fd, key: key, absolute: absolute, only: only)
    }
}

/// The base tree read ahead on a thread of its own, every directory in key order, at most
/// `limit` entries waiting (one directory more if it alone is larger); the walk takes the ones it
/// asks for and drops the others (deleted directories, directories that became files).
final class BaseReadAhead: BaseDirectories, Sendable {
    private struct Queue {
        var items = Ring<(key: [UInt8], result: Result<BaseDirectory, Error>)>()
        var entries = 0
        var finished = false
        var stopped = false
        /// Where the reading thread is: the key of the directory it went into last.
        var position: [UInt8] = []
        /// Directories ahead of it that nobody will ask for (deleted ones, mostly).
        var skipped: Set<[UInt8]> = []
    }
    private struct Stopped: Error {}

    private let root: [UInt8]
    private let limit: Int
    private let comparer: ContentComparer
    private let queue = Condition(Queue())

    /// A reader of `root`; while it waits for room it runs `comparer`'s compares.
    init(root: [UInt8], comparer: ContentComparer, limit: Int = 4096) {
        self.root = root
        self.comparer = comparer
        self.limit = limit
    }

    /// The reading thread: every directory, then the end.
    func run() {
        let buffers = CompareBuffers()
        do {
            let fd = try Walker.openRoot(root)
            defer { Sys.close(fd) }
            try walk(fd, key: [], absolute: root, buffers)
        } catch is Stopped {
        } catch {
            try? put([], .failure(error), buffers)
        }
        queue.withLock { $0.finished = true }
        queue.broadcast()
    }

    private func walk(_ fd: Int32, key: [UInt8], absolute: [UInt8], _ buffers: CompareBuffers) throws {
        let dir: BaseDirectory
        do {
            dir = try BaseDirectory.read(fd, key: key, absolute: absolute, only: nil)
        } catch {
            return try put(key, .failure(error), buffers)
        }
        try put(key, .success(dir), buffers)
        let keys = dir.entries.filter { $0.info.isDirectory }.map { $0.name + [LayerPath.slash] }.sorted { $0.lexicographicallyPrecedes($1) }
        for sub in keys {
            let skip = queue.withLock { q in
                q.position = key + sub
                return q.skipped.remove(key + sub) != nil
            }
            if skip { continue }
            let name = Array(sub.dropLast())
            let path = absolute + [LayerPath.slash] + name
            let fd2: Int32
            do {
                fd2 = try Sys.openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, shown: path)
            } catch {
                try put(key + sub, .failure(error), buffers)
                continue
            }
            defer { Sys.close(fd2) }
            try walk(fd2, key: key + sub, absolute: path, buffers)
        }
    }

    private func put(_ key: [UInt8], _ result: Result<BaseDirectory, Error>, _ buffers: CompareBuffers) throws {
        let count = (try? result.get().entries.count) ?? 0
        let limit = self.limit
        func fits(_ q: Queue) -> Bool { q.stopped || q.items.isEmpty || q.entries + count <= limit }
        if !queue.withLock({ fits($0) }) {
            // Full: compare contents meanwhile, then sleep until half of it is taken (not woken
            // for each directory the walk takes).
            while !queue.withLock({ $0.entries <= limit / 2 }) && comparer.runNext(buffers: buffers) {}
            queue.wait(until: { $0.stopped || $0.items.isEmpty || $0.entries <= limit / 2 }) { _ in }
        }
        try queue.wait(until: fits) { q in
            if q.stopped { throw Stopped() }
            q.items.append((key, result))
            q.entries += count
        }
        queue.signal()
    }

    func directory(_ key: [UInt8], only: PathSet.Cursor?, help: () -> Bool) throws -> BaseDirectory {
        let limit = self.limit
        while true {
            while queue.withLock({ $0.items.isEmpty && !$0.finished }) && help() {}
            // The first directory, unless it comes after `key` (then `key` is missing; it stays).
            let next = queue.wait(until: { !$0.items.isEmpty || $0.finished }) { q -> (key: [UInt8], result: Result<BaseDirectory, Error>)? in
                guard let first = q.items.first, !key.lexicographicallyPrecedes(first.key) else { return nil }
                q.entries -= (try? first.result.get().entries.count) ?? 0
                return q.items.removeFirst()
            }
            if queue.withLock({ $0.entries <= limit / 2 }) { queue.signal() }   // the reader waits for half
            guard let next else { break }
            if next.key == key {
                var dir = try next.result.get()
                if let only { dir = BaseDirectory(key: dir.key, absolute: dir.absolute, entries: dir.entries.filter { only.has($0.name) }) }
                return dir
            }
            // A directory the walk does not go into: dropped.
        }
        let shown = key.isEmpty ? root : root + [LayerPath.slash] + key.dropLast()
        throw SystemError("opendir", shown, errno: ENOENT)
    }

    func skip(_ key: [UInt8]) {
        queue.withLock { q in
            if q.position.lexicographicallyPrecedes(key) { q.skipped.insert(key) }
        }
    }

    /// No more directories are wanted: the reading thread stops.
    func stop() {
        queue.withLock { $0.stopped = true }
        queue.broadcast()
    }
}
