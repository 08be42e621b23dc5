// What a test needs from this machine (root, a filesystem in the kernel, the aufs module, xfs
// project quotas, a command), as a Swift Testing trait:
//
//     @Test(.requires(.root)) func …
//     @Test(.requires(.root, .filesystem("overlay"))) func …
//     @Suite(.requires(.root)) struct …
//
// Without a need met, the runner reports the test (or every test of the suite) as skipped, with
// the reason: `➜ Test f() skipped: "Suite.f() needs root: …"`. With DIFFKIT_REQUIRE_KERNEL=1 an
// unmet need is a failure instead, unless the (test, need) pair is listed in Tests/ALLOWED_SKIPS
// — the one list of skips allowed on a machine that is otherwise required to run everything
// (scripts/test.sh reads the same list and prints every skip at the end of the run).
//
// A need is decided before the test runs, never inside it: Swift Testing 6.3 reports a case of a
// parameterized test that calls `Test.cancel` as passed, so a test whose arguments need different
// things is split into one test (or suite) per need instead.
import DiffKitArchive
import DiffKitSystem
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One thing a test needs from the machine. `name` is how Tests/ALLOWED_SKIPS and the skip
/// reasons spell it.
public struct Need: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// What is missing when it is not met, for the skip reason.
    public let meaning: String
    let probe: @Sendable () -> Bool

    public init(name: String, meaning: String, probe: @escaping @Sendable () -> Bool) {
        self.name = name
        self.meaning = meaning
        self.probe = probe
    }

    public var isMet: Bool { probe() }
    public var description: String { name }
    public static func == (a: Need, b: Need) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }

    /// Effective uid 0 (owners, devices, mounts, loop devices).
    public static let root = Need(name: "root", meaning: "root (effective uid 0)") { geteuid() == 0 }

    /// `filesystem` (overlay, btrfs, xfs) in /proc/filesystems, its module loaded if needed.
    public static func filesystem(_ filesystem: String) -> Need {
        Need(name: "filesystem:\(filesystem)", meaning: "the \(filesystem) filesystem in the kernel") {
            Capability.hasFilesystem(filesystem)
        }
    }

    /// The aufs module (out of tree; recent kernels have none), to view an aufs layer with parents.
    public static let aufsModule = Need(name: "aufs-module", meaning: "the aufs module (out of tree)") {
        Capability.hasFilesystem("aufs")
    }

    /// xfs with quota support (CONFIG_XFS_QUOTA), so that it mounts with `pquota`: the kernel then
    /// has /proc/fs/xfs/xqmstat.
    public static let xfsQuota = Need(name: "xfs-quota", meaning: "xfs quota support (CONFIG_XFS_QUOTA), for pquota mounts") {
        Capability.hasFilesystem("xfs") && access("/proc/fs/xfs/xqmstat", F_OK) == 0
    }

    /// `command` on the PATH.
    public static func command(_ command: String) -> Need {
        Need(name: "command:\(command)", meaning: "the \(command) command") {
            system("command -v '\(command)' >/dev/null 2>&1") == 0
        }
    }
}

/// The trait made by `.requires(…)`.
public struct Requirement: TestTrait, SuiteTrait {
    public let needs: [Need]
    public let sourceLocation: SourceLocation

    public func prepare(for test: Test) async throws {
        let key = Skips.key(test)
        let unmet = needs.filter { !$0.isMet }
        guard let first = unmet.first else { return }
        if let refused = unmet.first(where: { !Skips.mayStaySkipped(key, $0) }) {
            throw TestError(Skips.refusal(key, refused))
        }
        // ConditionTrait's own skip: the runner reports it as skipped, with this comment.
        try await ConditionTrait.enabled(if: false, Comment(rawValue: Skips.reason(key, first)),
                                         sourceLocation: sourceLocation).prepare(for: test)
    }
}

extension Trait where Self == Requirement {
    /// Run only where every need is met; see the top of this file.
    public static func requires(_ needs: Need..., sourceLocation: SourceLocation = #_sourceLocation) -> Self {
        Requirement(needs: needs, sourceLocation: sourceLocation)
    }
}

/// The allowed-skip list and the rules for skipping.
public enum Skips {
    /// DIFFKIT_REQUIRE_KERNEL=1: an unmet need not in Tests/ALLOWED_SKIPS is a failure.
    public static var required: Bool { env("DIFFKIT_REQUIRE_KERNEL") == "1" }

    static func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// A test's name in skip reasons and in the list: its suites and function, dot-separated
    /// (`Overlay2Tests.projectQuotaEnforcedOnXFS()`, `Conformance.Aufs.childLayerRead()`).
    public static func key(_ test: Test) -> String { test.id.nameComponents.joined(separator: ".") }

    public struct Entry: Sendable {
        public var pattern: String
        public var need: String
        public var reason: String
    }

    /// Where the list is read from: `DIFFKIT_ALLOWED_SKIPS` when set (a test binary run away from
    /// its source tree, as in the kernel matrix's guest), else Tests/ALLOWED_SKIPS of the sources.
    public static let listPath: String = env("DIFFKIT_ALLOWED_SKIPS") ?? String(
        #filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(2).joined(separator: "/")) + "/ALLOWED_SKIPS"

    /// Tests/ALLOWED_SKIPS: `TEST NEED REASON…` per line, `#` comments; `*` in TEST matches any run
    /// of characters. A list that cannot be read allows nothing.
    public static let allowed: [Entry] = {
        guard let bytes = try? Sys.readFile(Bytes.of(listPath)) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
            guard fields.count >= 2, !fields[0].hasPrefix("#") else { return nil }
            return Entry(pattern: String(fields[0]), need: String(fields[1]),
                         reason: fields.count > 2 ? String(fields[2]).trimmingSpaces : "")
        }
    }()

    public static func allowedEntry(_ key: String, _ need: Need) -> Entry? {
        allowed.first { $0.need == need.name && glob($0.pattern, key) }
    }

    /// Whether an unmet need may be a skip here: always, unless DIFFKIT_REQUIRE_KERNEL=1 and the
    /// pair is not listed. DIFFKIT_REQUIRE_QUOTA=1 makes a missing xfs-quota a failure, listed or not.
    public static func mayStaySkipped(_ key: String, _ need: Need) -> Bool {
        if need == .xfsQuota && env("DIFFKIT_REQUIRE_QUOTA") == "1" { return false }
        return !required || allowedEntry(key, need) != nil
    }

    /// The skip comment, parsed by scripts/test.sh: `KEY needs NEED: MEANING[ (allowed: REASON)]`.
    public static func reason(_ key: String, _ need: Need) -> String {
        var r = "\(key) needs \(need.name): \(need.meaning) is missing"
        if let e = allowedEntry(key, need) { r += " (allowed: \(e.reason))" }
        return r
    }

    static func refusal(_ key: String, _ need: Need) -> String {
        if need == .xfsQuota && env("DIFFKIT_REQUIRE_QUOTA") == "1" {
            return "\(key) needs \(need.name): \(need.meaning) is missing and DIFFKIT_REQUIRE_QUOTA=1 forbids skipping"
        }
        return "\(key) needs \(need.name): \(need.meaning) is missing, and DIFFKIT_REQUIRE_KERNEL=1 "
            + "allows only the skips listed in \(listPath)" + (allowed.isEmpty ? " (which could not be read)" : "")
    }

    /// `*` matches any run of characters; everything else is literal.
    static func glob(_ pattern: String, _ s: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 1 { return pattern == s }
        guard s.hasPrefix(parts[0]) else { return false }
        var rest = Substring(s.dropFirst(parts[0].count))
        for part in parts.dropFirst().dropLast() where !part.isEmpty {
            guard let r = rest.firstRange(of: part) else { return false }
            rest = rest[r.upperBound...]
        }
        return rest.count >= parts.last!.count && rest.hasSuffix(parts.last!)
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
