// An image's name and tag as docker and registries spell them (the distribution reference
// grammar without digests): checked before anything is written, so `docker load` or a push
// never meets a name it refuses.

/// An image's name and tag, `NAME:TAG` (`app:1.2`, `registry.example:5000/team/app:1.2`).
public struct ImageTag: Sendable, Equatable, CustomStringConvertible {
    /// The repository name, with its registry host when there is one (`team/app`, `localhost:5000/app`).
    public var name: String
    /// The tag (`1.2`, `latest`).
    public var tag: String

    /// `name:tag`, each checked; throws ``ImageExportError/invalidTag(_:reason:)``.
    public init(name: String, tag: String) throws {
        let text = name + ":" + tag
        if let reason = Self.nameProblem(name) ?? Self.tagProblem(tag) { throw ImageExportError.invalidTag(text, reason: reason) }
        self.name = name
        self.tag = tag
    }

    /// `NAME:TAG`, or `NAME` alone for `NAME:latest`. The tag is what follows the last colon
    /// after the last slash (a colon before it belongs to a registry's port).
    public init(parsing text: String) throws {
        let slash = text.lastIndex(of: "/") ?? text.startIndex
        if let colon = text[slash...].lastIndex(of: ":") {
            try self.init(name: String(text[..<colon]), tag: String(text[text.index(after: colon)...]))
        } else {
            try self.init(name: text, tag: "latest")
        }
    }

    /// `name:tag`.
    public var description: String { name + ":" + tag }

    private static func isLowerAlnum(_ c: Character) -> Bool { ("a"..."z").contains(c) || ("0"..."9").contains(c) }
    private static func isAlnum(_ c: Character) -> Bool { isLowerAlnum(c) || ("A"..."Z").contains(c) }

    /// Why `name` is not a repository name, or nil.
    static func nameProblem(_ name: String) -> String? {
        guard !name.isEmpty else { return "the name is empty" }
        guard name.utf8.count <= 255 else { return "the name is longer than 255 characters" }
        var parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // A first part with a dot or a port, or `localhost`, is a registry host.
        if parts.count > 1, let host = parts.first, host.contains(".") || host.contains(":") || host == "localhost" {
            let hostPort = host.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let labels = hostPort[0].split(separator: ".", omittingEmptySubsequences: false)
            let goodLabel = { (l: Substring) in
                !l.isEmpty && isAlnum(l.first!) && isAlnum(l.last!) && l.allSatisfy { isAlnum($0) || $0 == "-" }
            }
            guard labels.allSatisfy(goodLabel) else { return "'\(host)' is not a registry host" }
            if hostPort.count == 2, hostPort[1].isEmpty || !hostPort[1].allSatisfy({ ("0"..."9").contains($0) }) {
                return "'\(host)' has no port number after its colon"
            }
            parts.removeFirst()
        }
        for p in parts {
            // [a-z0-9]+ joined by one '.', one or two '_', or any number of '-'.
            guard let first = p.first, let last = p.last, isLowerAlnum(first), isLowerAlnum(last) else {
                return "'\(p)' must start and end with a lowercase letter or digit"
            }
            var run = ""
            for c in p {
                if isLowerAlnum(c) {
                    guard run.isEmpty || run == "." || run == "_" || run == "__" || run.allSatisfy({ $0 == "-" }) else {
                        return "'\(p)' has the separator '\(run)'"
                    }
                    run = ""
                } else if c == "." || c == "_" || c == "-" {
                    run.append(c)
                } else {
                    return "'\(p)' has '\(c)' (a name is lowercase letters, digits and . _ - separators)"
                }
            }
        }
        return nil
    }

    /// Why `tag` is not a tag, or nil: 1 to 128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`.
    static func tagProblem(_ tag: String) -> String? {
        guard let first = tag.first else { return "the tag is empty" }
        guard tag.count <= 128 else { return "the tag is longer than 128 characters" }
        guard isAlnum(first) || first == "_" else { return "the tag must start with a letter, digit or '_'" }
        guard tag.allSatisfy({ isAlnum($0) || $0 == "_" || $0 == "." || $0 == "-" }) else {
            return "the tag may hold only letters, digits, '_', '.' and '-'"
        }
        return nil
    }
}
