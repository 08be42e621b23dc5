// The ordering half of the naive diff: the walks report what they find in path order as events,
// some not yet settled (a content compare still running, a directory whose subtree is still to be
// walked); this settles them and hands each change on as soon as everything before it is known.
import DiffKitArchive
import DiffKitSystem

/// What a walk of two trees finds, in path order, before ancestors and content compares are settled.
enum DiffEvent: Sendable {
    /// A change known as it is found.
    case change(Change)
    /// A file changed only if its content differs: the outcome of a content compare ticket.
    case compare(ticket: Int, path: [UInt8], info: FileInfo)
    /// An unchanged file with more than one link: a peer if another member of its group changed.
    case unchanged(path: [UInt8], info: FileInfo)
    /// A directory on both sides, itself unchanged, whose subtree follows: modified if anything
    /// below it changes. Ended by ``leave``.
    case enter(path: [UInt8], info: FileInfo)
    /// The end of the subtree of the last ``enter`` not yet left.
    case leave
}

/// Where a walk puts its events.
protocol DiffEventSink: AnyObject {
    func put(_ event: DiffEvent) throws
    /// Do some other work while waiting for events to put (a content compare); false if there is none.
    func helpWhileWaiting() -> Bool
}

/// Settles ``DiffEvent``s in the order they come and calls `body` with each change, in path
/// order; link peers follow the changed member of their group when they came before it (as
/// containerd writes them), in place otherwise.
///
/// Memory: the events waiting for a content compare (at most `lookahead`), the open directories
/// of the current path (and changes behind a directory whose subtree comes later in path order:
/// `/a-b/…` waits for `/a`'s subtree to say whether `/a` changed), and the hardlink groups of
/// which not every link has been seen. Nothing grows with the size of the tree.
final class ChangeSequencer: DiffEventSink {
    private let comparer: ContentComparer
    private let buffers = CompareBuffers()
    private let body: (Change) throws -> Void
    private let lookahead: Int

    /// Events in walk order; the first may wait for its content compare.
    private var events = Ring<DiffEvent>()
    /// Settled changes and open directories, in path order, waiting behind an undecided directory.
    private var held = Ring<Held>()
    /// The directories opened and not yet closed (their entry in `held` goes once they are
    /// known changed and handed on).
    private var open: [OpenDirectory] = []
    /// Hardlink groups with a link not yet seen, by inode.
    private var groups: [UInt64: LinkGroup] = [:]

    private enum Held {
        case change(Change)
        case directory(path: [UInt8], info: FileInfo, state: DirectoryState)
    }
    private enum DirectoryState { case undecided, changed, quiet }

    private struct OpenDirectory {
        let path: [UInt8]
        let sequence: Int
        var changed = false
    }

    private struct LinkGroup {
        var seen: UInt64 = 0
        /// The stat of the member that changed (shared by every link of the inode).
        var changed: FileInfo?
        /// Unchanged links seen before any member changed.
        var waiting: [[UInt8]] = []
    }

    /// `changedLinks`: inodes already known to have changed (their unchanged links are peers).
    init(comparer: ContentComparer, lookahead: Int = 4096, changedLinks: [UInt64: FileInfo] = [:],
         body: @escaping (Change) throws -> Void) {
        self.comparer = comparer
        self.lookahead = lookahead
        self.body = body
        for (inode, info) in changedLinks { groups[inode] = LinkGroup(changed: info) }
    }

    func put(_ event: DiffEvent) throws {
        events.append(event)
        while events.count > lookahead { try settle(events.removeFirst()) }
        while let e = events.first {
            if case let .compare(ticket, _, _) = e, !comparer.isDone(ticket) { break }
            try settle(events.removeFirst())
        }
    }

    func helpWhileWaiting() -> Bool {
        comparer.runNext(buffers: buffers)
    }

    /// Settle everything: the walk is over.
    func finish() throws {
        while !events.isEmpty { try settle(events.removeFirst()) }
        precondition(open.isEmpty && held.isEmpty, "diff events: a subtree was opened and never closed")
    }

    private func settle(_ event: DiffEvent) throws {
        switch event {
        case let .change(c):
            try changed(c)
        case let .compare(ticket, path, info):
            if try !comparer.resolve(ticket, buffers: buffers) {
                try changed(Change(.modify, path, info: info))
            } else if info.links > 1 {
                try unchanged(path, info)
            }
        case let .unchanged(path, info):
            try unchanged(path, info)
        case let .enter(path, info):
            open.append(OpenDirectory(path: path, sequence: held.endIndex))
            held.append(.directory(path: path, info: info, state: .undecided))
        case .leave:
            let d = open.removeLast()
            if !d.changed, case let .directory(path, info, _) = held[d.sequence] {
                held[d.sequence] = .directory(path: path, info: info, state: .quiet)
            }
            try flush()
        }
    }

    /// A change: every open directory above it changed too (moby reports ancestors).
    private func changed(_ c: Change) throws {
        for k in open.indices.reversed() where LayerPath.isAncestor(open[k].path, of: c.path) {
            if open[k].changed { break }   // its own ancestors were marked with it
            open[k].changed = true
            if case let .directory(path, info, _) = held[open[k].sequence] {
                held[open[k].sequence] = .directory(path: path, info: info, state: .changed)
            }
        }
        try emit(c)
        if c.kind != .delete, let info = c.info, !info.isDirectory, info.links > 1 {
            var g = groups[info.inode] ?? LinkGroup()
            g.seen += 1
            if g.changed == nil {
                g.changed = info
                for p in g.waiting { try emit(Change(.modify, p, info: info, isLinkPeer: true)) }
                g.waiting = []
            }
            keep(g, info)
        }
    }

    /// An unchanged file with more than one link.
    private func unchanged(_ path: [UInt8], _ info: FileInfo) throws {
        var g = groups[info.inode] ?? LinkGroup()
        g.seen += 1
        if g.changed != nil {
            try emit(Change(.modify, path, info: info, isLinkPeer: true))
        } else {
            g.waiting.append(path)
        }
        keep(g, info)
    }

    /// Keep a group until every one of its links has been seen.
    private func keep(_ g: LinkGroup, _ info: FileInfo) {
        groups[info.inode] = g.seen >= info.links ? nil : g
    }

    private func emit(_ c: Change) throws {
        if held.isEmpty {
            try body(c)
        } else {
            held.append(.change(c))
            try flush()
        }
    }

    /// Hand on everything at the front of `held` that no undecided directory holds back.
    private func flush() throws {
        while let first = held.first {
            switch first {
            case let .change(c):
                try body(c)
            case let .directory(path, info, state):
                if state == .undecided { return }
                if state == .changed { try body(Change(.modify, path, info: info)) }
            }
            _ = held.removeFirst()
        }
    }
}
